"""One execution environment: a sandbox running one function version's runtime.

States and the only allowed edges (the table ``ALLOWED`` is the source of truth)::

    STARTING ──init ok──▶ READY ◀──done── BUSY
        │                   │  └──invoke──▶ │
        └──────────────▶  DEAD  ◀───────────┘   (init error, timeout, crash, stop)

Scope: one per sandbox. Invariants: at most one invoke at a time (BUSY); DEAD is terminal
(an EXIT from the agent wins over any later transition) and a DEAD sandbox is killed and
never used again; every frame from the agent is read by one pump task, which is the only
code that resolves the pending init or invoke. After an invoke the environment is READY
for placement, but takes a new invoke only once its runtime is back on ``/next``
(``wait_back``): a runtime may still exit right after it answered.

Extensions (lambda-spec §1.9): the agent's NEXT also waits for every extension subscribed
to INVOKE to be back on ``/event/next`` and says how long they ran after the runtime
(``after_extensions`` hands that to whoever writes the REPORT line); the function timeout
covers that time too. Stopping an environment that has extensions runs Lambda's shutdown
phase (a SHUTDOWN frame with the reason and budget: 2,000 ms with external extensions,
500 ms with internal ones only), and kills the sandbox when the agent is done or the
budget (plus ``SHUTDOWN_GRACE_S``) is spent; without extensions it is killed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ember.agent.protocol import (
    Frame,
    FrameReader,
    InvokeMeta,
    Kind,
    ProtocolError,
    StartMeta,
    encode,
)
from ember.clock import Clock
from ember.invocation.envlog import EnvironmentLog
from ember.sandbox.base import Sandbox

SlowMark = tuple[float, Callable[[], None]]
AfterExtensions = Callable[[float | None], None]  # extensions_ms, None if it died first

SHUTDOWN_GRACE_S = 1.0


def shutdown_budget_ms(extensions: list[dict[str, Any]]) -> int:
    """Lambda's shutdown budget: 0 without extensions, 500 ms with internal ones only,
    2,000 ms with external ones."""
    if any(ext.get("external") for ext in extensions):
        return 2000
    return 500 if extensions else 0


class EnvState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    DEAD = "dead"


ALLOWED = {
    EnvState.STARTING: {EnvState.READY, EnvState.DEAD},
    EnvState.READY: {EnvState.BUSY, EnvState.DEAD},
    EnvState.BUSY: {EnvState.READY, EnvState.DEAD},
    EnvState.DEAD: set(),
}


class Status(enum.StrEnum):
    """How an init or invoke ended."""

    OK = "ok"  # runtime responded
    ERROR = "error"  # runtime reported an error (function error)
    INIT_ERROR = "init_error"  # runtime reported /init/error
    TIMEOUT = "timeout"  # deadline passed; the environment was killed
    EXIT = "exit"  # runtime process ended (or the sandbox broke)


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    payload: bytes = b""
    content_type: str = "application/json"
    error_type: str | None = None
    duration_ms: float = 0.0
    memory_peak_kb: int = 0
    exit_status: int | None = None
    exit_signal: int | None = None
    # the agent's own account of a failure it detected (an extension's, the entrypoint's),
    # which the invoker words as RAPID does, with the request id
    message: str = ""


class ExecutionEnvironment:
    """Drives one sandbox's agent over its channel. See the module docstring."""

    def __init__(self, sandbox: Sandbox, clock: Clock, log: EnvironmentLog) -> None:
        self.sandbox = sandbox
        self.log = log
        self.state = EnvState.STARTING
        self.idle_since = clock.monotonic()
        self.init_ms: float | None = None
        self._clock = clock
        self._pending: asyncio.Future[Outcome] | None = None
        self._pending_id: str | None = None  # request id of the invoke in flight
        self._back: asyncio.Future[bool] | None = None  # runtime back on /next (or dead)
        self.memory_peak_kb = 0  # last the agent reported
        self._started_at = 0.0
        self.extensions: list[dict[str, Any]] = []  # as the agent listed them at init
        self.extensions_ms = 0.0  # how long extensions ran after the last invoke's runtime
        self._after: list[AfterExtensions] = []
        self._post_timer: Any = None  # the function timeout, while extensions still run
        self._stopping: asyncio.Task[None] | None = None
        self._pump = asyncio.get_running_loop().create_task(self._read_frames())

    @property
    def invoke_extensions(self) -> bool:
        """Whether extensions take part in each invoke (subscribed to INVOKE)."""
        return any("INVOKE" in ext.get("events", ()) for ext in self.extensions)

    def extensions_running(self) -> bool:
        """After an invoke's answer: INVOKE extensions have not all finished yet."""
        return self.invoke_extensions and self._back is not None and not self._back.done()

    def after_extensions(self, callback: AfterExtensions) -> asyncio.Future[None]:
        """Run ``callback`` once the extensions finished the last invoke (or the environment
        died first); the future resolves after it ran."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def run(extensions_ms: float | None) -> None:
            try:
                callback(extensions_ms)
            finally:
                if not done.done():
                    done.set_result(None)

        if self._back is None or self._back.done():
            run(self.extensions_ms if self.alive else None)
        else:
            self._after.append(run)
        return done

    @property
    def alive(self) -> bool:
        return self.state is not EnvState.DEAD

    def transition(self, to: EnvState) -> None:
        """Move along an edge of ``ALLOWED``; from DEAD nothing moves (it is terminal)."""
        if self.state is EnvState.DEAD:
            return
        if to not in ALLOWED[self.state]:
            raise RuntimeError(f"environment cannot go from {self.state} to {to}")
        self.state = to

    async def wait_back(self, timeout_s: float) -> bool:
        """True once the runtime is back on ``/next`` after the last invoke; False if dead."""
        back = self._back
        if self.state is EnvState.DEAD:
            return False
        if back is None or back.done():
            return back is None or back.result()
        timer = self._clock.call_later(timeout_s, lambda: _settle(back, False))
        try:
            return await back and self.alive
        finally:
            timer.cancel()

    async def initialize(
        self, start: StartMeta, timeout_s: float, slow: SlowMark | None = None
    ) -> Outcome:
        """Start the runtime and wait for its first ``/next`` (or its failure).

        ``slow`` = (seconds, callback): the callback runs once if init is still going then
        (Lambda's 10 s init limit, after which init continues in the invoke phase).
        """
        frame = encode(Kind.START, dict(start))
        outcome = await self._exchange(frame, None, timeout_s, slow)
        if outcome.status is Status.OK:
            self.init_ms = outcome.duration_ms
            self.transition(EnvState.READY)
        else:
            await self._end(Status.TIMEOUT if outcome.status is Status.TIMEOUT else Status.EXIT)
        return outcome

    async def invoke(self, meta: InvokeMeta, payload: bytes, timeout_s: float) -> Outcome:
        """Run one invocation. The environment is READY again after OK/ERROR, else DEAD."""
        self.transition(EnvState.BUSY)
        self._back = asyncio.get_running_loop().create_future()
        frame = encode(Kind.INVOKE, dict(meta), payload)
        outcome = await self._exchange(frame, meta["id"], timeout_s)
        if outcome.status in (Status.OK, Status.ERROR):
            self.transition(EnvState.READY)
            self.idle_since = self._clock.monotonic()
            if self.extensions_running():  # the timeout covers them too
                remaining = max(0.0, timeout_s - outcome.duration_ms / 1000)
                self._post_timer = self._clock.call_later(remaining, self._extensions_overran)
        else:
            await self._end(outcome.status)
        return outcome

    async def _end(self, status: Status) -> None:
        """After a failed init or invoke: without extensions the sandbox is killed before
        this returns; with them their shutdown phase runs in the background."""
        reason = "timeout" if status is Status.TIMEOUT else "failure"
        stopping = self._begin_stop(reason)
        if not self.extensions:
            await asyncio.shield(stopping)

    def _extensions_overran(self) -> None:
        self._begin_stop("timeout")

    async def stop(self, reason: str = "spindown") -> None:
        """Stop the environment (idempotent; see the module docstring for the shutdown
        phase); any pending exchange ends as EXIT."""
        await asyncio.shield(self._begin_stop(reason))

    def _begin_stop(self, reason: str) -> asyncio.Task[None]:
        if self._stopping is None:
            self.state = EnvState.DEAD
            self._resolve(Outcome(Status.EXIT))
            self._settle_back(False)
            self._stopping = asyncio.get_running_loop().create_task(self._shut_down(reason))
        return self._stopping

    async def _shut_down(self, reason: str) -> None:
        budget_ms = shutdown_budget_ms(self.extensions)
        if budget_ms and not self._pump.done():
            with contextlib.suppress(OSError, RuntimeError):
                meta = {"reason": reason, "budget_ms": budget_ms}
                self.sandbox.writer.writelines(encode(Kind.SHUTDOWN, meta))
            await self._wait_pump(budget_ms / 1000 + SHUTDOWN_GRACE_S)
        await self.sandbox.kill()
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump

    async def _wait_pump(self, timeout_s: float) -> None:
        """Until the agent closed the channel (its shutdown is over) or ``timeout_s``."""
        ended: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        timer = self._clock.call_later(timeout_s, lambda: _settle(ended, False))
        self._pump.add_done_callback(lambda _: _settle(ended, True))
        try:
            await ended
        finally:
            timer.cancel()

    def _settle_back(self, value: bool, extensions_ms: float | None = None) -> None:
        """The runtime (and the INVOKE extensions) are back, or never will be: first the
        waiting callbacks (REPORT lines), then whoever waits to reuse the environment."""
        if self._post_timer is not None:
            self._post_timer.cancel()
            self._post_timer = None
        after, self._after = self._after, []
        for run in after:
            run(extensions_ms if value else None)
        _settle(self._back, value)

    async def _exchange(
        self,
        frame: list[bytes],
        request_id: str | None,
        timeout_s: float,
        slow: SlowMark | None = None,
    ) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending, self._pending_id = future, request_id
        self._started_at = self._clock.monotonic()
        timer = self._clock.call_later(timeout_s, lambda: self._resolve(Outcome(Status.TIMEOUT)))
        slow_timer = self._clock.call_later(*slow) if slow else None
        if not self.alive:  # the agent is already gone
            self._resolve(Outcome(Status.EXIT))
        try:
            self.sandbox.writer.writelines(frame)
            outcome = await future
        finally:
            timer.cancel()
            if slow_timer is not None:
                slow_timer.cancel()
            self._pending = self._pending_id = None
        elapsed = (self._clock.monotonic() - self._started_at) * 1000
        if outcome.status is Status.OK and request_id is None:
            elapsed = outcome.duration_ms or elapsed  # the agent measures init precisely
        return _with_duration(outcome, elapsed)

    def _resolve(self, outcome: Outcome) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.set_result(outcome)

    async def _read_frames(self) -> None:
        """The pump. Anything unexpected from the agent (it runs with the function's uid)
        ends the environment; the pump never stops while the environment looks alive."""
        try:
            frames = FrameReader(self.sandbox.reader)
            while (frame := await frames.next()) is not None:
                self._dispatch(frame)
        except (ProtocolError, OSError, ValueError, TypeError, KeyError, AttributeError):
            pass
        self.state = EnvState.DEAD
        self._resolve(Outcome(Status.EXIT))
        self._settle_back(False)

    def _dispatch(self, frame: Frame) -> None:
        kind, meta = frame.kind, frame.meta
        if kind is Kind.LOG:
            self.log.output(frame.payload)
        elif kind is Kind.INIT_DONE:
            self.extensions = _extension_list(meta)
            self._resolve(Outcome(Status.OK, duration_ms=float(meta.get("init_ms", 0.0))))
        elif kind is Kind.INIT_ERROR:
            self.extensions = _extension_list(meta)
            error_type = str(meta.get("error_type") or "Runtime.Unknown")
            message = str(meta.get("error_message") or "")
            self._resolve(
                Outcome(Status.INIT_ERROR, frame.payload, error_type=error_type, message=message)
            )
        elif kind in (Kind.RESPONSE, Kind.ERROR) and meta.get("id") == self._pending_id:
            outcome = _response_outcome(frame)
            self.memory_peak_kb = outcome.memory_peak_kb or self.memory_peak_kb
            self._resolve(outcome)
        elif kind is Kind.NEXT:
            self.extensions_ms = float(meta.get("extensions_ms") or 0.0)
            self._settle_back(True, self.extensions_ms)
        elif kind is Kind.EXIT:
            self.state = EnvState.DEAD
            self._resolve(_exit_outcome(meta))
            self._settle_back(False)


def _exit_outcome(meta: dict[str, Any]) -> Outcome:
    """An EXIT frame's outcome; an extension's failure has its error type and message."""
    return Outcome(
        Status.EXIT,
        error_type=str(meta.get("error_type") or "") or None,
        message=str(meta.get("error_message") or ""),
        exit_status=meta.get("status"),
        exit_signal=meta.get("signal"),
    )


def _extension_list(meta: dict[str, Any]) -> list[dict[str, Any]]:
    extensions = meta.get("extensions") or []
    if not isinstance(extensions, list):
        raise TypeError("'extensions' must be a list")
    return [ext for ext in extensions if isinstance(ext, dict)]


def _settle(future: asyncio.Future[bool] | None, value: bool) -> None:
    if future is not None and not future.done():
        future.set_result(value)


def _response_outcome(frame: Frame) -> Outcome:
    meta = frame.meta
    ok = frame.kind is Kind.RESPONSE
    return Outcome(
        Status.OK if ok else Status.ERROR,
        frame.payload,
        content_type=str(meta.get("content_type") or "application/json"),
        error_type=None if ok else str(meta.get("error_type") or "Unhandled"),
        memory_peak_kb=int(meta.get("memory_peak_kb") or 0),
    )


def _with_duration(outcome: Outcome, duration_ms: float) -> Outcome:
    return replace(outcome, duration_ms=duration_ms)


# What RAPID reports when the memory limit killed the runtime (whichever process it hit).
OOM_MESSAGE = "Runtime exited with error: signal: killed"
# Go's names for signals, as RAPID prints them ("signal: killed").
SIGNAL_NAMES = {6: "aborted", 9: "killed", 11: "segmentation fault", 15: "terminated"}


def exit_message(outcome: Outcome) -> str:
    """RAPID's wording for a runtime that ended (``Runtime.ExitError``)."""
    if outcome.exit_signal:
        name = SIGNAL_NAMES.get(outcome.exit_signal, str(outcome.exit_signal))
        return f"Runtime exited with error: signal: {name}"
    if outcome.exit_status:
        return f"Runtime exited with error: exit status {outcome.exit_status}"
    return "Runtime exited without providing a reason"


def platform_error(error_type: str, request_id: str, message: str) -> bytes:
    """RAPID's body for platform-generated errors."""
    body = {"errorType": error_type, "errorMessage": f"RequestId: {request_id} Error: {message}"}
    return json.dumps(body).encode()
