"""Batched reports: the outcomes of finished tasks go to the server together.

While one ``POST /tasks/complete-batch`` is in flight the outcomes that finish meanwhile gather,
and go in the next one; a lone outcome goes at once. So a busy worker sends one request for many
tasks and an idle one adds no delay. Each task still learns its own answer (status, or the
error the server gave that item).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from taskmanager.client import AsyncTaskManagerClient, BatchCompletion, TaskManagerAPIError, TaskManagerError
from taskmanager.client.errors import error_from_response
from taskmanager.client.protocol import encode
from taskmanager.client.work import MAX_COMPLETE_BATCH

log = logging.getLogger("taskmanager.worker")

#: Most outcomes one report carries; more wait for the next one.
REPORT_BATCH = 500
#: The HTTP status a single complete answers with each error code a batch item may carry.
ITEM_STATUS = {"lease_lost": 409, "forbidden": 403, "not_found": 404}


def item_error(answer: BatchCompletion) -> TaskManagerAPIError:
    """A refused batch item as the exception its single complete would have raised
    (``LeaseLostError`` for ``lease_lost``...)."""
    code = answer.code or "validation_failed"
    message = answer.error or code
    return error_from_response(
        ITEM_STATUS.get(code, 400), {"code": code, "message": message, "error": message}
    )


@dataclass(slots=True)
class _Pending:
    item: dict[str, Any]
    answer: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Reporter:
    """Sends outcomes for one worker id, many per request."""

    def __init__(self, client: AsyncTaskManagerClient, worker_id: str, *, batch: int = REPORT_BATCH) -> None:
        self.client = client
        self.worker_id = worker_id
        self.batch = min(batch, MAX_COMPLETE_BATCH)
        self._queue: list[_Pending] = []
        self._sender: asyncio.Task[None] | None = None

    async def report(
        self,
        task_id: int,
        *,
        success: bool,
        result: Any = None,
        error: str | None = None,
        lease_token: str | None = None,
    ) -> str:
        """Send one outcome; the task's status the server answered.

        Raises ``TypeError``/``ValueError`` at once when ``result`` is not JSON (nothing is sent);
        the error a single complete would have raised when the server refused this item
        (``LeaseLostError``...); ``TaskManagerError`` when the batch could not be sent.
        """
        if result is not None:
            encode(result)  # one unencodable result must not sink the batch it would go in
        item: dict[str, Any] = {"id": task_id, "success": success}
        if result is not None:
            item["result"] = result
        if error is not None:
            item["error"] = error
        if lease_token is not None:
            item["lease_token"] = lease_token  # else the client sends the one it remembers
        pending = _Pending(item)
        self._queue.append(pending)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all(), name="worker-reports")
        return await asyncio.shield(pending.answer)

    async def close(self) -> None:
        """Stop sending: a report still in flight is abandoned (its tasks' leases bring them back)."""
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        for pending in self._queue:
            pending.answer.cancel()
        self._queue.clear()

    async def _send_all(self) -> None:
        while self._queue:
            await asyncio.sleep(0)  # outcomes finishing in this same turn of the loop join in
            taken, self._queue = self._queue[: self.batch], self._queue[self.batch :]
            await self._send(taken)

    async def _send(self, taken: list[_Pending]) -> None:
        try:
            answers = await self.client.complete_tasks([p.item for p in taken], worker_id=self.worker_id)
        except TaskManagerError as exc:
            for pending in taken:
                _resolve(pending, error=exc)
            return
        except asyncio.CancelledError:
            for pending in taken:
                pending.answer.cancel()
            raise
        except Exception as exc:  # a bug: no task may wait forever for its report
            for pending in taken:
                _resolve(pending, error=exc)
            raise
        for pending, answer in zip(taken, answers, strict=True):
            if answer.status is not None:
                _resolve(pending, status=answer.status)
            else:
                _resolve(pending, error=item_error(answer))


def _resolve(pending: _Pending, *, status: str | None = None, error: BaseException | None = None) -> None:
    if pending.answer.done():
        return
    if error is not None:
        pending.answer.set_exception(error)
    else:
        assert status is not None
        pending.answer.set_result(status)


__all__ = ["REPORT_BATCH", "Reporter", "item_error"]
