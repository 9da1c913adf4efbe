"""Pollers against a real queue service, a scripted function and a manual clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from ember.events.caller import CallOutcome
from ember.events.mapping_config import MappingConfig
from ember.events.poller import MappingPoller
from ember.events.queues import QueueService
from ember.testing import ManualClock
from tests.unit.events.conftest import text, until

Script = Callable[[list[dict[str, Any]]], CallOutcome]


class ScriptedFunction:
    """A ``FunctionCaller`` whose answers come from ``script``; may hold calls open."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.batches: list[list[str]] = []
        self.running = 0
        self.peak = 0
        self.gate: asyncio.Event | None = None

    async def call(self, function_arn: str, payload: bytes) -> CallOutcome:
        records = json.loads(payload)["Records"]
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            self.batches.append([r["body"] for r in records])
            return self.script(records)
        finally:
            self.running -= 1

    @property
    def bodies(self) -> list[str]:
        return [body for batch in self.batches for body in batch]


def ok(_records: list[dict[str, Any]]) -> CallOutcome:
    return CallOutcome("ok", b"null")


MAPPING = MappingConfig(
    uuid="m-1",
    mapping_arn="arn:aws:lambda:us-east-1:000000000000:event-source-mapping:m-1",
    function_name="f",
    function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
    event_source_arn="arn:aws:sqs:us-east-1:000000000000:q",
    queue="q",
    state="Enabled",
)


@pytest.fixture
async def queue(queues: QueueService) -> QueueService:
    await queues.create("q", {"VisibilityTimeout": "30"})
    return queues


@pytest.fixture
async def run(
    queue: QueueService, clock: ManualClock
) -> AsyncIterator[Callable[[ScriptedFunction, MappingConfig], MappingPoller]]:
    started: list[MappingPoller] = []

    def start(function: ScriptedFunction, mapping: MappingConfig = MAPPING) -> MappingPoller:
        poller = MappingPoller(mapping, queue, function, clock)
        poller.start()
        started.append(poller)
        return poller

    yield start
    for poller in started:
        await poller.stop()


def drained(queues: QueueService) -> Callable[[], bool]:
    return lambda: queues.counts("q") == {"visible": 0, "in_flight": 0, "delayed": 0}


async def test_success_deletes_every_message_once(queue: QueueService, run: Any) -> None:
    await queue.send("q", [text(f"m{i}") for i in range(25)])
    function = ScriptedFunction(ok)
    run(function)
    await until(drained(queue))
    assert sorted(function.bodies) == sorted(f"m{i}" for i in range(25))
    assert all(len(batch) <= 10 for batch in function.batches)


async def test_a_function_error_leaves_the_batch_for_the_visibility_timeout(
    queue: QueueService, clock: ManualClock, run: Any
) -> None:
    answers = iter([CallOutcome("error", detail="Unhandled")])
    function = ScriptedFunction(lambda records: next(answers, CallOutcome("ok")))
    await queue.send("q", [text("a"), text("b")])
    poller = run(function)
    await until(lambda: poller.stats.function_errors == 1)
    assert queue.counts("q")["in_flight"] == 2
    assert poller.last_result == "PROBLEM: Function call failed"
    clock.advance(30)
    await until(drained(queue))
    assert sorted(function.bodies) == ["a", "a", "b", "b"]


async def test_report_batch_item_failures_keeps_only_reported_ids(
    queue: QueueService, clock: ManualClock, run: Any
) -> None:
    def fail_odd(records: list[dict[str, Any]]) -> CallOutcome:
        failures = [{"itemIdentifier": r["messageId"]} for r in records if int(r["body"]) % 2]
        return CallOutcome("ok", json.dumps({"batchItemFailures": failures}).encode())

    await queue.send("q", [text(str(i)) for i in range(6)])
    function = ScriptedFunction(fail_odd)
    mapping = replace(MAPPING, response_types=("ReportBatchItemFailures",))
    poller = run(function, mapping)
    await until(lambda: poller.stats.deleted == 3)
    assert queue.counts("q") == {"visible": 0, "in_flight": 3, "delayed": 0}
    assert poller.stats.kept == 3


async def test_a_malformed_failure_report_keeps_the_whole_batch(
    queue: QueueService, run: Any
) -> None:
    function = ScriptedFunction(lambda _r: CallOutcome("ok", b'{"batchItemFailures": [{}]}'))
    await queue.send("q", [text("a"), text("b")])
    poller = run(function, replace(MAPPING, response_types=("ReportBatchItemFailures",)))
    await until(lambda: poller.stats.kept == 2)
    assert poller.stats.deleted == 0
    assert queue.counts("q")["in_flight"] == 2


async def test_a_throttle_retries_the_same_batch_after_a_back_off(
    queue: QueueService, clock: ManualClock, run: Any
) -> None:
    answers = iter([CallOutcome("retry"), CallOutcome("retry")])
    function = ScriptedFunction(lambda _r: next(answers, CallOutcome("ok")))
    await queue.send("q", [text("a")])
    poller = run(function)
    await until(lambda: poller.stats.retries == 1)
    clock.advance(0.1)
    await until(lambda: poller.stats.retries == 2)
    clock.advance(0.2)
    await until(drained(queue))
    assert function.bodies == ["a", "a", "a"]
    assert poller.stats.function_errors == 0


async def test_pollers_scale_with_backlog_up_to_maximum_concurrency(
    queue: QueueService, run: Any
) -> None:
    await queue.send("q", [text(f"m{i}") for i in range(100)])
    function = ScriptedFunction(ok)
    function.gate = asyncio.Event()
    poller = run(function, replace(MAPPING, max_concurrency=3))
    await until(lambda: function.running == 3)
    function.gate.set()
    await until(drained(queue))
    assert function.peak == 3
    assert poller.stats.peak_workers == 3
    assert len(function.bodies) == 100


async def test_the_batching_window_gathers_until_it_ends(
    queue: QueueService, clock: ManualClock, run: Any
) -> None:
    function = ScriptedFunction(ok)
    run(function, replace(MAPPING, batch_size=50, window_s=5))
    await queue.send("q", [text("a")])
    await until(lambda: queue.counts("q")["in_flight"] == 1)
    await queue.send("q", [text("b"), text("c")])
    await until(lambda: queue.counts("q")["in_flight"] == 3)
    assert function.batches == []
    clock.advance(5)
    await until(lambda: len(function.batches) == 1)
    assert sorted(function.batches[0]) == ["a", "b", "c"]


async def test_a_stopped_poller_takes_nothing_more(queue: QueueService, run: Any) -> None:
    function = ScriptedFunction(ok)
    poller = run(function)
    await queue.send("q", [text("before")])
    await until(drained(queue))
    await poller.stop()
    assert poller.statistics()["workers"] == 0
    await queue.send("q", [text("after")])
    assert queue.counts("q")["visible"] == 1
    assert function.bodies == ["before"]


async def test_a_worker_survives_an_unexpected_receive_failure(
    queue: QueueService, clock: ManualClock, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_receive = queue.receive
    failures = [RuntimeError("disk on fire")]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_receive(*args, **kwargs)

    monkeypatch.setattr(queue, "receive", flaky)
    await queue.send("q", [text("survivor")])
    function = ScriptedFunction(ok)
    poller = run(function)
    await until(lambda: not failures)
    assert poller.statistics()["workers"] == 1
    clock.advance(1)  # the error back-off
    await until(drained(queue))
    assert function.bodies == ["survivor"]
