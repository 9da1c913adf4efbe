"""Placement: reuse, separation under concurrency, keep-alive reaping, retirement."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from typing import Any

import pytest

from ember.agent.protocol import Frame, Kind, encode
from ember.invocation.environment import EnvState
from ember.invocation.invoker import InvocationRequest
from ember.testing import echo_agent
from tests.unit.invocation.conftest import Plane

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"


async def test_concurrent_invocations_never_share(plane: Plane) -> None:
    both_running = asyncio.Event()
    waiting: list[Frame] = []

    def gated(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        if frame.kind is Kind.START:
            return [(Kind.INIT_DONE, {"init_ms": 1.0}, b"")]
        waiting.append(frame)
        if len(waiting) == 2:
            both_running.set()
        return echo_agent(frame)

    plane.backend.script = gated
    results = await asyncio.gather(
        *(plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN)) for _ in range(2))
    )
    assert both_running.is_set()
    assert all(r.function_error is None for r in results)
    assert len(plane.backend.started) == 2
    assert plane.placement.statistics().idle == 2


async def test_an_environment_never_initialised_is_not_reused(plane: Plane) -> None:
    async with plane.placement.environment(plane.record) as env:
        assert env.state is EnvState.STARTING
    assert plane.placement.statistics().idle == 0


async def test_idle_environments_are_reaped_after_keep_alive(plane: Plane) -> None:
    await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    plane.clock.advance(59)
    assert plane.placement.reap() == 0
    plane.clock.advance(1)
    assert plane.placement.reap() == 1
    await plane.placement.close()
    assert plane.backend.started[0].killed


async def test_a_changed_function_does_not_reuse_old_environments(plane: Plane) -> None:
    await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    changed = replace(plane.record, last_modified=2.0)
    await plane.invoker.invoke(changed, InvocationRequest(b"{}", ARN))
    assert len(plane.backend.started) == 2
    plane.placement.retire("fn")
    await plane.placement.close()
    assert all(s.killed for s in plane.backend.started)


async def test_a_dead_environment_is_not_returned_to_the_pool(plane: Plane) -> None:
    async with plane.placement.environment(plane.record) as env:
        await env.stop()
        assert env.state is EnvState.DEAD
    assert plane.placement.statistics().idle == 0
    await asyncio.gather(*[plane.placement.close()])


async def test_an_environment_busy_while_its_function_changes_is_not_kept(plane: Plane) -> None:
    invoked = asyncio.Event()

    def held(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        if frame.kind is Kind.START:
            return [(Kind.INIT_DONE, {"init_ms": 1.0}, b"")]
        invoked.set()
        return []  # answered below, after the function changed

    plane.backend.script = held
    task = asyncio.create_task(plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN)))
    await invoked.wait()
    plane.placement.retire("fn")  # UpdateFunctionCode / DeleteFunction while it runs
    env = next(iter(plane.placement._busy))
    meta = {"id": env._pending_id, "content_type": "application/json"}
    plane.backend.started[0]._agent_writer.writelines(encode(Kind.RESPONSE, meta, b"{}"))
    result = await task
    assert result.function_error is None
    assert plane.placement.statistics().idle == 0  # READY, but of a retired generation
    await plane.placement.close()
    assert plane.backend.started[0].killed


async def test_a_retired_busy_environment_is_not_kept_when_the_generation_is_the_same(
    plane: Plane,
) -> None:
    """A change the generation does not show (tags: ember:network) retires busy
    environments too, even when another invoke made that generation current again."""
    invoked = asyncio.Event()

    def first_held(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        if frame.kind is Kind.START:
            return [(Kind.INIT_DONE, {"init_ms": 1.0}, b"")]
        if not invoked.is_set():
            invoked.set()
            return []  # the first invoke is answered below
        return echo_agent(frame)

    plane.backend.script = first_held
    task = asyncio.create_task(plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN)))
    await invoked.wait()
    plane.placement.retire("fn")  # TagResource while it runs
    await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))  # a new one
    held = plane.backend.started[0]
    env = next(iter(plane.placement._busy))
    meta = {"id": env._pending_id, "content_type": "application/json"}
    held._agent_writer.writelines(encode(Kind.RESPONSE, meta, b"{}"))
    assert (await task).function_error is None
    assert plane.placement.statistics().idle == 1  # only the environment started after
    await plane.placement.close()
    assert held.killed


async def test_every_invoke_knows_how_it_started(plane: Plane) -> None:
    plane.backend.pool = 1  # the first start finds a pre-started sandbox, the next does not
    reports = []
    for record in (plane.record, plane.record, replace(plane.record, name="other")):
        result = await plane.invoker.invoke(record, InvocationRequest(b"{}", ARN, tail=True))
        reports.append(base64.b64decode(result.log_result or "").decode().splitlines()[-1])
    kinds = [line.rsplit("\tEmber Start Kind: ", 1)[1] for line in reports]
    assert kinds == ["prewarmed\t", "warm\t", "cold\t"]
    assert plane.placement.statistics().starts == {
        "cold": 1, "prewarmed": 1, "warm": 1, "provisioned": 0,
    }  # fmt: skip
    scraped = plane.invoker.metrics.render().decode()
    assert 'ember_starts_total{function="fn",kind="prewarmed"} 1.0' in scraped
    assert 'ember_starts_total{function="other",kind="cold"} 1.0' in scraped


async def test_statistics_count_environments_per_function(plane: Plane) -> None:
    await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    await plane.invoker.invoke(replace(plane.record, name="other"), InvocationRequest(b"{}", ARN))
    async with plane.placement.environment(plane.record):
        by_function = plane.placement.statistics().by_function
    assert by_function == {
        "fn": {"idle": 0, "busy": 1, "provisioned": 0},
        "other": {"idle": 1, "busy": 0, "provisioned": 0},
    }


async def test_a_version_never_reuses_an_environment_of_latest(plane: Plane) -> None:
    version_one = replace(plane.record, version="1")  # same code, same last change
    await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    result = await plane.invoker.invoke(version_one, InvocationRequest(b"{}", ARN + ":1"))
    assert result.executed_version == "1"
    assert len(plane.backend.started) == 2
    await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    await plane.invoker.invoke(version_one, InvocationRequest(b"{}", ARN + ":1"))
    assert len(plane.backend.started) == 2  # each version's own is reused
    assert plane.placement.statistics().idle == 2


async def test_retiring_one_version_keeps_the_others(plane: Plane) -> None:
    version_one = replace(plane.record, version="1")
    await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    await plane.invoker.invoke(version_one, InvocationRequest(b"{}", ARN + ":1"))
    plane.placement.retire("fn", "$LATEST")  # UpdateFunctionCode: version 1 is unchanged
    assert plane.placement.statistics().idle == 1
    await plane.invoker.invoke(version_one, InvocationRequest(b"{}", ARN + ":1"))
    assert len(plane.backend.started) == 2
    plane.placement.retire("fn")  # DeleteFunction: every version
    assert plane.placement.statistics().idle == 0


async def test_an_invoke_cancelled_while_its_environment_comes_back_loses_nothing(
    plane: Plane,
) -> None:
    def never_back(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        return [reply for reply in echo_agent(frame) if reply[0] is not Kind.NEXT]

    plane.backend.script = never_back  # answers, but its runtime never asks for more
    await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    second = asyncio.create_task(plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN)))
    for _ in range(50):  # a few loop turns: it takes the environment and waits for it
        await asyncio.sleep(0)
    assert plane.placement.statistics().idle == 0
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    await plane.placement.close()
    assert plane.backend.started[0].killed  # stopped, not forgotten in no list
    assert plane.placement.budget.used_mb == 0
