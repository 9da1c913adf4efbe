"""The agent's entry point: channel, Runtime API listener, runtime process, shutdown.

Lifecycle: wait for START → bind the listener → LISTENING → exec the runtime → relay
INVOKE frames and Runtime API posts until the runtime exits (EXIT, agent exits 0), or the
host closes the channel or sends something invalid, or the agent gets SIGTERM/SIGINT/SIGHUP
(runtime's process group SIGKILLed, agent exits 0 on a clean close, 1 otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

from ember.agent.extension_procs import LaunchError, discover, extension_env
from ember.agent.http_server import small_reads, start_server
from ember.agent.lifecycle import Lifecycle
from ember.agent.protocol import Kind, ProtocolError, StartMeta, encode, read_frame
from ember.agent.rendering import MAX_PAYLOAD_BYTES
from ember.agent.runtime import ChildReaper, OutputCapture, RuntimeProcess, SpawnError
from ember.agent.runtime_api import RuntimeApi

CHANNEL_HIGH_WATER = 1024 * 1024
REAP_TIMEOUT_S = 5.0


class HostLink:
    """The agent's end of the host channel.

    Invariant: ``report`` drains the runtime's output (as LOG frames) before it sends its
    own frame, so a LOG never follows the RESPONSE/ERROR/INIT_*/EXIT it preceded.
    While the channel's write buffer is above ``CHANNEL_HIGH_WATER``, output capture is
    paused so a chatty runtime cannot grow the agent's memory without bound.
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.output: OutputCapture | None = None
        self._waiting_for_drain = False
        self._holding = 0
        self._held: list[bytes] = []

    def send(self, kind: Kind, meta: dict[str, Any], payload: bytes = b"") -> None:
        if self._holding:
            self._held += encode(kind, meta, payload)
        elif not self._writer.is_closing():
            self._writer.writelines(encode(kind, meta, payload))

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Frames sent inside the block leave together at its end, in one write (a
        runtime that pipelines ``/response`` and ``/next`` gets RESPONSE and NEXT to the
        host in one wake-up of each side). Order is kept; nothing is held past the block."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding and self._held:
                held, self._held = self._held, []
                if not self._writer.is_closing():
                    self._writer.writelines(held)

    def report(self, kind: Kind, meta: dict[str, Any], payload: bytes = b"") -> None:
        if self.output is not None:
            self.output.drain()
        self.send(kind, meta, payload)

    def log(self, stream: str, data: bytes) -> None:
        self.send(Kind.LOG, {"stream": stream}, data)
        transport = self._writer.transport
        congested = transport.get_write_buffer_size() > CHANNEL_HIGH_WATER
        if congested and not self._waiting_for_drain and self.output is not None:
            self._waiting_for_drain = True
            self.output.pause()
            asyncio.get_running_loop().create_task(self._resume_after_drain())

    async def _resume_after_drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()
        self._waiting_for_drain = False
        if self.output is not None:
            self.output.resume()

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


async def read_start(reader: asyncio.StreamReader) -> StartMeta | None:
    """The START frame, or None at EOF; ``ProtocolError`` for anything else."""
    frame = await read_frame(reader)
    if frame is None:
        return None
    if frame.kind != Kind.START:
        raise ProtocolError(f"expected START, got {frame.kind.name}")
    return parse_start(frame.meta)


def parse_start(meta: dict[str, Any]) -> StartMeta:
    """Check a START frame's meta; ``ProtocolError`` when it is not a ``StartMeta``."""
    argv, cwd, env, api = (meta.get(key) for key in ("argv", "cwd", "env", "runtime_api"))
    if not (isinstance(argv, list) and all(isinstance(arg, str) for arg in argv)):
        raise ProtocolError("START 'argv' must be a list of strings")
    if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
        raise ProtocolError("START 'env' must map strings to strings")
    if not isinstance(cwd, str) or not isinstance(api, str):
        raise ProtocolError("START 'cwd' and 'runtime_api' must be strings")
    start = StartMeta(argv=argv, cwd=cwd, env=env, runtime_api=api)
    for key in ("extensions_dir", "account_id"):
        value = meta.get(key)
        if value is not None and not isinstance(value, str):
            raise ProtocolError(f"START '{key}' must be a string")
        if value:
            start[key] = value
    return start


