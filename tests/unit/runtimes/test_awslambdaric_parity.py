"""The same functions under the real awslambdaric and under Ember's runtime client.

Both run through the real agent, from the same task directory, so their bodies, error
types and error log lines must be identical field for field (stack frames included:
both strip their own bootstrap frames).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from ember.agent.protocol import Frame, Kind
from tests.unit.agent.agent_harness import (
    AgentSession,
    StartAgent,
    ember_python_argv,
    lambda_env,
    write_task,
)

pytest.importorskip("awslambdaric")

APP = """
    import decimal

    def ok(event, context):
        return {"echo": event, "id": context.aws_request_id, "price": decimal.Decimal("9.90"),
                "text": "caf\\u00e9", "raw": b"bytes", "nested": [1.5, None, True]}

    def blob(event, context):
        return b"\\x00\\x01"

    def fails(event, context):
        return step(event)

    def step(event):
        raise RuntimeError(f"bad input: {event}")

    def unserialisable(event, context):
        return object()
"""

INIT_FAILURES = {
    "missing_module.handler": {},
    "app.absent": {},
    "nodot": {},
    "sys.handler": {},
    "broken.handler": {"broken.py": "def handler(:\n"},
    "raising.handler": {"raising.py": "import json\njson.loads('{')\n"},
}


def awslambdaric_argv(handler: str) -> list[str]:
    return [sys.executable, "-m", "awslambdaric", handler]


async def invoke_both(
    start_agent: StartAgent, task_root: Path, handler: str, payload: bytes
) -> list[Frame]:
    """Run one invoke under each runtime client; return both results."""
    results = []
    env = lambda_env(task_root, handler)
    for argv in (awslambdaric_argv(handler), ember_python_argv()):
        session = await start_agent(argv, task_root, env)
        await session.expect(Kind.INIT_DONE)
        session.invoke("req-1", payload)
        results.append(await session.expect(Kind.RESPONSE, Kind.ERROR))
        results[-1].meta.pop("memory_peak_kb")
        results.append(Frame(Kind.LOG, {}, error_log_lines(session)))
    return results


def error_log_lines(session: AgentSession) -> bytes:
    lines = session.output().split(b"\n")
    return b"\n".join(line for line in lines if line.startswith(b"[ERROR]"))


@pytest.mark.parametrize(
    ("handler", "payload"),
    [("app.ok", b'{"a": [1, 2]}'), ("app.blob", b"{}"), ("app.fails", b'"x"'),
     ("app.unserialisable", b"{}")],
)  # fmt: skip
async def test_invoke_results_match_awslambdaric(
    task_root: Path, start_agent: StartAgent, handler: str, payload: bytes
) -> None:
    write_task(task_root, {"app.py": APP})
    theirs, their_log, ours, our_log = await invoke_both(start_agent, task_root, handler, payload)
    assert (ours.kind, ours.meta, ours.payload) == (theirs.kind, theirs.meta, theirs.payload)
    assert our_log.payload == their_log.payload


@pytest.mark.parametrize("handler", sorted(INIT_FAILURES))
async def test_init_failures_match_awslambdaric(
    task_root: Path, start_agent: StartAgent, handler: str
) -> None:
    write_task(task_root, INIT_FAILURES[handler])
    reports: list[Any] = []
    for argv in (awslambdaric_argv(handler), ember_python_argv()):
        session = await start_agent(argv, task_root, lambda_env(task_root, handler))
        failure = await session.expect(Kind.INIT_ERROR)
        ended = await session.expect(Kind.EXIT)
        reports.append((failure.meta["error_type"], failure.payload, ended.meta))
        reports.append(error_log_lines(session))
    theirs, their_log, ours, our_log = reports
    assert ours == theirs
    assert our_log == their_log
