"""External extensions: find them in ``/opt/extensions``, start them, signal them.

Every non-directory entry of the extensions directory is an external extension (sorted by
name, at most ``MAX_EXTENSIONS``); each is exec'ed with no arguments, in its own session,
stdin ``/dev/null``, stdout/stderr on pipes (captured as the function's log output), with
the extension environment of RAPID (lambda-spec §2.3): the runtime's environment minus the
runtime-only variables and every ``_``-prefixed one. A file ``disable-extensions-jwigqn8j``
beside the directory turns them all off, as on Lambda.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from ember.agent.extensions_api import MAX_EXTENSIONS
from ember.agent.runtime import ExitStatus, spawn_captured

DISABLE_FILE = "disable-extensions-jwigqn8j"
RUNTIME_ONLY = frozenset(
    {
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "AWS_XRAY_DAEMON_ADDRESS",
        "AWS_XRAY_CONTEXT_MISSING",
    }
)


class LaunchError(Exception):
    """An extension could not be started (``Extension.LaunchError``)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def discover(directory: str) -> list[str]:
    """Paths of the external extensions in ``directory`` (none if it is absent)."""
    parent = os.path.dirname(directory.rstrip("/"))  # noqa: PTH120 - no pathlib in the agent
    if os.path.exists(os.path.join(parent, DISABLE_FILE)):  # noqa: PTH110, PTH118
        return []
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError:
        return []
    paths = [entry.path for entry in entries if not entry.is_dir()]
    return paths[:MAX_EXTENSIONS]


def extension_env(runtime_env: dict[str, str]) -> dict[str, str]:
    """RAPID's ``AgentExecEnv``: no runtime-only and no ``_``-prefixed variables."""
    return {
        key: value
        for key, value in runtime_env.items()
        if not key.startswith("_") and key not in RUNTIME_ONLY
    }


class ExtensionProcess:
    """One running external extension. Scope: one agent.

    Invariants: ``pid`` is also its process group id; ``exited`` is resolved once, by the
    agent's ``ChildReaper``.
    """

    def __init__(self, name: str, pid: int, stdout_fd: int, stderr_fd: int) -> None:
        self.name = name
        self.pid = pid
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.exited: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()

    @classmethod
    def spawn(cls, path: str, env: dict[str, str]) -> ExtensionProcess:
        name = os.path.basename(path)  # noqa: PTH119 - no pathlib in the agent
        try:
            pid, out_read, err_read = spawn_captured([path], "/", env)
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise LaunchError(name, f"fork/exec {path}: {reason}") from exc
        return cls(name, pid, out_read, err_read)

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)


def describe_exit(status: ExitStatus) -> str:
    """Go's wording for how a process ended (``exit status 1``, ``signal: killed``)."""
    names = {6: "aborted", 9: "killed", 11: "segmentation fault", 15: "terminated"}
    if status.signal:
        return f"signal: {names.get(status.signal, str(status.signal))}"
    return f"exit status {status.status}"
