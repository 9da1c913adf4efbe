"""The runtime process: start it, reap it, read its memory peak, capture its output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

READ_SIZE = 64 * 1024
MAX_PARTIAL_LINE = 64 * 1024
PARTIAL_LINE_DELAY_S = 0.05
PR_SET_PDEATHSIG = 1


class SpawnError(Exception):
    """The runtime could not be started; carries RAPID's error type and message."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a process ended: an exit code, or the number of the signal that killed it."""

    status: int | None
    signal: int | None

    @classmethod
    def from_wait_status(cls, wait_status: int) -> ExitStatus:
        if os.WIFSIGNALED(wait_status):
            return cls(None, os.WTERMSIG(wait_status))
        return cls(os.WEXITSTATUS(wait_status), None)


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A child hook that SIGKILLs the runtime when the agent dies (not needed as pid 1).

    As pid 1 of a pid namespace the kernel already kills everything with the agent;
    elsewhere (the ``process`` backend) this keeps a SIGKILLed agent from leaking its
    runtime. Costs a ``ctypes`` import, so only paid when it matters.
    """
    if os.getpid() == 1 or not sys.platform.startswith("linux"):
        return None
    import ctypes  # noqa: PLC0415 - only needed outside a pid namespace

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    agent_pid = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != agent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _spawn_error(exc: OSError, argv0: str, cwd: str) -> SpawnError:
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    if exc.filename == cwd and cwd != argv0:
        return SpawnError("Runtime.InvalidWorkingDir", f"chdir {cwd}: {reason}")
    return SpawnError("Runtime.InvalidEntrypoint", f"fork/exec {argv0}: {reason}")


class RuntimeProcess:
    """The one runtime process of an environment, in its own session and process group.

    Scope: one agent. Invariants: ``pid`` is also the process group id; ``exited`` is
    resolved exactly once, by ``ChildReaper``, after the process has been reaped.
    """

    def __init__(self, pid: int, stdout_fd: int, stderr_fd: int, started_at: float) -> None:
        self.pid = pid
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.started_at = started_at
        self.exited: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()
        self._status_fd = -1  # /proc/<pid>/status, kept open: re-read with one pread

    @classmethod
    def spawn(cls, argv: list[str], cwd: str, env: dict[str, str]) -> RuntimeProcess:
        """Start ``argv`` with stdin /dev/null and stdout/stderr on non-blocking pipes."""
        if not argv:
            raise SpawnError("Runtime.InvalidEntrypoint", "fork/exec : no runtime command")
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        started_at = asyncio.get_running_loop().time()
        try:
            child = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out_write,
                stderr=err_write,
                start_new_session=True,
                preexec_fn=_pdeathsig_preexec(),  # noqa: PLW1509 - the agent has no threads
            )
        except OSError as exc:
            os.close(out_read)
            os.close(err_read)
            raise _spawn_error(exc, argv[0], cwd) from exc
        finally:
            os.close(out_write)
            os.close(err_write)
        child.returncode = 0  # reaped by ChildReaper, never by Popen
        os.set_blocking(out_read, False)
        os.set_blocking(err_read, False)
        return cls(child.pid, out_read, err_read, started_at)

    def close(self) -> None:
        if self._status_fd >= 0:
            os.close(self._status_fd)
            self._status_fd = -1

    def kill_group(self) -> None:
        """SIGKILL the runtime and everything left in its process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def memory_peak_kb(self) -> int:
        """The runtime's peak resident set (VmHWM) in KiB; 0 when unreadable."""
        try:
            if self._status_fd < 0:
                self._status_fd = os.open(f"/proc/{self.pid}/status", os.O_RDONLY)
            data = os.pread(self._status_fd, 8192, 0)
        except OSError:
            return 0
        start = data.find(b"VmHWM:")
        end = data.find(b"kB", start)
        if start < 0 or end < 0:
            return 0
        try:
            return int(data[start + 6 : end])
        except ValueError:
            return 0


