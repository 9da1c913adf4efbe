"""Placement: which execution environment serves an invocation.

A warm idle environment of the same function generation is reused (most recently used
first, so the others can age out); otherwise a new one is launched. Idle environments
are stopped after the keep-alive; a changed function (new code or configuration) never
reuses an environment of its old generation. A generation belongs to one version:
``$LATEST`` and version 1 never share an environment, even with the same code (an alias
runs in the environments of the versions it routes to).

Scope: one per server. Invariants: an environment is in at most one idle list, and never
in one while BUSY; two concurrent invocations never get the same environment; every
environment handed out comes back through the context manager (released or stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from ember.clock import Clock
from ember.invocation.environment import EnvState, ExecutionEnvironment
from ember.model.functions import FunctionRecord

Starter = Callable[[FunctionRecord], Awaitable[ExecutionEnvironment]]
Generation = tuple[str, str, str, float]


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


class Placement:
    def __init__(self, start: Starter, clock: Clock, keep_alive_s: float) -> None:
        self._start = start
        self._clock = clock
        self._keep_alive_s = keep_alive_s
        # generation => idle environments, most recently used last
        self._idle: dict[Generation, list[ExecutionEnvironment]] = {}
        self._busy: set[ExecutionEnvironment] = set()
        # (function, version) => the generation last asked for; older ones are not kept idle
        self._current: dict[tuple[str, str], Generation] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._started = self._stopped = self._reused = 0

    @contextlib.asynccontextmanager
    async def environment(self, record: FunctionRecord) -> AsyncIterator[ExecutionEnvironment]:
        """An environment for ``record`` for the duration of the block."""
        key = generation(record)
        version = (record.name, record.version)
        self._current[version] = key
        env = await self._take_idle(key, record.config.timeout)
        if env is None:
            env = await self._start(record)
            self._started += 1
        else:
            self._reused += 1
        self._busy.add(env)
        try:
            yield env
        finally:
            self._busy.discard(env)
            if env.state is EnvState.READY and self._current.get(version) == key:
                self._idle.setdefault(key, []).append(env)
            else:
                self._stop_later(env)

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
        for key in [k for k in self._idle if matches(k[0], k[1])]:
            for env in self._idle.pop(key):
                self._stop_later(env)

    async def close(self) -> None:
        """Stop every environment, idle and busy, and wait until they are gone."""
        for envs in self._idle.values():
            for env in envs:
                self._stop_later(env)
        self._idle.clear()
        for env in list(self._busy):
            self._stop_later(env)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    def statistics(self) -> PlacementStatistics:
        idle = sum(len(envs) for envs in self._idle.values())
        return PlacementStatistics(
            idle, len(self._busy), self._started, self._stopped, self._reused
        )

    async def _take_idle(self, key: Generation, timeout_s: float) -> ExecutionEnvironment | None:
        """The most recently used idle environment whose runtime is back on ``/next``."""
        envs = self._idle.get(key)
        while envs:
            env = envs.pop()
            if env.state is EnvState.READY and await env.wait_back(timeout_s):
                return env
            self._stop_later(env)
        return None

    def _stop_later(self, env: ExecutionEnvironment) -> None:
        task = asyncio.get_running_loop().create_task(env.stop())
        self._stopped += 1
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
