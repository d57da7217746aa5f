"""CPU and memory of the bridge's processes during a run, read from ``/proc`` (Linux).

``wabridge run`` records its children's pids in ``{state_dir}/processes.json``; the benchmark adds
itself as ``bench`` so a reader sees whether the generator was the bottleneck. CPU is the time
used during the run; peak memory is the highest resident set size sampled during the run, and
``lifetime_peak_rss_mb`` the kernel's high-water mark (``VmHWM``) since the process started.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from wabridge.dev.processes import PROCESSES_FILE

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    pid: int
    cpu_s: float
    cpu_percent: float  # of one core, over the run
    peak_rss_mb: float
    lifetime_peak_rss_mb: float


def recorded_processes(state_dir: Path) -> dict[str, int]:
    """The processes ``wabridge run`` started that are still alive (empty when it is not running)."""
    path = state_dir / PROCESSES_FILE
    try:
        recorded = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return {str(name): int(pid) for name, pid in recorded.items() if Path(f"/proc/{int(pid)}").exists()}


def _cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces: utime, stime are 14, 15.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def _memory_kb(pid: int) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


class ProcessSampler:
    """Call :meth:`start`, then :meth:`sample` now and then, then :meth:`finish`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = dict(pids)
        self._cpu_at_start: dict[str, float] = {}
        self._peak_rss_kb: dict[str, int] = {}
        self._started = 0.0

    @classmethod
    def for_stack(cls, state_dir: Path) -> ProcessSampler:
        return cls({**recorded_processes(state_dir), "bench": os.getpid()})

    def start(self) -> None:
        self._started = time.monotonic()
        for name, pid in self._pids.items():
            cpu = _cpu_seconds(pid)
            if cpu is not None:
                self._cpu_at_start[name] = cpu
        self.sample()

    def sample(self) -> None:
        for name, pid in self._pids.items():
            rss = _memory_kb(pid).get("VmRSS")
            if rss is not None:
                self._peak_rss_kb[name] = max(rss, self._peak_rss_kb.get(name, 0))

    def finish(self) -> dict[str, ProcessUsage]:
        self.sample()
        elapsed = max(time.monotonic() - self._started, 1e-9)
        usage = {}
        for name, pid in self._pids.items():
            cpu, start = _cpu_seconds(pid), self._cpu_at_start.get(name)
            if cpu is None or start is None:
                continue  # exited during the run
            used = cpu - start
            usage[name] = ProcessUsage(
                pid=pid,
                cpu_s=round(used, 2),
                cpu_percent=round(100 * used / elapsed, 1),
                peak_rss_mb=round(self._peak_rss_kb.get(name, 0) / 1024, 1),
                lifetime_peak_rss_mb=round(_memory_kb(pid).get("VmHWM", 0) / 1024, 1),
            )
        return usage
