"""The runtime process: start it, reap it, read its memory peak, capture its output.

Two ways to start it. By default the runtime command is exec'ed (``subprocess``). In an
agent running inside a pre-warmed zygote's child, ``enable_fork`` registers the runtime
client the zygote already imported; a START whose command is exactly that client under
this very interpreter (``<python> -I -S -u <runtime dir>/bootstrap.py [handler]``) is
then started by ``os.fork`` instead, and the child calls the client's ``main()`` with the
same stdio, session, working directory, environment and ``sys.argv``/``sys.path`` an
exec'ed runtime would have (``sys.flags`` are the zygote's: ``-I -S -u``). Anything else
(``provided.*`` bootstraps, another interpreter, other flags) is exec'ed as before.

A third way, ahead of both: a runtime process a node slot started before the function
was known (``agent/prestart.py``) is handed the START when it can stand for it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ember.agent import prestart

READ_SIZE = 64 * 1024
MAX_PARTIAL_LINE = 64 * 1024
PARTIAL_LINE_DELAY_S = 0.05
PR_SET_PDEATHSIG = 1
FORK_FAILED = 127  # a forked runtime that could not even be set up (like exec's 127)


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


@dataclass(frozen=True, slots=True)
class ForkableRuntime:
    """A runtime client already imported in this process, startable by ``os.fork``.

    ``argv`` is the command it stands for, as the START frame spells it (interpreter,
    flags, script); a START may add one argument (the handler). ``sys_path`` is the
    ``sys.path`` that command would start with; ``entry`` is the client's ``main``.
    """

    argv: tuple[str, ...]
    sys_path: tuple[str, ...]
    entry: Callable[[], None]

    def matches(self, argv: list[str]) -> bool:
        n = len(self.argv)
        if len(argv) not in (n, n + 1) or tuple(argv[1:n]) != self.argv[1:]:
            return False
        return argv[0] == self.argv[0] or os.path.realpath(argv[0]) == os.path.realpath(
            self.argv[0]
        )


@dataclass(slots=True)
class RuntimeTemplate:
    """A runtime process forked ahead (``fork_template``), waiting to be told what to run.

    Messages on ``control`` (length-prefixed): first the hardening its maker passes to
    ``harden`` (privilege drop, seccomp: before anything of a function reaches it), then
    the START's ``{"argv", "cwd", "env"}``. Its output goes to ``stdout_fd``/``stderr_fd``.
    """

    pid: int
    control: int
    stdout_fd: int
    stderr_fd: int

    def send(self, message: bytes) -> None:
        os.write(self.control, len(message).to_bytes(4, "big") + message)


_forkable: ForkableRuntime | None = None
_template: RuntimeTemplate | None = None


def enable_fork(runtime: ForkableRuntime | None, template: RuntimeTemplate | None = None) -> None:
    """Start matching runtimes by fork from now on (``None``: always exec); the first one
    from ``template`` when there is one."""
    global _forkable, _template
    _forkable, _template = runtime, template


def fork_template(
    runtime: ForkableRuntime, warm: Callable[[int], None], harden: Callable[[bytes], None]
) -> RuntimeTemplate:
    """Fork a runtime ahead of its START (see ``RuntimeTemplate``); ``warm(control)`` runs
    in it at once (the caller's way to pay copy-on-write faults ahead, until a message
    arrives on ``control``)."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    control_read, control_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which never returns
        code = FORK_FAILED
        try:
            for fd in (out_read, err_read, control_write):
                os.close(fd)
            warm(control_read)
            hardening = _read_message(control_read)
            if hardening is None:
                os._exit(0)  # never used
            harden(hardening)
            start = _read_message(control_read)
            if start is None:
                os._exit(0)
            os.close(control_read)
            spec = json.loads(start)
            _become_runtime(runtime, spec["argv"], spec["cwd"], spec["env"], out_write, err_write)
        except BaseException:  # noqa: BLE001 - report anything, then fail like a failed exec
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        finally:
            os._exit(code)
    for fd in (out_write, err_write, control_read):
        os.close(fd)
    return RuntimeTemplate(pid, control_write, out_read, err_read)


def spawn_captured(argv: list[str], cwd: str, env: dict[str, str]) -> tuple[int, int, int]:
    """Start ``argv`` in a session of its own, stdin /dev/null, dying with the agent; its
    stdout and stderr on fresh non-blocking pipes. Returns (pid, stdout fd, stderr fd);
    the child is reaped by ``ChildReaper``, never by ``Popen``. Raises ``OSError``."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
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
    except OSError:
        os.close(out_read)
        os.close(err_read)
        raise
    finally:
        os.close(out_write)
        os.close(err_write)
    child.returncode = 0  # reaped by ChildReaper, never by Popen
    os.set_blocking(out_read, False)
    os.set_blocking(err_read, False)
    return child.pid, out_read, err_read


def _drop_template() -> None:
    """Close the template's pipes: it reads EOF and exits (reaped as any child)."""
    global _template
    template, _template = _template, None
    if template is not None:
        for fd in (template.control, template.stdout_fd, template.stderr_fd):
            os.close(fd)


def _read_message(fd: int) -> bytes | None:
    """One length-prefixed message from a pipe; None at EOF."""
    header = _read_exactly(fd, 4)
    return None if header is None else _read_exactly(fd, int.from_bytes(header, "big"))


