"""Pre-warmed fork servers ("zygotes"): sandboxes started by fork, not by exec.

A zygote is a long-running root process of one concrete interpreter, started with
``-I -S -u`` and an empty environment. It imports the agent (``ember.agent.main``:
asyncio and the rest), Ember's Python runtime client (``bootstrap.preload()``) and
``nsinit``'s setup steps, and nothing tenant-specific; then it waits on a SEQPACKET
socket shared with the backend. For each request (the generic part of the launcher
config of ``namespace.py``, as JSON) it pre-starts a sandbox:

1. clones a child straight into new mount/pid/net/ipc/uts namespaces (pid 1 there);
2. in the child: ``nsinit.prepare`` (the generic root: /usr, the agent, the runtime
   client, /etc files, /proc, /dev; hostname, lo), then it waits, still root and
   function-less, on a socket of its own for its specialisation (the function's part of
   the config, the agent channel and the seccomp program as fds): ``nsinit.specialise``
   (cgroups, /var/task, /opt, /tmp, pivot_root, uid 993, no_new_privs, seccomp), a clean
   ``os.environ`` and ``sys.argv``, then the agent's ``Agent(channel).run()`` in-process,
   with fork mode enabled for the preloaded runtime client (``agent/runtime.py``); the
   child never returns into the zygote's loop;
3. in the zygote: sends back a pidfd for the child and the other end of its socket, and
   reaps the child once it ends.

The backend keeps pre-started sandboxes per zygote (``warm_pool.WarmPool``) so that a
cold start only specialises one.

The zygote stays single-threaded (a raw clone needs that), exits when the backend's end
of its socket closes, and never runs tenant code: tenant code only ever runs in the
children, after they dropped privileges. Known limits of forking from one image: every
sandbox of one zygote shares its ASLR layout and its ``str`` hash seed
(``PYTHONHASHSEED``); ``random``, ``os.urandom`` and OpenSSL do differ per sandbox.

Both sides live here: ``serve`` runs in the zygote (stdlib and ``ember.agent`` only),
``Zygote`` is the backend's handle on one zygote process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
from typing import Any

from ember.agent.runtime import ENVIRON_AREA_VAR

log = logging.getLogger("ember")

# The zygote's whole command line: no host paths in it (a sandbox can read its pid 1's
# /proc/1/cmdline); the source root and paths arrive as the first message on the socket.
BOOT_CODE = (
    "import socket,sys;s=socket.socket(fileno=int(sys.argv[1]));"
    "a=s.recv(65536).decode().split('\\0');sys.path.insert(0,a[0]);"
    "from ember.sandbox.zygote import serve;serve(s,a)"
)
MAX_MESSAGE = 1 << 20
READY = b"ready"
# Room for the environment blocks of the zygote's children (agent_runtime.ENVIRON_AREA_VAR;
# Lambda caps a function's variables at 4 KB, the reserved ones add about 2 KB)
ENVIRON_AREA = 32 * 1024
START_TIMEOUT_S = 10.0  # a starting zygote not ready by then is given up on
REPLY_TIMEOUT_S = 5.0
MAX_FAILED_STARTS = 3  # consecutive failures before a zygote is no longer restarted


# --- the zygote process -------------------------------------------------------------


def serve(sock: socket.socket, args: list[str]) -> None:  # noqa: PLR0915 - one loop, kept whole
    """The zygote's main loop (``args``: source root, runtime dir in sandboxes)."""
    src_root, sandbox_runtime_dir = args[0], args[1]
    base_path = tuple(path for path in sys.path if path != src_root)
    import gc  # noqa: PLC0415 - the zygote's imports happen here, once

    from ember.agent import main as agent_main  # noqa: PLC0415
    from ember.agent import prestart as agent_prestart  # noqa: PLC0415
    from ember.agent import runtime as agent_runtime  # noqa: PLC0415
    from ember.runtimes.python import bootstrap  # noqa: PLC0415
    from ember.sandbox import node_slot, nsinit  # noqa: PLC0415

    client = bootstrap.preload()
    forkable = agent_runtime.ForkableRuntime(
        argv=(sys.executable, "-I", "-S", "-u", f"{sandbox_runtime_dir}/bootstrap.py"),
        sys_path=(*base_path, sandbox_runtime_dir),
        entry=client.main,
    )
    asyncio.run(asyncio.sleep(0))  # warm what the first event loop imports lazily
    gc.collect()
    gc.freeze()  # children do not dirty the shared pages' gc headers
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sock.setblocking(True)
    sock.send(READY)
    own_fds = [sock.fileno(), wake_read, wake_write]

    def run_child(config: dict[str, Any], control: socket.socket) -> None:
        """A pre-started sandbox: prepare, wait to be specialised, then be the agent."""
        code = nsinit.FAILED
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in own_fds:
                os.close(fd)
            nsinit.prepare(config)
            control_fd = control.fileno()

            ranges = config.get("warm_ranges") or {}  # a recorded working set, or all

            def warm_template(template_control: int) -> None:
                os.close(control_fd)  # only pid 1 answers the backend
                if config["warm"]:
                    nsinit.populate_private_memory(
                        nsinit.readable(template_control), ranges.get("runtime")
                    )

            def harden_template(message: bytes) -> None:
                hardening = json.loads(message)
                nsinit.harden(hardening, bytes.fromhex(hardening["seccomp"]))

            template = agent_runtime.fork_template(forkable, warm_template, harden_template)
            # a node slot (node_slot.py): the Node.js runtime started ahead, hardened
            prestarted = node_slot.launch(config, control) if "node_prestart" in config else None
            if config["warm"]:  # after the fork: both copies private
                nsinit.populate_private_memory(nsinit.readable(control_fd), ranges.get("agent"))
            message, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 2)
            control.close()
            if not message:
                os._exit(0)  # never used: the backend closed or dropped it
            config.update(json.loads(message))
            channel, config["seccomp_fd"] = fds
            program = os.pread(config["seccomp_fd"], MAX_MESSAGE, 0)
            nsinit.unidle(template.pid)  # it may be warming up as SCHED_IDLE
            nsinit.specialise(config, None)
            hardening = {"uid": config["uid"], "gid": config["gid"], "seccomp": program.hex()}
            template.send(json.dumps(hardening).encode())
            os.environ.clear()
            os.environ.update(config["env"])
            agent_runtime.rewrite_proc_environ(config["env"])
            sys.argv = ["ember-agent"]
            sys.path[:] = [config["agent_root"], *base_path]
            agent_runtime.enable_fork(forkable, template)
            agent_prestart.enable(prestarted)
            code = 1
            code = asyncio.run(agent_main.Agent(channel).run())
        except BaseException as exc:  # noqa: BLE001 - report anything, then fail
            with contextlib.suppress(BaseException):
                sys.stderr.write(f"ember sandbox setup failed: {exc!r}\n")
        finally:
            os._exit(code)

    while True:
        readable = select.select([sock.fileno(), wake_read], [], [])[0]
        if wake_read in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_read, 4096)
        _reap()
        if sock.fileno() not in readable:
            continue
        message, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 2)
        for fd in fds:
            os.close(fd)
        if not message:
            return  # the backend is gone
        reply: dict[str, Any] = {}
        sent: list[int] = []
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = nsinit.clone_into_namespaces()
        except OSError as exc:
            reply = {"error": str(exc)}
        else:
            if pid == 0:
                ours.close()
                run_child(json.loads(message), theirs)
            reply, sent = {"pid": pid}, [os.pidfd_open(pid), ours.fileno()]
        theirs.close()
        try:
            socket.send_fds(sock, [json.dumps(reply).encode()], sent)
        finally:
            ours.close()
            if sent:
                os.close(sent[0])


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# --- the backend's side -------------------------------------------------------------


