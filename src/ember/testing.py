"""Public testing kit: a clock that moves by hand, and a fake sandbox backend.

Unit tests drive timeouts, keep-alive and back-off with ``ManualClock.advance`` instead
of sleeping, and play any agent behaviour with ``FakeSandboxBackend`` (real framed
channel, scripted agent).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ember.agent import protocol


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A ``Clock`` whose time only moves in ``advance``.

    Invariant: timers fire in due order, each at most once, during ``advance``.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = 0.0
        self._wall_offset = start
        self._timers: list[_Timer] = []  # heap by due time
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._wall_offset + self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(self._now + max(delay, 0.0), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward, firing every timer that falls due on the way."""
        target = self._now + seconds
        while self._timers and self._timers[0].due <= target:
            timer = heapq.heappop(self._timers)
            self._now = max(self._now, timer.due)
            if not timer.cancelled:
                timer.callback()
        self._now = target


class FakeSandbox:
    """A ``Sandbox`` whose "agent" is a coroutine in this process, over a real socketpair.

    ``script`` receives each host frame and returns the frames to answer with, so tests can
    play any agent behaviour (init errors, responses, exits) without processes.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        agent_reader: asyncio.StreamReader,
        agent_writer: asyncio.StreamWriter,
        script: AgentScript,
        prewarmed: bool = False,
    ) -> None:
        self.id = f"fake-{next(_ids)}"
        self.prewarmed = prewarmed
        self.reader, self.writer = reader, writer
        self.task_root, self.opt_root, self.runtime_api_bind = "/var/task", "/opt", "127.0.0.1:0"
        self.runtime_dir = "/var/runtime"
        self.killed = False
        self._agent_writer = agent_writer
        self._agent = asyncio.get_running_loop().create_task(self._serve(agent_reader, script))

    def memory_peak_bytes(self) -> int | None:
        return 40 * 1024 * 1024

    def oom_killed(self) -> bool:
        return False

    async def kill(self) -> None:
        self.killed = True
        self._agent.cancel()
        self._agent_writer.close()
        self.writer.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._agent

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._agent

    async def _serve(self, reader: asyncio.StreamReader, script: AgentScript) -> None:
        while (frame := await protocol.read_frame(reader)) is not None:
            for kind, meta, payload in script(frame):
                self._agent_writer.writelines(protocol.encode(kind, meta, payload))
        self._agent_writer.close()


AgentScript = Callable[[protocol.Frame], list[tuple[protocol.Kind, dict[str, Any], bytes]]]
_ids = itertools.count()


class FakeSandboxBackend:
    """Starts ``FakeSandbox``es that all follow one script.

    ``pool``: how many starts still find a pre-started sandbox (they are ``prewarmed``).
    """

    name = "fake"

    def __init__(self, script: AgentScript, pool: int = 0) -> None:
        self.script = script
        self.pool = pool
        self.started: list[FakeSandbox] = []
        # each anticipate: its spec, the calibration START it would send, the handler's code
        self.anticipated: list[tuple[Any, protocol.StartMeta, str]] = []

    def describe(self) -> str:
        return "fake backend (tests only)"

    def statistics(self) -> dict[str, dict[str, int]]:
        return {"fake": {"ready": self.pool}}

    async def start(self, _spec: object) -> FakeSandbox:
        host, agent = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=host)
        agent_reader, agent_writer = await asyncio.open_unix_connection(sock=agent)
        prewarmed = self.pool > 0
        self.pool -= prewarmed
        sandbox = FakeSandbox(reader, writer, agent_reader, agent_writer, self.script, prewarmed)
        self.started.append(sandbox)
        return sandbox

    async def anticipate(self, spec: Any, start_for: Callable[[Any], protocol.StartMeta]) -> None:
        sandbox = await self.start(spec)
        self.started.remove(sandbox)  # not an environment's
        code = "".join(path.read_text() for path in sorted(spec.code_dir.glob("*.py")))
        self.anticipated.append((spec, start_for(sandbox), code))
        await sandbox.kill()

    async def close(self) -> None:
        return None


def echo_agent(frame: protocol.Frame) -> list[tuple[protocol.Kind, dict[str, Any], bytes]]:
    """A well-behaved agent: init succeeds, every event is echoed back as the response."""
    if frame.kind is protocol.Kind.START:
        return [(protocol.Kind.INIT_DONE, {"init_ms": 12.5}, b"")]
    meta = {"id": frame.meta["id"], "content_type": "application/json", "memory_peak_kb": 2048}
    return [
        (protocol.Kind.LOG, {"stream": "stdout"}, b"handling\n"),
        (protocol.Kind.RESPONSE, meta, frame.payload),
        (protocol.Kind.NEXT, {}, b""),
    ]
