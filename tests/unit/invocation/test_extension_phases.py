"""The host's side of extensions: REPORT after the post-invoke phase, the shutdown phase,
the exec wrapper (lambda-spec §1.9, §4.1)."""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

from ember.agent.protocol import Frame, Kind, encode
from ember.invocation.environment import shutdown_budget_ms
from ember.invocation.invoker import InvocationRequest
from ember.invocation.launch import with_exec_wrapper
from ember.runtimes.catalogue import Runtime
from ember.testing import FakeSandbox
from tests.unit.invocation.conftest import Plane

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"
EXTERNAL = {"name": "ext", "events": ["INVOKE", "SHUTDOWN"], "external": True}
Reply = list[tuple[Kind, dict[str, Any], bytes]]


class ExtensionAgent:
    """A scripted agent with one external extension: it answers each invoke at once but
    sends NEXT only when the test says the extension is done."""

    def __init__(self, plane: Plane, *, close_on_shutdown: bool = True) -> None:
        self.plane = plane
        self.shutdowns: list[dict[str, Any]] = []
        self.invoked = asyncio.Event()
        self.shutdown_seen = asyncio.Event()
        self.close_on_shutdown = close_on_shutdown

    @property
    def sandbox(self) -> FakeSandbox:
        return self.plane.backend.started[-1]

    def __call__(self, frame: Frame) -> Reply:
        if frame.kind is Kind.START:
            return [(Kind.INIT_DONE, {"init_ms": 5.0, "extensions": [EXTERNAL]}, b"")]
        if frame.kind is Kind.SHUTDOWN:
            self.shutdowns.append(frame.meta)
            self.shutdown_seen.set()
            if self.close_on_shutdown:  # the agent's shutdown phase is over
                asyncio.get_running_loop().call_soon(self.sandbox._agent_writer.close)
            return []
        self.invoked.set()
        meta = {"id": frame.meta["id"], "content_type": "application/json"}
        return [(Kind.LOG, {"stream": "stdout"}, b"handling\n"), (Kind.RESPONSE, meta, b"{}")]

    def extensions_done(self, extensions_ms: float) -> None:
        self.sandbox._agent_writer.writelines(encode(Kind.NEXT, {"extensions_ms": extensions_ms}))


async def messages(plane: Plane) -> list[str]:
    await plane.logs.flush()
    return [event.message for event in await plane.store.read_logs("/aws/lambda/fn")]


async def test_the_answer_comes_first_and_report_counts_the_extensions_time(plane: Plane) -> None:
    agent = ExtensionAgent(plane)
    plane.backend.script = agent
    first = await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    assert first.payload == b"{}"  # answered while the extension still runs
    assert not any(m.startswith("END") for m in await messages(plane))
    agent.extensions_done(250.0)
    # the next invoke reuses the environment only once the extension is done; by then the
    # first invoke's END and REPORT are written, before the second START
    second_task = asyncio.create_task(
        plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN, tail=True))
    )
    agent.invoked.clear()
    await agent.invoked.wait()
    agent.extensions_done(0.5)
    second = await second_task
    lines = await messages(plane)
    starts = [i for i, m in enumerate(lines) if m.startswith("START")]
    first_report = next(m for m in lines if m.startswith(f"REPORT RequestId: {first.request_id}"))
    assert "\tDuration: 250.00 ms\t" in first_report
    assert lines.index(first_report) < starts[1]
    tail = base64.b64decode(second.log_result or "").decode()
    assert re.search(rf"REPORT RequestId: {second.request_id}\tDuration: 0\.50 ms\t", tail)
    assert len(plane.backend.started) == 1


async def test_stopping_runs_the_shutdown_phase(plane: Plane) -> None:
    agent = ExtensionAgent(plane)
    plane.backend.script = agent
    await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    agent.extensions_done(1.0)
    await plane.placement.close()
    assert agent.shutdowns == [{"reason": "spindown", "budget_ms": 2000}]
    assert agent.sandbox.killed


async def test_extensions_that_overrun_the_timeout_reset_the_environment(plane: Plane) -> None:
    agent = ExtensionAgent(plane, close_on_shutdown=False)
    plane.backend.script = agent
    result = await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    assert result.function_error is None
    plane.clock.advance(3.0)  # the function's timeout, and the extension never finished
    await agent.shutdown_seen.wait()
    assert agent.shutdowns == [{"reason": "timeout", "budget_ms": 2000}]
    first_sandbox = agent.sandbox
    plane.clock.advance(3.0)  # the agent never closes: killed after the budget plus grace
    agent.close_on_shutdown = True
    second = await plane.invoker.invoke(plane.record, InvocationRequest(b"{}", ARN))
    assert second.payload == b"{}"
    assert len(plane.backend.started) == 2
    assert first_sandbox.killed


def test_the_shutdown_budget_is_lambdas() -> None:
    assert shutdown_budget_ms([]) == 0
    assert shutdown_budget_ms([{"name": "i", "events": ["INVOKE"], "external": False}]) == 500
    assert shutdown_budget_ms([EXTERNAL]) == 2000


def test_a_managed_runtime_starts_through_the_exec_wrapper() -> None:
    python = Runtime("python3.11", "/usr/bin/python3.11")
    argv = ["/usr/bin/python3.11", "-I", "-S", "-u", "/var/runtime/bootstrap.py", "app.handler"]
    env = {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/wrapper", "NODE_OPTIONS": "--x"}
    assert with_exec_wrapper(argv, env, python) == ["/opt/wrapper", *argv]
    assert with_exec_wrapper(argv, {}, python) == argv
    custom = Runtime("provided.al2023", "/usr/bin/env")
    assert with_exec_wrapper(["/var/task/bootstrap"], env, custom) == ["/var/task/bootstrap"]


async def test_start_names_the_account_and_no_extensions_without_layers(plane: Plane) -> None:
    env, start = await plane.invoker._launcher.launch(plane.record)
    try:
        assert start["account_id"] == "000000000000"
        assert "extensions_dir" not in start  # no layers: nothing is at /opt/extensions
    finally:
        await env.stop()
