"""The namespace sandbox's launcher: runs as root only long enough to build the sandbox.

Run as ``python -I -S nsinit.py '<json config>'`` by the namespace backend (stdlib only,
imports nothing from Ember). In order:

1. ``unshare`` mount, pid, network, ipc and uts namespaces, then fork: the child is pid 1
   of the new pid namespace, the parent stays outside and waits for it (killing the parent
   kills the child through PR_SET_PDEATHSIG, and with pid 1 the whole namespace);
2. the child joins the sandbox's cgroups (everything it starts is accounted and limited);
3. it builds a fresh root on a tmpfs: read-only binds (``/usr``, the function code at
   ``/var/task``, layers at ``/opt``, the runtime and the agent), a size-limited ``/tmp``,
   a private ``/proc``, a minimal ``/dev``; pivots into it; brings up ``lo``;
4. drops to the unprivileged host uid/gid (no capabilities), sets PR_SET_NO_NEW_PRIVS and
   the parent-death signal, loads the seccomp filter, and execs the agent.

Any failure before the exec makes the process exit with status 111 and a message on
stderr; the backend reports it as a sandbox failure.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 1, 38, 22
SECCOMP_MODE_FILTER = 2
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
FAILED = 111
DEVICES = ("null", "zero", "random", "urandom")

libc = ctypes.CDLL(None, use_errno=True)


class SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_char_p))


def check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    args = [s.encode() if s is not None else None for s in (source, target, fstype)]
    check(libc.mount(*args, ctypes.c_ulong(flags), data.encode() or None), f"mount {target}")


def bind(source: str, target: str, writable: bool = False) -> None:
    mount(source, target, None, MS_BIND | MS_REC)
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (0 if writable else MS_RDONLY)
    mount(None, target, None, flags)


def make_target(path: str, like: str) -> None:
    if os.path.isdir(like):
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()


def build_root(config: dict[str, Any]) -> str:
    root: str = config["root"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    for link, target in config["symlinks"].items():
        os.makedirs(os.path.dirname(root + link), exist_ok=True)
        os.symlink(target, root + link)
    for source, target in config["binds"]:
        make_target(root + target, source)
        bind(source, root + target)
    for path, text in config["files"].items():
        os.makedirs(os.path.dirname(root + path), exist_ok=True)
        with open(root + path, "w") as handle:
            handle.write(text)
    os.makedirs(root + "/tmp")
    mount(
        "tmpfs",
        root + "/tmp",
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"mode=1777,size={config['tmp_size_mb']}m",
    )
    os.makedirs(root + "/proc")
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    build_dev(root)
    return root


def build_dev(root: str) -> None:
    os.makedirs(root + "/dev")
    mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in DEVICES:
        open(f"{root}/dev/{name}", "a").close()
        mount(f"/dev/{name}", f"{root}/dev/{name}", None, MS_BIND)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{root}/dev/{name}")


def pivot(root: str) -> None:
    os.chdir(root)
    check(libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")
    mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def drop_privileges(config: dict[str, Any], parent_alive: int) -> None:
    os.setgroups([])
    os.setresgid(config["gid"], config["gid"], config["gid"])
    os.setresuid(config["uid"], config["uid"], config["uid"])
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    # The parent holds the pipe's write end: EOF means it died before PDEATHSIG was set
    # (getppid() cannot tell: the parent lives outside this pid namespace).
    if select.select([parent_alive], [], [], 0)[0]:
        os._exit(FAILED)
    os.close(parent_alive)


def load_seccomp(fd: int) -> None:
    program = os.read(fd, 1 << 20)
    os.close(fd)
    fprog = SockFprog(len(program) // 8, program)
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def child(config: dict[str, Any], parent_alive: int) -> None:
    for procs in config["cgroup_procs"]:  # our pid here is 1: cgroup.procs reads it as us
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = build_root(config)
    pivot(root)
    socket.sethostname(config["hostname"])
    loopback_up()
    drop_privileges(config, parent_alive)
    load_seccomp(config["seccomp_fd"])
    os.chdir(config["cwd"])
    os.execve(config["exec"][0], config["exec"], config["env"])


def main() -> None:
    config: dict[str, Any] = json.loads(sys.argv[1])
    check(
        libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS),
        "unshare",
    )
    parent_alive, parent_holds = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(parent_holds)
        try:
            child(config, parent_alive)
        except BaseException as exc:  # noqa: BLE001 - report anything, then fail
            sys.stderr.write(f"ember sandbox setup failed: {exc}\n")
        os._exit(FAILED)
    for fd in [config["seccomp_fd"], parent_alive, *config["keep_fds"]]:
        os.close(fd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


if __name__ == "__main__":
    main()
