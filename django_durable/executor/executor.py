"""The executor: claims ready executions in batches, runs them, records their results.

An :class:`Executor` owns a claim loop, the sweepers (children finished, close, cancellation,
expiry), a thread pool for sync task code and an event loop for ``async def`` task code. Any
number of executors, in threads or processes, share one database: every claim is atomic and
every write carries the status it expects, so no execution runs twice at once and none is lost.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from django.db import InterfaceError, OperationalError, close_old_connections, connections
from django.utils import timezone

from .. import dispatch, tracing, wakeups
from ..conf import DurableSettingsSnapshot, resolve
from ..context import Signal, TaskContext
from ..errors import (
    DurableExecutionCancelledError,
    DurableExecutionError,
    DurableExecutionNotFoundError,
    DurableExecutionTimedOutError,
    StoredError,
)
from ..executions import row_parent, row_root
from ..models import Status, TaskExecution, generate_executor_id
from ..notify import Listener, supports_notify
from ..results import ParentRunResult
from ..schedules import all_schedules, enqueue_due, seconds_until_next_tick
from ..serialization import deserialize
from ..sqlite_watch import DataVersionWatcher, database_file
from ..storage import get_storage
from ..storage import workers as worker_registry
from ..storage.layer import StorageLayer
from ..storage.retention import purge_closed
from ..tasks import Task, registry
from .loops import BackgroundLoop
from .runner import AsyncLoopThread, DeadlineScheduler
from .transitions import Failure, Outcome, Success, Transitions

logger = logging.getLogger("django_durable.executor")

__all__ = ["Executor"]

#: After a claim failed with a database error, how long to look for rows it may have claimed.
ORPHAN_CHECK_SECONDS = 60.0
#: When wake-ups come faster than claims, a claim waits until this many seconds after the
#: previous one began (divided by the share of the new rows this executor's claims get, so
#: that N executors competing for the same rows claim as often together as one alone): rows
#: gather, and claims per second stay bounded however fast work arrives or however many
#: workers each notification wakes.
CLAIM_GAP_WHEN_BUSY = 0.005
#: The longest such wait (the share is taken as at least ``CLAIM_GAP_WHEN_BUSY / this``).
CLAIM_GAP_MAX = 0.025


def run_attributes(row: TaskExecution) -> dict[str, Any]:
    """The attributes of a ``durable.run`` span."""
    return {
        "durable.task_id": row.task_id,
        "durable.execution_id": row.execution_id,
        "durable.attempt": row.retry_attempts,
        "durable.queue": row.queue,
    }


class Attempt:
    """One in-process attempt of a claimed execution."""

    __slots__ = ("async_task", "ctx", "lock", "row", "settled", "task", "timer")

    def __init__(self, row: TaskExecution, task: Task | None, ctx: TaskContext) -> None:
        self.row = row
        self.task = task
        self.ctx = ctx
        self.lock = threading.Lock()
        self.settled = False
        self.timer: int | None = None
        self.async_task: Any = None

    def settle(self) -> bool:
        """Claim the right to record this attempt's end; only the first caller gets it."""
        with self.lock:
            if self.settled:
                return False
            self.settled = True
            return True


