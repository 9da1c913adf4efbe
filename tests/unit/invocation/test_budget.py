"""The host memory budget: LRU eviction, waiting, refusal, and counters after failures.

A budget of 3 x 128 MB; every function here has 128 MB.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from ember.agent.protocol import Frame, Kind, encode
from ember.errors import SandboxError, TooManyRequestsException
from ember.invocation.budget import MemoryBudget
from ember.invocation.counting import ACCOUNT_LIMIT
from ember.invocation.invoker import InvocationRequest, InvocationResult, Invoker
from ember.invocation.placement import Placement
from ember.model.functions import FunctionRecord
from ember.testing import FakeSandbox, echo_agent
from tests.unit.invocation.conftest import Plane

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"
WAIT_S = 5.0


@dataclass
class Tight:
    plane: Plane
    placement: Placement
    invoker: Invoker
    held: list[str]  # request ids of the invokes the agents have not answered yet

    def function(self, name: str, memory: int = 128, timeout: int = 60) -> FunctionRecord:
        record = self.plane.record
        config = replace(record.config, memory_size=memory, timeout=timeout)
        return replace(record, name=name, config=config)

    async def invoke(self, record: FunctionRecord) -> InvocationResult:
        return await self.invoker.invoke(record, InvocationRequest(b"{}", ARN))

    def answer(self, index: int = 0) -> None:
        """Let the ``index``-th held invoke finish (response, then back on /next)."""
        request_id = self.held.pop(index)
        env = next(e for e in self.placement._busy if e._pending_id == request_id)
        meta = {"id": request_id, "content_type": "application/json"}
        sandbox = env.sandbox
        assert isinstance(sandbox, FakeSandbox)
        writer = sandbox._agent_writer
        writer.writelines(encode(Kind.RESPONSE, meta, b"{}"))
        writer.writelines(encode(Kind.NEXT, {}, b""))


@pytest.fixture
async def tight(plane: Plane) -> AsyncIterator[Tight]:
    budget = MemoryBudget(3 * 128, plane.clock)
    placement = Placement(
        lambda r: invoker.start_environment(r),  # noqa: PLW0108
        plane.clock,
        60,
        budget,
        memory_wait_s=WAIT_S,
    )
    invoker = Invoker(plane.launcher, placement, plane.clock, init_timeout_s=10)
    await plane.launcher._blobs.unpacked(plane.record.code.sha256_hex)  # no thread later
    made = Tight(plane, placement, invoker, [])
    yield made
    await placement.close()


def holding(tight: Tight) -> None:
    """Agents answer init at once but hold every invoke until ``tight.answer``."""

    def script(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        if frame.kind is Kind.START:
            return [(Kind.INIT_DONE, {"init_ms": 1.0}, b"")]
        tight.held.append(str(frame.meta["id"]))
        return []

    tight.plane.backend.script = script


async def until(condition: Any) -> None:
    """Let the loop run until ``condition()`` holds (no clock involved)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_a_new_environment_evicts_the_least_recently_used_idle_one(tight: Tight) -> None:
    for name in ("a", "b", "c"):
        await tight.invoke(tight.function(name))
        tight.plane.clock.advance(1)
    sandboxes = dict(zip("abc", tight.plane.backend.started, strict=True))
    await tight.invoke(tight.function("a"))  # a is now the most recently used
    tight.plane.clock.advance(1)
    await tight.invoke(tight.function("d"))  # no room: b (least recently used) goes
    await until(lambda: sandboxes["b"].killed)
    assert not sandboxes["a"].killed
    assert not sandboxes["c"].killed
    await tight.invoke(tight.function("e"))  # then c
    await until(lambda: sandboxes["c"].killed)
    assert not sandboxes["a"].killed
    statistics = tight.placement.statistics()
    assert (statistics.evicted, statistics.idle, statistics.memory_used_mb) == (2, 3, 384)


async def test_an_older_generation_of_the_same_function_is_evictable(tight: Tight) -> None:
    await tight.invoke(tight.function("a"))
    await tight.invoke(tight.function("b"))
    await tight.invoke(tight.function("c"))
    changed = replace(tight.function("a"), last_modified=2.0)
    await tight.invoke(changed)  # a's old environment is idle, oldest: it goes
    await until(lambda: tight.plane.backend.started[0].killed)
    assert tight.placement.statistics().evicted == 1


