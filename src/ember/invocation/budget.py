"""The host memory budget: how much memory the live execution environments may hold.

Every environment counts with its function's ``MemorySize`` (the limit its sandbox gets)
from the moment placement decides to start it until placement stops it: environments
being created count as well as idle and busy ones. Placement evicts idle environments to
make room; when even that cannot, a request waits here (bounded, on the injected clock)
for memory to come free, and is then refused with ``refusal()``.

Why 429 ``TooManyRequestsException`` (Reason ``ConcurrentInvocationLimitExceeded``): the
host's memory is, in effect, its concurrency limit; that is the error a Lambda client
already expects when no more environments can run, SDKs retry it with back-off, and the
async and event-source paths treat it as a throttle (retry later) rather than a failure.
The message names the budget, so an operator sees which limit was hit.

Scope: one per placement. Invariants: ``used_mb`` = the sum of the reservations not yet
released (never above ``limit_mb``); ``starting_mb`` is the part of it whose
environments are still being created; every waiter is woken by ``changed()`` or by its
deadline, exactly once.
"""

from __future__ import annotations

import asyncio

from ember.clock import Clock
from ember.errors import TooManyRequestsException
from ember.invocation.counting import ACCOUNT_LIMIT

UNBOUNDED_MB = 1 << 40  # a budget that never binds (services built without one)


class MemoryBudget:
    def __init__(self, limit_mb: int, clock: Clock) -> None:
        self.limit_mb = limit_mb
        self._clock = clock
        self.used_mb = 0
        self.starting_mb = 0
        self.refusals = 0
        self._waiters: list[asyncio.Future[bool]] = []

    def fits(self, memory_mb: int) -> bool:
        return self.used_mb + memory_mb <= self.limit_mb

    def reserve(self, memory_mb: int) -> None:
        """Count an environment about to be created (call only when it ``fits``)."""
        self.used_mb += memory_mb
        self.starting_mb += memory_mb

    def started(self, memory_mb: int) -> None:
        """The environment reserved with ``reserve`` exists now (it still counts)."""
        self.starting_mb -= memory_mb

    def release(self, memory_mb: int, *, starting: bool = False) -> None:
        """An environment is gone (or its start failed: ``starting``)."""
        self.used_mb -= memory_mb
        if starting:
            self.starting_mb -= memory_mb
        self.changed()

    def changed(self) -> None:
        """Memory came free or an environment became idle (evictable): wake the waiters."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    async def wait(self, deadline: float) -> bool:
        """Wait for ``changed()``: True if it came before ``deadline`` (monotonic), else False."""
        remaining = deadline - self._clock.monotonic()
        if remaining <= 0:
            return False
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        timer = self._clock.call_later(remaining, lambda: _settle(waiter, False))
        try:
            return await waiter
        finally:
            timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def refusal(self, memory_mb: int) -> TooManyRequestsException:
        """The error for a request that found no room (counted)."""
        self.refusals += 1
        return TooManyRequestsException(
            ACCOUNT_LIMIT,
            f"Rate Exceeded. The host memory budget ({self.limit_mb} MB, "
            f"EMBER_MEMORY_BUDGET_MB) has no room for another {memory_mb} MB execution "
            f"environment ({self.used_mb} MB in use).",
        )


def _settle(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)