class ZygoteUnavailable(Exception):
    """This zygote cannot start a sandbox now (the caller falls back to exec)."""


class Zygote:
    """The backend's handle on one zygote process for one interpreter.

    Scope: one per interpreter per backend. Requests are serialised (one at a time on the
    socket). Invariant: at most one zygote process per handle; a dead one is reaped and
    replaced in the background by ``restart``, up to ``MAX_FAILED_STARTS`` failures in a
    row, after which the handle stays down (every start takes the exec path).
    """

    def __init__(self, interpreter: str, src_root: str, sandbox_runtime_dir: str) -> None:
        self.interpreter = interpreter
        self._args = f"{src_root}\0{sandbox_runtime_dir}".encode()
        self._process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._ready = False
        self._failures = 0
        self._lock: asyncio.Lock | None = None
        self._closed = False
        self.given_up = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def spawn(self) -> None:
        """Start the zygote process (returns at once; readiness is awaited on use)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [self.interpreter, "-I", "-S", "-u", "-c", BOOT_CODE, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env={ENVIRON_AREA_VAR: "x" * ENVIRON_AREA},
                cwd="/", stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        except OSError:
            ours.close()
            self._note_failure()
            raise
        finally:
            theirs.close()
        ours.send(self._args)
        ours.setblocking(False)
        self._sock, self._ready = ours, False

    async def prestart(self, config: dict[str, Any]) -> tuple[int, int, socket.socket]:
        """A new pre-started sandbox (``config``: its generic part): its host pid, a pidfd
        and the socket whose one message specialises it."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                await self._wait_ready()
                sock = self._sock
                assert sock is not None
                sock.send(json.dumps(config).encode())
                reply, fds = await asyncio.wait_for(_recv_fds(sock), REPLY_TIMEOUT_S)
            except (TimeoutError, OSError, EOFError) as exc:
                self.restart(f"{type(exc).__name__}: {exc}")
                raise ZygoteUnavailable(str(exc) or type(exc).__name__) from exc
            except asyncio.CancelledError:
                # the reply of an abandoned request would answer the next one: start over
                self._stop()
                raise
        answer = json.loads(reply)
        if "pid" not in answer or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            raise ZygoteUnavailable(answer.get("error", "no pid in the zygote's reply"))
        self._failures = 0
        return int(answer["pid"]), fds[0], socket.socket(fileno=fds[1])

    async def _wait_ready(self) -> None:
        if self._closed:
            raise EOFError("the zygote was closed")
        if self.given_up:
            raise EOFError("the zygote was given up after repeated failures")
        if self._sock is None:
            self.spawn()
        if self._ready:
            return
        sock = self._sock
        assert sock is not None
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(sock, 64), START_TIMEOUT_S)
        if data != READY:
            raise EOFError(f"zygote {self.interpreter} exited before it was ready")
        self._ready = True
        log.info("cold starts: zygote for %s ready (pid %s)", self.interpreter, self.pid)

    def restart(self, reason: str) -> None:
        """Drop the current zygote process and start another in the background."""
        self._stop()
        if self._closed:
            return
        self._note_failure()
        if self.given_up:
            log.error(
                "cold starts: zygote for %s failed %d times (%s); exec path from now on",
                self.interpreter, self._failures, reason,
            )  # fmt: skip
            return
        log.warning(
            "cold starts: zygote for %s down (%s); this start takes the exec path, "
            "restarting the zygote", self.interpreter, reason,
        )  # fmt: skip
        with contextlib.suppress(OSError):
            self.spawn()

    def _note_failure(self) -> None:
        self._failures += 1
        self.given_up = self._failures >= MAX_FAILED_STARTS

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=REPLY_TIMEOUT_S)
            self._process = None
        self._ready = False

    def close(self) -> None:
        """Stop the zygote for good (its running sandboxes are not affected)."""
        self._closed = True
        self._stop()


async def _recv_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    loop = asyncio.get_running_loop()
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 2)
        except BlockingIOError:
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(sock.fileno(), _set_once, readable)
            try:
                await readable
            finally:
                loop.remove_reader(sock.fileno())
            continue
        if not message:
            raise EOFError("the zygote closed its socket")
        return message, fds


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
