"""Placement: which execution environment serves an invocation.

A warm idle environment of the same function generation is reused (most recently used
first, so the others can age out); otherwise a new one is launched. Idle environments
are stopped after the keep-alive; a changed function (new code or configuration) never
reuses an environment of its old generation.

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


def generation(record: FunctionRecord) -> tuple[str, str, float]:
    """Environments are interchangeable only within one code + configuration."""
    return (record.name, record.code.sha256_hex, record.last_modified)


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
        self._idle: dict[tuple[str, str, float], list[ExecutionEnvironment]] = {}
        self._busy: set[ExecutionEnvironment] = set()
        # function name => the generation last asked for; older ones are not kept idle
        self._current: dict[str, tuple[str, str, float]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._started = self._stopped = self._reused = 0

    @contextlib.asynccontextmanager
    async def environment(self, record: FunctionRecord) -> AsyncIterator[ExecutionEnvironment]:
        """An environment for ``record`` for the duration of the block."""
        key = generation(record)
        self._current[record.name] = key
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
            if env.state is EnvState.READY and self._current.get(record.name) == key:
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

    def retire(self, function_name: str) -> None:
        """Stop the idle environments of a function (it changed or was deleted).

        Busy ones are stopped when they come back: the function has no current generation
        until it is invoked again.
        """
        self._current.pop(function_name, None)
        for key in [k for k in self._idle if k[0] == function_name]:
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

    async def _take_idle(
        self, key: tuple[str, str, float], timeout_s: float
    ) -> ExecutionEnvironment | None:
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
