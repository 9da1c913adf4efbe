"""A node slot: a pooled sandbox that starts the Node.js runtime before its function.

Runs in a pre-started sandbox's pid 1 (the zygote's child, still root, after
``nsinit.prepare``; stdlib, ``nsinit`` and ``ember.agent`` only). The launcher config's
``node_prestart`` (``{"argv", "env", "match", "binds", "seccomp"}``, made by
``node_pool.py``) says what to start. ``launch``:

1. binds the Node.js client at ``/var/runtime`` (and the node installation, when it is
   not under ``/usr``) into the prepared root: what specialisation binds there again;
2. forks; the child starts a session, takes /dev/null and two pipes as stdio and one end
   of a socketpair as fd 3, ``chroot``s into the prepared root, drops to the sandbox's
   uid/gid with no_new_privs and the seccomp filter (``nsinit.harden``: what every
   runtime of the sandbox runs under), and execs ``argv`` with only ``env`` (plus
   ``_EMBER_PRESTART_FD=3``). It stays in the sandbox's namespaces and cgroup (joined by
   ``prepare``: the limits written at specialisation apply to it). Specialisation's
   ``pivot_root`` moves pid 1 into that same root; the chroot'ed node is already there;
3. waits (bounded) for node's "R" (node and the client loaded), tells the backend
   (``READY`` on the sandbox's control socket: only then is the slot counted ready), and
   returns the ``PrestartedRuntime`` the agent hands its START to (``agent/prestart.py``).

The library directories of Lambda's ``LD_LIBRARY_PATH`` that specialisation may bring
(``/var/task``, ``/var/task/lib``, ``/opt/lib``) are made, empty, while node starts and
removed after: glibc's loader remembers a search directory missing at exec as missing
for good, which would make a later ``dlopen`` (a native addon's library in a layer's
``/opt/lib``) fail where a fresh start finds it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
from typing import Any

from ember.agent.prestart import PrestartedRuntime
from ember.sandbox import nsinit

READY_TIMEOUT_S = 10.0
LIBRARY_DIRS = ("/var/task", "/var/task/lib", "/opt", "/opt/lib")
PRESTART_FD = 3
PRESTART_FD_VAR = "_EMBER_PRESTART_FD"  # = runtimes.nodejs.PRESTART_FD_VAR
READY = b"N"  # to the backend, on the control socket: node is up (node_pool.node_started)
NOT_STARTED = b"-"  # node did not come up: the backend discards this sandbox


def launch(config: dict[str, Any], control: socket.socket) -> PrestartedRuntime | None:
    """Start ``config["node_prestart"]`` in the prepared sandbox (see the module doc) and
    say how that went on ``control``; None if it did not come up."""
    prestarted = _start(config)
    with contextlib.suppress(OSError):
        control.send(READY if prestarted is not None else NOT_STARTED)
    return prestarted


def _start(config: dict[str, Any]) -> PrestartedRuntime | None:
    spec = config["node_prestart"]
    root: str = config["root"]
    for source, target in spec["binds"]:
        nsinit.make_target(root + target, source)
        nsinit.bind(source, root + target)
    made = [path for path in LIBRARY_DIRS if not os.path.lexists(root + path)]
    for path in made:
        os.mkdir(root + path)
    ours, theirs = socket.socketpair()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    argv, env = spec["argv"], {**spec["env"], PRESTART_FD_VAR: str(PRESTART_FD)}
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which never returns
        try:
            _exec_hardened(config, spec, argv, env, (out_write, err_write, theirs.fileno()))
        finally:
            os._exit(nsinit.FAILED)
    theirs.close()
    os.close(out_write)
    os.close(err_write)
    ready = select.select([ours], [], [], READY_TIMEOUT_S)[0] and ours.recv(1) == b"R"
    for path in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(root + path)
    if not ready:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        ours.close()
        os.close(out_read)
        os.close(err_read)
        return None
    match = tuple(spec["match"])
    return PrestartedRuntime(
        pid, ours.detach(), out_read, err_read, tuple(argv), spec["env"], match
    )


def _exec_hardened(
    config: dict[str, Any],
    spec: dict[str, Any],
    argv: list[str],
    env: dict[str, str],
    fds: tuple[int, int, int],
) -> None:  # pragma: no cover - runs in the forked child
    """The child's part: stdio, session, root, privileges, then exec (never returns)."""
    os.setsid()
    for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)  # as Popen's restore_signals leaves them
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for target, fd in enumerate(fds, start=1):
        os.dup2(fd, target)
    os.closerange(PRESTART_FD + 1, os.sysconf("SC_OPEN_MAX"))
    os.chroot(config["root"])
    os.chdir("/")
    nsinit.harden(config, bytes.fromhex(spec["seccomp"]))
    os.execve(argv[0], argv, env)
