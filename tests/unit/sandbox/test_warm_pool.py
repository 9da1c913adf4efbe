"""The namespace backend's warm pool: it pauses its refills while the machine is short of
memory, and grows after a burst of takes (to the burst's size), then shrinks back."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import pytest

from ember.sandbox import pool_demand
from ember.sandbox.namespace import NamespaceBackend
from ember.sandbox.pool_demand import EAGER_REFILL, PoolDemand
from ember.sandbox.warm_pool import WarmPool
from ember.sandbox.zygote import Zygote


class NoPrestarts:
    interpreter = "/usr/bin/python3"

    async def prestart(self, config: dict[str, Any]) -> Any:
        raise AssertionError("a refill pre-started a sandbox while memory was low")


def pool(available: list[int | None], tmp_path: Path) -> WarmPool:
    backend = SimpleNamespace(
        pool_size=3, pool_max=3, prefault=False, scratch=tmp_path, pool_min_available_mb=512,
        available_mb=lambda: None, cpu_meter=lambda: lambda: 0.0,
    )  # fmt: skip
    return WarmPool(
        cast(NamespaceBackend, backend), cast(Zygote, NoPrestarts()), lambda: available[0]
    )


async def test_refills_skip_below_the_threshold_and_say_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    available: list[int | None] = [300]
    warm = pool(available, tmp_path)
    with caplog.at_level(logging.WARNING, logger="ember"):
        await warm.fill()
        await warm.fill()
    assert warm.ready == 0
    notes = [r.getMessage() for r in caplog.records if "not refilled" in r.getMessage()]
    assert notes == [
        "cold starts: warm pool of /usr/bin/python3 not refilled: 300 MB available, below "
        "512 MB (EMBER_SANDBOX_POOL_MIN_AVAILABLE_MB)"
    ]
    available[0] = 4096
    assert not warm.memory_low()
    available[0] = 100  # low again: said again, once
    with caplog.at_level(logging.WARNING, logger="ember"):
        assert warm.memory_low()
        assert warm.memory_low()
    assert sum("not refilled" in r.getMessage() for r in caplog.records) == 2
    await warm.close()


async def test_an_unknown_reading_never_blocks_refills(tmp_path: Path) -> None:
    warm = pool([None], tmp_path)
    assert not warm.memory_low()
    await warm.close()


class FakeCgroup:
    name = "fake"

    def create_dirs(self, idle: bool = False) -> None:
        pass

    def remove(self) -> None:
        pass

    def procs_files(self) -> list[str]:
        return []


class CountingZygote:
    """Pre-starts nothing real: each "sandbox" is an eventfd (readable: "it exited")."""

    interpreter = "/usr/bin/python3"
    pid = 1

    def __init__(self) -> None:
        self.prestarts = 0
        self.sockets: list[socket.socket] = []

    async def prestart(self, config: dict[str, Any]) -> tuple[int, int, socket.socket]:
        self.prestarts += 1
        ours, theirs = socket.socketpair()
        self.sockets.append(theirs)
        return 4_000_000 + self.prestarts, os.eventfd(1), ours


def growing_pool(tmp_path: Path, busy: list[float]) -> tuple[WarmPool, CountingZygote, PoolDemand]:
    backend = SimpleNamespace(
        pool_size=1, pool_max=4, prefault=False, scratch=tmp_path, pool_min_available_mb=0,
        available_mb=lambda: None, cpu_meter=lambda: lambda: busy[0], new_cgroup=FakeCgroup,
        warming=lambda interpreter: (False, None), base_config=lambda root, cgroup: {},
    )  # fmt: skip
    zygote = CountingZygote()
    demand = PoolDemand(1, 4, window_s=3600, growth_delay_s=0, burst_span_s=3600)
    warm = WarmPool(
        cast(NamespaceBackend, backend), cast(Zygote, zygote), lambda: None, demand=demand
    )
    return warm, zygote, demand


async def test_a_burst_of_takes_grows_the_pool_to_its_size_then_it_shrinks_back(
    tmp_path: Path,
) -> None:
    warm, zygote, demand = growing_pool(tmp_path, [0.0])
    taken = [await warm.take() for _ in range(6)]  # all on demand: the pool was empty
    assert zygote.prestarts == 6
    assert warm.target == 4  # six takes, at most pool_max
    await warm.fill()
    assert warm.ready == 4
    assert zygote.prestarts == 10
    demand.window_s = 0  # the burst is no longer recent
    warm.resize()
    assert warm.target == 1
    assert warm.ready == 1
    for prepared in taken:
        prepared.discard()
    await warm.close()
    assert warm.ready == 0
    for sock in zygote.sockets:
        sock.close()


async def test_refills_wait_for_idle_cpus_the_eager_ones_only_briefly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst's environments initialise after their takes: every refill asks about the
    CPUs first; the first ``EAGER_REFILL`` go ahead after ``EAGER_MAX_DEFER_S`` even on
    busy CPUs, growth beyond them waits for idle ones."""
    monkeypatch.setattr(pool_demand, "EAGER_MAX_DEFER_S", 0.01)
    busy = [1.0]
    asked_with_ready: list[int] = []
    growth_asked = asyncio.Event()
    warm, zygote, _ = growing_pool(tmp_path, busy)

    def cpu_busy() -> float:
        asked_with_ready.append(warm.ready)
        if warm.ready >= EAGER_REFILL:
            growth_asked.set()
        return busy[0]

    cast(Any, warm)._cpu_busy = cpu_busy
    taken = [await warm.take() for _ in range(4)]
    filling = asyncio.ensure_future(warm.fill())
    await growth_asked.wait()  # beyond EAGER_REFILL, growth asks: the CPUs are busy
    assert asked_with_ready[0] == 0  # the eager refill asked too, before its pre-starts
    assert warm.ready == EAGER_REFILL  # ... and went ahead after its short deferral
    busy[0] = 0.0
    await filling
    assert warm.ready == 4
    for prepared in taken:
        prepared.discard()
    await warm.close()
    for sock in zygote.sockets:
        sock.close()


