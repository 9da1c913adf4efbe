"""The conformance kit of the sandbox seam: what every backend must do, as runnable checks.

``CHECKS`` lists async functions ``check(backend, workdir)``; each starts its own sandbox
through the backend under test, drives the real agent inside it over the channel, and
raises ``AssertionError`` naming the broken promise. ``tests/conformance`` runs every
check over every backend this machine can run. A new backend is done when it passes them.

The runtime the checks start is a small stdlib-only Python program (``PROBE``) speaking
the Runtime API, so it runs inside any backend that can see the host's ``/usr``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ember.agent.protocol import Frame, Kind, StartMeta, encode, read_frame
from ember.sandbox.base import Sandbox, SandboxBackend, SandboxSpec

CANARY = "EMBER_CONFORMANCE_CANARY"
PROBE_PYTHON = "/usr/bin/python3"
FRAME_TIMEOUT_S = 30.0

# A runtime that answers each event by what it asks: {"env": 1} → its environment and its
# parent's, {"exit": N} → exit N, anything else → echoed back with the process id.
PROBE = r"""
import http.client, json, os, sys
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
conn = http.client.HTTPConnection(api)
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    resp = conn.getresponse()
    event = json.loads(resp.read())
    rid = resp.getheader("Lambda-Runtime-Aws-Request-Id")
    print("probe got", json.dumps(event), flush=True)
    if "exit" in event:
        sys.exit(event["exit"])
    if "env" in event:
        try:
            parent = open(f"/proc/{os.getppid()}/environ", "rb").read().decode()
        except OSError:
            parent = ""
        result = {"env": dict(os.environ), "parent_env": parent}
    else:
        result = {"echo": event, "pid": os.getpid()}
    conn.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", json.dumps(result))
    conn.getresponse().read()
"""

Check = Callable[[SandboxBackend, Path], Awaitable[None]]


async def start_probe(backend: SandboxBackend, workdir: Path) -> Sandbox:
    """A sandbox running the probe runtime, initialised (INIT_DONE received)."""
    code = workdir / "code"
    code.mkdir(exist_ok=True)
    (code / "probe.py").write_text(PROBE)
    sandbox = await backend.start(SandboxSpec(code, None, memory_mb=128, tmp_mb=512))
    start = StartMeta(
        argv=[PROBE_PYTHON, "-I", "-S", f"{sandbox.task_root}/probe.py"],
        cwd=sandbox.task_root,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PROBE_MARK": "set-by-start"},
        runtime_api=sandbox.runtime_api_bind,
    )
    sandbox.writer.writelines(encode(Kind.START, dict(start)))
    await expect(sandbox, Kind.LISTENING)
    await expect(sandbox, Kind.INIT_DONE)
    return sandbox


async def expect(sandbox: Sandbox, kind: Kind) -> Frame:
    """The next frame that is not LOG (nor NEXT, unless asked for); it must be ``kind``."""
    skipped = {Kind.LOG, Kind.NEXT} - {kind}
    while True:
        frame = await asyncio.wait_for(read_frame(sandbox.reader), FRAME_TIMEOUT_S)
        assert frame is not None, f"channel closed while waiting for {kind.name}"
        if frame.kind not in skipped:
            assert frame.kind is kind, f"expected {kind.name}, got {frame.kind.name}"
            return frame


async def invoke(sandbox: Sandbox, event: dict[str, Any], request_id: str = "req-1") -> Any:
    meta = {"id": request_id, "deadline_ms": 4102444800000, "arn": "arn:aws:lambda:x"}
    sandbox.writer.writelines(encode(Kind.INVOKE, meta, json.dumps(event).encode()))
    frame = await expect(sandbox, Kind.RESPONSE)
    assert frame.meta["id"] == request_id
    return json.loads(frame.payload)


async def check_invokes_round_trip(backend: SandboxBackend, workdir: Path) -> None:
    """START → INIT_DONE, then two INVOKEs answered in the same runtime process."""
    sandbox = await start_probe(backend, workdir)
    try:
        first = await invoke(sandbox, {"n": 1}, "req-1")
        second = await invoke(sandbox, {"n": 2}, "req-2")
        assert first["echo"] == {"n": 1}
        assert second["echo"] == {"n": 2}
        assert first["pid"] == second["pid"], "one runtime process serves every invoke"
    finally:
        await sandbox.kill()


async def check_environment_built_from_scratch(backend: SandboxBackend, workdir: Path) -> None:
    """Nothing of the server's environment reaches the agent or the runtime."""
    os.environ[CANARY] = "server-secret"
    try:
        sandbox = await start_probe(backend, workdir)
    finally:
        del os.environ[CANARY]
    try:
        seen = await invoke(sandbox, {"env": 1})
        assert seen["env"]["PROBE_MARK"] == "set-by-start"
        assert "AWS_LAMBDA_RUNTIME_API" in seen["env"]
        assert CANARY not in seen["env"], "the server's environment leaked into the runtime"
        assert CANARY not in seen["parent_env"], "the server's environment leaked into the agent"
    finally:
        await sandbox.kill()


