"""Per-sandbox cgroups: memory (swap off), pids and CPU share, on cgroup v1 or v2.

Lambda's rules: memory limit = MemorySize; one vCPU per 1,769 MB. Ember applies the CPU
rule as a *share* (v1 ``cpu.shares`` / v2 ``cpu.weight``), proportional to memory: under
contention a 1,769 MB function gets 13.8 times the CPU of a 128 MB one, and an idle
machine does not slow anyone down. ``Max Memory Used`` comes from the cgroup's peak; an
out-of-memory kill is read from the OOM counter.

Scope: one ``Cgroup`` per sandbox; ``create`` and ``remove`` run on worker threads.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

ROOT = Path("/sys/fs/cgroup")
PIDS_MAX = 1024  # Lambda: 1,024 processes or threads per environment
MB_PER_VCPU = 1769
# the CPU share of a pooled sandbox until it is specialised (v1 minimum; v2 weight 1): its
# pre-faulting runs as SCHED_IDLE, but that ranks it only within its own cgroup; the
# cgroup itself must not compete with the environments in theirs
IDLE_CPU_SHARES = 2


def version() -> int | None:
    """2 for a unified hierarchy with memory/pids/cpu, 1 for v1 controllers, None if unusable."""
    controllers = ROOT / "cgroup.controllers"
    if controllers.exists():
        wanted = {"memory", "pids", "cpu"}
        return 2 if wanted <= set(controllers.read_text().split()) else None
    if all((ROOT / c).is_dir() for c in ("memory", "pids", "cpu")) and os.access(
        ROOT / "memory", os.W_OK
    ):
        return 1
    return None


def leftover_names(v: int) -> set[str]:
    """Names of the sandbox cgroups that exist now (at start: left by a killed server)."""
    parents = (
        [ROOT / "ember"] if v == 2 else [ROOT / c / "ember" for c in ("memory", "pids", "cpu")]
    )
    return {d.name for p in parents if p.is_dir() for d in p.iterdir() if d.is_dir()}


def cpu_shares(memory_mb: int) -> int:
    return max(2, memory_mb * 1024 // MB_PER_VCPU)


@dataclass(frozen=True, slots=True)
class Cgroup:
    """The cgroup directories of one sandbox (one per controller on v1, one on v2)."""

    name: str
    v: int

    def dirs(self) -> list[Path]:
        if self.v == 2:
            return [ROOT / "ember" / self.name]
        return [ROOT / c / "ember" / self.name for c in ("memory", "pids", "cpu")]

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs()]

    def create(self, memory_mb: int) -> None:
        self.create_dirs()
        self.set_limits(memory_mb)

    def create_dirs(self, idle: bool = False) -> None:
        """The directories and the pids limit (what does not depend on the function);
        ``idle``: the smallest CPU share until ``set_limits`` (a pooled sandbox)."""
        if self.v == 2:
            parent = ROOT / "ember"
            parent.mkdir(exist_ok=True)
            _enable_controllers(ROOT)
            _enable_controllers(parent)
            (cg,) = self.dirs()
            cg.mkdir()
            _write(cg / "pids.max", str(PIDS_MAX))
            if idle:
                _write(cg / "cpu.weight", "1")
            return
        memory, pids, cpu = self.dirs()
        for directory in (memory, pids, cpu):
            directory.mkdir(parents=True)
        _write(pids / "pids.max", str(PIDS_MAX))
        if idle:
            _write(cpu / "cpu.shares", str(IDLE_CPU_SHARES))

    def set_limits(self, memory_mb: int) -> None:
        """Memory (swap off) and CPU share for ``memory_mb``; before any process joins."""
        limit = str(memory_mb * 1024 * 1024)
        if self.v == 2:
            (cg,) = self.dirs()
            _write(cg / "memory.max", limit)
            _write(cg / "memory.swap.max", "0", optional=True)
            _write(cg / "cpu.weight", str(max(1, min(10000, cpu_shares(memory_mb) // 10))))
            return
        memory, _, cpu = self.dirs()
        _write(memory / "memory.limit_in_bytes", limit)
        _write(memory / "memory.memsw.limit_in_bytes", limit, optional=True)  # swap off
        _write(cpu / "cpu.shares", str(cpu_shares(memory_mb)))

    def memory_peak_path(self) -> Path:
        name = "memory.peak" if self.v == 2 else "memory.max_usage_in_bytes"
        return self.dirs()[0] / name

    def memory_peak_bytes(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(self.memory_peak_path().read_text())
        return None

    def oom_kills(self) -> int:
        name = "memory.events" if self.v == 2 else "memory.oom_control"
        with contextlib.suppress(OSError):
            for line in (self.dirs()[0] / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self) -> None:
        """Remove the directories (a cgroup still holding processes stays: EBUSY)."""
        for directory in self.dirs():
            with contextlib.suppress(FileNotFoundError, OSError):
                directory.rmdir()


class PeakSource(Protocol):
    def memory_peak_path(self) -> Path | None: ...


class PeakReader:
    """A cgroup's peak memory, read through a descriptor kept open (after every invoke:
    ``pread`` costs under a microsecond, building the path and opening the file ~26 µs).

    Scope: one sandbox. ``close`` is idempotent; reads after it, or failed reads, give None.
    """

    def __init__(self, cgroup: PeakSource) -> None:
        self._cgroup = cgroup
        self._fd: int | None = None
        self._closed = False

    def read(self) -> int | None:
        if self._closed:
            return None
        try:
            if self._fd is None:
                path = self._cgroup.memory_peak_path()
                if path is None:
                    return None
                self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            return int(os.pread(self._fd, 32, 0))
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        self._closed = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _enable_controllers(directory: Path) -> None:
    with contextlib.suppress(OSError):
        _write(directory / "cgroup.subtree_control", "+memory +pids +cpu")


def _write(path: Path, value: str, *, optional: bool = False) -> None:
    try:
        path.write_text(value)
    except OSError:
        if not optional:
            raise
