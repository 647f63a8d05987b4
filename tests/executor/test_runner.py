"""The deadline scheduler: every attempt's timeout goes through it."""

from __future__ import annotations

import gc
import threading
import weakref

from django_durable.executor.runner import DeadlineScheduler


class _Attempt:
    """Stands for what a timeout callback holds on to (a claimed row, its context)."""


def test_callbacks_run_in_deadline_order_and_cancelled_ones_never_run():
    scheduler = DeadlineScheduler()
    ran: list[str] = []
    done = threading.Event()
    try:
        scheduler.call_later(0.06, lambda: (ran.append("late"), done.set()))
        scheduler.call_later(0.02, lambda: ran.append("early"))
        cancelled = scheduler.call_later(0.04, lambda: ran.append("cancelled"))
        scheduler.cancel(cancelled)
        scheduler.cancel(cancelled)  # twice is harmless
        assert done.wait(2)
        assert ran == ["early", "late"]
    finally:
        scheduler.shutdown()


def test_cancelled_timeouts_do_not_keep_finished_attempts_in_memory():
    scheduler = DeadlineScheduler()
    try:
        attempts = [_Attempt() for _ in range(5000)]
        refs = [weakref.ref(attempt) for attempt in attempts]
        tokens = [
            scheduler.call_later(3600, lambda attempt=attempt: print(attempt))
            for attempt in attempts
        ]
        for token in tokens:
            scheduler.cancel(token)
        del attempts
        gc.collect()
        # An hour before their deadlines, nothing of the cancelled attempts is left...
        assert all(ref() is None for ref in refs)
        # ...and the heap was rebuilt without them (not 5,000 dead entries).
        assert scheduler.pending <= DeadlineScheduler.COMPACT_AFTER + 1
        fired = threading.Event()
        scheduler.call_later(0.01, fired.set)
        assert fired.wait(2)
    finally:
        scheduler.shutdown()
