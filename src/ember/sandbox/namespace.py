"""The ``namespace`` backend: each environment in its own namespaces, cgroups and seccomp.

What a function sees (built by ``nsinit.py``, the launcher):
- its own pid, mount, network, ipc and uts namespaces: only its own processes in
  ``/proc``, only its own loopback (the agent's Runtime API at 127.0.0.1:9001 is reachable
  from this sandbox alone, and nothing of the host network is);
- a read-only root holding the host's ``/usr`` (and the interpreter it needs), its code at
  ``/var/task`` and layers at ``/opt`` (read-only), Ember's runtime client at
  ``/var/runtime`` and the agent at ``/var/rapid``; a writable ``/tmp`` of
  ``EphemeralStorage`` size (a tmpfs: its pages count toward the memory limit);
- host uid 993 / gid 990 (unprivileged, owning nothing), no capabilities, no_new_privs,
  and the seccomp deny list of ``seccomp.py``;
- cgroup limits: memory = MemorySize (swap off), 1,024 pids, CPU share by memory.

Two ways to start one, same result:
- the zygote path (default): a pre-warmed fork server per interpreter (``zygote.py``)
  clones pid 1 straight into the namespaces and runs ``nsinit``'s setup and then the agent
  in-process; a python runtime under that interpreter is forked from the agent too. The
  backend holds a pidfd for pid 1. ``python3.12``/``3.13`` sandboxes use a zygote of their
  own interpreter (inferred from the spec's read-only interpreter prefix, or
  ``SandboxSpec.interpreter``), everything else the ``/usr/bin/python3`` one;
- the exec path: ``nsinit.py`` as a launcher process (fresh interpreter), which execs
  the agent, which execs the runtime. Used when pre-warming is off
  (``Settings.sandbox_zygote``), and for any start whose zygote is down (which is then
  restarted in the background).

Requires root (the launcher sets up mounts and cgroups before dropping to uid 993).
Rootless operation through user namespaces is not implemented yet.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ember.agent.launch import agent_argv, source_root
from ember.errors import SandboxError
from ember.runtimes.python import RUNTIME_DIR
from ember.sandbox import cgroups, nsinit
from ember.sandbox.base import ChannelSandbox, SandboxSpec
from ember.sandbox.seccomp import compile_filter, filter_fd
from ember.sandbox.zygote import Zygote, ZygoteUnavailable
from ember.settings import Settings, meminfo_mb

log = logging.getLogger("ember")

SANDBOX_UID, SANDBOX_GID = 993, 990
SANDBOX_PYTHON = "/usr/bin/python3"  # runs the agent inside the sandbox
LAUNCHER = str(Path(__file__).resolve().parent / "nsinit.py")
AGENT_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
ETC_FILES = {
    "/etc/passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\n"
    "sbx_user1051:x:993:990::/tmp:/usr/sbin/nologin\n",
    "/etc/group": "root:x:0:\nsbx_user1051:x:990:\n",
    "/etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    "/etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
    "/var/rapid/ember/__init__.py": "",
}
HOST_ETC = ("/etc/ssl", "/etc/ca-certificates", "/etc/alternatives")
KILL_WAIT_S = 5.0
# A refill waits this long after a start: pre-starting (clone, mounts) competes for the
# CPUs and the kernel's mount lock with the start that just took a sandbox.
REFILL_DELAY_S = 0.05
SANDBOX_RUNTIME_DIR = "/var/runtime"
SANDBOX_AGENT_ROOT = "/var/rapid"


class Head(Protocol):
    """The process whose end ends the sandbox: the launcher, or pid 1 itself."""

    def kill(self) -> None: ...

    async def wait(self) -> object: ...


class LauncherHead:
    """The exec path's launcher (outside the namespaces): pid 1 dies with it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGKILL)

    async def wait(self) -> object:
        return await self._process.wait()


class PidfdHead:
    """The zygote path's pid 1, through a pidfd: no pid reuse race, no reaping here."""

    def __init__(self, pidfd: int) -> None:
        self._pidfd = pidfd
        loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[None] = loop.create_future()
        loop.add_reader(pidfd, self._on_exit)

    def _on_exit(self) -> None:
        asyncio.get_running_loop().remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self._exited.set_result(None)

    def kill(self) -> None:
        if self._pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    async def wait(self) -> object:
        return await asyncio.shield(self._exited)


