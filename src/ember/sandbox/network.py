"""Outbound network for one sandbox: a slirp4netns user-mode stack, started per sandbox.

A sandbox has only its own loopback by default (no process is started for that). A
sandbox whose spec asks for ``NetworkPolicy.OUTBOUND`` gets a ``tap0`` interface in its
network namespace, served by one ``slirp4netns`` process on the host side:

- the sandbox is 10.0.2.100/24, its gateway 10.0.2.2, its DNS server 10.0.2.3 (slirp
  forwards it to the host's resolver); outbound TCP/UDP leave through ordinary host
  sockets of the slirp process, so they can reach what the host can reach;
- the host's loopback (127.0.0.0/8 on the host: Ember's own API, the other sandboxes'
  channels) is unreachable: ``--disable-host-loopback``;
- link-local addresses, instance metadata 169.254.169.254 among them, are unreachable
  too: the sandbox side adds an ``unreachable`` route for them (``nsinit``) before any
  function code runs; no packet to them reaches slirp at all;
- slirp itself runs under a seccomp filter (``--enable-seccomp``: it parses untrusted
  packets), and as root also in its own mount namespace with no capabilities
  (``--enable-sandbox``; rootless servers cannot: ``hardening_options``).

Lifetime: the process is killed when the sandbox is cleaned up (``close``), and it
holds the read end of a pipe whose write end only the server holds (``--exit-fd``): if
the server dies, every slirp process exits with it. Scope: one ``OutboundNetwork`` per
networked sandbox, one ``NetworkSync`` per networked exec-path start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess

from ember.errors import SandboxError

SLIRP = "slirp4netns"
TUN_DEVICE = "/dev/net/tun"  # slirp opens it inside the sandbox's namespaces
TAP = "tap0"
MTU = 65520
READY_TIMEOUT_S = 5.0
DNS_SERVER = "10.0.2.3"
RESOLV_CONF = f"nameserver {DNS_SERVER}\noptions attempts:2 timeout:2\n"
UNREACHABLE = ("169.254.0.0/16",)  # link-local: instance metadata and its relatives


def slirp_binary() -> str | None:
    """The slirp4netns executable, if installed."""
    return shutil.which(SLIRP, path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin")


def network_refusal() -> str | None:
    """Why outbound network cannot be given here, or None when it can."""
    if slirp_binary() is None:
        return (
            "slirp4netns is not installed (Debian package slirp4netns; `make setup` installs "
            "it when run as root)"
        )
    if os.geteuid() != 0 and not os.access(TUN_DEVICE, os.R_OK | os.W_OK):
        return f"{TUN_DEVICE} is not readable and writable by uid {os.geteuid()}"
    return None


def network_description() -> str:
    """The network part of the namespace backend's ``describe``."""
    refusal = network_refusal()
    if refusal is not None:
        return f"loopback only (outbound network unavailable: {refusal})"
    return (
        "loopback only; functions tagged ember:network=outbound get outbound network "
        "through slirp4netns (host loopback and 169.254.0.0/16 unreachable)"
    )


def hardening_options() -> list[str]:
    """slirp4netns confining itself: a seccomp filter always; its own mount namespace
    without capabilities (``--enable-sandbox``) as root only: unprivileged, it would enter
    the sandbox's user namespace as uid 0, which rootless sandboxes do not map."""
    return ["--enable-sandbox", "--enable-seccomp"] if os.geteuid() == 0 else ["--enable-seccomp"]


def sandbox_config() -> dict[str, object]:
    """What the sandbox side (``nsinit``) needs to finish a networked sandbox's setup."""
    return {"resolv_conf": RESOLV_CONF, "unreachable": list(UNREACHABLE)}


class OutboundNetwork:
    """One sandbox's slirp4netns process. Invariant: once ``close`` returns it is gone."""

    def __init__(self, process: asyncio.subprocess.Process, exit_fd: int) -> None:
        self._process = process
        self._exit_fd = exit_fd  # closing it makes slirp exit (our end of --exit-fd)

    @property
    def pid(self) -> int:
        return self._process.pid

    @classmethod
    async def start(cls, target_pid: int) -> OutboundNetwork:
        """Give the network namespace of ``target_pid`` a configured ``tap0``; return
        once slirp reports it configured. Raises ``SandboxError``."""
        refusal = network_refusal()
        binary = slirp_binary()
        if refusal is not None or binary is None:
            raise SandboxError(f"outbound network is unavailable on this server: {refusal}")
        ready_read, ready_write = os.pipe()
        exit_read, exit_write = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                binary, "--configure", f"--mtu={MTU}", "--disable-host-loopback",
                *hardening_options(),
                f"--ready-fd={ready_write}", f"--exit-fd={exit_read}", str(target_pid), TAP,
                pass_fds=(ready_write, exit_read), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            os.close(exit_write)
            os.close(ready_read)
            raise SandboxError(f"could not start slirp4netns: {exc}") from exc
        finally:
            os.close(ready_write)
            os.close(exit_read)
        network = cls(process, exit_write)
        try:
            ready = await read_byte(ready_read, READY_TIMEOUT_S)
        finally:
            os.close(ready_read)
        if ready != b"1":
            await network.close()
            raise SandboxError(
                "slirp4netns could not set up the sandbox's network "
                f"(exit status {process.returncode})"
            )
        return network

    def stop(self) -> None:
        """SIGKILL the slirp process, without waiting (its exit takes ~15 ms: the kernel
        tears its tap device down first). Idempotent."""
        if self._exit_fd >= 0:
            os.close(self._exit_fd)
            self._exit_fd = -1
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()

    async def close(self) -> None:
        """Stop the slirp process and wait until it is gone. Idempotent."""
        self.stop()
        await self._process.wait()


class NetworkSync:
    """The exec path's handshake with its launcher for a networked sandbox: the launcher
    says when it has unshared (then slirp4netns can attach to its network namespace),
    pid 1 waits until the backend says the network is configured."""

    def __init__(self) -> None:
        self._unshared_read, self._unshared_write = os.pipe()
        self._ready_read, self._ready_write = os.pipe()

    def launcher_fds(self) -> dict[str, int]:
        return {"unshared_fd": self._unshared_write, "ready_fd": self._ready_read}

    def close_launcher_ends(self) -> None:
        for fd in (self._unshared_write, self._ready_read):
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        for fd in (self._unshared_read, self._ready_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    async def attach(self, launcher_pid: int) -> OutboundNetwork:
        try:
            if await read_byte(self._unshared_read, READY_TIMEOUT_S) != b"1":
                raise SandboxError("the sandbox launcher ended before its network was set up")
            network = await OutboundNetwork.start(launcher_pid)
            os.write(self._ready_write, b"1")
            return network
        finally:
            self.close()


async def read_byte(fd: int, timeout_s: float) -> bytes:
    """One byte from ``fd`` (b"" at EOF or when nothing came within ``timeout_s``)."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _set_once, readable)
    try:
        await asyncio.wait_for(readable, timeout_s)
    except TimeoutError:
        return b""
    finally:
        loop.remove_reader(fd)
    return os.read(fd, 1)


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
