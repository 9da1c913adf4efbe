"""The namespace sandbox's launcher: runs as root only long enough to build the sandbox.

Run as ``python -I -S nsinit.py '<json config>'`` by the namespace backend's exec path
(stdlib only, imports nothing from Ember). Its steps are also importable: the pre-warmed
zygote (``zygote.py``) runs ``setup`` in a child it clones straight into the namespaces
(``clone_into_namespaces``) and then calls the agent in-process instead of exec'ing it.
In order:

1. ``unshare`` mount, pid, network, ipc and uts namespaces, then fork: the child is pid 1
   of the new pid namespace, the parent stays outside and waits for it (killing the parent
   kills the child through PR_SET_PDEATHSIG, and with pid 1 the whole namespace);
2. the child joins the sandbox's cgroups (everything it starts is accounted and limited);
3. it builds a fresh root on a tmpfs: read-only binds (``/usr``, the function code at
   ``/var/task``, layers at ``/opt``, the runtime and the agent), a size-limited ``/tmp``,
   a private ``/proc``, a minimal ``/dev``; pivots into it; brings up ``lo``; a
   networked sandbox (config ``network``) also gets ``/etc/resolv.conf`` (slirp's DNS)
   and ``unreachable`` routes for link-local addresses (instance metadata), once the
   backend's slirp4netns has configured its ``tap0`` (``network.py``);
4. drops to the unprivileged host uid/gid (no capabilities), sets PR_SET_NO_NEW_PRIVS and
   the parent-death signal, loads the seccomp filter, and execs the agent.

Any failure before the exec (or the agent's call) makes the process exit with status 111
and a message on stderr; the backend reports it as a sandbox failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
NAMESPACES = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
SYS_CAPSET = 126  # x86_64
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SYS_CLONE = 56  # x86_64
MADV_POPULATE_WRITE = 23
POPULATE_STEP = 1 << 20
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 1, 4, 38, 22
SECCOMP_MODE_FILTER = 2
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
RTM_NEWROUTE, NLMSG_ERROR = 24, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RT_TABLE_MAIN, RTPROT_STATIC, RTN_UNREACHABLE, RTA_DST = 254, 4, 7, 1
FAILED = 111
ROOTLESS_NPROC = 1024  # Lambda's 1,024 processes or threads, where no pids cgroup exists
DEVICES = ("null", "zero", "random", "urandom")

libc = ctypes.CDLL(None, use_errno=True)


# Rootless (not root): the server's uid/gid, saved before entering a new user namespace
# whose id maps are still to be written (``map_ids``); None otherwise.
_outer_ids: tuple[int, int] | None = None


class SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_char_p))


class CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def new_namespaces() -> int:
    """The namespaces of a new sandbox: plus a user namespace when not root (rootless),
    which is what lets an unprivileged user create the others and set them up."""
    return NAMESPACES | (CLONE_NEWUSER if os.geteuid() != 0 else 0)


def map_ids(config: dict[str, Any]) -> None:
    """Rootless: map the sandbox's uid/gid (993/990) to the server's own uid/gid, the one
    mapping an unprivileged user may write; once, by the first process of the namespace."""
    global _outer_ids  # noqa: PLW0603 - set by whoever entered the namespace, used once
    if _outer_ids is None:
        return
    uid, gid = _outer_ids
    _outer_ids = None
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{config['uid']} {uid} 1"),
        ("gid_map", f"{config['gid']} {gid} 1"),
    ):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)


def clear_capabilities() -> None:
    """No capabilities left (root: already so after setresuid; rootless: needed, the
    uid never changes from non-zero so the kernel keeps the namespace's capabilities)."""
    data = (CapData * 2)()
    header = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    check(libc.syscall(SYS_CAPSET, ctypes.byref(header), data), "capset")


def setgroups_denied() -> bool:
    try:
        with open("/proc/self/setgroups") as handle:
            return handle.read().strip() == "deny"
    except OSError:
        return False


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
    """The generic part of the new root (the same for every sandbox of a backend)."""
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
    os.makedirs(root + "/proc")
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    build_dev(root)
    return root


def specialise_root(config: dict[str, Any]) -> str:
    """The part of the root that is one function's: code, layers, interpreters, /tmp."""
    root: str = config["root"]
    for source, target in config["spec_binds"]:
        make_target(root + target, source)
        bind(source, root + target)
    os.makedirs(root + "/opt", exist_ok=True)
    os.makedirs(root + "/tmp")
    mount(
        "tmpfs",
        root + "/tmp",
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"mode=1777,size={config['tmp_size_mb']}m",
    )
    network = config.get("network")
    if network is not None:
        with open(root + "/etc/resolv.conf", "w") as handle:
            handle.write(network["resolv_conf"])
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


def add_unreachable_route(network: str) -> None:
    """``ip route add unreachable <network>`` in our network namespace, over rtnetlink."""
    address, prefix = network.split("/")
    route = struct.pack(
        "=BBBBBBBBI", socket.AF_INET, int(prefix), 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, 0,
        RTN_UNREACHABLE, 0,
    )  # fmt: skip
    body = route + struct.pack("=HH4s", 8, RTA_DST, socket.inet_aton(address))
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    header = struct.pack("=IHHII", 16 + len(body), RTM_NEWROUTE, flags, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.sendto(header + body, (0, 0))
        reply = sock.recv(4096)
    kind, error = struct.unpack_from("=H", reply, 4)[0], struct.unpack_from("=i", reply, 16)[0]
    if kind != NLMSG_ERROR or error != 0:
        raise OSError(-error, f"route {network}: {os.strerror(-error)}")


def finish_network(network: dict[str, Any]) -> None:
    """A networked sandbox: wait until its tap is up (exec path: the backend says so on
    ``ready_fd``), then make the addresses no function may reach unreachable."""
    ready_fd = network.get("ready_fd")
    if ready_fd is not None:
        ready = os.read(ready_fd, 1)
        os.close(ready_fd)
        if ready != b"1":
            raise OSError("the sandbox's network was not set up")
    for blocked in network["unreachable"]:
        add_unreachable_route(blocked)


def drop_privileges(config: dict[str, Any], parent_alive: int | None) -> None:
    """uid/gid 993/990, no groups, no capabilities, no_new_privs.

    With ``parent_alive`` (the exec path) the parent-death signal ties pid 1 to the
    launcher; without it (the zygote path) the sandbox's lifetime is tied to its agent
    channel and to the backend's SIGKILL through a pidfd, so that a zygote restart does
    not take running sandboxes with it.
    """
    if setgroups_denied():
        # Rootless: groups cannot be changed, and there is no pids cgroup; RLIMIT_NPROC is
        # counted per user namespace, and each sandbox has its own: a per-sandbox limit.
        resource.setrlimit(resource.RLIMIT_NPROC, (ROOTLESS_NPROC, ROOTLESS_NPROC))
    else:
        os.setgroups([])
    os.setresgid(config["gid"], config["gid"], config["gid"])
    os.setresuid(config["uid"], config["uid"], config["uid"])
    clear_capabilities()
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if parent_alive is None:
        # No exec follows, so what an exec would reset must be reset here: changing uids
        # made the process non-dumpable (its /proc/self/* root-owned, unreadable to it).
        check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
        return
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    # The parent holds the pipe's write end: EOF means it died before PDEATHSIG was set
    # (getppid() cannot tell: the parent lives outside this pid namespace).
    if select.select([parent_alive], [], [], 0)[0]:
        os._exit(FAILED)
    os.close(parent_alive)


def load_seccomp(fd: int) -> None:
    program = os.pread(fd, 1 << 20, 0)
    os.close(fd)
    load_seccomp_program(program)


def harden(config: dict[str, Any], program: bytes) -> None:
    """What ``specialise`` does to pid 1's privileges, for another process of the sandbox
    (a runtime forked ahead): uid/gid, no_new_privs, dumpable, the seccomp filter."""
    drop_privileges(config, None)
    load_seccomp_program(program)


def load_seccomp_program(program: bytes) -> None:
    fprog = SockFprog(len(program) // 8, program)
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def populate_private_memory(
    interrupted: Callable[[], bool], ranges: Sequence[Sequence[int]] | None = None
) -> None:
    """Break copy-on-write sharing of the private writable mappings now, ahead of use.

    A forked Python writes to most of the pages it touches (reference counts), and each
    first write is a copy-on-write fault, costly in a VM. A pre-started sandbox pays them
    here, ahead of its cold start, with ``madvise(MADV_POPULATE_WRITE)`` (Linux 5.14+;
    older kernels: no effect) in 1 MiB steps, as SCHED_IDLE (only on otherwise idle CPUs,
    so that it does not slow down the starts in flight), and stops as soon as
    ``interrupted()`` says the sandbox is wanted. ``ranges`` (``(start, length)`` pairs: a
    recorded working set, ``sandbox/working_set.py``) limits it to those pages; addresses
    not mapped here are skipped (``madvise`` fails on them, harmlessly).
    """
    spans = _writable_private_mappings() if ranges is None else ranges
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    try:
        for start, length in spans:
            end = start + length
            for step in range(start, end, POPULATE_STEP):
                if interrupted():
                    return
                size = min(POPULATE_STEP, end - step)
                libc.madvise(ctypes.c_void_p(step), ctypes.c_size_t(size), MADV_POPULATE_WRITE)
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _writable_private_mappings() -> list[tuple[int, int]]:
    """``(start, length)`` of this process's writable private mappings."""
    with open("/proc/self/maps") as handle:
        lines = handle.read().splitlines()
    spans = []
    for line in lines:
        fields = line.split()
        if len(fields) < 2 or fields[1] != "rw-p" or fields[-1] in ("[vvar]", "[vsyscall]"):
            continue
        start, end = (int(part, 16) for part in fields[0].split("-"))
        spans.append((start, end - start))
    return spans


def unidle(pid: int) -> None:
    """Back to normal scheduling (from ``populate_private_memory``'s SCHED_IDLE)."""
    with contextlib.suppress(OSError):
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))


def readable(fd: int) -> Callable[[], bool]:
    """A check that ``fd`` has something to read (or hit EOF), without waiting."""
    return lambda: bool(select.select([fd], [], [], 0)[0])


def prepare(config: dict[str, Any]) -> None:
    """The generic steps, in the new namespaces (a pre-started sandbox stops after them).

    Joining the cgroups comes first (everything after is accounted and limited), and here
    rather than at specialisation: on cgroup v1 an attach takes a lock whose write side
    waits for an RCU grace period, milliseconds that a pre-started sandbox pays ahead.
    """
    map_ids(config)
    for procs in config["cgroup_procs"]:  # our pid here is 1: cgroup.procs reads it as us
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    build_root(config)
    socket.sethostname(config["hostname"])
    loopback_up()


def specialise(config: dict[str, Any], parent_alive: int | None) -> None:
    """The steps that make a prepared sandbox one function's, ending unprivileged."""
    pivot(specialise_root(config))
    if config.get("network") is not None:
        finish_network(config["network"])
    drop_privileges(config, parent_alive)
    load_seccomp(config["seccomp_fd"])
    os.chdir(config["cwd"])


def setup(config: dict[str, Any], parent_alive: int | None) -> None:
    """Everything between entering the namespaces and starting the agent (as pid 1)."""
    prepare(config)
    specialise(config, parent_alive)


def child(config: dict[str, Any], parent_alive: int) -> None:
    setup(config, parent_alive)
    os.execve(config["exec"][0], config["exec"], config["env"])


def clone_into_namespaces(flags: int | None = None) -> int:
    """``fork()`` straight into new namespaces: 0 in the child (pid 1 of its pid namespace).

    A raw ``clone(2)`` (``os.fork`` cannot take namespace flags; ``os.unshare`` is 3.12+
    and would need a second fork for the pid namespace), wrapped in CPython's fork hooks
    so the child's interpreter state is that of an ``os.fork`` child (at-fork handlers
    run: ``random`` reseeds). ``PyDLL`` keeps the GIL held across the call. The caller
    must be single-threaded. glibc's own fork handlers do not run: in the child, glibc's
    cached thread id is the parent's (``raise``/``abort`` misbehave); the agent uses
    neither, and the runtime it forks with ``os.fork`` gets a proper one.
    """
    global _outer_ids  # noqa: PLW0603 - the child's copy is read by map_ids
    flags = new_namespaces() if flags is None else flags
    if flags & CLONE_NEWUSER:
        _outer_ids = (os.getuid(), os.getgid())
    pylibc = ctypes.PyDLL(None, use_errno=True)
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = pylibc.syscall(SYS_CLONE, ctypes.c_ulong(flags | signal.SIGCHLD), 0, 0, 0, 0)
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0
    errno = ctypes.get_errno()
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    _outer_ids = None
    if pid < 0:
        raise OSError(errno, f"clone: {os.strerror(errno)}")
    return int(pid)


def main() -> None:
    global _outer_ids  # noqa: PLW0603 - see map_ids
    config: dict[str, Any] = json.loads(sys.argv[1])
    flags = new_namespaces()
    if flags & CLONE_NEWUSER:
        _outer_ids = (os.getuid(), os.getgid())
    check(libc.unshare(flags), "unshare")
    map_ids(config)
    network = config.get("network") or {}
    if "unshared_fd" in network:  # the backend attaches the network namespace from now
        os.write(network["unshared_fd"], b"1")
        os.close(network["unshared_fd"])
    parent_alive, parent_holds = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(parent_holds)
        try:
            child(config, parent_alive)
        except BaseException as exc:  # noqa: BLE001 - report anything, then fail
            sys.stderr.write(f"ember sandbox setup failed: {exc}\n")
        os._exit(FAILED)
    own_ends = [network["ready_fd"]] if "ready_fd" in network else []
    for fd in [config["seccomp_fd"], parent_alive, *config["keep_fds"], *own_ends]:
        os.close(fd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


if __name__ == "__main__":
    main()
