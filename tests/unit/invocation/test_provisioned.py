"""Provisioned concurrency over a fake backend: allocation, status, first use, spill-over,
replacement, shrinking, no reaping, lease accounting, and restoration from the store."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from ember.agent.protocol import Frame, Kind, encode
from ember.errors import ResourceNotFoundException, TooManyRequestsException
from ember.invocation.budget import MemoryBudget
from ember.invocation.counting import Counting
from ember.invocation.invoker import InvocationRequest, InvocationResult, Invoker
from ember.invocation.placement import Placement
from ember.invocation.provisioned import (
    INIT_FAILURE,
    ProvisionedConcurrency,
    ProvisionedStatus,
)
from ember.model.functions import FunctionRecord
from ember.model.provisioned import ProvisionedConfig
from ember.testing import FakeSandbox, echo_agent
from tests.unit.invocation.conftest import Plane
from tests.unit.invocation.test_budget import until

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn:1"


@dataclass
class Provisioned:
    plane: Plane
    placement: Placement
    invoker: Invoker
    service: ProvisionedConcurrency
    record: FunctionRecord
    starts: list[dict[str, Any]]  # START metas the agents received

    async def put(self, requested: int, qualifier: str = "1") -> ProvisionedStatus:
        config = ProvisionedConfig("fn", qualifier, requested, self.plane.clock.wall())
        state = await self.service.put(config, self.record)
        assert state.status is ProvisionedStatus.IN_PROGRESS
        await self.settled(qualifier)
        settled = self.service.get("fn", qualifier)
        assert settled is not None
        return settled.status

    async def settled(self, qualifier: str = "1") -> None:
        allocation = self.service._allocations.get(("fn", qualifier))
        while allocation is not None and allocation.task is not None:
            await allocation.task

    async def invoke(self) -> InvocationResult:
        return await self.invoker.invoke(self.record, InvocationRequest(b"{}", ARN, tail=True))


def kind(result: InvocationResult) -> str:
    report = base64.b64decode(result.log_result or "").decode().splitlines()[-1]
    return report.rsplit("\tEmber Start Kind: ", 1)[1].rstrip("\t")


def build(
    plane: Plane, counting: Counting | None = None, budget: MemoryBudget | None = None
) -> Provisioned:
    placement = Placement(lambda r: invoker.start_environment(r), plane.clock, 60, budget)  # noqa: PLW0108
    service = ProvisionedConcurrency(
        placement,
        lambda r: invoker.provision_environment(r),  # noqa: PLW0108
        plane.store,
    )
    invoker = Invoker(
        plane.launcher, placement, plane.clock, 10, counting, provisioned_for=service.requested
    )
    record = replace(plane.record, version="1")
    made = Provisioned(plane, placement, invoker, service, record, [])

    def recording(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        if frame.kind is Kind.START:
            made.starts.append(frame.meta)
        return echo_agent(frame)

    plane.backend.script = recording
    return made


@pytest.fixture
async def provisioned(plane: Plane) -> AsyncIterator[Provisioned]:
    await plane.launcher._blobs.unpacked(plane.record.code.sha256_hex)
    made = build(plane)
    yield made
    await made.service.close()
    await made.placement.close()


async def test_environments_are_initialised_ahead_and_used_first(provisioned: Provisioned) -> None:
    assert await provisioned.put(2) is ProvisionedStatus.READY
    state = provisioned.service.get("fn", "1")
    assert state is not None
    assert (state.allocated, state.available, state.reason) == (2, 2, None)
    assert len(provisioned.starts) == 2  # INIT happened before any invoke
    assert all(
        s["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == "provisioned-concurrency"
        for s in provisioned.starts
    )
    result = await provisioned.invoke()
    assert kind(result) == "provisioned"
    assert "Init Duration" not in base64.b64decode(result.log_result or "").decode()
    assert len(provisioned.plane.backend.started) == 2


async def test_invokes_beyond_the_provisioned_environments_spill_over(
    provisioned: Provisioned,
) -> None:
    gate = asyncio.Event()

    def holding(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        if frame.kind is Kind.START:
            return echo_agent(frame)
        gate.set()
        return []  # the provisioned environment never answers its invoke

    provisioned.plane.backend.script = holding  # a sandbox keeps the script it started with
    await provisioned.put(1)
    provisioned.plane.backend.script = echo_agent
    first = asyncio.create_task(provisioned.invoke())
    await gate.wait()
    second = await provisioned.invoke()
    assert kind(second) == "cold"  # the provisioned one is busy
    assert provisioned.placement.statistics().provisioned == 1
    provisioned.plane.clock.advance(3)  # the held invoke times out
    assert (await first).function_error == "Unhandled"


async def test_a_failing_init_fails_the_configuration(provisioned: Provisioned) -> None:
    def broken(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        return [(Kind.INIT_ERROR, {"error_type": "Runtime.ImportModuleError"}, b"{}")]

    provisioned.plane.backend.script = broken
    assert await provisioned.put(2) is ProvisionedStatus.FAILED
    state = provisioned.service.get("fn", "1")
    assert state is not None
    assert (state.reason, state.allocated) == (INIT_FAILURE, 0)
    assert provisioned.placement.budget.used_mb == 0


async def test_provisioned_environments_are_never_reaped(provisioned: Provisioned) -> None:
    await provisioned.put(1)
    await provisioned.invoke()
    provisioned.plane.clock.advance(3600)
    assert provisioned.placement.reap() == 0
    assert kind(await provisioned.invoke()) == "provisioned"


async def test_a_dead_provisioned_environment_is_replaced(provisioned: Provisioned) -> None:
    invokes: list[Frame] = []

    def first_dies(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        if frame.kind is Kind.START:
            return echo_agent(frame)
        invokes.append(frame)
        if len(invokes) == 1:
            return [(Kind.EXIT, {"status": None, "signal": 9}, b"")]
        return echo_agent(frame)

    provisioned.plane.backend.script = first_dies
    await provisioned.put(1)
    assert (await provisioned.invoke()).function_error == "Unhandled"
    await provisioned.settled()
    state = provisioned.service.get("fn", "1")
    assert state is not None
    assert (state.status, state.allocated) == (ProvisionedStatus.READY, 1)
    assert len(provisioned.plane.backend.started) == 2
    assert kind(await provisioned.invoke()) == "provisioned"


async def test_lowering_and_deleting_give_environments_back(provisioned: Provisioned) -> None:
    await provisioned.put(3)
    assert await provisioned.put(1) is ProvisionedStatus.READY
    await asyncio.sleep(0)
    assert sum(s.killed for s in provisioned.plane.backend.started) == 2
    assert provisioned.placement.statistics().provisioned == 1
    assert await provisioned.service.delete("fn", "1")
    assert provisioned.placement.statistics().provisioned == 0
    assert provisioned.service.get("fn", "1") is None
    assert await provisioned.plane.store.list_provisioned() == []


async def test_provisioned_units_do_not_draw_on_the_unreserved_pool(plane: Plane) -> None:
    counting = Counting(1000)
    made = build(plane, counting)
    made.invoker._unreserved_pool = lambda: 0  # nothing unreserved is left to share
    try:
        await made.put(1)
        assert kind(await made.invoke()) == "provisioned"
        with (
            counting.lease("fn", None, 0, provisioned=1),  # its one unit is taken
            pytest.raises(TooManyRequestsException),
        ):
            await made.invoke()
        assert counting.statistics().provisioned_in_flight == 0
    finally:
        await made.service.close()
        await made.placement.close()


async def test_configurations_are_durable_and_allocated_again(
    provisioned: Provisioned, plane: Plane
) -> None:
    await provisioned.put(2)
    await provisioned.service.close()
    await provisioned.placement.close()
    restarted = build(plane)
    try:
        await restarted.service.load(lambda name, qualifier: restarted.record)
        await restarted.settled()
        state = restarted.service.get("fn", "1")
        assert state is not None
        assert (state.status, state.allocated) == (ProvisionedStatus.READY, 2)
    finally:
        await restarted.service.close()
        await restarted.placement.close()


async def test_an_alias_pointed_elsewhere_moves_its_environments(provisioned: Provisioned) -> None:
    await provisioned.put(1, qualifier="live")
    two = replace(provisioned.record, version="2")
    await provisioned.service.follow(lambda name, qualifier: two)
    await provisioned.settled("live")
    state = provisioned.service.get("fn", "live")
    assert state is not None
    assert (state.status, state.allocated) == (ProvisionedStatus.READY, 1)
    first, second = provisioned.plane.backend.started
    assert first.killed
    assert not second.killed

    def gone(name: str, qualifier: str) -> FunctionRecord:
        raise ResourceNotFoundException("Cannot find alias")

    await provisioned.service.follow(gone)
    assert provisioned.service.get("fn", "live") is None
    assert await provisioned.plane.store.list_provisioned() == []


async def test_a_deleted_version_takes_its_configuration(provisioned: Provisioned) -> None:
    await provisioned.put(1)
    await provisioned.service.forget("fn", "2")  # another version: nothing happens
    assert provisioned.service.get("fn", "1") is not None
    await provisioned.service.forget("fn", "1")
    assert provisioned.service.get("fn", "1") is None
    assert provisioned.placement.statistics().provisioned == 0


async def test_with_no_memory_left_a_request_waits_for_its_provisioned_environment(
    plane: Plane,
) -> None:
    await plane.launcher._blobs.unpacked(plane.record.code.sha256_hex)
    made = build(plane, budget=MemoryBudget(128, plane.clock))  # room for one environment
    gate = asyncio.Event()
    held: list[str] = []

    def holding(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        if frame.kind is Kind.START:
            return echo_agent(frame)
        held.append(str(frame.meta["id"]))
        gate.set()
        return []

    try:
        plane.backend.script = holding
        await made.put(1)
        first = asyncio.create_task(made.invoke())
        await gate.wait()
        second = asyncio.create_task(made.invoke())
        await until(lambda: made.placement.budget._waiters)
        [env] = made.placement._busy
        sandbox = env.sandbox
        assert isinstance(sandbox, FakeSandbox)
        meta = {"id": held[0], "content_type": "application/json"}
        sandbox._agent_writer.writelines(encode(Kind.RESPONSE, meta, b"{}"))
        sandbox._agent_writer.writelines(encode(Kind.NEXT, {}, b""))
        assert kind(await first) == "provisioned"
        await until(lambda: len(held) == 2)
        meta = {"id": held[1], "content_type": "application/json"}
        sandbox._agent_writer.writelines(encode(Kind.RESPONSE, meta, b"{}"))
        assert kind(await second) == "provisioned"
        assert len(plane.backend.started) == 1
    finally:
        await made.service.close()
        await made.placement.close()
