"""A runtime process started before its function was known, waiting for its START.

A pooled "node slot" sandbox (``sandbox/node_slot.py``) starts the Node.js runtime
command ahead, hardened like any runtime (uid, no_new_privs, seccomp, the sandbox's
cgroup), and registers it here with ``enable``. At START, ``take`` hands it out only if it
can stand for the START's command: the same ``argv``, and every variable of ``match``
(read once at process start) with the same value, or absent, in both environments. Any
other START discards it (SIGKILL; the agent's reaper collects it) and execs as before.

The hand-off is one message on ``control`` (4-byte big-endian length, then JSON
``{"cwd", "env"}``): the client takes that directory and exactly that environment, then
starts as a fresh one would (``runtimes/nodejs/prestart.mjs``). Stdlib only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(slots=True)
class PrestartedRuntime:
    """A started runtime blocked on ``control`` (a socket); output on two pipes."""

    pid: int
    control: int
    stdout_fd: int
    stderr_fd: int
    argv: tuple[str, ...]
    env: dict[str, str]  # what it was started with (its startup variables)
    match: tuple[str, ...]  # variables that must be the same in the START's environment

    def stands_for(self, argv: list[str], env: Mapping[str, str]) -> bool:
        """Whether a fresh start of ``argv`` with ``env`` would be this very process."""
        return tuple(argv) == self.argv and all(
            env.get(key) == self.env.get(key) for key in self.match
        )

    def hand_off(self, cwd: str, env: Mapping[str, str]) -> None:
        """Send it its working directory and environment; ``OSError`` if it is gone."""
        message = json.dumps({"cwd": cwd, "env": dict(env)}).encode()
        data = len(message).to_bytes(4, "big") + message
        while data:
            data = data[os.write(self.control, data) :]
        os.close(self.control)
        self.control = -1

    def discard(self) -> None:
        """Kill it and close its pipes (it is reaped as any child of the agent)."""
        if self.pid > 0:  # never a process group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)
        for fd in (self.control, self.stdout_fd, self.stderr_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.control = self.stdout_fd = self.stderr_fd = -1


_prestarted: PrestartedRuntime | None = None


def enable(prestarted: PrestartedRuntime | None) -> None:
    """Offer ``prestarted`` to this agent's one START (None: nothing pre-started)."""
    global _prestarted  # noqa: PLW0603 - one per agent process, taken once
    _prestarted = prestarted


def take(argv: list[str], env: Mapping[str, str]) -> PrestartedRuntime | None:
    """The pre-started runtime if it can stand for ``argv``/``env`` (once); any other
    START discards it."""
    global _prestarted
    prestarted, _prestarted = _prestarted, None
    if prestarted is None:
        return None
    if prestarted.stands_for(argv, env):
        return prestarted
    prestarted.discard()
    return None