class NamespaceSandbox(ChannelSandbox):
    """The namespace an environment runs in, and its head process. Scope: one environment."""

    def __init__(
        self,
        process: Head,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        cgroup: cgroups.Cgroup,
        workdir: Path | None,
        started_by: str = "exec",
        prewarmed: bool = False,  # from the warm pool's pre-started sandboxes (a pool hit)
    ) -> None:
        super().__init__(cgroup.name, reader, writer, prewarmed)
        self._process = process
        self.started_by = started_by  # "zygote" (forked) or "exec" (launcher process)
        self._cgroup = cgroup
        self._workdir = workdir
        self._cleaned = False
        self._final: tuple[int | None, int] | None = None  # (peak, oom kills) once removed

    @property
    def task_root(self) -> str:
        return "/var/task"

    @property
    def opt_root(self) -> str:
        return "/opt"

    @property
    def runtime_dir(self) -> str:
        return "/var/runtime"

    @property
    def runtime_api_bind(self) -> str:
        return "127.0.0.1:9001"

    def memory_peak_bytes(self) -> int | None:
        return self._final[0] if self._final else self._cgroup.memory_peak_bytes()

    def oom_killed(self) -> bool:
        return (self._final[1] if self._final else self._cgroup.oom_kills()) > 0

    async def kill(self) -> None:
        """SIGKILL the head: pid 1 itself, or the launcher (pid 1 follows by PDEATHSIG)."""
        self._writer.close()
        self._process.kill()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        await self._process.wait()
        if not self._cleaned:
            self._cleaned = True
            await asyncio.to_thread(self._clean_up)

    def _clean_up(self) -> None:
        """Remove the cgroups once their last process is gone, and the scratch root."""
        deadline = time.monotonic() + KILL_WAIT_S
        for procs in self._cgroup.procs_files():
            while time.monotonic() < deadline:
                try:
                    if not Path(procs).read_text().strip():
                        break
                except FileNotFoundError:
                    break
                for pid in Path(procs).read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                time.sleep(0.005)
        self._final = (self._cgroup.memory_peak_bytes(), self._cgroup.oom_kills())
        self._cgroup.remove()
        if self._workdir is not None:
            with contextlib.suppress(OSError):
                (self._workdir / "root").rmdir()
                self._workdir.rmdir()


