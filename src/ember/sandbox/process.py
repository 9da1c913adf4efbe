"""The ``process`` backend: each environment is an agent process group on the host.

No isolation at all: functions see the host's file system, processes and network, and
the Runtime API listens on a free loopback port. For development on machines without
namespaces only; never the default, and the server says so loudly at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import uuid
from pathlib import Path

from ember.agent.launch import agent_argv
from ember.errors import SandboxError
from ember.runtimes.python import RUNTIME_DIR
from ember.sandbox.base import ChannelSandbox, SandboxSpec, StartFor
from ember.settings import Settings

# The agent's own environment, built from scratch: nothing of the server's leaks in.
AGENT_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class ProcessSandbox(ChannelSandbox):
    """One agent process (own session) and whatever it started. Scope: one environment."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        spec: SandboxSpec,
    ) -> None:
        super().__init__(uuid.uuid4().hex, reader, writer)
        self._process = process
        self._spec = spec
        self._killed = False

    @property
    def task_root(self) -> str:
        return str(self._spec.code_dir)

    @property
    def opt_root(self) -> str:
        return str(self._spec.opt_dir) if self._spec.opt_dir else "/opt"

    @property
    def runtime_dir(self) -> str:
        return str(self._spec.runtime_client or RUNTIME_DIR)

    @property
    def runtime_api_bind(self) -> str:
        return "127.0.0.1:0"

    def memory_peak_bytes(self) -> int | None:
        return None  # the agent reports the runtime's VmHWM instead

    def oom_killed(self) -> bool:
        return False

    async def kill(self) -> None:
        if self._killed:
            return
        self._killed = True
        self._writer.close()
        pid = self._process.pid
        for child in _children(pid):  # the runtime runs in a session of its own
            _killpg(child)
        _killpg(pid)
        await self._process.wait()

    async def wait_closed(self) -> None:
        await self._process.wait()


class ProcessBackend:
    """Starts agents as plain host processes. Scope: one per server."""

    name = "process"

    def __init__(self, agent_python: str) -> None:
        self._agent_python = agent_python

    def statistics(self) -> dict[str, dict[str, int]]:
        return {}  # no pools

    async def anticipate(self, spec: SandboxSpec, start_for: StartFor) -> None:  # noqa: ARG002
        return None  # nothing is started ahead: the seam's no-op

    def describe(self) -> str:
        return (
            "process backend: NO ISOLATION - functions run as host processes with the "
            "server's user, file system and network. Use only for development."
        )

    async def start(self, spec: SandboxSpec) -> ProcessSandbox:
        parent, child = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                *agent_argv(self._agent_python, child.fileno()),
                pass_fds=(child.fileno(),),
                env=AGENT_ENV,
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            parent.close()
            raise SandboxError(f"could not start the agent: {exc}") from exc
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        return ProcessSandbox(process, reader, writer, spec)

    async def close(self) -> None:
        return None


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    return []


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def from_settings(settings: Settings) -> ProcessBackend:
    return ProcessBackend(settings.agent_python)