async def check_output_is_captured(backend: SandboxBackend, workdir: Path) -> None:
    """The runtime's stdout arrives as LOG frames, before the RESPONSE it precedes."""
    sandbox = await start_probe(backend, workdir)
    try:
        meta = {"id": "req-log", "deadline_ms": 4102444800000, "arn": "arn"}
        sandbox.writer.writelines(encode(Kind.INVOKE, meta, b'{"say": 1}'))
        logged = b""
        while (frame := await read_frame(sandbox.reader)) is not None:
            if frame.kind is Kind.LOG:
                logged += frame.payload
            elif frame.kind is not Kind.NEXT:
                assert frame.kind is Kind.RESPONSE
                break
        assert b'probe got {"say": 1}\n' in logged
    finally:
        await sandbox.kill()


async def check_runtime_exit_ends_the_sandbox(backend: SandboxBackend, workdir: Path) -> None:
    """A runtime that exits is reported (EXIT with its status), and the sandbox closes."""
    sandbox = await start_probe(backend, workdir)
    try:
        meta = {"id": "req-exit", "deadline_ms": 4102444800000, "arn": "arn"}
        sandbox.writer.writelines(encode(Kind.INVOKE, meta, b'{"exit": 7}'))
        frame = await expect(sandbox, Kind.EXIT)
        assert frame.meta["status"] == 7
        await asyncio.wait_for(sandbox.wait_closed(), FRAME_TIMEOUT_S)
    finally:
        await sandbox.kill()


async def check_kill_is_idempotent_and_final(backend: SandboxBackend, workdir: Path) -> None:
    """After kill() the channel ends, wait_closed() returns, and kill() can be repeated."""
    sandbox = await start_probe(backend, workdir)
    await invoke(sandbox, {"n": 1})
    await sandbox.kill()
    await asyncio.wait_for(sandbox.wait_closed(), FRAME_TIMEOUT_S)
    await sandbox.kill()
    assert sandbox.oom_killed() is False
    peak = sandbox.memory_peak_bytes()
    assert peak is None or peak > 0


async def anticipate_probe(backend: SandboxBackend, workdir: Path) -> None:
    """``backend.anticipate`` with the probe as the calibration start's runtime."""
    code = workdir / "calibration"
    code.mkdir(exist_ok=True)
    (code / "probe.py").write_text(PROBE)
    spec = SandboxSpec(code, None, memory_mb=128, tmp_mb=512, interpreter=PROBE_PYTHON)

    def start_for(sandbox: Sandbox) -> StartMeta:
        argv = [PROBE_PYTHON, "-I", "-S", f"{sandbox.task_root}/probe.py"]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        return StartMeta(argv=argv, cwd=sandbox.task_root, env=env,
                         runtime_api=sandbox.runtime_api_bind)  # fmt: skip

    await asyncio.wait_for(backend.anticipate(spec, start_for), FRAME_TIMEOUT_S)


async def check_anticipate_then_start(backend: SandboxBackend, workdir: Path) -> None:
    """``anticipate`` (a calibration start of the probe, where the backend runs one)
    returns without raising, and starts work as before after it."""
    await anticipate_probe(backend, workdir)
    sandbox = await start_probe(backend, workdir)
    try:
        assert (await invoke(sandbox, {"n": 1}))["echo"] == {"n": 1}
    finally:
        await sandbox.kill()


CHECKS: tuple[Check, ...] = (
    check_invokes_round_trip,
    check_environment_built_from_scratch,
    check_output_is_captured,
    check_runtime_exit_ends_the_sandbox,
    check_kill_is_idempotent_and_final,
    check_anticipate_then_start,
)
