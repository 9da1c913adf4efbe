"""Concurrency leases: reserved and unreserved limits, release on every path."""

from __future__ import annotations

import pytest

from ember.errors import TooManyRequestsException
from ember.invocation.counting import ACCOUNT_LIMIT, RESERVED_LIMIT, Counting


def test_a_reservation_caps_its_function() -> None:
    counting = Counting(1000)
    with counting.lease("f", reserved=1, unreserved_pool=999):
        with (
            pytest.raises(TooManyRequestsException) as excinfo,
            counting.lease("f", reserved=1, unreserved_pool=999),
        ):
            pass
        assert excinfo.value.reason == RESERVED_LIMIT
        with counting.lease("g", reserved=None, unreserved_pool=999):  # others unaffected
            pass
    assert counting.statistics().in_flight == 0


def test_reserved_zero_throttles_everything() -> None:
    with (
        pytest.raises(TooManyRequestsException) as excinfo,
        Counting(1000).lease("off", reserved=0, unreserved_pool=1000),
    ):
        pass
    assert excinfo.value.reason == RESERVED_LIMIT


def test_the_unreserved_pool_is_shared_by_functions_without_a_reservation() -> None:
    counting = Counting(3)
    with (
        counting.lease("a", reserved=None, unreserved_pool=2),
        counting.lease("b", reserved=None, unreserved_pool=2),
    ):
        with (
            pytest.raises(TooManyRequestsException) as excinfo,
            counting.lease("c", reserved=None, unreserved_pool=2),
        ):
            pass
        assert excinfo.value.reason == ACCOUNT_LIMIT
        with counting.lease("reserved", reserved=1, unreserved_pool=2):  # its own unit
            pass
    statistics = counting.statistics()
    assert (statistics.in_flight, statistics.unreserved_in_flight) == (0, 0)
    assert statistics.throttles == 1


def test_a_lease_is_released_when_the_invocation_fails() -> None:
    counting = Counting(10)
    with pytest.raises(RuntimeError), counting.lease("f", reserved=None, unreserved_pool=10):
        raise RuntimeError("the invocation blew up")
    assert counting.statistics().by_function == {}
