"""Drive a real agent subprocess over a socketpair, as the host does (test helper).

Every frame the agent sends is kept in ``frames`` in arrival order, so tests can check
ordering (LOG before RESPONSE) as well as content. Waits are bounded by ``TIMEOUT_S``
and never sleep: they wait for the next frame.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ember.agent.launch import agent_argv
from ember.agent.protocol import Frame, Kind, encode, read_frame
from ember.runtimes.python import runtime_argv

TIMEOUT_S = 30.0
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:fn"


def lambda_env(task_root: Path, handler: str = "app.handler", **extra: str) -> dict[str, str]:
    """A Lambda-like runtime environment built from scratch (§4.1)."""
    env = {
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(task_root),
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
    }
    env.update(extra)
    return env


def write_task(task_root: Path, files: dict[str, str]) -> Path:
    """Write dedented source files into the task root."""
    for name, source in files.items():
        path = task_root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return task_root


def ember_python_argv() -> list[str]:
    return runtime_argv(sys.executable)


def scripted_runtime_argv(task_root: Path, source: str) -> list[str]:
    """A hand-written "runtime": a Python script that drives the Runtime API itself."""
    script = write_task(task_root, {"scripted_runtime.py": source}) / "scripted_runtime.py"
    return [sys.executable, "-I", "-S", "-u", str(script)]


def invoke_meta(invoke_id: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": invoke_id,
        "deadline_ms": int(time.time() * 1000) + 60_000,
        "arn": FUNCTION_ARN,
    }
    meta.update(extra)
    return meta


@dataclass
class AgentSession:
    """One agent process and the host end of its channel."""

    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    runtime_api: str = ""
    frames: list[Frame] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        runtime_api: str = "127.0.0.1:0",
        **extra: str,
    ) -> AgentSession:
        """Start an agent, send START (``extra``: optional START fields such as
        ``extensions_dir``) and wait for LISTENING."""
        session = await cls.spawn()
        start = {"argv": argv, "cwd": str(cwd), "env": env, "runtime_api": runtime_api, **extra}
        session.send(Kind.START, start)
        listening = await session.expect(Kind.LISTENING)
        session.runtime_api = listening.meta["runtime_api"]
        return session

    @classmethod
    async def spawn(cls) -> AgentSession:
        """Start an agent process without sending anything yet."""
        parent, child = socket.socketpair()
        process = await asyncio.create_subprocess_exec(
            *agent_argv(sys.executable, child.fileno()),
            pass_fds=(child.fileno(),),
            env={"PATH": "/usr/bin:/bin"},
            stdin=subprocess.DEVNULL,
        )
        child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        return cls(process, reader, writer)

    def send(self, kind: Kind, meta: dict[str, Any], payload: bytes = b"") -> None:
        self.writer.writelines(encode(kind, meta, payload))

    def invoke(self, invoke_id: str, payload: bytes = b"{}", **meta: Any) -> None:
        self.send(Kind.INVOKE, invoke_meta(invoke_id, **meta), payload)

    async def next_frame(self) -> Frame | None:
        frame = await asyncio.wait_for(read_frame(self.reader), TIMEOUT_S)
        if frame is not None:
            self.frames.append(frame)
        return frame

    async def expect(self, *kinds: Kind) -> Frame:
        """The next frame that is not LOG (nor NEXT, unless asked for); one of ``kinds``."""
        while (frame := await self.next_frame()) is not None:
            if frame.kind is Kind.LOG or (frame.kind is Kind.NEXT and Kind.NEXT not in kinds):
                continue
            assert frame.kind in kinds, f"expected {kinds}, got {frame}"
            return frame
        raise AssertionError(f"channel closed while waiting for {kinds}")

    async def until_closed(self) -> list[Frame]:
        """Read every frame until the agent closes the channel."""
        while await self.next_frame() is not None:
            pass
        return self.frames

    async def until_output(self, text: bytes, stream: str = "stdout") -> None:
        """Read frames until the runtime's ``stream`` output contains ``text``."""
        while text not in self.output(stream):
            if await self.next_frame() is None:
                raise AssertionError(f"channel closed before the runtime wrote {text!r}")

    def output(self, stream: str = "stdout") -> bytes:
        """Everything the runtime wrote to ``stream`` so far, from the LOG frames."""
        logs = self.frames_of(Kind.LOG)
        return b"".join(f.payload for f in logs if f.meta["stream"] == stream)

    def frames_of(self, kind: Kind) -> list[Frame]:
        return [f for f in self.frames if f.kind is kind]

    async def wait_exit(self) -> int:
        return await asyncio.wait_for(self.process.wait(), TIMEOUT_S)

    async def close(self) -> None:
        """Close the channel (the agent kills its runtime) and reap the agent."""
        self.writer.close()
        if self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), TIMEOUT_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


StartAgent = Callable[..., Awaitable[AgentSession]]


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    """An empty function code directory (``LAMBDA_TASK_ROOT``)."""
    root = tmp_path / "task"
    root.mkdir()
    return root


@pytest.fixture
async def start_agent() -> AsyncIterator[StartAgent]:
    """``await start_agent(argv, cwd, env)``; every agent is closed after the test."""
    sessions: list[AgentSession] = []

    async def start(argv: list[str], cwd: Path, env: dict[str, str], **extra: str) -> AgentSession:
        session = await AgentSession.start(argv, cwd, env, **extra)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        await session.close()


def json_payload(frame: Frame) -> Any:
    return json.loads(frame.payload)


def process_exists(pid: int) -> bool:
    """True while ``pid`` is alive (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def pid_from_file(path: Path) -> int:
    return int(path.read_text())
