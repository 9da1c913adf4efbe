"""Placement: which execution environment serves an invocation.

A warm idle environment of the same function generation is reused (most recently used
first, so the others can age out); otherwise a new one is launched. Idle environments
are stopped after the keep-alive; a changed function (new code or configuration) never
reuses an environment of its old generation. A generation belongs to one version:
``$LATEST`` and version 1 never share an environment, even with the same code (an alias
runs in the environments of the versions it routes to).

Host memory (``budget.py``): every live environment holds its ``MemorySize`` of the
budget, from the moment its start is decided until it is stopped. A new environment that
does not fit evicts idle environments (of other functions, or of this function's other
generations), least recently used first, but only when that makes room; otherwise the
request waits (bounded) for memory to come free or an environment to become idle, and is
then refused with a 429.

Every hand-out knows how it started (``StartKind``): ``warm`` (an idle environment
reused), ``prewarmed`` (a new environment from the backend's pool of pre-started
sandboxes), ``cold`` (a new environment started from nothing), ``provisioned`` (an
environment initialised ahead by provisioned concurrency, ``provision``).

Provisioned environments are used first by invokes of their generation, go back to their
own idle list (never reaped, never evicted), and when one dies placement tells the owner
(``on_provisioned_lost``) so that it can be replaced. They count against the budget.

Scope: one per server. Invariants: an environment is in at most one idle list, and never
in one while BUSY; two concurrent invocations never get the same environment; every
environment handed out comes back through the context manager (released or stopped);
``budget.used_mb`` = the MemorySize of every environment started and not yet stopped,
plus those being started.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from ember.clock import Clock
from ember.invocation.budget import UNBOUNDED_MB, MemoryBudget
from ember.invocation.environment import EnvState, ExecutionEnvironment
from ember.model.functions import FunctionRecord

Starter = Callable[[FunctionRecord], Awaitable[ExecutionEnvironment]]
Generation = tuple[str, str, str, float]
DEFAULT_MEMORY_WAIT_S = 5.0


class StartKind(enum.StrEnum):
    """How the environment serving an invoke started (REPORT's ``Ember Start Kind``)."""

    COLD = "cold"  # a new environment, started from nothing (exec path, or an empty pool)
    PREWARMED = "prewarmed"  # a new environment from the backend's pre-started sandboxes
    WARM = "warm"  # an idle environment reused
    PROVISIONED = "provisioned"  # an environment initialised ahead (provisioned concurrency)


def generation(record: FunctionRecord) -> Generation:
    """Environments are interchangeable only within one version's code + configuration."""
    return (record.name, record.version, record.code.sha256_hex, record.last_modified)


@dataclass(frozen=True, slots=True)
class PlacementStatistics:
    idle: int
    busy: int
    started: int
    stopped: int
    reused: int
    evicted: int
    memory_budget_mb: int
    memory_used_mb: int
    memory_starting_mb: int
    memory_refusals: int
    starts: dict[str, int]  # StartKind => invocations started that way
    provisioned: int  # environments initialised ahead (idle or busy)
    provisioned_idle: int
    by_function: dict[str, dict[str, int]]  # function => {"idle", "busy", "provisioned"}


class Placement:
    def __init__(
        self,
        start: Starter,
        clock: Clock,
        keep_alive_s: float,
        budget: MemoryBudget | None = None,
        memory_wait_s: float = DEFAULT_MEMORY_WAIT_S,
    ) -> None:
        self._start = start
        self._clock = clock
        self._keep_alive_s = keep_alive_s
        self.budget = budget or MemoryBudget(UNBOUNDED_MB, clock)
        self._memory_wait_s = memory_wait_s
        # generation => idle environments, most recently used last
        self._idle: dict[Generation, list[ExecutionEnvironment]] = {}
        self._busy: set[ExecutionEnvironment] = set()
        self._busy_keys: dict[ExecutionEnvironment, Generation] = {}
        # busy environments to stop once back: retired (their function changed, e.g. its
        # tags, which the generation does not show) or no longer provisioned
        self._retired: set[ExecutionEnvironment] = set()
        # (function, version) => the generation last asked for; older ones are not kept idle
        self._current: dict[tuple[str, str], Generation] = {}
        self._memory: dict[ExecutionEnvironment, int] = {}  # live environment => its MB
        self._names: dict[ExecutionEnvironment, str] = {}  # live environment => function
        self._kinds: dict[ExecutionEnvironment, StartKind] = {}  # handed out => how started
        self._stopping: set[asyncio.Task[None]] = set()
        self._started = self._stopped = self._reused = self._evicted = 0
        self._starts: Counter[str] = Counter()
        self._provisioned: set[ExecutionEnvironment] = set()
        self._provisioned_idle: dict[Generation, list[ExecutionEnvironment]] = {}
        # told when a provisioned environment is gone (died, or reset after a timeout)
        self.on_provisioned_lost: Callable[[ExecutionEnvironment], None] = lambda _env: None

    @contextlib.asynccontextmanager
    async def environment(self, record: FunctionRecord) -> AsyncIterator[ExecutionEnvironment]:
        """An environment for ``record`` for the duration of the block (429 if no memory)."""
        key = generation(record)
        version = (record.name, record.version)
        self._current[version] = key
        env, kind = await self._acquire(record, key)
        self._busy.add(env)
        self._busy_keys[env] = key
        self._kinds[env] = kind
        self._starts[kind] += 1
        try:
            yield env
        finally:
            self._busy.discard(env)
            self._busy_keys.pop(env, None)
            self._kinds.pop(env, None)
            retired = env in self._retired
            self._retired.discard(env)
            if env in self._provisioned:
                if retired:
                    self._lose(env)  # its owner starts a new one, as for one that died
                else:
                    self._provisioned_back(env, key)
            elif retired:
                self._stop_later(env)
            elif env.state is EnvState.READY and self._current.get(version) == key:
                self._idle.setdefault(key, []).append(env)
                self.budget.changed()  # evictable now: a waiting start may use its memory
            else:
                self._stop_later(env)

    async def provision(self, record: FunctionRecord, start: Starter) -> ExecutionEnvironment:
        """Start (with ``start``, which also initialises) a provisioned environment for
        ``record``; it holds its memory like any other (429 when the budget has no room)."""
        memory = record.config.memory_size
        evicting = self._make_room(memory) if memory <= self.budget.limit_mb else None
        if evicting is None:
            raise self.budget.refusal(memory)
        env = await self._start_counted(record, memory, evicting, start)
        self._provisioned.add(env)
        self._provisioned_idle.setdefault(generation(record), []).append(env)
        return env

    def unprovision(self, env: ExecutionEnvironment) -> None:
        """``env`` is provisioned no more: stopped now if idle, else once it is back."""
        if env not in self._provisioned:
            return
        self._provisioned.discard(env)
        if env in self._busy:
            self._retired.add(env)  # not back to the on-demand idle list
        for envs in self._provisioned_idle.values():
            if env in envs:
                envs.remove(env)
                self._stop_later(env)

    def start_kind(self, env: ExecutionEnvironment) -> StartKind:
        """How ``env`` (handed out now) started."""
        return self._kinds.get(env, StartKind.WARM)

    def reap(self) -> int:
        """Stop idle environments past their keep-alive; returns how many."""
        deadline = self._clock.monotonic() - self._keep_alive_s
        count = 0
        for key, envs in list(self._idle.items()):
            expired = [env for env in envs if env.idle_since <= deadline]
            for env in expired:
                envs.remove(env)
                self._stop_later(env)
            count += len(expired)
            if not envs:
                del self._idle[key]
        return count

    def retire(self, function_name: str, version: str | None = None) -> None:
        """Stop the idle environments of one version of a function, or of all of its
        versions (``None``): it changed or was deleted.

        Busy ones are stopped when they come back: the version has no current generation
        until it is invoked again.
        """

        def matches(name: str, ver: str) -> bool:
            return name == function_name and version in (None, ver)

        for current in [c for c in self._current if matches(*c)]:
            del self._current[current]
        self._retired.update(env for env, key in self._busy_keys.items() if matches(key[0], key[1]))
        for key in [k for k in self._idle if matches(k[0], k[1])]:
            for env in self._idle.pop(key):
                self._stop_later(env)

    async def close(self) -> None:
        """Stop every environment, idle and busy, and wait until they are gone."""
        for envs in self._idle.values():
            for env in envs:
                self._stop_later(env)
        self._idle.clear()
        for envs in self._provisioned_idle.values():
            for env in envs:
                self._stop_later(env)
        self._provisioned_idle.clear()
        self._provisioned.clear()
        for env in list(self._busy):
            self._stop_later(env)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    def statistics(self) -> PlacementStatistics:
        idle = sum(len(envs) for envs in self._idle.values())
        budget = self.budget
        return PlacementStatistics(
            idle=idle,
            busy=len(self._busy),
            started=self._started,
            stopped=self._stopped,
            reused=self._reused,
            evicted=self._evicted,
            memory_budget_mb=budget.limit_mb,
            memory_used_mb=budget.used_mb,
            memory_starting_mb=budget.starting_mb,
            memory_refusals=budget.refusals,
            starts={kind.value: self._starts[kind] for kind in StartKind},
            provisioned=len(self._provisioned),
            provisioned_idle=sum(len(envs) for envs in self._provisioned_idle.values()),
            by_function=self._by_function(),
        )

    def _by_function(self) -> dict[str, dict[str, int]]:
        """Live environments per function: idle (on demand), busy, provisioned (any state)."""
        counts: dict[str, Counter[str]] = {}
        for key, envs in self._idle.items():
            counts.setdefault(key[0], Counter())["idle"] += len(envs)
        for env, name in self._names.items():
            if env in self._busy:
                counts.setdefault(name, Counter())["busy"] += 1
            if env in self._provisioned:
                counts.setdefault(name, Counter())["provisioned"] += 1
        return {name: {k: c[k] for k in ("idle", "busy", "provisioned")}
                for name, c in sorted(counts.items())}  # fmt: skip

    async def _acquire(
        self, record: FunctionRecord, key: Generation
    ) -> tuple[ExecutionEnvironment, StartKind]:
        """A provisioned or idle environment of ``key``, or a new one once the budget has
        room for it (waiting, until the deadline, for one to come back or go away)."""
        memory, timeout = record.config.memory_size, record.config.timeout
        deadline = self._clock.monotonic() + self._memory_wait_s
        while True:
            env = await self._take_provisioned(key, timeout)
            if env is not None:
                return env, StartKind.PROVISIONED
            env = await self._take_idle(key, timeout)
            if env is not None:
                self._reused += 1
                return env, StartKind.WARM
            if memory > self.budget.limit_mb:  # can never fit: no wait
                raise self.budget.refusal(memory)
            evicting = self._make_room(memory)
            if evicting is not None:
                break
            if not await self.budget.wait(deadline):
                raise self.budget.refusal(memory)
        env = await self._start_counted(record, memory, evicting, self._start)
        return env, StartKind.PREWARMED if env.sandbox.prewarmed else StartKind.COLD

    async def _start_counted(
        self,
        record: FunctionRecord,
        memory: int,
        evicting: list[asyncio.Task[None]],
        start: Starter,
    ) -> ExecutionEnvironment:
        """Start an environment whose memory ``_make_room`` found room for."""
        self.budget.reserve(memory)
        try:
            if evicting:  # their memory is free once they are gone
                await asyncio.gather(*evicting, return_exceptions=True)
            env = await start(record)
        except BaseException:
            self.budget.release(memory, starting=True)
            raise
        self.budget.started(memory)
        self._memory[env] = memory
        self._names[env] = record.name
        self._started += 1
        return env

    async def _take_provisioned(
        self, key: Generation, timeout_s: float
    ) -> ExecutionEnvironment | None:
        envs = self._provisioned_idle.get(key)
        while envs:
            env = envs.pop()
            if await self._back_in_time(env, timeout_s, self._lose):
                return env
            self._lose(env)
        return None

    @staticmethod
    async def _back_in_time(
        env: ExecutionEnvironment,
        timeout_s: float,
        drop: Callable[[ExecutionEnvironment], object],
    ) -> bool:
        """Whether a taken idle environment is READY and back on ``/next`` in time. If the
        wait is cancelled, ``drop`` it: it is in no list any more, and would be lost."""
        try:
            return env.state is EnvState.READY and await env.wait_back(timeout_s)
        except BaseException:
            drop(env)
            raise

    def _provisioned_back(self, env: ExecutionEnvironment, key: Generation) -> None:
        if env.state is EnvState.READY:
            self._provisioned_idle.setdefault(key, []).append(env)
            self.budget.changed()  # a request of its version waiting for memory may take it
        else:
            self._lose(env)

    def _lose(self, env: ExecutionEnvironment) -> None:
        """A provisioned environment died: stop it and tell its owner."""
        self._provisioned.discard(env)
        self._stop_later(env)
        self.on_provisioned_lost(env)

    def _make_room(self, memory_mb: int) -> list[asyncio.Task[None]] | None:
        """Evict idle environments, least recently used first, until ``memory_mb`` fits.

        Returns their stop tasks, or None (and evicts nothing) when even evicting every
        idle environment would not make room.
        """
        budget = self.budget
        if budget.fits(memory_mb):
            return []
        idle = sorted(
            (env for envs in self._idle.values() for env in envs), key=lambda e: e.idle_since
        )
        free = budget.limit_mb - budget.used_mb
        victims: list[ExecutionEnvironment] = []
        for env in idle:
            if free >= memory_mb:
                break
            victims.append(env)
            free += self._memory.get(env, 0)
        if free < memory_mb:
            return None
        for env in victims:
            self._remove_idle(env)
        self._evicted += len(victims)
        return [self._stop_later(env) for env in victims]

    def _remove_idle(self, env: ExecutionEnvironment) -> None:
        for key, envs in list(self._idle.items()):
            if env in envs:
                envs.remove(env)
                if not envs:
                    del self._idle[key]
                return

    async def _take_idle(self, key: Generation, timeout_s: float) -> ExecutionEnvironment | None:
        """The most recently used idle environment whose runtime is back on ``/next``."""
        envs = self._idle.get(key)
        while envs:
            env = envs.pop()
            if await self._back_in_time(env, timeout_s, self._stop_later):
                return env
            self._stop_later(env)
        return None

    def _stop_later(self, env: ExecutionEnvironment) -> asyncio.Task[None]:
        """Stop ``env`` in the background; its memory leaves the budget now."""
        task = asyncio.get_running_loop().create_task(env.stop())
        self._stopped += 1
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        self._names.pop(env, None)
        memory = self._memory.pop(env, None)
        if memory is not None:
            self.budget.release(memory)
        return task
