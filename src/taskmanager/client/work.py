"""The worker's calls, with no I/O: claim, complete, fail, progress and heartbeat.

A claim remembers each task's worker id and lease token; the reports that follow send them
without being told, and a complete forgets them once its outcome is settled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from taskmanager.client.config import TaskManagerConfig
from taskmanager.client.errors import TaskManagerAPIError
from taskmanager.client.models import BatchCompletion, Completion, HeartbeatResult, ProgressUpdate, Task
from taskmanager.client.protocol import Call, Lease, Leases, Request, encode, fields, post

#: Error answers to a complete after which its lease is of no more use: the attempt is over.
FINAL_COMPLETE_STATUSES = frozenset({400, 403, 404, 409})
#: Most outcomes one ``POST /tasks/complete-batch`` may carry (the server's limit).
MAX_COMPLETE_BATCH = 1000

TaskTypeRef = str | int | Sequence[str] | Sequence[int] | None


def claim_target(task_type: TaskTypeRef) -> dict[str, Any]:
    """``task_type`` as the claim filter: a name, an id, or a list of either (None: any type)."""
    if task_type is None:
        return {}
    if isinstance(task_type, str):
        return {"types": [task_type]}
    if isinstance(task_type, int):
        return {"task_type_id": task_type}
    items = list(task_type)
    if all(isinstance(item, str) for item in items):
        return {"types": items}
    if all(isinstance(item, int) for item in items):
        return {"task_type_ids": items}
    raise TypeError("task_type must be a name, an id, or a list of names or of ids")


class WorkCalls:
    """Claiming and reporting, with the leases of the claimed tasks."""

    config: TaskManagerConfig
    leases: Leases

    @property
    def worker_id(self) -> str:
        return self.config.worker_id or ""

    def _claim(self, task_type: TaskTypeRef, worker_id: str | None, given: dict[str, Any]) -> Request:
        body = {"worker_id": worker_id or self.worker_id, **claim_target(task_type), **given}
        wait = given.get("wait")
        timeout = self.config.timeout + float(wait) if wait else None
        # Not idempotent: a claim repeated after its answer was lost would take a second task.
        return Request("POST", "/tasks/claim", content=encode(body), timeout=timeout)

    def _remember(self, task: Task) -> Task:
        if task.lease_token is not None and task.claimed_by is not None:
            self.leases.remember(task.id, Lease(task.claimed_by, task.lease_token))
        return task

    def claim_task(
        self,
        task_type: TaskTypeRef = None,
        worker_id: str | None = None,
        *,
        type_pattern: str | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        lease_seconds: int | None = None,
    ) -> Call[Task | None]:
        """Claim the next task (of a type name, id, or list of them; any type when None), or None
        when nothing is claimable. The client remembers the lease for the reports that follow."""
        given = fields(
            type_pattern=type_pattern, sort_by=sort_by, sort_order=sort_order, lease_seconds=lease_seconds
        )

        def none_when_empty(error: TaskManagerAPIError) -> Task | None:
            if error.error_code == "no_tasks":
                return None
            raise error

        request = self._claim(task_type, worker_id, given)
        return Call(request, lambda data: self._remember(Task.model_validate(data)), none_when_empty)

    def claim_tasks(
        self,
        task_type: TaskTypeRef = None,
        worker_id: str | None = None,
        *,
        limit: int = 10,
        wait: float | None = None,
        type_pattern: str | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        lease_seconds: int | None = None,
    ) -> Call[list[Task]]:
        """Claim up to ``limit`` tasks at once (an empty list when nothing is claimable).
        ``wait`` (seconds) asks a server that offers long-poll to hold the request until a task
        is claimable."""
        given = fields(
            limit=limit,
            wait=wait,
            type_pattern=type_pattern,
            sort_by=sort_by,
            sort_order=sort_order,
            lease_seconds=lease_seconds,
        )

        def parse(data: Any) -> list[Task]:
            return [self._remember(Task.model_validate(item)) for item in data["tasks"]]

        return Call(self._claim(task_type, worker_id, given), parse)

    def _holder(self, task_id: int, worker_id: str | None, lease_token: str | None) -> dict[str, Any]:
        """The worker id and lease token to send for ``task_id``: given, else remembered."""
        lease = self.leases.get(task_id)
        worker = worker_id or (lease.worker_id if lease else None) or self.worker_id
        if lease_token is None and lease is not None and lease.worker_id == worker:
            lease_token = lease.token
        return fields(worker_id=worker, lease_token=lease_token)

    def complete_task(
        self,
        task_id: int,
        result: Any = None,
        status: Literal["completed", "failed"] = "completed",
        *,
        error: str | None = None,
        worker_id: str | None = None,
        lease_token: str | None = None,
    ) -> Call[Completion]:
        """Report the outcome of a claimed task: ``completed``, or ``failed`` (retried while it
        has attempts left). Sends the remembered worker id and lease token unless given."""
        if status not in ("completed", "failed"):
            raise ValueError("status must be 'completed' or 'failed'")
        task_id = int(task_id)
        holder = self._holder(task_id, worker_id, lease_token)
        body = {**holder, "success": status == "completed", **fields(result=result, error=error)}

        sent = holder.get("lease_token")

        def done(data: Any) -> Completion:
            self.leases.forget(task_id, sent)
            return Completion.model_validate(data)

        def refused(exc: TaskManagerAPIError) -> Completion:
            if exc.status_code in FINAL_COMPLETE_STATUSES:
                self.leases.forget(task_id, sent)
            raise exc

        # With a lease token, a repeated complete gets the first one's answer (B.3): safe to retry.
        request = Request(
            "POST", f"/tasks/{task_id}/complete", content=encode(body), idempotent="lease_token" in holder
        )
        return Call(request, done, refused)

    def complete_tasks(
        self, outcomes: Sequence[Mapping[str, Any]], worker_id: str | None = None
    ) -> Call[list[BatchCompletion]]:
        """Report many outcomes in one request (``POST /tasks/complete-batch``, 1-1000 items).

        Each item is a mapping with ``id`` and either ``success`` (bool) or ``status``
        (``"completed"``/``"failed"``; default completed), and optionally ``result``, ``error`` and
        ``lease_token`` (the remembered one is sent when absent). The server judges each item
        alone; the answer lists, in order, each item's ``status`` or its ``error`` and ``code``.
        """
        if not 1 <= len(outcomes) <= MAX_COMPLETE_BATCH:
            raise ValueError(f"complete_tasks takes 1 to {MAX_COMPLETE_BATCH} outcomes")
        worker = worker_id or self._common_holder(outcomes) or self.worker_id
        items = [self._outcome_item(outcome, worker) for outcome in outcomes]
        body = {"worker_id": worker, "results": items}
        sent = [(item["id"], item.get("lease_token")) for item in items]

        def done(data: Any) -> list[BatchCompletion]:
            for task_id, token in sent:
                self.leases.forget(task_id, token)  # every item's attempt is settled, either way
            return [BatchCompletion.model_validate(item) for item in data["results"]]

        # With every lease token sent, a repeated batch gets each item's first answer (B.3).
        idempotent = all(token is not None for _, token in sent)
        request = Request("POST", "/tasks/complete-batch", content=encode(body), idempotent=idempotent)
        return Call(request, done)

    def _common_holder(self, outcomes: Sequence[Mapping[str, Any]]) -> str | None:
        """The worker id of the remembered leases of ``outcomes``, when they all agree."""
        holders = {lease.worker_id for outcome in outcomes if (lease := self.leases.get(int(outcome["id"])))}
        return holders.pop() if len(holders) == 1 else None

    def _outcome_item(self, outcome: Mapping[str, Any], worker: str) -> dict[str, Any]:
        task_id = int(outcome["id"])
        if "success" in outcome:
            success = outcome["success"]
        else:
            status = outcome.get("status", "completed")
            if status not in ("completed", "failed"):
                raise ValueError("status must be 'completed' or 'failed'")
            success = status == "completed"
        lease = self.leases.get(task_id)
        token = outcome.get("lease_token")
        if token is None and lease is not None and lease.worker_id == worker:
            token = lease.token
        return {
            "id": task_id,
            "success": bool(success),
            **fields(result=outcome.get("result"), error=outcome.get("error"), lease_token=token),
        }

    def fail_task(
        self,
        task_id: int,
        error: str,
        *,
        result: Any = None,
        worker_id: str | None = None,
        lease_token: str | None = None,
    ) -> Call[Completion]:
        """Report a failed attempt with its ``error`` text (retried while attempts are left)."""
        return self.complete_task(
            task_id, result, "failed", error=error, worker_id=worker_id, lease_token=lease_token
        )

    def report_progress(
        self,
        task_id: int,
        progress: int,
        message: str | None = None,
        *,
        worker_id: str | None = None,
        lease_token: str | None = None,
    ) -> Call[ProgressUpdate]:
        """Report progress (0-100) of a claimed task; this also extends its lease."""
        task_id = int(task_id)
        body = {**self._holder(task_id, worker_id, lease_token), "progress": progress}
        body.update(fields(message=message))
        return post(f"/tasks/{task_id}/progress", body, ProgressUpdate.model_validate, idempotent=True)

    def heartbeat(
        self,
        task_id: int,
        *,
        lease_seconds: int | None = None,
        worker_id: str | None = None,
        lease_token: str | None = None,
    ) -> Call[HeartbeatResult]:
        """Extend a claimed task's lease; the answer says whether a cancel was requested."""
        task_id = int(task_id)
        body = {**self._holder(task_id, worker_id, lease_token), **fields(lease_seconds=lease_seconds)}
        return post(f"/tasks/{task_id}/heartbeat", body, HeartbeatResult.model_validate, idempotent=True)


__all__ = ["MAX_COMPLETE_BATCH", "TaskTypeRef", "WorkCalls", "claim_target"]