class NamespaceBackend:
    """Starts namespace sandboxes. Scope: one per server."""

    name = "namespace"

    def __init__(
        self,
        launcher_python: str,
        scratch: Path,
        prewarm: bool = True,
        pool_size: int = 3,
        prefault: bool = False,
        pool_min_available_mb: int = 0,
        available_mb: Callable[[], int | None] | None = None,
    ) -> None:
        if os.geteuid() != 0:
            raise SandboxError(
                "the namespace sandbox needs root (rootless mode is not implemented yet); "
                "run as root, or choose --sandbox process (no isolation) explicitly"
            )
        version = cgroups.version()
        if version is None:
            raise SandboxError("no usable cgroup memory/pids/cpu controllers on this host")
        self._cgroup_version = version
        self._launcher_python = launcher_python
        self.scratch = scratch
        self.scratch.mkdir(parents=True, exist_ok=True)
        (scratch / "root").mkdir(exist_ok=True)
        self._seccomp = compile_filter()
        self._seccomp_fd = filter_fd(self._seccomp)  # read with pread: shared by sandboxes
        # cgroup names carry this data dir's mark: several servers (tests, benchmarks) may
        # share the machine, and one's start-up sweep must not remove another's cgroups
        self.cgroup_prefix = hashlib.sha256(str(scratch).encode()).hexdigest()[:8] + "-"
        sweep_leftovers(version, self.scratch, self.cgroup_prefix)
        self.prewarm = prewarm
        self.last_started_by: str | None = None  # "zygote" or "exec", for tests and logs
        self._zygotes: dict[str, Zygote] = {}  # real interpreter path => its zygote
        self._pools: dict[str, WarmPool] = {}  # real interpreter path => its warm pool
        self.pool_size = pool_size
        # pre-fault pooled sandboxes' memory (MADV_POPULATE_WRITE): measured here, a lower
        # median but a tail of ~80-400 ms cold starts; off by default (docs/BENCHMARKS.md)
        self.prefault = prefault
        # warm pools stop refilling while the machine's MemAvailable is below this
        self.pool_min_available_mb = pool_min_available_mb
        self.available_mb = available_mb or (lambda: meminfo_mb("MemAvailable"))
        self.cgroup_version = version
        if prewarm:
            self._zygote(SANDBOX_PYTHON)

    def describe(self) -> str:
        starts = (
            "pre-warmed zygote per interpreter (fork; exec if a zygote is down)"
            if self.prewarm
            else "exec (pre-warmed zygotes off)"
        )
        return (
            f"namespace backend: pid/mount/net/ipc/uts namespaces, read-only root, uid "
            f"{SANDBOX_UID}, no capabilities, seccomp, cgroup v{self._cgroup_version} limits "
            f"(memory, pids, cpu share); network: loopback only; cold starts: {starts}"
        )

    def _zygote(self, interpreter: str) -> Zygote:
        real = os.path.realpath(interpreter)
        zygote = self._zygotes.get(real)
        if zygote is None:
            zygote = Zygote(real, str(source_root()), SANDBOX_RUNTIME_DIR)
            self._zygotes[real] = zygote
            with contextlib.suppress(OSError):
                zygote.spawn()
        return zygote

    def statistics(self) -> dict[str, dict[str, int]]:
        """Each warm pool (by interpreter): sandboxes ready, refilling, paused for memory."""
        return {
            interpreter: {"ready": pool.ready, "refilling": int(pool.refilling),
                          "memory_low": int(pool.low_memory_seen)}
            for interpreter, pool in self._pools.items()
        }  # fmt: skip

    def new_cgroup_name(self) -> str:
        return self.cgroup_prefix + uuid.uuid4().hex

    def zygotes(self) -> list[Zygote]:
        return list(self._zygotes.values())

    def zygote_for(self, spec: SandboxSpec) -> Zygote | None:
        """The zygote that will start ``spec``'s sandbox; None when pre-warming is off."""
        if not self.prewarm:
            return None
        return self._zygote(spec_interpreter(spec) or SANDBOX_PYTHON)

    def pool(self, zygote: Zygote) -> WarmPool:
        pool = self._pools.get(zygote.interpreter)
        if pool is None:
            pool = self._pools[zygote.interpreter] = WarmPool(self, zygote)
        return pool

    async def start(self, spec: SandboxSpec) -> NamespaceSandbox:
        zygote = self.zygote_for(spec)
        if zygote is not None and not zygote.given_up:
            pool = self.pool(zygote)
            try:
                return await self._specialise(await pool.take(), spec)
            except ZygoteUnavailable as exc:
                log.warning("cold starts: exec path for this start: %s", exc)
        return await self._start_exec(spec)

    async def _specialise(self, prepared: Prepared, spec: SandboxSpec) -> NamespaceSandbox:
        """Make a pre-started sandbox ``spec``'s: one message to it, and it runs."""
        cgroup = prepared.cgroup
        parent, child = socket.socketpair()
        nsinit.unidle(prepared.pid)  # it may be pre-faulting as SCHED_IDLE: let it answer now
        try:
            cgroup.set_limits(spec.memory_mb)  # it is in there already, limits come now
            config = self._spec_config(spec)
            socket.send_fds(prepared.control, [json.dumps(config).encode()],
                            [child.fileno(), self._seccomp_fd])  # fmt: skip
        except OSError as exc:  # it died while waiting (or the cgroup is gone)
            parent.close()
            prepared.discard()
            raise ZygoteUnavailable(f"a pre-started sandbox was lost: {exc}") from exc
        finally:
            child.close()
            prepared.control.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        self.last_started_by = "zygote"
        head = PidfdHead(prepared.pidfd)
        return NamespaceSandbox(head, reader, writer, cgroup, None, "zygote", prepared.pooled)

    async def _start_exec(self, spec: SandboxSpec) -> NamespaceSandbox:
        sandbox_id = self.new_cgroup_name()
        workdir = self.scratch / sandbox_id
        (workdir / "root").mkdir(parents=True)
        cgroup = cgroups.Cgroup(sandbox_id, self._cgroup_version)
        await asyncio.to_thread(cgroup.create, spec.memory_mb)
        parent, child = socket.socketpair()
        seccomp = filter_fd(self._seccomp)
        config = {
            **self.base_config(str(workdir / "root"), cgroup),
            **self._spec_config(spec),
            "seccomp_fd": seccomp,
            "keep_fds": [child.fileno()],
            "exec": agent_argv(SANDBOX_PYTHON, child.fileno(), SANDBOX_AGENT_ROOT),
        }
        try:
            process = await asyncio.create_subprocess_exec(
                self._launcher_python, "-I", "-S", LAUNCHER, json.dumps(config),
                pass_fds=(child.fileno(), seccomp), env={}, cwd="/",
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            parent.close()
            await asyncio.to_thread(cgroup.remove)
            raise SandboxError(f"could not start the sandbox launcher: {exc}") from exc
        finally:
            child.close()
            os.close(seccomp)
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        self.last_started_by = "exec"
        return NamespaceSandbox(LauncherHead(process), reader, writer, cgroup, workdir)

    def base_config(self, root: str, cgroup: cgroups.Cgroup) -> dict[str, Any]:
        """What every sandbox's launcher config holds, whatever the function."""
        binds = [["/usr", "/usr"], [RUNTIME_DIR, SANDBOX_RUNTIME_DIR],
                 [str(source_root() / "ember" / "agent"), "/var/rapid/ember/agent"]]  # fmt: skip
        binds += [[path, path] for path in HOST_ETC if Path(path).exists()]
        return {
            "cgroup_procs": cgroup.procs_files(),
            "root": root,
            "symlinks": {"/bin": "usr/bin", "/sbin": "usr/sbin", "/lib": "usr/lib",
                         "/lib64": "usr/lib64", "/etc/localtime": "/usr/share/zoneinfo/UTC"},
            "binds": binds,
            "files": ETC_FILES,
            "hostname": "ember-sandbox",
            "uid": SANDBOX_UID,
            "gid": SANDBOX_GID,
            "cwd": "/",
            "env": AGENT_ENV,
            "agent_root": SANDBOX_AGENT_ROOT,
        }  # fmt: skip

    def _spec_config(self, spec: SandboxSpec) -> dict[str, Any]:
        """The function's part of the launcher config."""
        binds = [[str(spec.code_dir), "/var/task"]]
        binds += [[str(path), str(path)] for path in spec.read_only_paths]
        if spec.opt_dir is not None:
            binds.append([str(spec.opt_dir), "/opt"])
        return {
            "spec_binds": binds,
            "tmp_size_mb": spec.tmp_mb,
        }

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        for zygote in self._zygotes.values():
            await asyncio.to_thread(zygote.close)
        os.close(self._seccomp_fd)


def sweep_leftovers(version: int, scratch: Path, prefix: str) -> None:
    """Remove what a killed server left: empty sandbox cgroups and scratch roots."""
    for name in cgroups.leftover_names(version):
        if not name.startswith(prefix):
            continue  # another server's
        cgroups.Cgroup(name, version).remove()
    for workdir in scratch.iterdir():
        with contextlib.suppress(OSError):
            (workdir / "root").rmdir()
            workdir.rmdir()


@dataclass
class Prepared:
    """A pre-started sandbox: pid 1 waiting (root, function-less) for its specialisation."""

    pid: int
    pidfd: int
    control: socket.socket  # one message on it specialises the sandbox
    cgroup: cgroups.Cgroup  # joined already; limits written at specialisation
    pooled: bool = False  # taken from the pool's ready ones (not pre-started on demand)

    def discard(self) -> None:
        """Kill it, wait until it is gone (pidfd), remove its cgroup."""
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        self.control.close()
        with contextlib.suppress(OSError):
            select.select([self.pidfd], [], [], KILL_WAIT_S)
            os.close(self.pidfd)
        self.cgroup.remove()


class WarmPool:
    """Pre-started sandboxes of one zygote, refilled in the background.

    Scope: one per zygote. ``take`` hands out a prepared sandbox at once when there is
    one, else pre-starts one on demand (what a pool of size 0 always does); either way a
    refill to ``pool_size`` follows in the background (pre-faulted when the backend's
    ``prefault`` is on). Raises ``ZygoteUnavailable``. A refill pauses while the machine's
    MemAvailable (``available_mb``, injectable) is below the backend's
    ``pool_min_available_mb``, and says so in the log once each time that happens.
    """

    def __init__(
        self,
        backend: NamespaceBackend,
        zygote: Zygote,
        available_mb: Callable[[], int | None] | None = None,
    ) -> None:
        self._backend = backend
        self._zygote = zygote
        self._available_mb = available_mb or backend.available_mb
        self._memory_low = False
        self._ready: collections.deque[Prepared] = collections.deque()
        self._refilling: asyncio.Task[None] | None = None
        self._refill_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._root = str(backend.scratch / "root")  # each sandbox mounts its own root here

    async def take(self) -> Prepared:
        if self._ready:
            prepared = self._ready.popleft()
            prepared.pooled = True
        else:
            prepared = await self._prestart(warm=False)
        if self._refill_timer is not None:
            self._refill_timer.cancel()
        self._refill_timer = asyncio.get_running_loop().call_later(REFILL_DELAY_S, self.refill_soon)
        return prepared

    @property
    def ready(self) -> int:
        """How many pre-started sandboxes wait now."""
        return len(self._ready)

    @property
    def low_memory_seen(self) -> bool:
        """Whether the last refill check found MemAvailable below the threshold."""
        return self._memory_low

    @property
    def refilling(self) -> bool:
        """Whether a background refill runs now."""
        return self._refilling is not None

    async def fill(self) -> None:
        """Refill to ``pool_size`` now and return once done (start-up, tests)."""
        self.refill_soon()
        if self._refilling is not None:
            await asyncio.shield(self._refilling)

    def refill_soon(self) -> None:
        if self._closed:
            return
        if len(self._ready) < self._backend.pool_size and self._refilling is None:
            self._refilling = asyncio.get_running_loop().create_task(self._refill())

    async def _refill(self) -> None:
        try:
            while len(self._ready) < self._backend.pool_size and not self.memory_low():
                self._ready.append(await self._prestart(warm=self._backend.prefault))
        except ZygoteUnavailable as exc:
            log.warning(
                "cold starts: warm pool of %s not refilled: %s", self._zygote.interpreter, exc
            )
        finally:
            self._refilling = None

    def memory_low(self) -> bool:
        """Whether MemAvailable is below the refill threshold (logged once per low spell)."""
        available, floor = self._available_mb(), self._backend.pool_min_available_mb
        low = available is not None and available < floor
        if low and not self._memory_low:
            log.warning(
                "cold starts: warm pool of %s not refilled: %s MB available, below %s MB "
                "(EMBER_SANDBOX_POOL_MIN_AVAILABLE_MB)", self._zygote.interpreter, available, floor,
            )  # fmt: skip
        self._memory_low = low
        return low

    async def _prestart(self, warm: bool) -> Prepared:
        """``warm``: have it pay its copy-on-write faults ahead (worth it only off the
        critical path: for a start waiting on it, lazy faults cost less)."""
        cgroup = cgroups.Cgroup(self._backend.new_cgroup_name(), self._backend.cgroup_version)
        try:
            cgroup.create_dirs()
            config = {**self._backend.base_config(self._root, cgroup), "warm": warm}
            pid, pidfd, control = await self._zygote.prestart(config)
        except BaseException:
            cgroup.remove()
            raise
        return Prepared(pid, pidfd, control, cgroup)

    async def close(self) -> None:
        """Stop refilling (for good) and discard the waiting sandboxes."""
        self._closed = True
        if self._refill_timer is not None:
            self._refill_timer.cancel()
        refilling = self._refilling
        if refilling is not None:
            refilling.cancel()
            await asyncio.wait({refilling})
        while self._ready:
            self._ready.popleft().discard()


def spec_interpreter(spec: SandboxSpec) -> str | None:
    """The interpreter a spec's runtime will run under, when it can be told.

    ``SandboxSpec.interpreter`` when the caller set it; else the one ``python3.X`` in a
    read-only interpreter prefix (``<prefix>/bin/python3.X``: pyenv installations);
    else None (``/usr``'s interpreters, custom runtimes).
    """
    if spec.interpreter is not None:
        return spec.interpreter
    for prefix in spec.read_only_paths:
        found = [
            path
            for path in (prefix / "bin").glob("python3.*")
            if path.name[len("python3.") :].isdigit() and os.access(path, os.X_OK)
        ]
        if len(found) == 1:
            return str(found[0])
    return None


def from_settings(settings: Settings) -> NamespaceBackend:
    return NamespaceBackend(
        settings.agent_python,
        settings.data_dir.resolve() / "sandboxes",
        prewarm=settings.sandbox_zygote,
        pool_size=settings.sandbox_pool_size,
        prefault=settings.sandbox_prefault,
        pool_min_available_mb=settings.sandbox_pool_min_available_mb,
    )
