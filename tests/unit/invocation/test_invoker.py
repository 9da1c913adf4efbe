"""The invoke path over a scripted agent: results, log lines, resets."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any

from ember.agent.protocol import Frame, Kind, encode
from ember.invocation.invoker import InvocationRequest
from ember.testing import echo_agent
from tests.unit.invocation.conftest import Plane

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"


async def test_cold_then_warm_invoke_reuses_the_environment(plane: Plane) -> None:
    first = await plane.invoker.invoke(plane.record, InvocationRequest(b'{"a":1}', ARN, tail=True))
    assert first.payload == b'{"a":1}'
    assert first.function_error is None
    assert first.executed_version == "$LATEST"
    lines = base64.b64decode(first.log_result or "").decode().splitlines(keepends=True)
    assert lines[0] == f"START RequestId: {first.request_id} Version: $LATEST\n"
    assert lines[1] == "handling\n"
    assert lines[2] == f"END RequestId: {first.request_id}\n"
    assert re.fullmatch(
        rf"REPORT RequestId: {first.request_id}\tDuration: \d+\.\d\d ms\tBilled Duration: 13 ms"
        r"\tMemory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 12\.50 ms"
        r"\tEmber Start Kind: cold\t\n",
        lines[3],
    )
    second = await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN, tail=True))
    second_lines = base64.b64decode(second.log_result or "").decode()
    assert "Init Duration" not in second_lines
    assert second_lines.endswith("\tMax Memory Used: 40 MB\tEmber Start Kind: warm\t\n")
    assert len(plane.backend.started) == 1


async def test_log_lines_are_stored_in_the_function_log_group(plane: Plane) -> None:
    result = await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    await plane.logs.flush()
    events = await plane.store.read_logs("/aws/lambda/fn")
    messages = [e.message for e in events]
    assert messages[0].startswith(
        "INIT_START Runtime Version: python:3.11.v1\tRuntime Version ARN:"
    )
    assert messages[1] == f"START RequestId: {result.request_id} Version: $LATEST\n"
    assert messages[-1].startswith(f"REPORT RequestId: {result.request_id}\t")
    assert len({e.stream for e in events}) == 1


async def test_timeout_kills_the_environment(plane: Plane) -> None:
    received = asyncio.Event()

    def silent(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        if frame.kind is Kind.START:
            return [(Kind.INIT_DONE, {"init_ms": 1.0}, b"")]
        received.set()
        return []  # never answers the invoke

    plane.backend.script = silent
    task = asyncio.create_task(plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN)))
    await received.wait()
    plane.clock.advance(3.0)
    result = await task
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {result.request_id} Error: Task timed out after 3.00 seconds",
    }
    await plane.placement.close()
    assert plane.backend.started[0].killed
    assert plane.placement.statistics().idle == 0


async def test_init_error_is_served_and_the_environment_reset(plane: Plane) -> None:
    def broken(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        body = b'{"errorType":"Runtime.ImportModuleError","errorMessage":"nope"}'
        return [
            (Kind.INIT_ERROR, {"error_type": "Runtime.ImportModuleError"}, body),
            (Kind.EXIT, {"status": 1, "signal": None}, b""),
        ]

    plane.backend.script = broken
    result = await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN, tail=True))
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload)["errorType"] == "Runtime.ImportModuleError"
    assert (
        "Status: error\tError Type: Runtime.ImportModuleError"
        in base64.b64decode(result.log_result or "").decode()
    )
    await plane.logs.flush()
    messages = [e.message for e in await plane.store.read_logs("/aws/lambda/fn")]
    assert any(
        m.startswith("INIT_REPORT Init Duration: ")
        and "\tPhase: init\tStatus: error\tError Type: Runtime.ImportModuleError\n" in m
        for m in messages
    )
    await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    assert len(plane.backend.started) == 2


async def test_runtime_exit_mid_invoke(plane: Plane) -> None:
    def dies(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        if frame.kind is Kind.START:
            return [(Kind.INIT_DONE, {"init_ms": 1.0}, b"")]
        return [(Kind.EXIT, {"status": None, "signal": 9}, b"")]

    plane.backend.script = dies
    result = await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    assert json.loads(result.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: "
        "signal: killed",
    }


async def test_a_runtime_that_answers_then_exits_is_not_handed_the_next_invoke(
    plane: Plane,
) -> None:
    def answers_then_exits(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        if frame.kind is Kind.START:
            return [(Kind.INIT_DONE, {"init_ms": 1.0}, b"")]
        meta = {"id": frame.meta["id"], "content_type": "application/json"}
        return [(Kind.RESPONSE, meta, b"{}"), (Kind.EXIT, {"status": 0, "signal": None}, b"")]

    plane.backend.script = answers_then_exits
    for _ in range(3):  # each answer arrives together with the exit: never a 500, never reused
        result = await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
        assert result.function_error is None
        assert result.payload == b"{}"
    assert len(plane.backend.started) == 3


async def _slow_init(plane: Plane, finish_after_s: float | None) -> tuple[Any, list[str]]:
    """Invoke a function whose init takes ``finish_after_s`` (None: never finishes)."""
    started = asyncio.Event()
    agent: list[Any] = []

    def slow(frame: Frame) -> list[tuple[Kind, dict[str, Any], bytes]]:
        if frame.kind is Kind.START:
            agent.append(plane.backend.started[-1])
            started.set()
            return []
        return echo_agent(frame)

    plane.backend.script = slow
    task = asyncio.create_task(plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN)))
    await started.wait()
    plane.clock.advance(10.5)  # past Lambda's 10 s init limit
    if finish_after_s is not None:
        init_done = encode(Kind.INIT_DONE, {"init_ms": finish_after_s * 1000})
        agent[0]._agent_writer.writelines(init_done)
    else:
        plane.clock.advance(3.0)  # and past the function's 3 s timeout too
    result = await task
    await plane.logs.flush()
    return result, [e.message for e in await plane.store.read_logs("/aws/lambda/fn")]


async def test_an_init_past_the_limit_goes_on_in_the_invoke_phase(plane: Plane) -> None:
    result, messages = await _slow_init(plane, finish_after_s=11.0)
    assert result.function_error is None
    assert "INIT_REPORT Init Duration: 10000.00 ms\tPhase: init\tStatus: timeout\n" in messages
    report = messages[-1]
    assert report.startswith(f"REPORT RequestId: {result.request_id}\t")
    assert "Init Duration" not in report  # a suppressed init is not reported as one


async def test_an_init_that_never_ends_times_out_with_the_function_timeout(plane: Plane) -> None:
    result, messages = await _slow_init(plane, finish_after_s=None)
    assert json.loads(result.payload) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {result.request_id} Error: Task timed out after 3.00 seconds",
    }
    assert any(
        m.startswith("INIT_REPORT") and "\tPhase: invoke\tStatus: timeout\n" in m for m in messages
    )
