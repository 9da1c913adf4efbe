"""The warm pool: pre-started, not yet specialised sandboxes of one zygote.

``Prepared`` is one such sandbox (pid 1 waiting, root and function-less, in its cgroup);
``WarmPool`` keeps them per zygote and refills them in the background, sized by
``pool_demand.PoolDemand`` (the configured size, more for a minute after a burst). The
backend (``namespace.NamespaceBackend``) owns the pools and specialises what they hand out.

Scope: used by the namespace backend and the node slots only. Invariants: a refill never
runs while a take is in flight; every pre-started sandbox is either handed out once or
discarded (killed, waited for, its cgroup removed).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import select
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ember.sandbox import pool_demand
from ember.sandbox.pool_demand import PoolDemand
from ember.sandbox.rootless import SandboxCgroup
from ember.sandbox.zygote import REPLY_TIMEOUT_S, Zygote, ZygoteUnavailable

if TYPE_CHECKING:
    from ember.sandbox.namespace import NamespaceBackend

log = logging.getLogger("ember")
KILL_WAIT_S = 5.0  # how long a discarded sandbox's pid 1 may take to die
# a take's refill waits this long (it competes for the CPUs and the kernel's mount lock
# with the start that just took a sandbox)
REFILL_DELAY_S = 0.05


@dataclass
class Prepared:
    """A pre-started sandbox: pid 1 waiting (root, function-less) for its specialisation."""

    pid: int
    pidfd: int
    control: socket.socket  # one message on it specialises the sandbox
    cgroup: SandboxCgroup  # joined already; limits written at specialisation
    pooled: bool = False  # taken from the pool's ready ones (not pre-started on demand)
    origin: int | None = None  # pid of the zygote process that forked it

    def discard(self) -> None:
        """Kill it, wait until it is gone (pidfd), remove its cgroup."""
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        self.control.close()
        with contextlib.suppress(OSError):
            select.select([self.pidfd], [], [], KILL_WAIT_S)
            os.close(self.pidfd)
        self.cgroup.remove()


class WarmPool:
    """Pre-started sandboxes of one zygote, refilled in the background.

    Scope: one per zygote. ``take`` hands out a prepared sandbox at once when there is
    one, else pre-starts one on demand (what a pool of size 0 always does); either way a
    refill follows in the background (pre-faulted when the backend's ``prefault`` is on):
    to ``pool_size`` after the last take, and after a burst of takes up to the burst's size
    (at most ``pool_max``: ``pool_demand.py``), once takes have paused; each batch once
    the CPUs are mostly idle (the first three within a second). The extra sandboxes are
    discarded once the burst is a minute old. A refill never runs while a take is in
    flight, and its sandboxes (not a node slot's) wait in cgroups of the smallest CPU
    share (``cgroups.IDLE_CPU_SHARES``). Raises
    ``ZygoteUnavailable``. A refill pauses while the machine's MemAvailable
    (``available_mb``, injectable) is below the backend's ``pool_min_available_mb``, and
    says so in the log once each time that happens.
    """

    def __init__(
        self,
        backend: NamespaceBackend,
        zygote: Zygote,
        available_mb: Callable[[], int | None] | None = None,
        extra_config: dict[str, Any] | None = None,
        size: int | None = None,
        ready_wait: Callable[[Prepared], Awaitable[bool]] | None = None,
        demand: PoolDemand | None = None,
    ) -> None:
        self._backend = backend
        self._zygote = zygote
        self._extra_config = extra_config or {}  # on top of the base config (node slots)
        self._size = size  # None: the backend's pool_size
        self._ready_wait = ready_wait  # until a pre-started one is ready (node slots)
        self._available_mb = available_mb or backend.available_mb
        self._memory_low = False
        self._ready: collections.deque[Prepared] = collections.deque()
        self._refilling: asyncio.Task[None] | None = None
        self._refill_timer: asyncio.TimerHandle | None = None
        # a pool of a given size (node slots) stays at it; the interpreters' pools grow
        # after bursts up to the backend's pool_max
        fixed = size is not None
        self._demand = demand or PoolDemand(self.size, self.size if fixed else backend.pool_max)
        self._cpu_busy = backend.cpu_meter()  # share of the CPUs busy since its last call
        self._eager_deadline: float | None = None  # an eager refill waits for idle CPUs until
        self._resize_timer: asyncio.TimerHandle | None = None
        self._discarding: set[asyncio.Task[None]] = set()
        self._generation = 0  # bumped by renew: sandboxes pre-started before are stale
        self._closed = False
        self._root = str(backend.scratch / "root")  # each sandbox mounts its own root here

    async def take(self) -> Prepared:
        loop = asyncio.get_running_loop()
        self._demand.note_start(loop.time())
        try:
            if self._ready:
                prepared = self._ready.popleft()
                prepared.pooled = True
            else:
                prepared = await self._prestart(warm=False)
        finally:
            self._demand.note_done(loop.time())
            self.refill_later()
        return prepared

    async def prestart_aside(self) -> Prepared:
        """One pre-started now, not taken from the pool: no demand noted, no refill follows
        (a calibration start's sandbox)."""
        return await self._prestart(warm=False)

    def take_ready(self) -> Prepared | None:
        """A waiting pre-started sandbox, or None (none pre-started on demand); a refill
        follows either way."""
        prepared = self._ready.popleft() if self._ready else None
        if prepared is not None:
            prepared.pooled = True
        self.refill_later()
        return prepared

    def refill_later(self) -> None:
        """Refill once the start that just took a sandbox had the CPUs a moment (a refill
        competes with it for them and for the kernel's mount lock)."""
        if self._refill_timer is not None:
            self._refill_timer.cancel()
        loop = asyncio.get_running_loop()
        self._refill_timer = loop.call_later(REFILL_DELAY_S, self.refill_soon)

    def reconfigure(self, resize: bool = True) -> None:
        """Follow the backend's pool size now (shared among its pools: another pool came);
        ``resize``: beyond it, the extra sandboxes go (newest first), below, a refill
        follows."""
        if self._size is None:
            self._demand.configure(self.size)
            if resize:
                self.resize()

    @property
    def size(self) -> int:
        return self._backend.pool_size if self._size is None else self._size

    @property
    def ready(self) -> int:
        """How many pre-started sandboxes wait now."""
        return len(self._ready)

    @property
    def low_memory_seen(self) -> bool:
        """Whether the last refill check found MemAvailable below the threshold."""
        return self._memory_low

    @property
    def target(self) -> int:
        """How many pre-started sandboxes it aims for now."""
        return self._demand.target(asyncio.get_running_loop().time())

    @property
    def refilling(self) -> bool:
        """Whether a background refill runs now."""
        return self._refilling is not None

    async def until_quiet(self) -> None:
        """Return once no take is in flight and the last one is a moment old."""
        loop = asyncio.get_running_loop()
        while (delay := self._demand.quiet_in(loop.time())) > 0:  # noqa: ASYNC110 - time-based
            await asyncio.sleep(delay)

    async def fill(self) -> None:
        """Refill to the target now and return once done (start-up, tests)."""
        self.refill_soon()
        while (refilling := self._refilling) is not None:  # a renewal may replace it
            await asyncio.wait({refilling})

    def refill_soon(self) -> None:
        if self._closed:
            return
        now = asyncio.get_running_loop().time()
        if len(self._ready) < self._demand.refill_target(now) and self._refilling is None:
            self._refilling = asyncio.get_running_loop().create_task(self._refill())
        self._resize_later(now)

    def _resize_later(self, now: float) -> None:
        """Come back when the demand's target next changes (grow, or shrink back)."""
        if self._resize_timer is not None:
            self._resize_timer.cancel()
            self._resize_timer = None
        when = self._demand.next_change(now)
        if when is not None:
            self._resize_timer = asyncio.get_running_loop().call_at(when, self.resize)

    def resize(self) -> None:
        """Discard what is beyond the target now (newest first), then refill to it."""
        self._resize_timer = None
        if self._closed:
            return
        target = self._demand.target(asyncio.get_running_loop().time())
        while len(self._ready) > target:
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._ready.pop().discard)
            )
            self._discarding.add(task)
            task.add_done_callback(self._discarding.discard)
        self.refill_soon()

    async def renew(self) -> None:
        """Replace the waiting sandboxes by new ones (the way to pre-fault differently).

        A refill in flight is not cancelled (a zygote request abandoned half-way would
        leave its reply in the socket): what it pre-started before now is dropped.
        """
        if self._closed:
            return
        self._generation += 1  # a refill in flight drops what it started before this
        stale = list(self._ready)
        self._ready.clear()
        self.refill_soon()
        for prepared in stale:  # kill and wait: off the event loop
            await asyncio.to_thread(prepared.discard)

    async def _refill(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            batch = 0  # pre-starts left before the CPUs are looked at again
            while (
                len(self._ready) < self._demand.refill_target(loop.time())
                and not self._closed
                and not self.memory_low()
            ):
                if batch == 0:
                    eager = pool_demand.EAGER_REFILL - len(self._ready)
                    if not await self._cpus_idle(self._eager_until(loop.time(), eager > 0)):
                        continue  # a take came meanwhile: look again
                    batch = eager if eager > 0 else pool_demand.GROWTH_BATCH
                batch -= 1
                generation = self._generation
                prepared = await self._prestart(warm=True)
                if generation == self._generation and not self._closed:
                    self._ready.append(prepared)
                else:
                    await asyncio.to_thread(prepared.discard)
        except ZygoteUnavailable as exc:
            log.warning(
                "cold starts: warm pool of %s not refilled: %s", self._zygote.interpreter, exc
            )
        finally:
            self._refilling = None

    def _eager_until(self, now: float, eager: bool) -> float | None:
        """Until when an eager refill may wait for idle CPUs: ``EAGER_MAX_DEFER_S`` from
        the first time it waited, kept across refills (takes in flight end each one) until
        the pool holds ``EAGER_REFILL`` again; None beyond that (growth)."""
        if not eager:
            self._eager_deadline = None
            return None
        if self._eager_deadline is None:
            self._eager_deadline = now + pool_demand.EAGER_MAX_DEFER_S
        return self._eager_deadline

    async def _cpus_idle(self, deadline: float | None = None) -> bool:
        """Wait until the CPUs are mostly idle (a pre-start is for later, never at the
        expense of starts being made: a burst's environments are still initialising after
        their takes), at most until ``deadline`` (default ``GROWTH_MAX_DEFER_S`` from now;
        one passed already: at once). False if a take came meanwhile or the pool was
        closed."""
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + pool_demand.GROWTH_MAX_DEFER_S
        elif loop.time() >= deadline:
            return not self._closed
        self._cpu_busy()
        while True:
            await asyncio.sleep(pool_demand.CPU_SAMPLE_S)
            if self._demand.in_flight or self._closed:
                return False
            busy = self._cpu_busy()
            if busy is None or busy < pool_demand.GROWTH_MAX_BUSY or loop.time() > deadline:
                return True

    def memory_low(self) -> bool:
        """Whether MemAvailable is below the refill threshold (logged once per low spell)."""
        available, floor = self._available_mb(), self._backend.pool_min_available_mb
        low = available is not None and available < floor
        if low and not self._memory_low:
            log.warning(
                "cold starts: warm pool of %s not refilled: %s MB available, below %s MB "
                "(EMBER_SANDBOX_POOL_MIN_AVAILABLE_MB)", self._zygote.interpreter, available, floor,
            )  # fmt: skip
        self._memory_low = low
        return low

    async def _prestart(self, warm: bool) -> Prepared:
        """``warm``: have it pay its copy-on-write faults ahead as the backend's
        ``warming`` says (worth it only off the critical path: for a start waiting on it,
        lazy faults cost less)."""
        cgroup = self._backend.new_cgroup()
        prefault, ranges = self._backend.warming(self._zygote.interpreter)
        try:
            # a refill's waits at the smallest CPU share (it must not compete with starts),
            # not a node slot's: its node must start within a deadline
            cgroup.create_dirs(idle=warm and self._ready_wait is None)
            config = {**self._backend.base_config(self._root, cgroup), "warm": warm and prefault}
            config.update(self._extra_config)
            if ranges is not None:
                config["warm_ranges"] = ranges
            pid, pidfd, control = await self._zygote.prestart(config)
        except BaseException:
            cgroup.remove()
            raise
        prepared = Prepared(pid, pidfd, control, cgroup, origin=self._zygote.pid)
        if self._ready_wait is not None:
            try:
                ready = await self._ready_wait(prepared)
            except BaseException:  # cancelled (the pool closes): never leave it behind
                await asyncio.shield(asyncio.to_thread(prepared.discard))
                raise
            if not ready:
                await asyncio.to_thread(prepared.discard)
                raise ZygoteUnavailable("a pre-started sandbox did not get ready")
        return prepared

    async def close(self) -> None:
        """Stop refilling (for good) and discard the waiting sandboxes."""
        self._closed = True
        for timer in (self._refill_timer, self._resize_timer):
            if timer is not None:
                timer.cancel()
        refilling = self._refilling
        if refilling is not None:  # let its zygote request finish (cancelled half-way, the
            # zygote would be restarted and a half-made sandbox left in its cgroup)
            done, _ = await asyncio.wait({refilling}, timeout=REPLY_TIMEOUT_S)
            if not done:
                refilling.cancel()
                await asyncio.wait({refilling})
        stale = list(self._ready)
        self._ready.clear()
        # kill and wait: off the event loop, together (a pool may hold a hundred)
        await asyncio.gather(*(asyncio.to_thread(prepared.discard) for prepared in stale))
        if self._discarding:
            await asyncio.wait(set(self._discarding))