def _read_exactly(fd: int, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def forkable_for(argv: list[str]) -> ForkableRuntime | None:
    """The preloaded runtime that can stand in for ``argv``, if any."""
    return _forkable if _forkable is not None and _forkable.matches(argv) else None


ENVIRON_AREA_VAR = "EMBER_ENVIRON_AREA"  # a zygote's padding, overwritten per process


def rewrite_proc_environ(env: dict[str, str]) -> bool:
    """Make ``/proc/self/environ`` show ``env``; False when it does not fit.

    The kernel shows a process's exec-time environment block, so a forked process (a
    zygote's child) would show the zygote's. The zygote is started with a padding
    variable (``ENVIRON_AREA_VAR``) whose room this overwrites in place, NUL-padded.
    """
    try:
        stat_fd = os.open("/proc/self/stat", os.O_RDONLY)
        try:
            stat = os.read(stat_fd, 4096)
        finally:
            os.close(stat_fd)
        fields = stat[stat.rindex(b")") + 2 :].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end (fields 50, 51)
        block = b"".join(f"{key}={value}".encode() + b"\0" for key, value in env.items())
        if len(block) > end - start:
            return False
        mem = os.open("/proc/self/mem", os.O_WRONLY)
        try:
            os.pwrite(mem, block.ljust(end - start, b"\0"), start)
        finally:
            os.close(mem)
    except (OSError, ValueError, IndexError):
        return False
    return True


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
        prestarted = prestart.take(argv, env)
        if prestarted is not None and (process := cls._hand_off(prestarted, cwd, env)):
            return process
        runtime = forkable_for(argv)
        if runtime is not None:
            return cls._fork(runtime, argv, cwd, env)
        _drop_template()  # not a command it can stand for: let it exit
        started_at = asyncio.get_running_loop().time()
        try:
            pid, out_read, err_read = spawn_captured(argv, cwd, env)
        except OSError as exc:
            raise _spawn_error(exc, argv[0], cwd) from exc
        return cls(pid, out_read, err_read, started_at)

    @classmethod
    def _hand_off(
        cls, prestarted: prestart.PrestartedRuntime, cwd: str, env: dict[str, str]
    ) -> RuntimeProcess | None:
        """The pre-started runtime, told its START; None if it died meanwhile."""
        _drop_template()  # a Python runtime forked ahead: not wanted now
        if not os.path.isdir(cwd):  # noqa: PTH112 - as exec would fail on it
            prestarted.discard()
            raise SpawnError("Runtime.InvalidWorkingDir", f"chdir {cwd}: no such file or directory")
        started_at = asyncio.get_running_loop().time()
        try:
            prestarted.hand_off(cwd, env)
        except OSError:
            prestarted.discard()
            return None
        os.set_blocking(prestarted.stdout_fd, False)
        os.set_blocking(prestarted.stderr_fd, False)
        return cls(prestarted.pid, prestarted.stdout_fd, prestarted.stderr_fd, started_at)

    @classmethod
    def _fork(
        cls, runtime: ForkableRuntime, argv: list[str], cwd: str, env: dict[str, str]
    ) -> RuntimeProcess:
        """Start the preloaded runtime client in a forked child (see the module doc)."""
        if not os.path.isdir(cwd):  # noqa: PTH112 - no pathlib in the agent's start
            raise SpawnError("Runtime.InvalidWorkingDir", f"chdir {cwd}: no such directory")
        global _template
        template, _template = _template, None
        if template is not None:
            started_at = asyncio.get_running_loop().time()
            try:
                template.send(json.dumps({"argv": argv, "cwd": cwd, "env": env}).encode())
            except OSError:  # it died: fork a new one below
                for fd in (template.stdout_fd, template.stderr_fd):
                    os.close(fd)
            else:
                os.set_blocking(template.stdout_fd, False)
                os.set_blocking(template.stderr_fd, False)
                return cls(template.pid, template.stdout_fd, template.stderr_fd, started_at)
            finally:
                os.close(template.control)
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        started_at = asyncio.get_running_loop().time()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            _become_runtime(runtime, argv, cwd, env, out_write, err_write)
        os.close(out_write)
        os.close(err_write)
        os.set_blocking(out_read, False)
        os.set_blocking(err_read, False)
        return cls(pid, out_read, err_read, started_at)

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


def _become_runtime(
    runtime: ForkableRuntime,
    argv: list[str],
    cwd: str,
    env: dict[str, str],
    out_write: int,
    err_write: int,
) -> None:
    """Turn this forked process into the runtime ``argv`` stands for; never returns."""
    code = FORK_FAILED
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_write, 1)
        os.dup2(err_write, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        rewrite_proc_environ(env)
        sys.argv = argv[len(runtime.argv) - 1 :]
        sys.path[:] = runtime.sys_path
        code = _call_main(runtime.entry)
    except BaseException:  # noqa: BLE001 - report anything, then fail like a failed exec
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        os._exit(code)


def _call_main(entry: Callable[[], None]) -> int:
    """Run ``entry`` as an interpreter runs a script: the exit status, atexit, flushes."""
    try:
        entry()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - an uncaught exception, as the interpreter shows it
        sys.excepthook(*sys.exc_info())
        code = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()  # wait for non-daemon threads, as at interpreter exit
    atexit._run_exitfuncs()  # what interpreter exit does
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    return code


class Watched(Protocol):
    """A child whose exit someone waits for (the runtime, an extension)."""

    pid: int
    exited: asyncio.Future[ExitStatus]


class ChildReaper:
    """Reaps every child of the agent on SIGCHLD (as pid 1 that includes orphans).

    Scope: one agent process. The SIGCHLD handler is installed before the runtime starts,
    so no exit is missed; statuses of processes nobody watches are dropped.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._watched: dict[int, asyncio.Future[ExitStatus]] = {}
        loop.add_signal_handler(signal.SIGCHLD, self.reap)

    def watch(self, process: RuntimeProcess | Watched) -> None:
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