def listen(address: str) -> tuple[socket.socket, str]:
    """A listening TCP socket on ``host:port`` (port 0 = any) and its actual address."""
    host, _, port = address.rpartition(":")
    host = host or "127.0.0.1"
    family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), int(port)))
        sock.listen(64)
    except (OSError, ValueError):
        sock.close()
        raise
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if family == socket.AF_INET6 else bound_host
    return sock, f"{shown}:{bound_port}"


# ``signal.valid_signals()`` turns each of the ~65 numbers into a ``Signals`` member anew
# on every call (the realtime ones through ``Enum._missing_``), and asyncio's
# ``add_signal_handler`` calls it each time: four calls cost ~0.3 ms of a cold start. Taken
# once here (in a zygote: before the fork), the agent's process answers from it.
VALID_SIGNALS = frozenset(signal.valid_signals())


def _known_valid_signals() -> set[signal.Signals]:
    return set(VALID_SIGNALS)  # what signal.valid_signals() gives, without the conversions


def _failure_body(error_type: str, message: str) -> bytes:
    body = {"errorType": error_type, "errorMessage": f"Error: {message}"}
    return json.dumps(body, separators=(",", ":")).encode()


class Agent:
    """One agent process: serves exactly one START and one runtime process, then exits."""

    def __init__(self, channel_fd: int) -> None:
        self._channel_fd = channel_fd

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # pid 1's (a runtime forked from it later gets the same answers, as a new set)
        signal.valid_signals = _known_valid_signals
        channel = socket.socket(fileno=self._channel_fd)
        reader, writer = await asyncio.open_unix_connection(sock=channel)
        small_reads(writer.transport)
        host = HostLink(writer)
        try:
            start = await read_start(reader)
            return 0 if start is None else await self._serve(loop, reader, host, start)
        except ProtocolError as exc:
            print(f"ember-agent: {exc}", file=sys.stderr)
            return 1
        finally:
            await host.close()

    async def _serve(
        self,
        loop: asyncio.AbstractEventLoop,
        reader: asyncio.StreamReader,
        host: HostLink,
        start: StartMeta,
    ) -> int:
        reaper = ChildReaper(loop)
        stop: asyncio.Future[None] = loop.create_future()

        def request_stop() -> None:
            if not stop.done():
                stop.set_result(None)

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, request_stop)
        try:
            sock, address = listen(start["runtime_api"])
        except (OSError, ValueError) as exc:
            meta = {"error_type": "Sandbox.Failure", "init_ms": 0.0}
            host.report(Kind.INIT_ERROR, meta, _failure_body("Sandbox.Failure", str(exc)))
            return 1
        host.send(Kind.LISTENING, {"runtime_api": address})
        env = {**start["env"], "AWS_LAMBDA_RUNTIME_API": address}
        lifecycle = Lifecycle(host, env, start.get("account_id", ""), loop)
        lifecycle.begin_init()
        server = await start_server(
            sock, lifecycle.handle, max_body=MAX_PAYLOAD_BYTES, batch=host.held
        )
        runtime: list[RuntimeProcess] = []
        channel = asyncio.ensure_future(relay_frames(reader, lifecycle, runtime))
        try:
            process = await self._init(loop, reaper, host, lifecycle, start, env, (channel, stop))
            if process is None:
                return await self._linger(host, lifecycle, channel, stop)
            runtime.append(process)
            return await self._supervise(host, lifecycle, process, channel, stop)
        finally:
            channel.cancel()
            server.close()
            lifecycle.close()
            for process in runtime:
                process.close()

    async def _init(
        self,
        loop: asyncio.AbstractEventLoop,
        reaper: ChildReaper,
        host: HostLink,
        lifecycle: Lifecycle,
        start: StartMeta,
        env: dict[str, str],
        ends: tuple[asyncio.Future[None], asyncio.Future[None]],
    ) -> RuntimeProcess | None:
        """External extensions (until all registered), then the runtime; None if init
        failed before the runtime ran (INIT_ERROR sent) or the host ended it."""
        directory = start.get("extensions_dir")
        paths = discover(directory) if directory else []
        try:
            lifecycle.launch_extensions(paths, extension_env(env))
        except LaunchError as exc:
            lifecycle.fail_init("Extension.LaunchError", exc.message)
            return None
        for extension in lifecycle.processes:
            reaper.watch(extension)
        if paths:
            registered = asyncio.ensure_future(lifecycle.wait_registered())
            waits: set[asyncio.Future[Any]] = {registered, *ends}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if not registered.done():
                registered.cancel()
                return None
            if (failure := registered.result()) is not None:
                lifecycle.fail_init(*failure)
                return None
        try:
            process = RuntimeProcess.spawn(start["argv"], start["cwd"], env)
        except SpawnError as exc:
            lifecycle.fail_init(exc.error_type, exc.message)
            return None
        reaper.watch(process)
        output = OutputCapture(loop, lifecycle.runtime_output)
        output.add("stdout", process.stdout_fd)
        output.add("stderr", process.stderr_fd)
        host.output = output
        lifecycle.runtime_api = RuntimeApi(
            report=lifecycle.report,
            memory_peak_kb=process.memory_peak_kb,
            started_at=process.started_at,
            loop=loop,
        )
        return process

    async def _linger(
        self,
        host: HostLink,
        lifecycle: Lifecycle,
        channel: asyncio.Future[None],
        stop: asyncio.Future[None],
    ) -> int:
        """No runtime: without extensions, EXIT at once; with them, wait for the host's
        SHUTDOWN (or the channel's end) so that they get their shutdown phase."""
        if lifecycle.processes and not channel.done() and not stop.done():
            await asyncio.wait({channel, stop}, return_when=asyncio.FIRST_COMPLETED)
        else:
            host.report(Kind.EXIT, {"status": None, "signal": None})
        return _channel_status(channel)

    async def _supervise(
        self,
        host: HostLink,
        lifecycle: Lifecycle,
        process: RuntimeProcess,
        channel: asyncio.Future[None],
        stop: asyncio.Future[None],
    ) -> int:
        events: set[asyncio.Future[Any]] = {channel, process.exited, stop, lifecycle.crashed}
        await asyncio.wait(events, return_when=asyncio.FIRST_COMPLETED)
        ended = not channel.done() and not stop.done() and not lifecycle.shutting_down
        if ended and (process.exited.done() or lifecycle.crashed.done()):
            status = process.exited.result() if process.exited.done() else None
            meta: dict[str, Any] = {"status": None, "signal": None}
            if status is not None:
                meta = {"status": status.status, "signal": status.signal}
            else:
                error_type, message = lifecycle.crash or ("Extension.Crash", "")
                meta["error_type"], meta["error_message"] = error_type, message
            lifecycle.runtime_exited()
            host.report(Kind.EXIT, meta)
            process.kill_group()
            if not lifecycle.processes:
                return 0
        if not channel.done() and not stop.done():  # the host runs (or will) the shutdown
            await asyncio.wait({channel, stop}, return_when=asyncio.FIRST_COMPLETED)
        process.kill_group()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.exited), REAP_TIMEOUT_S)
        return _channel_status(channel)


