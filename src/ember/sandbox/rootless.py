"""Rootless operation of the namespace backend: what a non-root server can and cannot do.

Run by an unprivileged user, the namespace backend puts each sandbox in a user namespace
as well (``nsinit.new_namespaces``): that is what lets it create the other namespaces,
mount the sandbox's root and pivot into it. What root gives and a plain user cannot:

- cgroup limits (memory, pids, CPU share; ``Max Memory Used``, out-of-memory detection)
  need write access to the cgroup hierarchy, which a user has only when it was delegated;
  without it the sandboxes run without memory and CPU limits (``NoCgroup``); processes
  are still capped at 1,024 per sandbox by RLIMIT_NPROC (``nsinit.drop_privileges``: the
  kernel counts it per user namespace, and each sandbox has its own);
- only one uid and one gid can be mapped: the sandbox's 993/990 *are* the server's own
  uid/gid on the host (as root they are host 993/990, owning nothing), and supplementary
  groups of the server's user cannot be dropped.

``unapplied_limits`` lists these for the start-up log, so that nothing is dropped
silently. Pure checks of this host; no state.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

from ember.sandbox import cgroups

CLONE_NEWUSER = 0x10000000
USERNS_SYSCTLS = {
    "/proc/sys/kernel/unprivileged_userns_clone": "unprivileged user namespaces are disabled",
    "/proc/sys/user/max_user_namespaces": "user namespaces are disabled",
}


def is_rootless() -> bool:
    return os.geteuid() != 0


def userns_refusal() -> str | None:
    """Why this user cannot create a user namespace here, or None when it can."""
    for path, reason in USERNS_SYSCTLS.items():
        with contextlib.suppress(OSError, ValueError):
            if int(Path(path).read_text()) == 0:
                return f"{reason} ({path} is 0)"
    unshare = ctypes.CDLL(None, use_errno=True).unshare  # looked up before the fork
    pid = os.fork()
    if pid == 0:  # the probe: a child that only tries it and exits
        os._exit(0 if unshare(CLONE_NEWUSER) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return "the kernel refused to create a user namespace (unshare(CLONE_NEWUSER) failed)"
    return None


def cgroups_usable() -> int | None:
    """The cgroup version this (possibly unprivileged) process can create sandbox
    cgroups under, or None."""
    version = cgroups.version()
    if version == 2 and not os.access(cgroups.ROOT, os.W_OK):
        return None
    return version


def unapplied_limits(cgroup_version: int | None, sandbox_uid: int, sandbox_gid: int) -> list[str]:
    """What a rootless namespace backend cannot apply here, one line each."""
    if not is_rootless():
        return []
    uid, gid = os.getuid(), os.getgid()
    lines = []
    if cgroup_version is None:
        lines.append(
            "no memory or CPU limits: the cgroup hierarchy is not writable by uid "
            f"{uid} (no delegation); Max Memory Used is not measured and an out-of-memory "
            "kill is not detected; processes are limited to 1,024 per sandbox by "
            "RLIMIT_NPROC (counted per user namespace) instead of a pids cgroup"
        )
    lines.append(
        f"uid {sandbox_uid}/gid {sandbox_gid} inside a sandbox is the server's own uid {uid}/"
        f"gid {gid} on the host (a user can map only itself), not an otherwise unused uid"
    )
    groups = [g for g in os.getgroups() if g != gid]
    if groups:
        lines.append(
            f"the server's supplementary groups {groups} stay with sandboxed functions "
            "(they cannot be dropped without root)"
        )
    return lines


@dataclass(frozen=True, slots=True)
class NoCgroup:
    """A sandbox's cgroup where none can be made: no limits, no readings."""

    name: str

    def procs_files(self) -> list[str]:
        return []

    def create(self, memory_mb: int) -> None:
        pass

    def create_dirs(self, idle: bool = False) -> None:
        pass

    def set_limits(self, memory_mb: int) -> None:
        pass

    def memory_peak_bytes(self) -> int | None:
        return None

    def memory_peak_path(self) -> None:
        return None

    def oom_kills(self) -> int:
        return 0

    def remove(self) -> None:
        pass


SandboxCgroup = cgroups.Cgroup | NoCgroup