class _LocalRunner:
    """The :class:`~.transitions.LocalRunner` side of an :class:`Executor`."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self.executor_id = executor.id

    def reserve(self, row: TaskExecution) -> bool:
        return self._executor._reserve_local(row)

    def start(self, row: TaskExecution) -> None:
        self._executor._start_local(row)

    def release(self) -> None:
        self._executor._release_local()


class Executor:
    """Runs durable executions from the database.

    ``Executor(**overrides)`` takes the ``DURABLE`` settings in lower case as overrides
    (``poll_interval=0.05``, ``max_concurrent_executions=10``, ...), plus ``queues`` (claim
    only these queues; default: all) and ``executor_id``. Use :meth:`start` and
    :meth:`shutdown`, or ``with Executor() as executor:``.
    """

    def __init__(
        self,
        *,
        queues: list[str] | tuple[str, ...] | None = None,
        executor_id: str | None = None,
        sweepers: bool = True,
        claim: bool = True,
        storage: StorageLayer | None = None,
        **overrides: Any,
    ) -> None:
        self.config: DurableSettingsSnapshot = resolve(overrides)
        self.id = executor_id or generate_executor_id()
        if isinstance(queues, str):
            raise TypeError(f"queues must be a list of queue names, got the string {queues!r}")
        self.queues = list(queues) if queues else None
        self._storage = storage
        self._run_sweepers = sweepers
        self._claim = claim
        self._expedite = threading.Event()
        self._reserved = 0
        self._orphan_check_until = 0.0
        self._last_claim_at = 0.0
        self._last_claim_full = False
        #: Wake-ups of the claim loop since its last claim began.
        self._claim_wakes = 0
        #: Running estimate of the share of newly woken-for rows that this executor claims
        #: (1.0 alone; about 1/N with N executors claiming the same queues).
        self._claim_share = 1.0
        self.shutdown_signal = Signal()
        self._running: dict[str, Attempt] = {}
        self._running_lock = threading.Lock()
        self._idle = threading.Condition(self._running_lock)
        self._started = False
        self._shut_down = False
        self._loops: list[BackgroundLoop] = []
        self._listeners: list[tuple[str, Any]] = []
        self._scheduler: DeadlineScheduler | None = None
        self._async: AsyncLoopThread | None = None
        self._task_pool: ThreadPoolExecutor | None = None
        self._engine_pool: ThreadPoolExecutor | None = None
        self._transitions: Transitions | None = None
        self._claim_loop: BackgroundLoop | None = None
        self._listener: Listener | DataVersionWatcher | None = None
        self._schedule_loop: BackgroundLoop | None = None
        #: Schedule name -> the latest tick this executor enqueued (or found enqueued).
        self._schedule_ticks: dict[str, Any] = {}

    # -- properties ------------------------------------------------------------------------

    @property
    def storage(self) -> StorageLayer:
        if self._storage is None:
            self._storage = get_storage()
        return self._storage

    @property
    def running_execution_ids(self) -> set[str]:
        """Ids of the executions this executor is running now."""
        with self._running_lock:
            return set(self._running)

    @property
    def running_count(self) -> int:
        with self._running_lock:
            return len(self._running)

    @property
    def is_running(self) -> bool:
        return self._started and not self._shut_down

    def storage_metrics(self) -> list[Any]:
        """Timing summaries of the storage operations (seed-spec §24)."""
        return self.storage.metrics()

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def start(self) -> None:
        """Start claiming and running work; idempotent, and a no-op after shutdown."""
        if self._started or self._shut_down:
            return
        self._started = True
        config = self.config
        self._scheduler = DeadlineScheduler(f"durable-deadlines-{self.id}")
        self._async = AsyncLoopThread(f"durable-asyncio-{self.id}")
        self._task_pool = ThreadPoolExecutor(
            max_workers=config.max_concurrent_executions,
            thread_name_prefix=f"durable-task-{self.id}",
        )
        self._engine_pool = ThreadPoolExecutor(
            max_workers=8, thread_name_prefix=f"durable-engine-{self.id}"
        )
        self._transitions = self._make_transitions(self._process_parents)
        interval = config.poll_interval
        # (channel, listener, queues): the claim loop hears only new work of its queues.
        listen: list[tuple[str, Any, list[str] | None]] = []
        if self._claim:
            self._claim_loop = BackgroundLoop("claim", self._claim_iteration, interval)
            cancel = BackgroundLoop("cancel", self._cancel_iteration, interval)
            self._loops += [self._claim_loop, cancel]
            listen += [
                (wakeups.READY, self._wake_claim, self.queues),
                (wakeups.CANCEL, cancel.wake, None),
            ]
        if self._run_sweepers:
            children = BackgroundLoop("children", self._children_iteration, interval)
            close = BackgroundLoop("close", self._close_iteration, interval)
            expire = BackgroundLoop("expire", self._expire_iteration, interval)
            self._schedule_loop = BackgroundLoop("schedule", self._schedule_iteration, interval)
            self._loops += [children, close, expire, self._schedule_loop]
            listen += [(wakeups.CHILDREN, children.wake, None), (wakeups.CLOSE, close.wake, None)]
        for channel, listener, queues in listen:
            wakeups.add_listener(channel, listener, queues)
        self._listeners = [(channel, listener) for channel, listener, _ in listen]
        for loop in self._loops:
            loop.start()
        if config.listen_notify and supports_notify():
            self._listener = Listener()
            self._listener.start()
        elif config.listen_notify and self._claim and (path := database_file()) is not None:
            self._listener = DataVersionWatcher(path, self.id)
            self._listener.start()
        logger.info("executor=%s event=started", self.id)

    def shutdown(self) -> None:
        """Stop in the seed's order (seed-spec §15); idempotent.

        The shutdown signal is set, the loops stop, then running attempts get
        ``SHUTDOWN_TIMEOUT`` seconds to finish and record their results; attempts still
        running after that are handed back (``ready``) for another executor.
        """
        if self._shut_down:
            return
        self._shut_down = True
        if not self._started:
            return
        self.shutdown_signal.set()
        for channel, listener in self._listeners:
            wakeups.remove_listener(channel, listener)
        if self._listener is not None:
            self._listener.stop()
        for loop in self._loops:
            loop.stop()
        for loop in self._loops:
            loop.join(self.config.shutdown_timeout)
        deadline = time.monotonic() + self.config.shutdown_timeout
        with self._idle:
            while self._running and time.monotonic() < deadline and not self._expedite.is_set():
                self._idle.wait(deadline - time.monotonic())
            leftover = list(self._running.values())
        for attempt in leftover:
            self._hand_back(attempt)
        assert self._engine_pool and self._task_pool and self._async and self._scheduler
        self._engine_pool.shutdown(wait=True)
        self._task_pool.shutdown(wait=False, cancel_futures=True)
        self._async.shutdown()
        self._scheduler.shutdown()
        connections.close_all()
        logger.info("executor=%s event=shut_down", self.id)

    def expedite_shutdown(self) -> None:
        """Stop waiting for running attempts: hand them back now (a second SIGTERM)."""
        self._expedite.set()
        with self._idle:
            self._idle.notify_all()

    def _make_transitions(self, on_parents_claimed: Any) -> Transitions:
        return Transitions(
            self.storage,
            self.config,
            on_parents_claimed=on_parents_claimed,
            on_retry_scheduled=self._wake_claim_after,
            local_runner=_LocalRunner(self) if self._claim else None,
        )

    # -- running new executions without claiming them ------------------------------------------

    def _reserve_local(self, row: TaskExecution) -> bool:
        """Whether this executor can run ``row`` now (queue, capacity, not stopping)."""
        if self._shut_down or not self._started or row.sleep_before_run > 0:
            return False
        if row.is_sleeping_task or (self.queues is not None and row.queue not in self.queues):
            return False
        if row.concurrency_key is not None:
            return False  # only a claim may start it: the claim counts its key's running rows
        with self._running_lock:
            if len(self._running) + self._reserved >= self.config.max_concurrent_executions:
                return False
            self._reserved += 1
            return True

    def _start_local(self, row: TaskExecution) -> None:
        with self._running_lock:
            self._reserved -= 1
        self._start_attempt(row)

    def _release_local(self) -> None:
        with self._running_lock:
            self._reserved -= 1

    def sweep_once(self) -> dict[str, int]:
        """Run every sweeper until it finds nothing more (``durable_sweep --once``).

        Works without :meth:`start`; parents claimed on the way are processed inline.
        """
        if self._transitions is None:

            def process_inline(
                parents: list[TaskExecution], finished_child: TaskExecution | None
            ) -> None:
                assert self._transitions is not None
                for parent in parents:
                    self._transitions.process_children_finished(parent, finished_child)

            self._transitions = self._make_transitions(process_inline)
        counts = {"expired": 0, "children": 0, "closed": 0}
        counts["silent_workers_recovered"] = worker_registry.recover_silent_workers(
            timezone.now(), self.config.heartbeat_interval
        )
        counts["scheduled"] = len(enqueue_due(timezone.now(), seen=self._schedule_ticks))
        for name, iteration in (
            ("expired", self._expire_iteration),
            ("children", self._children_iteration),
            ("closed", self._close_iteration),
            ("children", self._children_iteration),
        ):
            rounds = 1
            while iteration() and rounds < 1000:
                rounds += 1
            counts[name] += rounds
        return counts

    def _hand_back(self, attempt: Attempt) -> None:
        if not attempt.settle():
            return
        attempt.ctx.abort_signal.set()
        self._forget(attempt)
        try:
            now = timezone.now()
            self.storage.update_by_id(
                now,
                attempt.row.execution_id,
                {"status": Status.READY, "start_at": now},
                {"status": Status.RUNNING, "executor_id": self.id},
            )
            wakeups.notify(wakeups.READY, attempt.row.queue)
            dispatch.ready([(attempt.row.execution_id, now)])
            logger.warning(
                "executor=%s event=handed_back execution=%s", self.id, attempt.row.execution_id
            )
        except Exception:
            logger.exception(
                "executor=%s event=hand_back_failed execution=%s", self.id, attempt.row.execution_id
            )

    # -- claiming --------------------------------------------------------------------------

    def _wake_claim_after(self, delay: float) -> None:
        if self._scheduler is not None and self._claim_loop is not None and delay > 0:
            self._scheduler.call_later(delay, self._claim_loop.wake)

    def _wake_claim(self) -> None:
        self._claim_wakes += 1
        if self._claim_loop is not None:
            self._claim_loop.wake()

    def _pace_claims(self) -> int:
        """Under load, wait out the rest of the claim gap since the previous claim; return
        the wake-ups that came since it began (0 or 1: not under load).

        Under load means woken more than once since the previous claim began, which did not
        fill its batch: an idle worker claims the moment a row arrives, and a full batch is
        followed by the next one at once. The gap is ``CLAIM_GAP_WHEN_BUSY`` divided by this
        executor's share of the rows (at most ``CLAIM_GAP_MAX``), with some jitter so that
        competing executors take turns instead of claiming together."""
        wakes, self._claim_wakes = self._claim_wakes, 0
        if wakes > 1 and not self._last_claim_full:
            gap = min(CLAIM_GAP_WHEN_BUSY / self._claim_share, CLAIM_GAP_MAX)
            pause = self._last_claim_at + gap * random.uniform(0.8, 1.2) - time.monotonic()
            if pause > 0:
                self.shutdown_signal.wait(pause)
        return wakes

    def _learn_claim_share(self, wakes: int, claimed: int) -> None:
        """Update the share estimate after a claim under load (``wakes`` new rows announced,
        ``claimed`` of them got): other executors took the rest."""
        if wakes > 1:
            share = max(min(claimed / wakes, 1.0), CLAIM_GAP_WHEN_BUSY / CLAIM_GAP_MAX)
            self._claim_share = 0.8 * self._claim_share + 0.2 * share

    def _claim_iteration(self) -> bool:
        config = self.config
        wakes = self._pace_claims()
        capacity = config.max_concurrent_executions - self.running_count
        if capacity <= 0:
            return False
        self._last_claim_at = time.monotonic()
        limit = min(config.max_executions_per_batch, capacity)
        if self._orphan_check_until > time.monotonic():
            self._release_orphans()
        now = timezone.now()
        try:
            keyed = self._claim_keyed(now, limit) if registry.has_concurrency_limits() else []
            rows = self.storage.claim_ready(
                now,
                executor_id=self.id,
                expires_at_base=now + timedelta(seconds=config.expire_leeway),
                limit=limit - len(keyed),
                queues=self.queues,
            )
        except (OperationalError, InterfaceError):
            # The claim may have committed with its reply lost: look for such rows for a while.
            self._orphan_check_until = time.monotonic() + ORPHAN_CHECK_SECONDS
            raise
        rows = keyed + rows
        if rows:
            logger.debug("executor=%s event=claimed count=%d", self.id, len(rows))
        for row in rows:
            self._start_attempt(row)
        self._last_claim_full = len(rows) >= limit
        if not self._last_claim_full:
            self._learn_claim_share(wakes, len(rows))
        return self._last_claim_full

    def _claim_keyed(self, now: Any, limit: int) -> list[TaskExecution]:
        """Claim rows with a concurrency key (a statement of their own, so that the claim of
        every other row stays as it is); only run when a registered task has such limits."""
        try:
            return self.storage.claim_ready_within_concurrency_limits(
                now,
                executor_id=self.id,
                expires_at_base=now + timedelta(seconds=self.config.expire_leeway),
                limit=limit,
                queues=self.queues,
            )
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            # The other claim still runs: a broken keyed claim must not stop unrelated work.
            logger.exception("executor=%s event=keyed_claim_failed", self.id)
            return []

    def _release_orphans(self) -> None:
        with self._running_lock:
            keep = set(self._running)
        now = timezone.now()
        released = worker_registry.release_orphans(
            self.id, keep, started_before=now - timedelta(seconds=1), now=now
        )
        if released:
            logger.warning("executor=%s event=released_orphans count=%d", self.id, released)
            wakeups.notify(wakeups.READY)
            dispatch.requeued_at(now)

    def _start_attempt(self, row: TaskExecution) -> Attempt | None:
        task = registry.get(row.task_id)
        ctx = TaskContext(
            task_id=row.task_id,
            execution_id=row.execution_id,
            attempt=row.retry_attempts,
            prev_error=StoredError.from_dict(row.error) if row.error else None,
            root=row_root(row),
            parent=row_parent(row),
            abort_signal=Signal(),
            shutdown_signal=self.shutdown_signal,
        )
        attempt = Attempt(row, task, ctx)
        with self._running_lock:
            previous = self._running.get(row.execution_id)
            if previous is not None and not previous.settled:
                # Cannot happen: a claim needs a ready row, which only a recorded end makes.
                return None
            # A retry claimed before the previous attempt left the map replaces it.
            self._running[row.execution_id] = attempt
        assert self._scheduler is not None
        attempt.timer = self._scheduler.call_later(row.timeout, lambda: self._on_timeout(attempt))
        if task is not None and task.is_async:
            assert self._async is not None
            attempt.async_task = self._async.submit(self._run_async(attempt))
        else:
            assert self._task_pool is not None
            self._task_pool.submit(self._run_sync, attempt)
        return attempt

    def _prepare_input(self, attempt: Attempt) -> Any:
        row, task = attempt.row, attempt.task
        if task is None:
            raise DurableExecutionNotFoundError(
                f"Error in running task execution [executionId={row.execution_id}]: "
                f"Task not found [taskId={row.task_id}]"
            )
        value = deserialize(row.input) if row.input else None
        if row.is_finalize_of_parent:
            value = ParentRunResult.from_value(value)
        return task.validate_input(value)

    def _run_sync(self, attempt: Attempt) -> None:
        outcome: Outcome
        close_old_connections()
        with tracing.span("durable.run", run_attributes(attempt.row)) as span:
            try:
                value = self._prepare_input(attempt)
                assert attempt.task is not None
                outcome = Success(attempt.task.call(attempt.ctx, value))
            except BaseException as error:
                outcome = Failure(error)
                span.fail(error)
        try:
            self._finish(attempt, outcome)
        finally:
            close_old_connections()

    def _submit_engine_work(self, function: Any, *args: Any) -> Any:
        """Run ``function`` on the engine pool, releasing the thread's connection after."""

        def run() -> Any:
            try:
                return function(*args)
            finally:
                close_old_connections()

        assert self._engine_pool is not None
        return self._engine_pool.submit(run)

    async def _run_async(self, attempt: Attempt) -> None:
        import asyncio

        outcome: Outcome
        with tracing.span("durable.run", run_attributes(attempt.row)) as span:
            try:
                value = self._prepare_input(attempt)
                assert attempt.task is not None
                outcome = Success(await attempt.task.call(attempt.ctx, value))
            except asyncio.CancelledError as error:
                span.fail(error)
                if attempt.settled:
                    return  # timed out or cancelled: already recorded
                outcome = Failure(DurableExecutionCancelledError())
            except BaseException as error:
                outcome = Failure(error)
                span.fail(error)
        await asyncio.wrap_future(self._submit_engine_work(self._finish, attempt, outcome))

    def _finish(self, attempt: Attempt, outcome: Outcome) -> None:
        if not attempt.settle():
            return  # timed out, cancelled or handed back: the late result is dropped
        if attempt.timer is not None and self._scheduler is not None:
            self._scheduler.cancel(attempt.timer)
        try:
            assert self._transitions is not None
            self._transitions.record_outcome(attempt.row, attempt.task, outcome)
        finally:
            self._forget(attempt)

    def _forget(self, attempt: Attempt) -> None:
        with self._idle:
            # Only a full executor stopped claiming: a freed slot matters to it alone (otherwise
            # the claim loop already wakes for every ready row, and a claim per finished
            # attempt would be a wasted statement on the hot path).
            was_full = len(self._running) >= self.config.max_concurrent_executions
            if self._running.get(attempt.row.execution_id) is attempt:
                del self._running[attempt.row.execution_id]
            self._idle.notify_all()
        if was_full and self._claim_loop is not None:
            self._claim_loop.wake()

    def _interrupt(self, attempt: Attempt) -> None:
        attempt.ctx.abort_signal.set()
        if attempt.async_task is not None:
            attempt.async_task.cancel()

    def _on_timeout(self, attempt: Attempt) -> None:
        if not attempt.settle():
            return
        self._interrupt(attempt)
        assert self._engine_pool is not None

        def record() -> None:
            try:
                assert self._transitions is not None
                self._transitions.record_outcome(
                    attempt.row, attempt.task, Failure(DurableExecutionTimedOutError())
                )
            finally:
                self._forget(attempt)

        try:
            self._submit_engine_work(record)
        except RuntimeError:  # shutting down
            self._forget(attempt)

    def _process_parents(
        self, parents: list[TaskExecution], finished_child: TaskExecution | None = None
    ) -> None:
        # Processed on the thread that recorded the last child: no hand-off on the hot path of
        # fan-ins and chains. (A crash here leaves the parent leased; its lease expires.)
        assert self._transitions is not None
        for parent in parents:
            self._transitions.process_children_finished(parent, finished_child)

    # -- sweepers ----------------------------------------------------------------------------

    def _lease(self) -> Any:
        return timezone.now() + timedelta(
            seconds=self.config.lease_duration + self.config.expire_leeway
        )

    def _children_iteration(self) -> bool:
        limit = self.config.sweep_batch_size
        parents = self.storage.claim_children_finished(
            timezone.now(), expires_at=self._lease(), limit=limit
        )
        assert self._transitions is not None
        for parent in parents:
            self._transitions.process_children_finished(parent)
        return len(parents) >= limit

    def _close_iteration(self) -> bool:
        limit = self.config.sweep_batch_size
        marked = self.storage.mark_finished_close_ready(timezone.now(), limit=limit)
        if marked:
            wakeups.notify(wakeups.CHILDREN)
        rows = self.storage.claim_close_ready(timezone.now(), expires_at=self._lease(), limit=limit)
        assert self._transitions is not None
        for row in rows:
            self._transitions.close(row)
        return marked >= limit or len(rows) >= limit

    def _cancel_iteration(self) -> bool:
        if not self.running_count:
            return False
        limit = self.config.sweep_batch_size
        rows = self.storage.claim_cancellations(timezone.now(), executor_id=self.id, limit=limit)
        for row in rows:
            with self._running_lock:
                attempt = self._running.get(row.execution_id)
            if attempt is not None and attempt.settle():
                self._interrupt(attempt)
                if attempt.timer is not None and self._scheduler is not None:
                    self._scheduler.cancel(attempt.timer)
                self._forget(attempt)
                logger.info("executor=%s event=cancelled execution=%s", self.id, row.execution_id)
        return len(rows) >= limit

    def _schedule_iteration(self) -> bool:
        """Enqueue the due tick of each schedule, then sleep until the next tick."""
        schedules = all_schedules()
        enqueued = enqueue_due(timezone.now(), schedules=schedules, seen=self._schedule_ticks)
        for item in enqueued:
            logger.debug(
                "executor=%s event=scheduled schedule=%s tick=%s execution=%s",
                self.id,
                item.schedule.name,
                item.tick.isoformat(),
                item.execution_id,
            )
        wait = seconds_until_next_tick(timezone.now(), schedules)
        if self._schedule_loop is not None:
            # Just after the tick (ticks are whole seconds), at most a minute from now.
            self._schedule_loop.interval = 60.0 if wait is None else min(wait + 0.02, 60.0)
        return False

    def _expire_iteration(self) -> bool:
        limit = self.config.sweep_batch_size
        now = timezone.now()
        storage = self.storage
        expired = storage.expire_running(
            now,
            is_sleeping_task=False,
            update={
                "status": Status.READY,
                "start_at": now,
                "error": dict(DurableExecutionError("Task execution expired").to_dict()),
            },
            limit=limit,
        )
        if expired:
            logger.warning("executor=%s event=recovered reason=expired count=%d", self.id, expired)
            wakeups.notify(wakeups.READY)
            dispatch.requeued_at(now)
        timed_out = storage.expire_running(
            now,
            is_sleeping_task=True,
            update={
                "status": Status.TIMED_OUT,
                "error": dict(DurableExecutionTimedOutError().to_dict()),
            },
            limit=limit,
        )
        if timed_out:
            wakeups.notify(wakeups.CLOSE)
            wakeups.notify_finished()
        processing = storage.expire_children_processing(now, limit=limit)
        if processing:
            wakeups.notify(wakeups.CHILDREN)
        closing = storage.expire_closing(now, limit=limit)
        if closing:
            wakeups.notify(wakeups.CLOSE)
        purged = 0
        if self.config.retention:
            purged = purge_closed(now, self.config.retention, limit=limit)
        return expired + timed_out + processing + closing + purged >= 0.25 * limit
