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
- cgroup limits: memory = MemorySize (swap off), 1,024 pids, CPU share by memory;
- outbound network only when the spec asks for it (``NetworkPolicy.OUTBOUND``): a
  slirp4netns process per such sandbox (``network.py``), started at specialisation
  (zygote path) or once the launcher has unshared (exec path), before any function code
  runs, and stopped with the sandbox. Other sandboxes start no process for it.

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

As root, the launcher sets up mounts and cgroups before dropping to host uid 993. Run by
another user (rootless, ``rootless.py``), each sandbox also gets a user namespace, in
which 993 is the server's own uid, and no cgroups unless the hierarchy is writable: what
cannot be applied is reported at start (``unapplied_limits``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from ember.agent.launch import agent_argv, source_root
from ember.errors import SandboxError
from ember.runtimes.python import RUNTIME_DIR
from ember.sandbox import calibration, cgroups, nsinit, working_set
from ember.sandbox.base import ChannelSandbox, NetworkPolicy, SandboxSpec, StartFor
from ember.sandbox.network import (
    NetworkSync,
    OutboundNetwork,
    network_description,
    network_refusal,
    sandbox_config,
)
from ember.sandbox.node_pool import NodeSlots
from ember.sandbox.pool_demand import CpuLoad
from ember.sandbox.rootless import (
    NoCgroup,
    SandboxCgroup,
    cgroups_usable,
    is_rootless,
    unapplied_limits,
    userns_refusal,
)
from ember.sandbox.seccomp import compile_filter, filter_fd
from ember.sandbox.warm_pool import KILL_WAIT_S, Prepared, WarmPool
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
    # sandbox.localdomain: the name Lambda's docs give extensions for their telemetry listener
    "/etc/hosts": "127.0.0.1\tlocalhost sandbox.localdomain\n::1\tlocalhost\n",
    "/etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
    "/var/rapid/ember/__init__.py": "",
}
HOST_ETC = ("/etc/ssl", "/etc/ca-certificates", "/etc/alternatives")
RECORD_AFTER_S = 1.0  # a zygote's first start runs this long before its pages are read
RECORD_QUIET_MAX_S = 3.0  # then the recording waits for a pause in takes, at most this long
MIN_POOL_SHARE = 3  # an interpreter's pool when the total is shared among several
# what a pooled sandbox pre-faults ahead of its start (EMBER_SANDBOX_PREFAULT)
PREFAULT_OFF = "off"  # nothing: copy-on-write faults are paid during the start
PREFAULT_WORKING_SET = "working-set"  # the pages the zygote's first start wrote (default)
PREFAULT_FULL = "full"  # every private page (fastest start, most memory per environment)
PREFAULT_MODES = (PREFAULT_OFF, PREFAULT_WORKING_SET, PREFAULT_FULL)
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
        cgroup: SandboxCgroup,
        workdir: Path | None,
        started_by: str = "exec",
        network: OutboundNetwork | None = None,
        prewarmed: bool = False,  # from the warm pool's pre-started sandboxes (a pool hit)
    ) -> None:
        super().__init__(cgroup.name, reader, writer, prewarmed)
        self._process = process
        self.network = network  # its slirp4netns, when it has outbound network
        self.started_by = started_by  # "zygote" (forked) or "exec" (launcher process)
        self._cgroup = cgroup
        self._peak = cgroups.PeakReader(cgroup)
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
        return self._final[0] if self._final else self._peak.read()

    def oom_killed(self) -> bool:
        return (self._final[1] if self._final else self._cgroup.oom_kills()) > 0

    async def kill(self) -> None:
        """SIGKILL the head: pid 1 itself, or the launcher (pid 1 follows by PDEATHSIG)."""
        self._writer.close()
        self._process.kill()
        if self.network is not None:
            self.network.stop()  # now: its teardown overlaps the namespace's
        await self.wait_closed()

    async def wait_closed(self) -> None:
        await self._process.wait()
        if not self._cleaned:
            self._cleaned = True
            if self.network is not None:
                await self.network.close()
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
        self._final = (self._peak.read(), self._cgroup.oom_kills())
        self._peak.close()
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
        prefault: str = PREFAULT_WORKING_SET,
        pool_max: int = 0,
        pool_min_available_mb: int = 0,
        available_mb: Callable[[], int | None] | None = None,
        node_pool_size: int = 1,
    ) -> None:
        self.rootless = is_rootless()
        refusal = userns_refusal() if self.rootless else None
        if refusal is not None:
            raise SandboxError(
                f"the namespace sandbox needs root or user namespaces, and {refusal}; run as "
                "root, or choose --sandbox process (no isolation) explicitly"
            )
        version = cgroups_usable()
        if version is None and not self.rootless:
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
        self.pool_total = pool_size  # what the interpreters' pools hold in all when idle
        # what a pool may grow to after a burst of takes (pool_demand.py); a pool of size 0
        # (no pre-started sandboxes, as asked) never grows
        self.pool_max = max(pool_size, pool_max) if pool_size > 0 else 0
        # what pooled sandboxes pre-fault ahead (MADV_POPULATE_WRITE): PREFAULT_MODES
        self.prefault = prefault
        # by zygote interpreter: the zygote process it was recorded from (its pid: a
        # restarted zygote has another address layout) and the working set
        self._working_sets: dict[str, tuple[int, working_set.WorkingSet]] = {}
        self._recording: set[str] = set()  # interpreters whose working set is being read
        self._tasks: set[asyncio.Task[None]] = set()
        # what a recording waits for before it reads the first start's pages (tests: a gate)
        self.record_after: Callable[[], Awaitable[object]] = lambda: asyncio.sleep(RECORD_AFTER_S)
        self.record_quiet_max_s = RECORD_QUIET_MAX_S
        # warm pools stop refilling while the machine's MemAvailable is below this
        self.pool_min_available_mb = pool_min_available_mb
        self.available_mb = available_mb or (lambda: meminfo_mb("MemAvailable"))
        # a reader of the share of the CPUs busy since its last call, one per pool (a pool
        # refills only on mostly idle CPUs)
        self.cpu_meter: Callable[[], Callable[[], float | None]] = lambda: CpuLoad().busy
        self.cgroup_version = version
        paths = ("/var/task", "/opt", SANDBOX_RUNTIME_DIR)  # as NamespaceSandbox shows them
        self.node_slots = NodeSlots(self, node_pool_size, paths, self._seccomp)
        if prewarm:
            self._zygote(SANDBOX_PYTHON)

    def unapplied_limits(self) -> list[str]:
        """What this backend cannot apply here (rootless), for the start-up log."""
        limits = unapplied_limits(self._cgroup_version, SANDBOX_UID, SANDBOX_GID)
        refusal = network_refusal()
        if refusal is not None:
            limits.append(
                f"outbound network (tag ember:network=outbound): {refusal}; starting a "
                "function with that tag fails"
            )
        elif self.rootless:
            limits.append(
                "slirp4netns (outbound network) runs with its seccomp filter but not in a "
                "mount namespace of its own (--enable-sandbox needs root)"
            )
        return limits

    def describe(self) -> str:
        starts = (
            "pre-warmed zygote per interpreter (fork; exec if a zygote is down)"
            if self.prewarm
            else "exec (pre-warmed zygotes off)"
        )
        mode = "rootless: user/" if self.rootless else ""
        limits = (
            f"cgroup v{self._cgroup_version} limits (memory, pids, cpu share)"
            if self._cgroup_version is not None
            else "NO cgroup limits"
        )
        return (
            f"namespace backend: {mode}pid/mount/net/ipc/uts namespaces, read-only root, uid "
            f"{SANDBOX_UID}, no capabilities, seccomp, {limits}; network: "
            f"{network_description()}; cold starts: {starts}"
        )

    @property
    def pool_size(self) -> int:
        """What each interpreter's warm pool holds when idle: ``pool_total`` shared among
        the pools in use, at least ``MIN_POOL_SHARE`` each (a total of 0: none)."""
        if self.pool_total <= 0:
            return 0
        share = self.pool_total // max(1, len(self._pools))
        return max(min(MIN_POOL_SHARE, self.pool_total), share)

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
        """Each warm pool (by interpreter): sandboxes ready, refilling, paused for memory,
        and how many it aims for now (its size, or more after a burst); and the node slots
        (``"node"``: ready, refilling, handed out)."""
        return {
            **{interpreter: {"ready": pool.ready, "refilling": int(pool.refilling),
                             "memory_low": int(pool.low_memory_seen), "target": pool.target}
               for interpreter, pool in self._pools.items()},
            "node": self.node_slots.statistics(),
        }  # fmt: skip

    def new_cgroup_name(self) -> str:
        return self.cgroup_prefix + uuid.uuid4().hex

    def new_cgroup(self) -> SandboxCgroup:
        """A new sandbox's cgroup (``NoCgroup`` where none can be made: rootless)."""
        name = self.new_cgroup_name()
        if self._cgroup_version is None:
            return NoCgroup(name)
        return cgroups.Cgroup(name, self._cgroup_version)

    def zygotes(self) -> list[Zygote]:
        return list(self._zygotes.values())

    def zygote_for(self, spec: SandboxSpec) -> Zygote | None:
        """The zygote that will start ``spec``'s sandbox; None when pre-warming is off."""
        if not self.prewarm:
            return None
        return self._zygote(spec_interpreter(spec) or SANDBOX_PYTHON)

    def pool(self, zygote: Zygote) -> WarmPool:
        """``zygote``'s warm pool; a new one shares the pools' total with the others (it
        refills at its first take or anticipation, theirs shrink now)."""
        pool = self._pools.get(zygote.interpreter)
        if pool is None:
            pool = self._pools[zygote.interpreter] = WarmPool(self, zygote)
            for other in self._pools.values():
                other.reconfigure(resize=other is not pool)
        return pool

    def warming(self, interpreter: str) -> tuple[bool, working_set.WorkingSet | None]:
        """Whether a pooled sandbox of ``interpreter``'s zygote pre-faults, and which pages
        (None: all): per ``prefault`` and the working set recorded so far."""
        if self.prefault == PREFAULT_FULL:
            return True, None
        recorded = self._recorded(interpreter)
        if self.prefault == PREFAULT_WORKING_SET and recorded is not None:
            return True, recorded
        return False, None

    def _recorded(self, interpreter: str) -> working_set.WorkingSet | None:
        """The working set recorded from the zygote process running now, if any."""
        entry = self._working_sets.get(interpreter)
        zygote = self._zygotes.get(interpreter)
        if entry is None or zygote is None or entry[0] != zygote.pid:
            return None
        return entry[1]

    async def start(self, spec: SandboxSpec) -> NamespaceSandbox:
        zygote = self.zygote_for(spec)
        if zygote is not None and not zygote.given_up:
            pool = self.pool(zygote)
            try:
                slot = self.node_slots.take(spec, zygote)  # node started ahead (node_pool.py)
                prepared = slot or await pool.take()
                sandbox = await self._specialise(prepared, spec)
            except ZygoteUnavailable as exc:
                log.warning("cold starts: exec path for this start: %s", exc)
            else:
                if slot is None:
                    self._record_working_set_later(pool, zygote.interpreter, prepared)
                return sandbox
        return await self._start_exec(spec)

    async def anticipate(self, spec: SandboxSpec, start_for: StartFor) -> None:
        """Ready the zygote of ``spec``'s interpreter for a burst before any start: its
        working set recorded by a calibration start when the pre-fault needs one and none
        is recorded yet (``calibration.py``), then its warm pool filled (in the background,
        as refills go). A failed calibration is logged, never raised: the first real start
        records then. Cancellable (server shutdown): nothing is left behind."""
        zygote = self.zygote_for(spec)
        if zygote is None or zygote.given_up or spec.interpreter is None:
            return  # no pool, or not a Python runtime: nothing of it is forked
        pool = self.pool(zygote)
        interpreter = zygote.interpreter
        if (
            self.prefault != PREFAULT_WORKING_SET
            or self.pool_max == 0  # no pool: nothing would pre-fault it
            or self._cgroup_version is None  # rootless without cgroups: pages unreadable
            or self._recorded(interpreter) is not None
            or interpreter in self._recording
        ):
            pool.refill_soon()
            return
        self._recording.add(interpreter)
        try:
            recorded = await self._calibrate(pool, spec, start_for)
        except (calibration.CalibrationFailed, ZygoteUnavailable, SandboxError, OSError) as exc:
            log.warning("cold starts: calibration start for %s failed: %s", interpreter, exc)
            recorded = None
        finally:
            self._recording.discard(interpreter)
        if recorded is None:
            pool.refill_soon()
            return
        self._note_working_set(interpreter, *recorded, "a calibration start")
        # what waits in the pool was not pre-faulted: replaced, but not under a burst
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pool.until_quiet(), self.record_quiet_max_s)
        await pool.renew()

    async def _calibrate(
        self, pool: WarmPool, spec: SandboxSpec, start_for: StartFor
    ) -> tuple[int, working_set.WorkingSet] | None:
        """One calibration start in a sandbox pre-started aside (no take, no refill), its
        pages read once the runtime is back on ``/next``; None if it ended first."""
        prepared = await pool.prestart_aside()
        try:
            sandbox = await self._specialise(prepared, spec)
        except asyncio.CancelledError:  # (its other failures discard it themselves)
            await asyncio.shield(asyncio.to_thread(prepared.discard))
            raise
        try:
            await calibration.exercise(sandbox, start_for(sandbox))
            recorded = await asyncio.to_thread(_read_working_set, prepared)
        finally:
            await asyncio.shield(sandbox.kill())
        if prepared.origin is None or not recorded["runtime"]:
            return None
        return prepared.origin, recorded

    def _note_working_set(
        self, interpreter: str, origin: int, recorded: working_set.WorkingSet, source: str
    ) -> None:
        self._working_sets[interpreter] = (origin, recorded)
        log.info(
            "cold starts: working set of %s recorded from %s (agent %.1f MiB, runtime %.1f "
            "MiB); pooled sandboxes pre-fault it from now on", interpreter, source,
            working_set.size(recorded["agent"]) / 2**20,
            working_set.size(recorded["runtime"]) / 2**20,
        )  # fmt: skip

    def _record_working_set_later(
        self, pool: WarmPool, interpreter: str, prepared: Prepared
    ) -> None:
        """Once per zygote: read what the first start wrote, after it ran a while."""
        if self.prefault != PREFAULT_WORKING_SET or not isinstance(prepared.cgroup, cgroups.Cgroup):
            return  # rootless without cgroups: its processes cannot be listed, no recording
        if prepared.origin is None or prepared.origin != self._zygotes[interpreter].pid:
            return  # pre-started by an earlier zygote process: another address layout
        if self._recorded(interpreter) is not None or interpreter in self._recording:
            return
        self._recording.add(interpreter)
        task = asyncio.get_running_loop().create_task(
            self._record_working_set(pool, interpreter, prepared)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def quiesce(self) -> None:
        """Wait for the background work started so far (working-set recordings; tests)."""
        await asyncio.gather(*self._tasks)

    async def _record_working_set(
        self, pool: WarmPool, interpreter: str, prepared: Prepared
    ) -> None:
        try:
            await self.record_after()
            # the renewal below re-pre-starts: not in the middle of a burst, but a steady
            # stream of cold starts (never a second apart) must not keep it from recording
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.until_quiet(), self.record_quiet_max_s)
            recorded = await asyncio.to_thread(_read_working_set, prepared)
        except Exception:
            log.exception("cold starts: the working set of %s could not be read", interpreter)
            return
        finally:
            self._recording.discard(interpreter)
        if not recorded["runtime"]:
            return  # the sandbox ended first: the next start records
        assert prepared.origin is not None  # checked when the recording was scheduled
        self._note_working_set(interpreter, prepared.origin, recorded, "its first start")
        await pool.renew()

    async def _specialise(self, prepared: Prepared, spec: SandboxSpec) -> NamespaceSandbox:
        """Make a pre-started sandbox ``spec``'s: one message to it, and it runs."""
        cgroup = prepared.cgroup
        nsinit.unidle(prepared.pid)  # it may be pre-faulting as SCHED_IDLE: let it answer now
        network = None
        if spec.network is NetworkPolicy.OUTBOUND:  # configured before the function runs
            try:
                network = await OutboundNetwork.start(prepared.pid)
            except SandboxError:
                await asyncio.to_thread(prepared.discard)
                raise
        parent, child = socket.socketpair()
        try:
            cgroup.set_limits(spec.memory_mb)  # it is in there already, limits come now
            config = self._spec_config(spec)
            socket.send_fds(prepared.control, [json.dumps(config).encode()],
                            [child.fileno(), self._seccomp_fd])  # fmt: skip
        except OSError as exc:  # it died while waiting (or the cgroup is gone)
            parent.close()
            if network is not None:
                await network.close()
            prepared.discard()
            raise ZygoteUnavailable(f"a pre-started sandbox was lost: {exc}") from exc
        finally:
            child.close()
            prepared.control.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        self.last_started_by = "zygote"
        head = PidfdHead(prepared.pidfd)
        return NamespaceSandbox(
            head, reader, writer, cgroup, None, "zygote", network, prewarmed=prepared.pooled
        )

    async def _start_exec(self, spec: SandboxSpec) -> NamespaceSandbox:
        cgroup = self.new_cgroup()
        workdir = self.scratch / cgroup.name
        (workdir / "root").mkdir(parents=True)
        await asyncio.to_thread(cgroup.create, spec.memory_mb)
        parent, child = socket.socketpair()
        seccomp = filter_fd(self._seccomp)
        sync = NetworkSync() if spec.network is NetworkPolicy.OUTBOUND else None
        config = {
            **self.base_config(str(workdir / "root"), cgroup),
            **self._spec_config(spec),
            "seccomp_fd": seccomp,
            "keep_fds": [child.fileno()],
            "exec": agent_argv(SANDBOX_PYTHON, child.fileno(), SANDBOX_AGENT_ROOT),
        }
        sync_fds = sync.launcher_fds() if sync is not None else {}
        if sync is not None:
            config["network"].update(sync_fds)
        try:
            process = await asyncio.create_subprocess_exec(
                self._launcher_python, "-I", "-S", LAUNCHER, json.dumps(config),
                pass_fds=(child.fileno(), seccomp, *sync_fds.values()), env={}, cwd="/",
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            parent.close()
            if sync is not None:
                sync.close()
            await asyncio.to_thread(cgroup.remove)
            raise SandboxError(f"could not start the sandbox launcher: {exc}") from exc
        finally:
            child.close()
            os.close(seccomp)
            if sync is not None:
                sync.close_launcher_ends()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        self.last_started_by = "exec"
        head = LauncherHead(process)
        sandbox = NamespaceSandbox(head, reader, writer, cgroup, workdir)
        if sync is not None:
            try:
                sandbox.network = await sync.attach(process.pid)
            except SandboxError:
                await sandbox.kill()
                raise
        return sandbox

    def base_config(self, root: str, cgroup: SandboxCgroup) -> dict[str, Any]:
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
        if spec.runtime_client is not None:  # mounted over the generic root's Python client
            binds.append([str(spec.runtime_client), SANDBOX_RUNTIME_DIR])
        if spec.opt_dir is not None:
            binds.append([str(spec.opt_dir), "/opt"])
        config: dict[str, Any] = {"spec_binds": binds, "tmp_size_mb": spec.tmp_mb}
        if spec.network is NetworkPolicy.OUTBOUND:
            config["network"] = sandbox_config()
        return config

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.node_slots.close()
        for pool in self._pools.values():
            await pool.close()
        for zygote in self._zygotes.values():
            await asyncio.to_thread(zygote.close)
        os.close(self._seccomp_fd)


def sweep_leftovers(version: int | None, scratch: Path, prefix: str) -> None:
    """Remove what a killed server left: empty sandbox cgroups and scratch roots."""
    if version is not None:
        for name in cgroups.leftover_names(version):
            if name.startswith(prefix):  # else another server's
                cgroups.Cgroup(name, version).remove()
    for workdir in scratch.iterdir():
        with contextlib.suppress(OSError):
            (workdir / "root").rmdir()
            workdir.rmdir()


def _read_working_set(prepared: Prepared) -> working_set.WorkingSet:
    """The pages a started sandbox's processes hold privately (its cgroup lists them)."""
    assert isinstance(prepared.cgroup, cgroups.Cgroup)
    pids: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        pids = [int(pid) for pid in Path(prepared.cgroup.procs_files()[0]).read_text().split()]
    if prepared.pid not in pids:
        return {"agent": [], "runtime": []}  # it ended
    return working_set.record(prepared.pid, pids)


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
        pool_max=settings.sandbox_pool_max,
        prefault=settings.sandbox_prefault,
        pool_min_available_mb=settings.sandbox_pool_min_available_mb,
        node_pool_size=settings.sandbox_node_pool_size,
    )
