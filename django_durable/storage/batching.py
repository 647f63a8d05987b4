"""Coalescing of concurrent single-item storage calls into one statement (seed-spec §21).

Executor threads (and coroutines) each ask for one row to be read or written; a
:class:`BatchProcessor` gathers what arrives while the previous batch is in the database and
sends it as one call of the storage's ``…_many…`` operation: one transaction, one commit. With
``interval = 0`` (the default) a batch leaves as soon as the previous one committed ("group
commit"): an idle system answers at once and a busy one batches by itself. With
``interval > 0`` the processor sleeps between batches like the seed, and lets a small lone batch
fill up for up to three rounds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from django.db import connections

from ..errors import DurableExecutionError

logger = logging.getLogger(__name__)

InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")


@dataclass(slots=True)
class _Request(Generic[InputT, OutputT]):
    item: InputT
    weight: int
    future: Future[OutputT] = field(default_factory=Future)


class BatchProcessor(Generic[InputT, OutputT]):
    """Coalesces :meth:`request` calls into calls of ``process`` on a background thread.

    ``process`` receives the items of one batch and returns one result per item (or ``None``
    when it has no results). Batches are capped by ``batch_weight``. When a batch of several
    requests fails, each request is re-run alone, so that one bad request never fails the
    others: batching on or off gives every caller the same result.
    """

    def __init__(
        self,
        name: str,
        process: Callable[[list[InputT]], Sequence[OutputT] | None],
        *,
        batch_weight: int,
        interval: float = 0.0,
        enabled: bool = True,
    ) -> None:
        self.name = name
        self._process = process
        self.batch_weight = batch_weight
        self.interval = interval
        self.enabled = enabled
        self._pending: list[_Request[InputT, OutputT]] = []
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = False
        self._stopping = False
        self._skipped = 0
        self._stop = threading.Event()

    @property
    def is_running(self) -> bool:
        return self._running

    def start(self) -> None:
        """Start the background thread; idempotent, and a no-op after :meth:`shutdown`."""
        with self._condition:
            if self._running or self._stopping or not self.enabled:
                return
            self._running = True
            self._thread = threading.Thread(
                target=self._loop, name=f"durable-batch-{self.name}", daemon=True
            )
            self._thread.start()

    def shutdown(self, timeout: float | None = None) -> None:
        """Process what is pending, stop the thread; later requests run directly."""
        with self._condition:
            self._stopping = True
            self._stop.set()
            self._condition.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._condition:
            self._running = False
            leftover, self._pending = self._pending, []
        if leftover:
            self._start_batch(leftover)

    def submit(self, item: InputT, *, weight: int = 1, batch: bool = True) -> Future[OutputT]:
        """Queue ``item``; the future resolves with its result once its batch committed."""
        request: _Request[InputT, OutputT] = _Request(item, weight)
        with self._condition:
            if batch and self._running and not self._stopping:
                self._pending.append(request)
                self._condition.notify()
                return request.future
        self._start_batch([request])
        return request.future

    def request(self, item: InputT, *, weight: int = 1, batch: bool = True) -> OutputT:
        """Blocking :meth:`submit`."""
        return self.submit(item, weight=weight, batch=batch).result()

    async def arequest(self, item: InputT, *, weight: int = 1, batch: bool = True) -> OutputT:
        """Awaitable :meth:`submit`; never blocks the event loop."""
        if batch and self._running:
            return await asyncio.wrap_future(self.submit(item, weight=weight, batch=batch))
        return await asyncio.to_thread(self.request, item, weight=weight, batch=batch)

    # -- the background thread ---------------------------------------------------------------

    def _take_batches(self) -> list[list[_Request[InputT, OutputT]]]:
        batches: list[list[_Request[InputT, OutputT]]] = []
        weight = 0
        for request in self._pending:
            if not batches or weight + request.weight > self.batch_weight:
                batches.append([])
                weight = 0
            batches[-1].append(request)
            weight += request.weight
        self._pending = []
        return batches

    def _loop(self) -> None:
        try:
            while True:
                with self._condition:
                    while not self._pending and not self._stopping:
                        self._condition.wait()
                    if not self._pending and self._stopping:
                        return
                    if self.interval > 0 and not self._stopping:
                        pending_weight = sum(r.weight for r in self._pending)
                        if pending_weight < self.batch_weight / 3 and self._skipped < 3:
                            self._skipped += 1
                            self._condition.wait(self.interval)
                            continue
                    self._skipped = 0
                    batches = self._take_batches()
                for batch in batches:
                    self._start_batch(batch)
                if self.interval > 0:
                    # Sleep between batches, but not through a shutdown.
                    self._stop.wait(self.interval)
        finally:
            connections.close_all()

    def _start_batch(self, batch: list[_Request[InputT, OutputT]]) -> None:
        # A caller may have cancelled its future (an awaiting coroutine that was cancelled
        # cancels it through ``asyncio.wrap_future``): drop it, and mark the others running so
        # that they can no longer be cancelled while their results are set.
        started = [request for request in batch if request.future.set_running_or_notify_cancel()]
        if started:
            self._run_batch(started)

    def _run_batch(self, batch: list[_Request[InputT, OutputT]]) -> None:
        try:
            results = self._process([request.item for request in batch])
            if results is None:
                for request in batch:
                    request.future.set_result(None)  # type: ignore[arg-type]
                return
            if not isinstance(results, (list, tuple)):
                raise DurableExecutionError(
                    "Invalid return type returned from processBatchRequests "
                    f"[returnType={type(results).__name__}]"
                )
            if len(results) != len(batch):
                raise DurableExecutionError(
                    "Invalid number of results returned from processBatchRequests "
                    f"[returned={len(results)}] [expected={len(batch)}]"
                )
        except BaseException as exc:
            if len(batch) > 1 and not _is_result_shape_error(exc):
                # The batch was one transaction and rolled back: re-run each request alone.
                for request in batch:
                    self._run_batch([request])
                return
            for request in batch:
                request.future.set_exception(exc)
            return
        for request, result in zip(batch, results, strict=True):
            request.future.set_result(result)


def _is_result_shape_error(exc: BaseException) -> bool:
    return isinstance(exc, DurableExecutionError) and str(exc).startswith(
        ("Invalid return type returned", "Invalid number of results returned")
    )
