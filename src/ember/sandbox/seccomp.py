"""The seccomp filter every namespace sandbox runs under: a deny list, failing with EPERM.

Denied: debugging and introspection of other processes (ptrace, process_vm_*), changing
the sandbox itself (mount, umount, pivot_root, chroot, unshare, setns, new user
namespaces through clone/clone3), kernel attack surface Lambda does not offer (bpf,
keyctl, perf_event_open, io_uring, userfaultfd, kernel modules, kexec, reboot, swap,
open_by_handle_at) and terminal injection (ioctl TIOCSTI). Everything else is allowed:
runtimes need most of the rest, and the namespaces, uid and cgroups do the containing.

The filter is compiled once per server by libseccomp (through pyseccomp) to BPF bytes,
which the launcher loads right before it execs the agent.
"""

from __future__ import annotations

import errno
import os
import tempfile

import pyseccomp

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "bpf", "keyctl", "add_key", "request_key", "perf_event_open",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "open_by_handle_at", "name_to_handle_at",
    "acct", "quotactl", "syslog", "lookup_dcookie", "fsopen", "fsmount", "move_mount",
    "open_tree", "fspick", "mount_setattr",
)  # fmt: skip
CLONE_NEWUSER = 0x10000000
TIOCSTI = 0x5412


def compile_filter() -> bytes:
    """The deny-list filter as BPF bytes (for PR_SET_SECCOMP / SECCOMP_SET_MODE_FILTER)."""
    deny = pyseccomp.ERRNO(errno.EPERM)
    syscall_filter = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for name in DENIED:
        syscall_filter.add_rule(deny, name)
    syscall_filter.add_rule(
        deny, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)
    )
    # clone3 passes its flags in memory a filter cannot read: refuse it, glibc falls back.
    syscall_filter.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    syscall_filter.add_rule(deny, "ioctl", pyseccomp.Arg(1, pyseccomp.EQ, TIOCSTI))
    with tempfile.TemporaryFile() as handle:
        syscall_filter.export_bpf(handle)
        handle.seek(0)
        return handle.read()


def filter_fd(program: bytes) -> int:
    """A readable fd holding ``program`` (a memfd), inheritable by the launcher."""
    fd = os.memfd_create("ember-seccomp", 0)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    return fd
