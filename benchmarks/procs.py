"""Worker processes of a workload: start, watch, measure peak memory, stop (always)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

STOP_TIMEOUT = 30.0


class BenchmarkError(RuntimeError):
    """A workload failed or ran out of time; the message says which and why."""


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            found += [int(child) for child in text.split()]
    except OSError:
        pass
    return found


def peak_rss_kib(pid: int) -> int:
    """``VmHWM`` (peak resident set) of ``pid`` plus that of its descendants, in KiB."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
                break
    except OSError:
        return 0
    for child in _children(pid):
        total += peak_rss_kib(child)
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time that ``pid`` (with its live descendants) used so far, seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # After "pid (comm)": state is fields[0], utime fields[11], stime fields[12] (in ticks).
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total + sum(cpu_seconds(child) for child in _children(pid))


@dataclass
class Stopped:
    label: str
    returncode: int | None
    killed: bool
    log: Path


@dataclass
class Processes:
    """``count`` copies of ``argv`` (their output in ``log_dir/label-K.log``), as a context
    manager: ``__exit__`` stops them whatever happened (SIGTERM, then SIGKILL)."""

    label: str
    argv: Sequence[str]
    count: int
    log_dir: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    popens: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    stopped: list[Stopped] = field(default_factory=list)

    def start(self) -> Processes:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for index in range(self.count):
            log = self.log_dir / f"{self.label}-{index + 1}.log"
            self.logs.append(log)
            with open(log, "wb") as output:
                self.popens.append(
                    subprocess.Popen(
                        list(self.argv),
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        env=dict(self.env) if self.env is not None else None,
                        cwd=self.cwd,
                    )
                )
        return self

    @property
    def pids(self) -> list[int]:
        return [popen.pid for popen in self.popens]

    def check_alive(self) -> None:
        """Raise :class:`BenchmarkError` (with the log's tail) if a process has exited."""
        for popen, log in zip(self.popens, self.logs, strict=True):
            if popen.poll() is not None:
                raise BenchmarkError(
                    f"{self.label} process {popen.pid} exited with {popen.returncode}:\n"
                    + tail(log)
                )

    def peak_rss_mb(self) -> float:
        """The largest peak resident set of one of the processes (with its children), MiB."""
        return max((peak_rss_kib(pid) for pid in self.pids), default=0) / 1024

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the processes used so far, summed, in seconds."""
        return sum(cpu_seconds(pid) for pid in self.pids)

    def stop(self, timeout: float = STOP_TIMEOUT) -> list[Stopped]:
        """SIGTERM every process, wait up to ``timeout`` s, then SIGKILL; idempotent."""
        if self.stopped or not self.popens:
            return self.stopped
        for popen in self.popens:
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for popen, log in zip(self.popens, self.logs, strict=True):
            killed = False
            try:
                popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed = True
                with contextlib.suppress(ProcessLookupError):
                    popen.kill()
                popen.wait()
            self.stopped.append(Stopped(self.label, popen.returncode, killed, log))
        return self.stopped

    def __enter__(self) -> Processes:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def kill_group(
    pgid: int, grace: float = 20.0, leader: subprocess.Popen[bytes] | None = None
) -> None:
    """SIGTERM the process group ``pgid``, then SIGKILL it after ``grace`` seconds.

    ``leader`` (the group's leader, our child) is reaped while waiting, so that its zombie
    does not keep the group alive.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    if leader is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            leader.wait(5)
