"""The background batch processor (seed T7) and its behaviour under concurrency."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import pytest

from django_durable.errors import DurableExecutionError
from django_durable.storage.batching import BatchProcessor


class Recorder:
    """A ``process`` function that records its batches; optionally blocks on a first item."""

    def __init__(self, function: Callable[[list[Any]], Any] | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.function = function or (lambda items: [item * 2 for item in items])
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, items: list[Any]) -> Any:
        with self.lock:
            self.batches.append(list(items))
        self.entered.set()
        self.gate.wait(timeout=10)
        return self.function(items)


@pytest.fixture
def make_processor() -> Iterator[Callable[..., BatchProcessor[Any, Any]]]:
    processors: list[BatchProcessor[Any, Any]] = []

    def make(process: Callable[[list[Any]], Any], **options: Any) -> BatchProcessor[Any, Any]:
        options.setdefault("batch_weight", 100)
        processor: BatchProcessor[Any, Any] = BatchProcessor("test", process, **options)
        processor.start()
        processors.append(processor)
        return processor

    yield make
    for processor in processors:
        processor.shutdown(timeout=10)


def hold_then_submit(
    processor: BatchProcessor[Any, Any],
    recorder: Recorder,
    items: Sequence[Any],
    weights: Sequence[int] | None = None,
) -> list[Future[Any]]:
    """Keep the processor busy with a first request while ``items`` queue up behind it."""
    recorder.gate.clear()
    recorder.entered.clear()
    first = processor.submit("hold")
    assert recorder.entered.wait(timeout=10)
    futures = [
        processor.submit(item, weight=weights[index] if weights else 1)
        for index, item in enumerate(items)
    ]
    recorder.gate.set()
    first.exception(timeout=10)  # wait for it, whatever its outcome
    return futures


class TestBatchProcessor:
    def test_batched_requests_get_their_own_results(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        recorder = Recorder()
        processor = make_processor(recorder)
        futures = hold_then_submit(processor, recorder, [5, 10, 15])
        assert [future.result(timeout=10) for future in futures] == [10, 20, 30]
        assert recorder.batches == [["hold"], [5, 10, 15]]

    def test_batches_are_capped_by_weight(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        recorder = Recorder()
        processor = make_processor(recorder, batch_weight=100)
        futures = hold_then_submit(processor, recorder, [1, 2, 3, 4], weights=[60, 30, 30, 30])
        assert [future.result(timeout=10) for future in futures] == [2, 4, 6, 8]
        batches = recorder.batches[1:]
        assert len(batches) > 1
        assert batches == [[1, 2], [3, 4]]

    def test_a_request_heavier_than_the_cap_is_a_batch_of_its_own(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        recorder = Recorder()
        processor = make_processor(recorder, batch_weight=10)
        futures = hold_then_submit(processor, recorder, [1, 2, 3], weights=[1, 50, 1])
        assert [future.result(timeout=10) for future in futures] == [2, 4, 6]
        assert recorder.batches[1:] == [[1], [2], [3]]

    def test_none_results_give_none_to_every_caller(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        recorder = Recorder(lambda items: None)
        processor = make_processor(recorder)
        futures = hold_then_submit(processor, recorder, [1, 2])
        assert [future.result(timeout=10) for future in futures] == [None, None]

    def test_a_wrong_number_of_results_fails_every_caller(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        recorder = Recorder(lambda items: [1])
        processor = make_processor(recorder)
        futures = hold_then_submit(processor, recorder, [1, 2])
        for future in futures:
            with pytest.raises(DurableExecutionError, match="Invalid number of results"):
                future.result(timeout=10)

    def test_a_non_list_result_fails_every_caller(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        recorder = Recorder(lambda items: "not a list")
        processor = make_processor(recorder)
        futures = hold_then_submit(processor, recorder, [1, 2])
        for future in futures:
            with pytest.raises(DurableExecutionError, match="Invalid return type"):
                future.result(timeout=10)

    def test_a_processor_failure_reaches_the_caller_with_its_message(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        def fail(items: list[Any]) -> Any:
            raise RuntimeError("Processing failed")

        processor = make_processor(fail)
        with pytest.raises(RuntimeError, match="Processing failed"):
            processor.request(1)

    def test_a_failing_request_does_not_fail_the_others(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        def process(items: list[Any]) -> list[Any]:
            if "bad" in items:
                raise ValueError("bad item")
            return [f"{item}!" for item in items]

        recorder = Recorder(process)
        processor = make_processor(recorder)
        futures = hold_then_submit(processor, recorder, ["a", "bad", "c"])
        assert futures[0].result(timeout=10) == "a!"
        with pytest.raises(ValueError, match="bad item"):
            futures[1].result(timeout=10)
        assert futures[2].result(timeout=10) == "c!"
        # One batch of three, then each request alone.
        assert recorder.batches[1:] == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]

    @pytest.mark.parametrize("how", ["disabled", "not_started", "shut_down", "batch_false"])
    def test_without_batching_requests_run_directly(self, how: str) -> None:
        recorder = Recorder(lambda items: [item * 3 for item in items])
        processor: BatchProcessor[Any, Any] = BatchProcessor(
            "test", recorder, batch_weight=100, enabled=how != "disabled"
        )
        if how in ("disabled", "shut_down", "batch_false"):
            processor.start()
        if how == "shut_down":
            processor.shutdown()
            processor.start()  # after shutdown: a no-op, not an error
        threads: list[str] = []

        def triple(items: list[Any]) -> list[Any]:
            threads.append(threading.current_thread().name)
            return [item * 3 for item in items]

        recorder.function = triple
        assert processor.request(7, batch=how != "batch_false") == 21
        assert threads == [threading.current_thread().name]
        assert not processor.is_running or how == "batch_false"
        processor.shutdown()

    def test_result_validation_applies_when_running_directly(self) -> None:
        processor: BatchProcessor[Any, Any] = BatchProcessor(
            "test", lambda items: [1, 2], batch_weight=100, enabled=False
        )
        with pytest.raises(DurableExecutionError, match="Invalid number of results"):
            processor.request(1)
        processor = BatchProcessor("test", lambda items: {}, batch_weight=100, enabled=False)
        with pytest.raises(DurableExecutionError, match="Invalid return type"):
            processor.request(1)

    def test_concurrent_requests_are_coalesced(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        def slow_double(items: list[Any]) -> list[Any]:
            threading.Event().wait(0.005)
            return [item * 2 for item in items]

        recorder = Recorder(slow_double)
        processor = make_processor(recorder)
        barrier = threading.Barrier(50)
        results: dict[int, Any] = {}

        def call(index: int) -> None:
            barrier.wait(timeout=10)
            results[index] = processor.request(index)

        threads = [threading.Thread(target=call, args=(index,)) for index in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert results == {index: index * 2 for index in range(50)}
        assert len(recorder.batches) < 50
        assert sorted(item for batch in recorder.batches for item in batch) == list(range(50))

    def test_an_interval_lets_a_small_batch_fill_up(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        recorder = Recorder()
        processor = make_processor(recorder, interval=0.05)
        futures = [processor.submit(item) for item in (1, 2, 3)]
        assert [future.result(timeout=10) for future in futures] == [2, 4, 6]
        assert recorder.batches == [[1, 2, 3]]

    def test_shutdown_processes_what_is_pending(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        recorder = Recorder()
        processor = make_processor(recorder, interval=0.5)
        futures = [processor.submit(item) for item in range(10)]
        started = time.monotonic()
        processor.shutdown(timeout=10)
        assert time.monotonic() - started < 0.4  # no sleeping through the interval
        assert [future.result(timeout=10) for future in futures] == [i * 2 for i in range(10)]
        assert not processor.is_running
        assert processor.request(4) == 8

    def test_arequest_batches_without_blocking_the_event_loop(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        recorder = Recorder()
        processor = make_processor(recorder)

        async def main() -> list[Any]:
            return await asyncio.gather(*(processor.arequest(item) for item in range(5)))

        assert asyncio.run(main()) == [0, 2, 4, 6, 8]
        unbatched: BatchProcessor[Any, Any] = BatchProcessor(
            "test", recorder, batch_weight=100, enabled=False
        )
        assert asyncio.run(unbatched.arequest(3)) == 6

    def test_a_cancelled_request_is_dropped_and_the_processor_keeps_serving(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        recorder = Recorder()
        processor = make_processor(recorder)
        recorder.gate.clear()
        recorder.entered.clear()
        first = processor.submit(1)
        assert recorder.entered.wait(timeout=10)
        cancelled = processor.submit(2)
        kept = processor.submit(3)
        assert cancelled.cancel()
        recorder.gate.set()
        assert first.result(timeout=10) == 2
        assert kept.result(timeout=10) == 6
        assert processor.submit(4).result(timeout=5) == 8
        assert [2] not in recorder.batches and all(2 not in batch for batch in recorder.batches)

    def test_a_cancelled_coroutine_does_not_break_the_processor(
        self, make_processor: Callable[..., BatchProcessor[Any, Any]]
    ) -> None:
        recorder = Recorder()
        processor = make_processor(recorder)
        recorder.gate.clear()

        async def main() -> None:
            waiting = asyncio.ensure_future(processor.arequest(5))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting

        asyncio.run(main())
        recorder.gate.set()
        assert processor.submit(6).result(timeout=5) == 12