class ChildReaper:
    """Reaps every child of the agent on SIGCHLD (as pid 1 that includes orphans).

    Scope: one agent process. The SIGCHLD handler is installed before the runtime starts,
    so no exit is missed; statuses of processes nobody watches are dropped.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._watched: dict[int, asyncio.Future[ExitStatus]] = {}
        loop.add_signal_handler(signal.SIGCHLD, self.reap)

    def watch(self, process: RuntimeProcess) -> None:
        self._watched[process.pid] = process.exited
        self.reap()

    def reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            future = self._watched.pop(pid, None)
            if future is not None and not future.done():
                future.set_result(ExitStatus.from_wait_status(wait_status))


LogSink = Callable[[str, bytes], None]


class _Stream:
    __slots__ = ("fd", "name", "partial", "timer")

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self.fd = fd
        self.partial = b""
        self.timer: asyncio.TimerHandle | None = None


class OutputCapture:
    """Forwards the runtime's stdout and stderr to ``sink(stream_name, data)``.

    Data goes out as whole lines where possible; a trailing partial line is held for at
    most ``PARTIAL_LINE_DELAY_S`` (or until ``MAX_PARTIAL_LINE`` bytes) before it is sent
    anyway. Invariant: when ``drain()`` returns, every byte the runtime had written into
    either pipe, partial lines included, has been passed to the sink, in order per stream.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: LogSink) -> None:
        self._loop = loop
        self._sink = sink
        self._streams: list[_Stream] = []
        self._paused = False

    def add(self, name: str, fd: int) -> None:
        stream = _Stream(name, fd)
        self._streams.append(stream)
        self._loop.add_reader(fd, self._on_readable, stream)

    def drain(self) -> None:
        """Read both pipes until they are empty, then flush partial lines.

        One ``select`` finds the pipes holding data; each is then read until a short read
        (a pipe read returns everything buffered up to the size asked for).
        """
        open_fds = [stream.fd for stream in self._streams if stream.fd >= 0]
        readable = select.select(open_fds, [], [], 0)[0] if open_fds else []
        for stream in self._streams:
            if stream.fd in readable:
                while stream.fd >= 0 and self._read_once(stream) == READ_SIZE:
                    pass
            self._flush_partial(stream)

    def pause(self) -> None:
        """Stop reading (back-pressure from the host channel); ``drain`` still works."""
        if not self._paused:
            self._paused = True
            for stream in self._streams:
                if stream.fd >= 0:
                    self._loop.remove_reader(stream.fd)

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            for stream in self._streams:
                if stream.fd >= 0:
                    self._loop.add_reader(stream.fd, self._on_readable, stream)

    def close(self) -> None:
        for stream in self._streams:
            self._close(stream)

    def _on_readable(self, stream: _Stream) -> None:
        self._read_once(stream)

    def _read_once(self, stream: _Stream) -> int:
        """One read; the number of bytes read (0 when the pipe is empty or closed)."""
        try:
            data = os.read(stream.fd, READ_SIZE)
        except BlockingIOError:
            return 0
        except OSError:
            data = b""
        if not data:
            self._flush_partial(stream)
            self._close(stream)
            return 0
        self._feed(stream, data)
        return len(data)

    def _feed(self, stream: _Stream, data: bytes) -> None:
        if stream.partial:
            data, stream.partial = stream.partial + data, b""
        cut = data.rfind(b"\n") + 1
        if len(data) - cut >= MAX_PARTIAL_LINE:
            cut = len(data)
        if cut:
            self._sink(stream.name, data[:cut])
        stream.partial = data[cut:]
        if stream.partial and stream.timer is None:
            stream.timer = self._loop.call_later(PARTIAL_LINE_DELAY_S, self._flush_partial, stream)

    def _flush_partial(self, stream: _Stream) -> None:
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None
        if stream.partial:
            data, stream.partial = stream.partial, b""
            self._sink(stream.name, data)

    def _close(self, stream: _Stream) -> None:
        if stream.fd < 0:
            return
        if not self._paused:
            self._loop.remove_reader(stream.fd)
        os.close(stream.fd)
        stream.fd = -1
