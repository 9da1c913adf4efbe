"""The sandbox seam: the one plug-in point between the data plane and isolation.

A backend starts an isolated environment from a ``SandboxSpec`` and hands back a
``Sandbox``: the framed channel to the agent running inside it (``ember.agent.protocol``),
the paths the runtime will see, ``kill()`` and resource readings. A backend knows nothing
of functions, leases or invocations.

Invariants every backend keeps (checked by ``ember.sandbox.conformance``):
- the agent is started with an environment built from scratch (nothing of the server's);
- ``kill()`` is idempotent, and once it returns no process of the sandbox is left;
- ``wait_closed()`` returns once the sandbox is gone, however it ended.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ember.agent.protocol import StartMeta

# (task root, opt root, runtime dir) as a sandbox shows them => the runtime's command and
# the startup variables it would run with: what a backend may start ahead of the START
RuntimePrestart = Callable[[str, str, str], tuple[list[str], dict[str, str]]]


class NetworkPolicy(enum.StrEnum):
    NONE = "none"  # the sandbox's own loopback only
    OUTBOUND = "outbound"  # plus outbound traffic through a user-mode stack


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    code_dir: Path  # unpacked function code; the runtime sees it read-only as its task root
    opt_dir: Path | None  # merged layers, seen at /opt
    memory_mb: int
    tmp_mb: int  # size of /tmp (EphemeralStorage)
    network: NetworkPolicy = NetworkPolicy.NONE
    read_only_paths: tuple[Path, ...] = ()  # host paths the runtime needs (interpreters)
    # the runtime's interpreter on the host, if it is a Python one (a hint for pre-warmed
    # starts; backends that pre-warm infer it from read_only_paths when it is None)
    interpreter: str | None = None
    # a runtime client directory to show at ``Sandbox.runtime_dir`` instead of Ember's
    # Python client (the Node.js client); None: the Python client
    runtime_client: Path | None = None
    # a runtime a backend may start before the function is known (node slots); None: not
    runtime_prestart: RuntimePrestart | None = None


class Sandbox(Protocol):
    """One started environment. Scope: one execution environment, used by one task."""

    @property
    def id(self) -> str: ...

    @property
    def reader(self) -> asyncio.StreamReader:
        """Frames from the agent."""
        ...

    @property
    def writer(self) -> asyncio.StreamWriter:
        """Frames to the agent."""
        ...

    @property
    def task_root(self) -> str:
        """The function code's path as the runtime sees it (``/var/task`` when isolated)."""
        ...

    @property
    def opt_root(self) -> str:
        """The layers' path as the runtime sees it (``/opt`` when isolated)."""
        ...

    @property
    def runtime_dir(self) -> str:
        """Ember's built-in runtime client (``runtimes/python``, or the spec's
        ``runtime_client``) as the runtime sees it."""
        ...

    @property
    def runtime_api_bind(self) -> str:
        """Where the agent binds the Runtime API (``127.0.0.1:9001`` in its own netns)."""
        ...

    @property
    def prewarmed(self) -> bool:
        """Whether it came ready-made from the backend's pool of pre-started sandboxes
        (a pool hit); False for one started for this request (placement's ``cold``)."""
        ...

    def memory_peak_bytes(self) -> int | None:
        """Peak memory of the sandbox if the backend measures it (cgroup), else None."""
        ...

    def oom_killed(self) -> bool:
        """Whether the memory limit killed something in the sandbox."""
        ...

    async def kill(self) -> None:
        """Stop everything in the sandbox now. Idempotent."""
        ...

    async def wait_closed(self) -> None:
        """Return once every process of the sandbox is gone."""
        ...


# a started sandbox => the START that runs the runtime in it (the paths are the sandbox's)
StartFor = Callable[[Sandbox], "StartMeta"]


class ChannelSandbox:
    """What every backend's sandbox shares: an id and the channel to its agent."""

    def __init__(
        self,
        sandbox_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        prewarmed: bool = False,
    ) -> None:
        self._id = sandbox_id
        self._reader = reader
        self._writer = writer
        self._prewarmed = prewarmed

    @property
    def id(self) -> str:
        return self._id

    @property
    def reader(self) -> asyncio.StreamReader:
        return self._reader

    @property
    def writer(self) -> asyncio.StreamWriter:
        return self._writer

    @property
    def prewarmed(self) -> bool:
        return self._prewarmed


class SandboxBackend(Protocol):
    """Starts sandboxes. Scope: one per server process."""

    name: str

    def describe(self) -> str:
        """One line on the isolation this backend gives, for the startup log."""
        ...

    async def start(self, spec: SandboxSpec) -> Sandbox:
        """Start a sandbox with its agent running; raises ``SandboxError``."""
        ...

    def statistics(self) -> dict[str, dict[str, int]]:
        """Its pools of pre-started sandboxes, by name (``{}`` for a backend without)."""
        ...

    async def anticipate(self, spec: SandboxSpec, start_for: StartFor) -> None:
        """Get ready to start sandboxes like ``spec`` fast, before the first one is asked
        for (``start_for``: the START of a calibration start, ``calibration.py``). Its
        failures are logged, not raised; cancellable; a no-op for a backend without
        pre-started sandboxes."""
        ...

    async def close(self) -> None:
        """Release backend-wide resources (after every sandbox was killed)."""
        ...
