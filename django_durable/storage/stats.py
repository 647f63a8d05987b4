"""Per-operation timing summaries of storage calls (seed-spec §24)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

WINDOW_SECONDS = 30 * 60
MAX_SAMPLES = 100_000
QUANTILES = (0.5, 0.9, 0.95)


@dataclass(frozen=True, slots=True)
class OperationStats:
    """Summary of one storage operation's successful call durations, in milliseconds."""

    process_name: str
    count: int
    min: float | None
    max: float | None
    quantiles: tuple[tuple[float, float | None], ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "process_name": self.process_name,
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "quantiles": {f"p{int(q * 100)}": value for q, value in self.quantiles},
        }


class StorageStats:
    """Collects call durations per operation over a 30-minute window (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, deque[tuple[float, float]]] = {}

    def record(self, process_name: str, duration_ms: float) -> None:
        now = time.monotonic()
        with self._lock:
            samples = self._samples.get(process_name)
            if samples is None:
                samples = self._samples[process_name] = deque(maxlen=MAX_SAMPLES)
            samples.append((now, duration_ms))

    def summaries(self) -> list[OperationStats]:
        """One summary per operation, the most called first."""
        cutoff = time.monotonic() - WINDOW_SECONDS
        result = []
        with self._lock:
            items = [(name, list(samples)) for name, samples in self._samples.items()]
        for name, samples in items:
            values = sorted(duration for at, duration in samples if at >= cutoff)
            if values:
                quantiles = tuple(
                    (q, values[min(len(values) - 1, int(q * len(values)))]) for q in QUANTILES
                )
                result.append(OperationStats(name, len(values), values[0], values[-1], quantiles))
            else:
                result.append(
                    OperationStats(name, 0, None, None, tuple((q, None) for q in QUANTILES))
                )
        result.sort(key=lambda stats: stats.count, reverse=True)
        return result