def test_the_pools_share_the_configured_total() -> None:
    """``EMBER_SANDBOX_POOL_SIZE`` is what all interpreters' pools hold: split evenly, at
    least three each (never more than the total), none for a total of 0."""

    def share(total: int, pools: int) -> int:
        backend = SimpleNamespace(pool_total=total, _pools=dict.fromkeys(range(pools)))
        return cast(int, NamespaceBackend.pool_size.fget(backend))  # type: ignore[attr-defined]

    assert [share(106, n) for n in (0, 1, 2, 3)] == [106, 106, 53, 35]
    assert [share(3, n) for n in (1, 2)] == [3, 3]
    assert share(2, 2) == 2
    assert share(0, 1) == 0


async def test_a_smaller_share_discards_the_extra_sandboxes(tmp_path: Path) -> None:
    warm, zygote, _ = growing_pool(tmp_path, [0.0])
    backend = cast(Any, warm)._backend
    backend.pool_size = 4
    warm.reconfigure()
    await warm.fill()
    assert (warm.target, warm.ready) == (4, 4)
    backend.pool_size = 2  # another interpreter's pool came: the total is shared
    warm.reconfigure()
    assert (warm.target, warm.ready) == (2, 2)
    await warm.close()
    for sock in zygote.sockets:
        sock.close()


async def test_the_eager_deferral_is_bounded_across_refills(tmp_path: Path) -> None:
    """Each take in flight ends a refill; the next one must not wait another second."""
    warm, zygote, _ = growing_pool(tmp_path, [1.0])
    until = cast(Any, warm)._eager_until
    first = until(100.0, True)
    assert first == 100.0 + pool_demand.EAGER_MAX_DEFER_S
    assert until(100.7, True) == first  # a later refill: the same deadline
    assert until(101.0, False) is None  # EAGER_REFILL reached: growth from here
    assert until(105.0, True) == 105.0 + pool_demand.EAGER_MAX_DEFER_S  # a new deferral
    await warm.close()
    for sock in zygote.sockets:
        sock.close()


class RecordingCgroup(FakeCgroup):
    idle_flags: ClassVar[list[bool]] = []

    def create_dirs(self, idle: bool = False) -> None:
        self.idle_flags.append(idle)


async def test_only_refills_wait_at_the_smallest_cpu_share(tmp_path: Path) -> None:
    """A refill's sandbox waits at the idle share; one pre-started for a start waiting on
    it, or a node slot (its node must start within a deadline), at the normal one."""
    RecordingCgroup.idle_flags = []
    warm, zygote, _ = growing_pool(tmp_path, [0.0])
    backend = cast(Any, warm)._backend
    backend.new_cgroup = RecordingCgroup
    taken = await warm.take()  # on demand: the pool was empty
    await warm.fill()
    assert RecordingCgroup.idle_flags == [False, True]

    async def ready(_prepared: Any) -> bool:
        return True

    slots = WarmPool(
        cast(NamespaceBackend, backend), cast(Zygote, zygote), lambda: None, size=1,
        ready_wait=ready,
    )  # fmt: skip
    await slots.fill()
    assert RecordingCgroup.idle_flags == [False, True, False]
    taken.discard()
    for pool in (warm, slots):
        await pool.close()
    for sock in zygote.sockets:
        sock.close()