async def test_a_request_waits_for_a_busy_environment_then_reuses_it(tight: Tight) -> None:
    holding(tight)
    busy = [asyncio.create_task(tight.invoke(tight.function("a"))) for _ in range(3)]
    await until(lambda: len(tight.held) == 3)
    waiting = asyncio.create_task(tight.invoke(tight.function("a")))
    await until(lambda: tight.placement.budget._waiters)
    assert tight.placement.statistics().memory_used_mb == 384
    tight.answer()  # one comes back idle: the waiter gets it (warm), no new environment
    await until(lambda: len(tight.held) == 1 + 2)
    tight.answer(2)
    result = await waiting
    assert result.function_error is None
    assert len(tight.plane.backend.started) == 3
    for _ in range(2):
        tight.answer()
    await asyncio.gather(*busy)
    assert tight.placement.statistics().starts == {
        "cold": 3, "prewarmed": 0, "warm": 1, "provisioned": 0,
    }  # fmt: skip


async def test_a_waiting_request_evicts_an_environment_that_became_idle(tight: Tight) -> None:
    holding(tight)
    busy = [asyncio.create_task(tight.invoke(tight.function(n))) for n in "abc"]
    await until(lambda: len(tight.held) == 3)
    waiting = asyncio.create_task(tight.invoke(tight.function("d")))
    await until(lambda: tight.placement.budget._waiters)
    tight.answer(0)  # a's environment goes idle; d evicts it
    await until(lambda: len(tight.held) == 3)
    assert tight.plane.backend.started[0].killed
    tight.answer(2)
    assert (await waiting).function_error is None
    for _ in range(2):
        tight.answer()
    await asyncio.gather(*busy)
    assert tight.placement.statistics().evicted == 1


async def test_without_room_in_time_the_request_is_refused(tight: Tight) -> None:
    holding(tight)
    busy = [asyncio.create_task(tight.invoke(tight.function(n))) for n in "abc"]
    await until(lambda: len(tight.held) == 3)
    waiting = asyncio.create_task(tight.invoke(tight.function("d")))
    await until(lambda: tight.placement.budget._waiters)
    tight.plane.clock.advance(WAIT_S)
    with pytest.raises(TooManyRequestsException) as excinfo:
        await waiting
    assert excinfo.value.reason == ACCOUNT_LIMIT
    assert excinfo.value.status == 429
    assert "host memory budget (384 MB, EMBER_MEMORY_BUDGET_MB)" in excinfo.value.message
    statistics = tight.placement.statistics()
    assert (statistics.memory_refusals, statistics.memory_used_mb) == (1, 384)
    assert tight.invoker.counting.statistics().in_flight == 3  # the refused lease is back
    assert len(tight.plane.backend.started) == 3
    for _ in range(3):
        tight.answer()
    await asyncio.gather(*busy)
    assert tight.invoker.counting.statistics().in_flight == 0


async def test_a_function_larger_than_the_budget_is_refused_at_once(tight: Tight) -> None:
    with pytest.raises(TooManyRequestsException):
        await tight.invoke(tight.function("huge", memory=512))
    assert tight.plane.backend.started == []
    assert tight.placement.budget._waiters == []


async def test_the_budget_comes_back_after_failures(tight: Tight) -> None:
    original = tight.plane.backend.start

    async def broken_start(spec: object) -> FakeSandbox:
        raise SandboxError("no sandbox today")

    tight.plane.backend.start = broken_start  # type: ignore[method-assign,assignment]
    with pytest.raises(SandboxError):
        await tight.invoke(tight.function("a"))
    tight.plane.backend.start = original  # type: ignore[method-assign]
    assert (tight.placement.budget.used_mb, tight.placement.budget.starting_mb) == (0, 0)

    def init_fails(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        return [(Kind.INIT_ERROR, {"error_type": "Runtime.ImportModuleError"}, b"{}")]

    tight.plane.backend.script = init_fails
    assert (await tight.invoke(tight.function("b"))).function_error == "Unhandled"
    assert tight.placement.budget.used_mb == 0

    holding(tight)
    timing_out = asyncio.create_task(tight.invoke(tight.function("c", timeout=3)))
    await until(lambda: len(tight.held) == 1)
    tight.plane.clock.advance(3)
    assert (await timing_out).function_error == "Unhandled"
    statistics = tight.placement.statistics()
    assert (statistics.memory_used_mb, statistics.memory_starting_mb, statistics.busy) == (0, 0, 0)
    assert tight.invoker.counting.statistics().in_flight == 0
    tight.plane.backend.script = echo_agent
    for name in "xyz":  # the whole budget is usable again
        await tight.invoke(tight.function(name))
    assert tight.placement.statistics().memory_used_mb == 384
