"""The async dispatcher on a manual clock: retry timing, back-off, event age, fairness,
destinations, and recovery of stored events (a real async.db, fake invoker and queues)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from ember.errors import TooManyRequestsException
from ember.invocation.async_delivery import Delivery
from ember.invocation.async_events import AsyncDispatcher, AsyncPolicy
from ember.invocation.async_schedule import FairSchedule
from ember.invocation.invoker import InvocationRequest, InvocationResult
from ember.model.arns import function_arn
from ember.model.async_events import AsyncEvent, EventInvokeConfig, default_config
from ember.model.functions import CodeInfo, FunctionConfig, FunctionRecord, State
from ember.store.async_queue import AsyncQueueStore
from ember.testing import ManualClock

Behaviour = Callable[[InvocationRequest], InvocationResult]


def record(name: str, **changes: Any) -> FunctionRecord:
    base = FunctionRecord(
        name=name,
        config=FunctionConfig(runtime="python3.11", handler="app.handler", role="r"),
        code=CodeInfo("sha", "b64", 1),
        revision_id="rev",
        last_modified=1.0,
        state=State.ACTIVE,
    )
    return replace(base, **changes)


def ok(request: InvocationRequest) -> InvocationResult:
    return InvocationResult(request.request_id or "", b'"done"', "application/json", "$LATEST")


def error(request: InvocationRequest) -> InvocationResult:
    body = json.dumps({"errorMessage": "boom", "errorType": "ValueError"}).encode()
    return InvocationResult(
        request.request_id or "", body, "application/json", "$LATEST", "Unhandled"
    )


def throttle(_request: InvocationRequest) -> InvocationResult:
    raise TooManyRequestsException("ReservedFunctionConcurrentInvocationLimitExceeded")


@dataclass
class FakeInvoker:
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    calls: list[tuple[str, str | None]] = field(default_factory=list)  # (function, request id)

    async def invoke(self, fn: FunctionRecord, request: InvocationRequest) -> InvocationResult:
        self.calls.append((fn.name, request.request_id))
        return self.behaviours[fn.name](request)

    def count(self, name: str) -> int:
        return sum(1 for fn, _ in self.calls if fn == name)


@dataclass
class FakeFunctions:
    records: dict[str, FunctionRecord] = field(default_factory=dict)

    def resolve(self, name: str, qualifier: str | None) -> FunctionRecord | None:
        return self.records.get(name)

    def arn(self, name: str, qualifier: str | None = None) -> str:
        return function_arn("us-east-1", "000000000000", name, qualifier)


@dataclass
class FakeSink:
    sent: list[tuple[str, dict[str, Any], dict[str, tuple[str, str]]]] = field(default_factory=list)

    async def send(self, queue_arn: str, body: str, attributes: dict[str, tuple[str, str]]) -> bool:
        self.sent.append((queue_arn, json.loads(body), attributes))
        return True

    def to(self, queue_arn: str) -> list[dict[str, Any]]:
        return [body for arn, body, _ in self.sent if arn == queue_arn]


FAILURES = "arn:aws:sqs:us-east-1:000000000000:failures"
SUCCESSES = "arn:aws:sqs:us-east-1:000000000000:successes"


@dataclass
class Rig:
    clock: ManualClock
    store: AsyncQueueStore
    invoker: FakeInvoker
    functions: FakeFunctions
    sink: FakeSink
    configs: dict[str, EventInvokeConfig]
    dispatcher: AsyncDispatcher

    def dispatcher_again(self, policy: AsyncPolicy | None = None) -> AsyncDispatcher:
        def lookup(name: str, qualifier: str) -> EventInvokeConfig:
            return self.configs.get(name) or default_config(name, qualifier)

        delivery = Delivery(
            self.store, self.sink, self.clock, self.functions.arn, "us-east-1", "000000000000"
        )
        return AsyncDispatcher(
            self.store,
            self.invoker,
            self.functions,
            lookup,
            delivery,
            self.clock,
            policy or AsyncPolicy(workers=4, function_in_flight=2),
        )

    def configure(self, name: str, **values: Any) -> None:
        defaults = {"on_success": SUCCESSES, "on_failure": FAILURES}
        self.configs[name] = EventInvokeConfig(name, "$LATEST", 0.0, **{**defaults, **values})

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.dispatcher.idle()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = ManualClock()
    store = await AsyncQueueStore.open(tmp_path / "async.db")
    rig = Rig(clock, store, FakeInvoker(), FakeFunctions(), FakeSink(), {}, None)  # type: ignore[arg-type]
    rig.dispatcher = rig.dispatcher_again()
    await rig.dispatcher.load()
    yield rig
    await rig.dispatcher.close()
    await store.close()


REQUEST_IDS = itertools.count()


async def accept(rig: Rig, name: str, payload: Any = None) -> str:
    request_id = f"{name}-{next(REQUEST_IDS)}"
    await rig.dispatcher.accept(name, None, json.dumps(payload or {}).encode(), request_id)
    await rig.dispatcher.idle()
    return request_id


def add_function(rig: Rig, name: str, behaviour: Behaviour, **changes: Any) -> None:
    rig.functions.records[name] = record(name, **changes)
    rig.invoker.behaviours[name] = behaviour
    rig.configure(name)


async def test_function_errors_retry_after_one_then_two_minutes(rig: Rig) -> None:
    add_function(rig, "fails", error)
    request_id = await accept(rig, "fails", {"a": 1})
    assert rig.invoker.calls == [("fails", request_id)]
    await rig.advance(59.9)
    assert rig.invoker.count("fails") == 1
    await rig.advance(0.1)
    assert rig.invoker.count("fails") == 2
    await rig.advance(119.9)
    assert rig.invoker.count("fails") == 2
    await rig.advance(0.1)
    assert rig.invoker.calls == [("fails", request_id)] * 3
    (failure,) = rig.sink.to(FAILURES)
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    assert failure["requestPayload"] == {"a": 1}
    assert failure["responsePayload"]["errorMessage"] == "boom"
    assert await rig.store.load_events() == []


@pytest.mark.parametrize("retries", [0, 1, 2])
async def test_maximum_retry_attempts_bounds_the_invokes(rig: Rig, retries: int) -> None:
    add_function(rig, "fails", error)
    rig.configure("fails", max_retry_attempts=retries)
    await accept(rig, "fails")
    await rig.advance(60)
    await rig.advance(120)
    assert rig.invoker.count("fails") == retries + 1
    (failure,) = rig.sink.to(FAILURES)
    assert failure["requestContext"]["approximateInvokeCount"] == retries + 1


async def test_the_event_age_limit_cuts_the_retry_wait_short(rig: Rig) -> None:
    add_function(rig, "fails", error)
    rig.configure("fails", max_event_age_s=90)
    await accept(rig, "fails")
    await rig.advance(60)  # the first retry, at 1 min
    assert rig.invoker.count("fails") == 2
    await rig.advance(29.9)
    assert rig.sink.to(FAILURES) == []
    await rig.advance(0.1)  # 90 s old: the 2nd retry (due at 3 min) will never run
    (failure,) = rig.sink.to(FAILURES)
    assert failure["requestContext"]["condition"] == "EventAgeExceeded"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert rig.invoker.count("fails") == 2


async def test_throttles_back_off_exponentially_and_are_not_retries(rig: Rig) -> None:
    throttles = iter(range(3))

    def throttled_thrice(request: InvocationRequest) -> InvocationResult:
        if next(throttles, None) is not None:
            throttle(request)
        return ok(request)

    add_function(rig, "busy", throttled_thrice)
    await accept(rig, "busy")
    for wait in (1, 2, 4):  # 1 s, doubling
        assert rig.sink.to(SUCCESSES) == []
        await rig.advance(wait - 0.01)
        calls = rig.invoker.count("busy")
        await rig.advance(0.01)
        assert rig.invoker.count("busy") == calls + 1
    (success,) = rig.sink.to(SUCCESSES)
    assert success["requestContext"]["approximateInvokeCount"] == 1


async def test_back_off_stops_growing_at_five_minutes(rig: Rig) -> None:
    add_function(rig, "busy", throttle)
    await accept(rig, "busy")
    for wait in (1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300):
        await rig.advance(wait)
    assert rig.invoker.count("busy") == 12


async def test_throttled_until_too_old_then_event_age_exceeded(rig: Rig) -> None:
    add_function(rig, "busy", throttle)
    rig.configure("busy", max_event_age_s=60)
    await accept(rig, "busy", {"x": 1})
    await rig.advance(60)
    (failure,) = rig.sink.to(FAILURES)
    assert failure["requestContext"]["condition"] == "EventAgeExceeded"
    assert failure["requestContext"]["approximateInvokeCount"] == 0
    assert "responseContext" not in failure


async def test_a_throttled_backlog_does_not_delay_another_function(rig: Rig) -> None:
    add_function(rig, "throttled", throttle)
    for n in range(50):
        await accept(rig, "throttled", {"n": n})
    add_function(rig, "free", ok)
    for n in range(5):
        await accept(rig, "free", {"n": n})
    assert len(rig.sink.to(SUCCESSES)) == 5  # at once, without any time passing
    depths = rig.dispatcher.statistics()["functions"]
    assert depths == {"throttled": {"depth": 50, "oldest_event_age_s": 0.0}}
    assert rig.invoker.count("throttled") == 1  # parked after its first 429


async def test_zero_reserved_concurrency_fails_without_invoking(rig: Rig) -> None:
    add_function(rig, "closed", ok, reserved_concurrency=0)
    request_id = await accept(rig, "closed", {"z": 1})
    assert rig.invoker.calls == []
    (failure,) = rig.sink.to(FAILURES)
    assert failure["requestContext"] == {
        "requestId": request_id,
        "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:closed:$LATEST",
        "condition": "ZeroReservedConcurrency",
        "approximateInvokeCount": 0,
    }
    assert set(failure) == {"version", "timestamp", "requestContext", "requestPayload"}


async def test_dead_letter_queue_gets_the_event_and_lambda_attributes(rig: Rig) -> None:
    dlq = "arn:aws:sqs:us-east-1:000000000000:dlq"
    add_function(rig, "fails", error)
    rig.functions.records["fails"] = replace(
        rig.functions.records["fails"],
        config=replace(rig.functions.records["fails"].config, dead_letter_target=dlq),
    )
    rig.configure("fails", max_retry_attempts=0, on_failure=None)
    request_id = await accept(rig, "fails", {"keep": 1})
    ((arn, body, attributes),) = rig.sink.sent
    assert (arn, body) == (dlq, {"keep": 1})
    assert attributes == {
        "RequestID": ("String", request_id),
        "ErrorCode": ("Number", "200"),
        "ErrorMessage": ("String", "boom"),
    }


async def test_a_function_destination_becomes_an_async_event_of_that_function(rig: Rig) -> None:
    add_function(rig, "source", ok)
    add_function(rig, "target", ok)
    rig.configure("source", on_success="arn:aws:lambda:us-east-1:000000000000:function:target")
    request_id = await accept(rig, "source", {"s": 1})
    assert rig.invoker.count("target") == 1
    (success,) = rig.sink.to(SUCCESSES)  # the target's own success record
    delivered = success["requestPayload"]
    assert delivered["requestContext"]["requestId"] == request_id
    assert delivered["requestContext"]["condition"] == "Success"


async def test_events_of_a_deleted_function_are_discarded(rig: Rig) -> None:
    add_function(rig, "fails", error)
    await accept(rig, "fails")
    del rig.functions.records["fails"]
    await rig.advance(60)
    assert rig.sink.sent == []
    assert await rig.store.load_events() == []


async def test_events_in_flight_at_a_stop_run_again_at_the_next_start(rig: Rig) -> None:
    release = asyncio.Event()
    add_function(rig, "stuck", ok)
    stuck_calls: list[str] = []

    async def hang(fn: FunctionRecord, request: InvocationRequest) -> InvocationResult:
        stuck_calls.append(request.request_id or "")
        await release.wait()
        return ok(request)

    rig.invoker.invoke = hang  # type: ignore[method-assign]
    ids = [f"id-{n}" for n in range(3)]
    for request_id in ids:
        await rig.dispatcher.accept("stuck", None, b"{}", request_id)
    await asyncio.sleep(0)  # let the runs start and hang: two, the function's cap here
    assert sorted(stuck_calls) == ids[:2]
    await rig.dispatcher.close()  # like a crash: nothing was delivered
    assert [e.request_id for e in await rig.store.load_events()] == ids
    rig.invoker = FakeInvoker({"stuck": ok})
    rig.dispatcher = rig.dispatcher_again()
    await rig.dispatcher.load()
    await rig.dispatcher.idle()
    assert sorted(rid or "" for _, rid in rig.invoker.calls) == ids  # same request ids again
    assert len(rig.sink.to(SUCCESSES)) == 3
    assert await rig.store.load_events() == []


def _event(name: str, n: int) -> AsyncEvent:
    return AsyncEvent(f"{name}{n}", name, None, b"{}", 0.0, 0.0)


def test_schedule_takes_turns_between_functions() -> None:
    schedule = FairSchedule(lambda _name: 100)
    for n in range(6):
        schedule.add(_event("a", n), 0.0)
    for n in range(2):
        schedule.add(_event("b", n), 0.0)
    order = []
    while (event := schedule.take()) is not None:
        order.append(event.request_id)
    assert order == ["a0", "b0", "a1", "b1", "a2", "a3", "a4", "a5"]


def test_schedule_caps_a_function_and_skips_a_parked_one() -> None:
    schedule = FairSchedule(lambda name: 1 if name == "a" else 100)
    for n in range(3):
        schedule.add(_event("a", n), 0.0)
        schedule.add(_event("b", n), 0.0)
    schedule.park("b", until=10.0)
    first = schedule.take()
    assert first is not None
    assert first.request_id == "a0"
    assert schedule.take() is None  # a at its cap, b parked
    schedule.finish(first)
    second = schedule.take()
    assert second is not None
    assert second.request_id == "a1"
    schedule.release(10.0)
    taken = schedule.take()
    assert taken is not None
    assert taken.request_id == "b0"
    assert schedule.next_wake() is None
