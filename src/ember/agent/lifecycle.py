"""Init → invoke → shutdown with extensions and telemetry, in RAPID's order (lambda-spec §1.9).

Init: ``platform.initStart``; start every external extension and wait until each has
registered (or failed); the caller then starts the runtime; registration closes at the
runtime's first ``/next``; init is done (INIT_DONE) once every registered extension is on
``/event/next`` too. Then subscriptions close and ``platform.initRuntimeDone``,
``platform.extension`` (one per extension) and ``platform.initReport`` are emitted, and the
``EXTENSION``/``TELEMETRY`` lines are logged.

Invoke: ``platform.start``; the INVOKE event goes to subscribed extensions and the event to
the runtime; the runtime's RESPONSE/ERROR goes to the host at once; when the runtime is
back on ``/next``, ``platform.runtimeDone`` (its duration up to the response); once every INVOKE
subscriber is back on ``/event/next``, ``platform.report`` and NEXT (with the time the
extensions took after the runtime) tell the host the environment can be reused.

Shutdown (SHUTDOWN frame): without extensions the runtime is SIGKILLed; otherwise it gets
SIGTERM and ``RUNTIME_SHARE`` of the budget, then SIGKILL; telemetry is flushed; external
extensions subscribed to SHUTDOWN get the event with the deadline, the others SIGKILL;
whatever still runs at the deadline is SIGKILLed.

Scope: one agent. Invariants: the runtime's frames all pass through ``report``; INIT_DONE
and NEXT are sent at most once per init / invoke; after a failure, INIT_ERROR is the only
init frame sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ember.agent.extension_procs import ExtensionProcess, LaunchError, describe_exit
from ember.agent.extensions_api import (
    EXIT_ERROR,
    INIT_ERROR,
    INVOKE,
    PREFIX,
    SHUTDOWN,
    ExtensionsApi,
    FunctionInfo,
)
from ember.agent.http_server import Request, Response
from ember.agent.protocol import Kind, ProtocolError
from ember.agent.rendering import NOT_FOUND
from ember.agent.runtime import ExitStatus, OutputCapture, RuntimeProcess
from ember.agent.runtime_api import RuntimeApi
from ember.agent.telemetry import TelemetryBus
from ember.agent.telemetry_api import TelemetryApi

# The fatal error type of an extension that ended in one of these states (RAPID's fatalerror).
FAILED_STATES = {INIT_ERROR: "Extension.InitError", EXIT_ERROR: "Extension.ExitError"}
RUNTIME_SHARE = 0.3  # of the shutdown budget, for the runtime, when external extensions run
TELEMETRY_FLUSH_S = 0.5


class Host(Protocol):
    def send(self, kind: Kind, meta: dict[str, Any], payload: bytes = b"") -> None: ...
    def report(self, kind: Kind, meta: dict[str, Any], payload: bytes = b"") -> None: ...
    def log(self, stream: str, data: bytes) -> None: ...


@dataclass(slots=True)
class InvokeTrack:
    request_id: str
    started: float
    trace_id: str
    status: str = "success"
    error_type: str | None = None
    runtime_back: float | None = None
    memory_peak_kb: int = 0  # as the runtime's RESPONSE/ERROR reported it
    runtime_done: dict[str, Any] | None = None  # platform.runtimeDone, sent at the next /next


class Lifecycle:
    """Sequences one environment's phases. See the module docstring."""

    def __init__(
        self,
        host: Host,
        env: dict[str, str],
        account_id: str,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._host = host
        self._env = env
        self._loop = loop
        function = FunctionInfo(
            env.get("AWS_LAMBDA_FUNCTION_NAME", ""),
            env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            env.get("_HANDLER", ""),
            account_id,
        )
        self.extensions = ExtensionsApi(function, self._changed)
        self.bus = TelemetryBus(loop)
        self.telemetry = TelemetryApi(self.extensions, self.bus)
        self.runtime_api: RuntimeApi | None = None
        self.crashed: asyncio.Future[None] = loop.create_future()
        self.crash: tuple[str, str] | None = None  # (error type, message) once crashed
        self._initialized = False  # init succeeded
        self.shutting_down = False
        self._processes: list[ExtensionProcess] = []
        self._captures: list[OutputCapture] = []
        self._init_started = loop.time()
        self._registered: asyncio.Future[None] = loop.create_future()
        self._runtime_ready = False
        self._init_over = False
        self._init_ms: float | None = None
        self._track: InvokeTrack | None = None
        self._json_logs = env.get("AWS_LAMBDA_LOG_FORMAT") == "JSON"

    # Routing.

    def handle(self, request: Request) -> Response | asyncio.Future[Response]:
        """The listener's handler: Extensions, Telemetry/Logs, then Runtime API routes."""
        path = request.path
        if path.startswith(PREFIX):
            return self.extensions.handle(request)
        if self.telemetry.handles(path):
            return self.telemetry.handle(request)
        if self.runtime_api is None:
            return NOT_FOUND
        return self.runtime_api.handle(request)

    # Init.

    def begin_init(self) -> None:
        initialization = self._env.get("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        record = {
            "initializationType": initialization,
            "phase": "init",
            "functionName": self._env.get("AWS_LAMBDA_FUNCTION_NAME", ""),
            "functionVersion": self._env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        }
        self.bus.emit("platform.initStart", record)

    def launch_extensions(self, paths: list[str], env: dict[str, str]) -> None:
        """Start every external extension; ``LaunchError`` (after killing the others)."""
        for path in paths:
            try:
                process = ExtensionProcess.spawn(path, env)
            except LaunchError:
                self.kill_extensions()
                raise
            self._processes.append(process)
            self.extensions.expect_external(process.name)
            capture = OutputCapture(self._loop, self._extension_output)
            capture.add("extension", process.stdout_fd)
            capture.add("extension", process.stderr_fd)
            self._captures.append(capture)
            process.exited.add_done_callback(functools.partial(self._exited, process))
        self._changed()

    @property
    def processes(self) -> list[ExtensionProcess]:
        return list(self._processes)

    async def wait_registered(self) -> tuple[str, str] | None:
        """Wait until every external extension registered; the init failure, if any."""
        await self._registered
        return self.extensions.failure

    def _extension_output(self, stream: str, data: bytes) -> None:
        self._host.log(stream, data)
        self.bus.log_lines("extension", data)

    def runtime_output(self, stream: str, data: bytes) -> None:
        self._host.log(stream, data)
        self.bus.log_lines("function", data, json_lines=self._json_logs)

    def _exited(self, process: ExtensionProcess, done: asyncio.Future[ExitStatus]) -> None:
        if self.shutting_down or done.cancelled():
            return
        ext = self.extensions.external_named(process.name)
        error_type = FAILED_STATES.get(ext.state if ext else "", "Extension.Crash")
        failure = (error_type, f"{process.name}: {describe_exit(done.result())}")
        if not self._init_over:
            if self.extensions.failure is None:
                self.extensions.failure = failure
            self._changed()
        elif self._initialized:
            self._crash(*failure)

    def _crash(self, error_type: str, message: str) -> None:
        """An extension failed after init: the environment ends (``crash`` says why)."""
        if self.crash is None:
            self.crash = (error_type, message)
        if not self.crashed.done():
            self.crashed.set_result(None)

    def _exit_error(self) -> tuple[str, str] | None:
        """The first extension that reported ``/extension/exit/error``, as a failure."""
        for ext in self.extensions.registered:
            if ext.state == EXIT_ERROR:
                return "Extension.ExitError", f"{ext.name}: {ext.error_type}"
        return None

    def _changed(self) -> None:
        """An extension's state changed: re-check what the current phase waits for."""
        exit_error = None if self.shutting_down else self._exit_error()
        if exit_error is not None and not self._init_over and self.extensions.failure is None:
            self.extensions.failure = exit_error
        elif exit_error is not None and self._initialized:
            self._crash(*exit_error)
            return
        failure = self.extensions.failure
        if not self._registered.done() and (
            failure is not None or self.extensions.all_external_registered()
        ):
            self._registered.set_result(None)
        if failure is not None and self.runtime_api is not None:  # runtime already started
            self.fail_init(*failure)
        elif not self._init_over and self._runtime_ready:
            self._check_init()
        elif self._track is not None:
            self._check_invoke_done()

    def _check_init(self) -> None:
        failure = self.extensions.failure
        if failure is not None:
            self.fail_init(*failure)
        elif self.extensions.all_ready():
            self._finish_init()

    def fail_init(self, error_type: str, message: str) -> None:
        """Report an init failure of the platform's (an extension's) making."""
        if self._init_over:
            return
        self._init_over = True
        body = {"errorType": error_type, "errorMessage": f"Error: {message}"}
        self._emit_init_done("error", error_type)
        meta = {"error_type": error_type, "init_ms": self._elapsed_ms(self._init_started)}
        meta["error_message"] = message
        meta["extensions"] = self.extensions.infos()
        self._host.report(Kind.INIT_ERROR, meta, json.dumps(body, separators=(",", ":")).encode())

    def _finish_init(self) -> None:
        self._init_over = self._initialized = True
        self.bus.close_subscriptions()
        self._init_ms = self._elapsed_ms(self._init_started)
        self._emit_init_done("success", None)
        for line in self._platform_lines():
            self._host.send(Kind.LOG, {"stream": "platform"}, line.encode())
        meta = {"init_ms": self._init_ms, "extensions": self.extensions.infos()}
        self._host.report(Kind.INIT_DONE, meta)

    def _emit_init_done(self, status: str, error_type: str | None) -> None:
        initialization = self._env.get("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        done: dict[str, Any] = {"initializationType": initialization, "phase": "init"}
        done["status"] = status
        if error_type:
            done["errorType"] = error_type
        self.bus.emit("platform.initRuntimeDone", done)
        for ext in self.extensions.registered:
            record = {"name": ext.name, "state": ext.state, "events": ext.events}
            if ext.error_type:
                record["errorType"] = ext.error_type
            self.bus.emit("platform.extension", record)
        metrics = {"durationMs": self._elapsed_ms(self._init_started)}
        report = {**done, "metrics": metrics}
        self.bus.emit("platform.initReport", report)

    def _platform_lines(self) -> list[str]:
        lines = []
        for ext in self.extensions.registered:
            events = ", ".join(ext.events)
            lines.append(f"EXTENSION\tName: {ext.name}\tState: Ready\tEvents: [{events}]\n")
        for sub in self.bus.subscribers:
            api = "TELEMETRY" if sub.api == "telemetry" else "LOGS"
            types = ", ".join(
                t.capitalize() for t in ("platform", "function", "extension") if t in sub.types
            )
            lines.append(f"{api}\tName: {sub.name}\tState: Subscribed\tTypes: [{types}]\n")
        return lines

    # The runtime's frames.

    def report(self, kind: Kind, meta: dict[str, Any], payload: bytes) -> None:
        """``RuntimeApi``'s report: INIT_DONE and NEXT wait for the extensions. Once an
        extension failed after init (``crash``), the runtime's answer and NEXT are not
        passed on: the invoke ends with the EXIT that names the extension, whichever of the
        two the agent's loop gets to first."""
        if self.crash is not None and kind in (Kind.RESPONSE, Kind.ERROR, Kind.NEXT):
            return
        if kind is Kind.INIT_DONE:
            self._runtime_ready = True
            self.extensions.close_registration()
            self._check_init()
        elif kind is Kind.NEXT:
            if self._track is not None:
                self._track.runtime_back = self._loop.time()
                self._emit_runtime_done()
                self._check_invoke_done()
        elif kind is Kind.INIT_ERROR:
            self._init_over = True
            self._emit_init_done("error", str(meta.get("error_type")))
            self._host.report(kind, {**meta, "extensions": self.extensions.infos()}, payload)
        else:
            if kind in (Kind.RESPONSE, Kind.ERROR):
                self._runtime_done(kind, meta, payload)
            self._host.report(kind, meta, payload)

    def runtime_exited(self) -> None:
        """The runtime ended: a runtimeDone held for its next ``/next`` goes out now."""
        self._emit_runtime_done()

    def _emit_runtime_done(self) -> None:
        track = self._track
        if track is not None and track.runtime_done is not None:
            self.bus.emit("platform.runtimeDone", track.runtime_done)
            track.runtime_done = None

    # Invoke.

    def invoke(self, meta: dict[str, Any], payload: bytes) -> None:
        """An INVOKE frame: to the runtime (``ProtocolError`` if one is outstanding), then to
        the extensions subscribed to INVOKE."""
        if self.runtime_api is None:
            raise ProtocolError("INVOKE before the runtime was started")
        self.runtime_api.invoke(meta, payload)
        trace_id = str(meta.get("trace_id") or "")
        self._track = InvokeTrack(str(meta["id"]), self._loop.time(), trace_id)
        start: dict[str, Any] = {"requestId": meta["id"], "version": self._version()}
        event: dict[str, Any] = {
            "eventType": "INVOKE",
            "deadlineMs": meta["deadline_ms"],
            "requestId": meta["id"],
            "invokedFunctionArn": meta.get("arn", ""),
        }
        if trace_id:
            start["tracing"] = event["tracing"] = {"type": "X-Amzn-Trace-Id", "value": trace_id}
        if self.bus.active:
            self.bus.emit("platform.start", start)
        if self.extensions.subscribed(INVOKE):
            self.extensions.dispatch(INVOKE, event)

    def _version(self) -> str:
        return self._env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")

    def _runtime_done(self, kind: Kind, meta: dict[str, Any], payload: bytes) -> None:
        track = self._track
        if track is None:
            return
        track.memory_peak_kb = int(meta.get("memory_peak_kb") or 0)
        if kind is Kind.ERROR:
            track.status, track.error_type = "error", str(meta.get("error_type"))
        if not self.bus.active:
            return
        record: dict[str, Any] = {"requestId": track.request_id, "status": track.status}
        if track.error_type:
            record["errorType"] = track.error_type
        metrics = {"durationMs": self._elapsed_ms(track.started), "producedBytes": len(payload)}
        record["metrics"] = metrics
        self._add_tracing(record, track)
        track.runtime_done = record  # emitted once the runtime is back on /next, as RAPID does

    def _add_tracing(self, record: dict[str, Any], track: InvokeTrack) -> None:
        if track.trace_id:
            record["tracing"] = {"type": "X-Amzn-Trace-Id", "value": track.trace_id}

    def _check_invoke_done(self) -> None:
        track = self._track
        if track is None or track.runtime_back is None or not self.extensions.all_ready(INVOKE):
            return
        self._track = None
        now = self._loop.time()
        extensions_ms = round((now - track.runtime_back) * 1000, 3)
        if not self.extensions.subscribed(INVOKE):
            extensions_ms = 0.0
        if self.bus.active:
            self._emit_report(track)
        self._host.report(Kind.NEXT, {"extensions_ms": extensions_ms})

    def _emit_report(self, track: InvokeTrack) -> None:
        duration = self._elapsed_ms(track.started)
        memory_mb = int(self._env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128") or 128)
        init_ms, self._init_ms = self._init_ms, None
        metrics: dict[str, Any] = {
            "durationMs": duration,
            # as the REPORT line (lambda-spec §4.6): since 2025-08 a cold start's INIT is
            # billed with its first invoke
            "billedDurationMs": max(1, math.ceil(duration + (init_ms or 0.0))),
            "memorySizeMB": memory_mb,
            "maxMemoryUsedMB": max(1, round(track.memory_peak_kb / 1024)),
        }
        if init_ms is not None:
            metrics["initDurationMs"] = init_ms
        record: dict[str, Any] = {"requestId": track.request_id, "status": track.status}
        if track.error_type:
            record["errorType"] = track.error_type
        record["metrics"] = metrics
        self._add_tracing(record, track)
        self.bus.emit("platform.report", record)

    # Shutdown.

    async def shutdown(self, reason: str, budget_ms: int, runtime: RuntimeProcess | None) -> None:
        """Lambda's shutdown phase (see the module docstring); ``runtime`` may be None."""
        self.shutting_down = True
        self._emit_runtime_done()  # answered but never back on /next: it still goes out
        start = self._loop.time()
        deadline = start + budget_ms / 1000
        registered = self.extensions.registered
        external = any(ext.external for ext in registered)
        if runtime is not None and not runtime.exited.done():
            if registered:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(runtime.pid, signal.SIGTERM)
                share = RUNTIME_SHARE if external else 1.0
                await _wait(runtime.exited, budget_ms / 1000 * share)
            runtime.kill_group()
        await self.bus.flush(min(TELEMETRY_FLUSH_S, max(0.0, deadline - self._loop.time())))
        deadline_ms = deadline_epoch_ms(deadline, self._loop)
        event = {"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms}
        subscribed = {ext.name for ext in self.extensions.subscribed(SHUTDOWN)}
        for process in self._processes:
            if process.name not in subscribed:
                process.kill()
        self.extensions.dispatch(SHUTDOWN, event)
        running = [p.exited for p in self._processes if not p.exited.done()]
        if running:
            remaining = max(0.0, deadline - self._loop.time())
            await _wait(asyncio.gather(*running, return_exceptions=True), remaining)
        self.kill_extensions()

    def kill_extensions(self) -> None:
        for process in self._processes:
            process.kill()

    def close(self) -> None:
        self.kill_extensions()
        for capture in self._captures:
            capture.drain()
            capture.close()
        self.bus.close()

    def _elapsed_ms(self, since: float) -> float:
        return round((self._loop.time() - since) * 1000, 3)


def deadline_epoch_ms(deadline: float, loop: asyncio.AbstractEventLoop) -> int:
    """A loop-time deadline as Unix epoch milliseconds."""
    return int((time.time() + (deadline - loop.time())) * 1000)


async def _wait(future: asyncio.Future[Any], timeout_s: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(future), timeout_s)