def _channel_status(channel: asyncio.Future[None]) -> int:
    """0 after a clean end of the channel (or while it is still open), 1 after an error."""
    if not channel.done() or channel.cancelled() or channel.exception() is None:
        return 0
    print(f"ember-agent: {channel.exception()}", file=sys.stderr)
    return 1


async def relay_frames(
    reader: asyncio.StreamReader, lifecycle: Lifecycle, runtime: list[RuntimeProcess]
) -> None:
    """Feed INVOKE frames to the lifecycle until a clean EOF or a SHUTDOWN (whose phase it
    runs); raise ``ProtocolError`` on anything else."""
    while (frame := await read_frame(reader)) is not None:
        if frame.kind == Kind.INVOKE:
            lifecycle.invoke(frame.meta, frame.payload)
        elif frame.kind == Kind.SHUTDOWN:
            reason = str(frame.meta.get("reason") or "spindown")
            budget_ms = int(frame.meta.get("budget_ms") or 0)
            await lifecycle.shutdown(reason, budget_ms, runtime[0] if runtime else None)
            return
        else:
            raise ProtocolError(f"unexpected {frame.kind.name} frame")


def parse_channel_fd(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--channel-fd" or not argv[1].isdigit():
        raise SystemExit("usage: ember-agent --channel-fd N")
    return int(argv[1])


def main() -> None:
    """Run the agent; ``sys.argv`` is ``[prog, src_root, "--channel-fd", N]``."""
    channel_fd = parse_channel_fd(sys.argv[2:])
    sys.exit(asyncio.run(Agent(channel_fd).run()))
