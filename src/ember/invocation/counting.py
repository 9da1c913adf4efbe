"""Concurrency leases: how many invocations may run at once, as Lambda counts them.

Concurrency is the number of invocations in flight. The account has a limit (default
1,000); a function with *reserved* concurrency owns that many of it, exclusively, and
never exceeds it (0 = throttled entirely); every other function shares what is left, the
*unreserved* pool. An invocation takes a lease before it gets an environment and gives it
back when it ends, however it ends: a response, an error, a timeout, a crash, or the
caller going away (the lease is a plain context manager, released in ``finally``).

Over a limit, a synchronous invoke fails at once with 429 ``TooManyRequestsException``:
``ReservedFunctionConcurrentInvocationLimitExceeded`` for a function over its reservation,
``ConcurrentInvocationLimitExceeded`` when the unreserved pool is full.

Provisioned concurrency counts as on Lambda: inside a function's reservation when it has
one (the reservation caps everything), else carved out of the unreserved pool for that
function (the caller's ``unreserved_pool`` is already less it): a function without a
reservation runs up to ``provisioned`` invocations on its own units, and only the ones
beyond spill over into the shared unreserved pool.

Scope: one per server. Invariants: ``in_flight[name]`` equals the leases of ``name`` not yet
released; ``unreserved_in_flight`` equals those of functions without a reservation that
hold an unreserved unit; ``provisioned_in_flight[name]`` those that hold a provisioned one.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from ember.errors import TooManyRequestsException

DEFAULT_ACCOUNT_LIMIT = 1000  # Lambda's default per account and region
RESERVED_LIMIT = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_LIMIT = "ConcurrentInvocationLimitExceeded"


@dataclass(frozen=True, slots=True)
class CountingStatistics:
    in_flight: int
    unreserved_in_flight: int
    throttles: int
    by_function: dict[str, int]
    provisioned_in_flight: int = 0


class Counting:
    def __init__(self, account_limit: int) -> None:
        self.account_limit = account_limit
        self._in_flight: Counter[str] = Counter()  # function name => leases held
        self._unreserved_in_flight = 0
        self._provisioned_in_flight: Counter[str] = Counter()
        self._throttles = 0

    @contextlib.contextmanager
    def lease(
        self, name: str, reserved: int | None, unreserved_pool: int, provisioned: int = 0
    ) -> Iterator[None]:
        """Hold one unit of concurrency for ``name`` for the duration of the block.

        ``reserved`` is the function's reservation (None: it draws on its ``provisioned``
        units first, then on the unreserved pool of ``unreserved_pool`` units, the account
        limit less every reservation and every unreserved function's provisioned units).
        """
        own = reserved is None and self._provisioned_in_flight[name] < provisioned
        if not own:
            self._check(name, reserved, unreserved_pool)
        shared = reserved is None and not own
        self._in_flight[name] += 1
        self._provisioned_in_flight[name] += own
        self._unreserved_in_flight += shared
        try:
            yield
        finally:
            self._in_flight[name] -= 1
            if not self._in_flight[name]:
                del self._in_flight[name]
            self._provisioned_in_flight[name] -= own
            if not self._provisioned_in_flight[name]:
                del self._provisioned_in_flight[name]
            self._unreserved_in_flight -= shared

    def _check(self, name: str, reserved: int | None, unreserved_pool: int) -> None:
        if reserved is not None:
            if self._in_flight[name] >= reserved:
                self._throttles += 1
                raise TooManyRequestsException(RESERVED_LIMIT)
        elif self._unreserved_in_flight >= unreserved_pool:
            self._throttles += 1
            raise TooManyRequestsException(ACCOUNT_LIMIT)

    def in_flight(self, name: str) -> int:
        return self._in_flight[name]

    def statistics(self) -> CountingStatistics:
        return CountingStatistics(
            in_flight=sum(self._in_flight.values()),
            unreserved_in_flight=self._unreserved_in_flight,
            throttles=self._throttles,
            by_function=dict(self._in_flight),
            provisioned_in_flight=sum(self._provisioned_in_flight.values()),
        )
