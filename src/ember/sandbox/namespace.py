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

Requires root (the launcher sets up mounts and cgroups before dropping to uid 993).
Rootless operation through user namespaces is not implemented yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from ember.agent.launch import agent_argv, source_root
from ember.errors import SandboxError
from ember.runtimes.python import RUNTIME_DIR
from ember.sandbox import cgroups
from ember.sandbox.base import SandboxSpec
from ember.sandbox.seccomp import compile_filter, filter_fd
from ember.settings import Settings

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


class NamespaceSandbox:
    """One launcher process (outside) and the namespace it heads. Scope: one environment."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        cgroup: cgroups.Cgroup,
        workdir: Path,
    ) -> None:
        self._process = process
        self._reader, self._writer = reader, writer
        self._cgroup = cgroup
        self._workdir = workdir
        self._id = cgroup.name
        self._cleaned = False
        self._final: tuple[int | None, int] | None = None  # (peak, oom kills) once removed

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
        """SIGKILL the launcher: its child (pid 1) follows by PDEATHSIG, then the namespace."""
        self._writer.close()
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGKILL)
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
        with contextlib.suppress(OSError):
            (self._workdir / "root").rmdir()
            self._workdir.rmdir()


class NamespaceBackend:
    """Starts namespace sandboxes. Scope: one per server."""

    name = "namespace"

    def __init__(self, launcher_python: str, scratch: Path) -> None:
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
        self._scratch = scratch
        self._scratch.mkdir(parents=True, exist_ok=True)
        self._seccomp = compile_filter()
        sweep_leftovers(version, self._scratch)

    def describe(self) -> str:
        return (
            f"namespace backend: pid/mount/net/ipc/uts namespaces, read-only root, uid "
            f"{SANDBOX_UID}, no capabilities, seccomp, cgroup v{self._cgroup_version} limits "
            "(memory, pids, cpu share); network: loopback only"
        )

    async def start(self, spec: SandboxSpec) -> NamespaceSandbox:
        sandbox_id = uuid.uuid4().hex
        workdir = self._scratch / sandbox_id
        (workdir / "root").mkdir(parents=True)
        cgroup = cgroups.Cgroup(sandbox_id, self._cgroup_version)
        await asyncio.to_thread(cgroup.create, spec.memory_mb)
        parent, child = socket.socketpair()
        seccomp = filter_fd(self._seccomp)
        config = self._config(spec, workdir, cgroup, child.fileno(), seccomp)
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
        return NamespaceSandbox(process, reader, writer, cgroup, workdir)

    def _config(
        self, spec: SandboxSpec, workdir: Path, cgroup: cgroups.Cgroup, channel: int, seccomp: int
    ) -> dict[str, Any]:
        binds = [["/usr", "/usr"], [str(spec.code_dir), "/var/task"], [RUNTIME_DIR, "/var/runtime"],
                 [str(source_root() / "ember" / "agent"), "/var/rapid/ember/agent"]]  # fmt: skip
        binds += [[path, path] for path in HOST_ETC if Path(path).exists()]
        binds += [[str(path), str(path)] for path in spec.read_only_paths]
        if spec.opt_dir is not None:
            binds.append([str(spec.opt_dir), "/opt"])
        return {
            "cgroup_procs": cgroup.procs_files(),
            "root": str(workdir / "root"),
            "symlinks": {"/bin": "usr/bin", "/sbin": "usr/sbin", "/lib": "usr/lib",
                         "/lib64": "usr/lib64", "/etc/localtime": "/usr/share/zoneinfo/UTC"},
            "binds": binds,
            "files": {**ETC_FILES, **({} if spec.opt_dir else {"/opt/.keep": ""})},
            "tmp_size_mb": spec.tmp_mb,
            "hostname": "ember-sandbox",
            "uid": SANDBOX_UID,
            "gid": SANDBOX_GID,
            "seccomp_fd": seccomp,
            "keep_fds": [channel],
            "cwd": "/",
            "env": AGENT_ENV,
            "exec": agent_argv(SANDBOX_PYTHON, channel, "/var/rapid"),
        }  # fmt: skip

    async def close(self) -> None:
        return None


def sweep_leftovers(version: int, scratch: Path) -> None:
    """Remove what a killed server left: empty sandbox cgroups and scratch roots."""
    for name in cgroups.leftover_names(version):
        cgroups.Cgroup(name, version).remove()
    for workdir in scratch.iterdir():
        with contextlib.suppress(OSError):
            (workdir / "root").rmdir()
            workdir.rmdir()


def from_settings(settings: Settings) -> NamespaceBackend:
    return NamespaceBackend(settings.agent_python, settings.data_dir.resolve() / "sandboxes")
