"""Walking a task listing page by page, with no I/O: the client asks for the next call, sends it,
and hands the page back."""

from __future__ import annotations

from collections.abc import Callable

from taskmanager.client.models import Task, TaskPage
from taskmanager.client.protocol import Call

#: Most tasks the server returns in one page.
MAX_PAGE_SIZE = 1000


class TaskPager:
    """The state of one listing: where the next page starts and how many tasks are still wanted.

    Pages are read by offset, newest first; tasks created while a listing is walked shift the
    pages, so a long walk over a busy queue may see a task twice or miss a new one.
    """

    def __init__(
        self,
        page: Callable[[int, int], Call[TaskPage]],
        *,
        page_size: int = 100,
        limit: int | None = None,
        offset: int = 0,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1-{MAX_PAGE_SIZE}")
        if limit is not None and limit < 0:
            raise ValueError("limit must be 0 or more")
        self._page = page
        self._page_size = page_size
        self._remaining = limit
        self._offset = offset
        self._finished = limit == 0

    def next_call(self) -> Call[TaskPage] | None:
        """The request for the next page, or None when the listing is exhausted."""
        if self._finished:
            return None
        size = self._page_size if self._remaining is None else min(self._page_size, self._remaining)
        return self._page(self._offset, size)

    def take(self, page: TaskPage) -> list[Task]:
        """The tasks of a fetched page still wanted; moves past it."""
        tasks = page.tasks
        if self._remaining is not None:
            tasks = tasks[: self._remaining]
            self._remaining -= len(tasks)
        self._offset += len(page.tasks)
        if (
            not page.tasks
            or len(page.tasks) < page.limit
            or self._offset >= page.total
            or self._remaining == 0
        ):
            self._finished = True
        return tasks


__all__ = ["TaskPager"]
