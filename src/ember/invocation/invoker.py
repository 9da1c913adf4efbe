"""The synchronous invoke path: environment, init, invoke, log lines, result.

Scope: one per server. The caller (``api/``) has already resolved the function, checked
that it is Active and validated the payload; this module never sees HTTP.

What each ending looks like (lambda-spec.md §4.6, §4.7):
- response: 200 with the runtime's bytes; REPORT without a status.
- function error: 200 + ``Unhandled`` + the runtime's error body (environment kept).
- init error: 200 + ``Unhandled`` + the init error body; INIT_REPORT ``Status: error``;
  the environment is reset and the next invoke initialises again.
- timeout: ``Sandbox.Timedout``; the timeout line; REPORT ``Status: timeout``; reset.
- runtime exit: ``Runtime.ExitError``; REPORT ``Status: error``; reset.
- out of memory (the sandbox's memory cgroup killed it): ``Runtime.OutOfMemory``, likewise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ember.agent.protocol import InvokeMeta, StartMeta
from ember.clock import Clock
from ember.errors import InitFailed, TooManyRequestsException
from ember.invocation import environment as envmod
from ember.invocation.counting import DEFAULT_ACCOUNT_LIMIT, Counting
from ember.invocation.environment import ExecutionEnvironment, Outcome, Status
from ember.invocation.launch import PROVISIONED, Launcher
from ember.invocation.placement import Placement, StartKind
from ember.model.functions import FunctionRecord
from ember.observe import lines
from ember.observe.metrics import Metrics

UNHANDLED = "Unhandled"


@dataclass(frozen=True, slots=True)
class InvocationRequest:
    payload: bytes
    invoked_arn: str
    client_context: str | None = None  # decoded JSON text
    tail: bool = False
    tenant_id: str | None = None
    request_id: str | None = None  # an async event's id (kept across retries); None = new


@dataclass(frozen=True, slots=True)
class InvocationResult:
    request_id: str
    payload: bytes
    content_type: str
    executed_version: str
    function_error: str | None = None
    log_result: str | None = None  # base64 tail, when asked for


class Invoker:
    def __init__(
        self,
        launcher: Launcher,
        placement: Placement,
        clock: Clock,
        init_timeout_s: float,
        counting: Counting | None = None,
        unreserved_pool: Callable[[], int] = lambda: DEFAULT_ACCOUNT_LIMIT,
        metrics: Metrics | None = None,
        provisioned_for: Callable[[str], int] = lambda _name: 0,
    ) -> None:
        self._launcher = launcher
        self._placement = placement
        self._clock = clock
        self._init_timeout_s = init_timeout_s
        self.counting = counting or Counting(DEFAULT_ACCOUNT_LIMIT)
        self._unreserved_pool = unreserved_pool
        self.metrics = metrics or Metrics()
        self._provisioned_for = provisioned_for  # function => its provisioned concurrency
        self._start_meta: dict[ExecutionEnvironment, StartMeta] = {}  # env => its START

    async def start_environment(self, record: FunctionRecord) -> ExecutionEnvironment:
        """The placement's starter: launch a sandbox (initialised on first use)."""
        env, start = await self._launcher.launch(record)
        self._start_meta[env] = start
        return env

    async def provision_environment(self, record: FunctionRecord) -> ExecutionEnvironment:
        """Launch and initialise an environment ahead of any invoke (provisioned
        concurrency): ``AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency``, INIT
        lines in its log stream. Raises ``InitFailed`` (the environment is gone then)."""
        env, start = await self._launcher.launch(record, PROVISIONED)
        try:
            init, _ = await self._initialize(env, record, start)
        except BaseException:
            await env.stop()
            raise
        if init.status is not Status.OK:
            raise InitFailed(_init_error_type(init))
        return env

    async def invoke(self, record: FunctionRecord, request: InvocationRequest) -> InvocationResult:
        """Run one invocation under a concurrency lease (429 when over a limit)."""
        pool = self._unreserved_pool()
        provisioned = self._provisioned_for(record.name)
        try:  # the lease, or placement finding no memory, raises it; the invocation never
            with self.counting.lease(
                record.name, record.reserved_concurrency, pool, provisioned=provisioned
            ):
                return await self._invoke(record, request)
        except TooManyRequestsException:
            self.metrics.throttles.labels(record.name).inc()
            raise

    async def _invoke(self, record: FunctionRecord, request: InvocationRequest) -> InvocationResult:
        request_id = request.request_id or str(uuid.uuid4())
        async with self._placement.environment(record) as env:
            init_ms: float | None = None
            kind = self._placement.start_kind(env)
            start = self._start_meta.pop(env, None)
            if start is not None:
                if request.tail:  # an init failure's tail shows the INIT lines too
                    env.log.begin_tail()
                init, suppressed = await self._initialize(env, record, start)
                init_ms = None if suppressed else init.duration_ms
                if init.status is not Status.OK:
                    self._observe(record, init, None, kind)
                    return self._init_failed(env, record, request, request_id, init, kind)
            if request.tail:
                env.log.begin_tail()
            env.log.line(lines.start(request_id, record.version))
            outcome = await env.invoke(
                self._meta(record, request, request_id), request.payload, record.config.timeout
            )
            self._observe(record, outcome, init_ms, kind)
            return await self._finish(env, record, request, request_id, outcome, init_ms, kind)

    def _observe(
        self, record: FunctionRecord, outcome: Outcome, init_ms: float | None, kind: StartKind
    ) -> None:
        metrics, name = self.metrics, record.name
        metrics.invoked(name, kind.value, outcome.duration_ms / 1000)
        if init_ms is not None:
            metrics.init_duration.labels(name).observe(init_ms / 1000)
        if outcome.status is not Status.OK:
            error_type = outcome.error_type or str(outcome.status)
            metrics.errors.labels(name, error_type).inc()

    async def _initialize(
        self, env: ExecutionEnvironment, record: FunctionRecord, start: StartMeta
    ) -> tuple[Outcome, bool]:
        """Init, and whether it overran the init limit (a "suppressed" init).

        Lambda gives on-demand init 10 s; past that, INIT_REPORT says ``Status: timeout``
        and init goes on in the invoke phase, within the function's timeout. Ember lets the
        same init continue (Lambda restarts it), so it succeeds exactly when Lambda's would.
        """
        runtime = self._launcher.runtime(record)
        arn = self._launcher.runtime_version_arn(runtime)
        env.log.line(lines.init_start(runtime.version_label, arn))
        limit = self._init_timeout_s
        overran: list[bool] = []

        def init_limit_passed() -> None:
            overran.append(True)
            env.log.line(lines.init_report(limit * 1000, "init", "timeout", None))

        outcome = await env.initialize(
            start, limit + record.config.timeout, slow=(limit, init_limit_passed)
        )
        if outcome.status is not Status.OK:
            status = "timeout" if outcome.status is Status.TIMEOUT else "error"
            error_type = None if status == "timeout" else _init_error_type(outcome)
            phase = "invoke" if overran else "init"
            env.log.line(lines.init_report(outcome.duration_ms, phase, status, error_type))
        return outcome, bool(overran)

    def _meta(
        self, record: FunctionRecord, request: InvocationRequest, request_id: str
    ) -> InvokeMeta:
        deadline_ms = int((self._clock.wall() + record.config.timeout) * 1000)
        meta = InvokeMeta(
            id=request_id,
            deadline_ms=deadline_ms,
            arn=request.invoked_arn,
            trace_id=_trace_id(self._clock.wall()),
        )
        if request.client_context is not None:
            meta["client_context"] = request.client_context
        if request.tenant_id is not None:
            meta["tenant_id"] = request.tenant_id
        return meta

    def _init_failed(
        self,
        env: ExecutionEnvironment,
        record: FunctionRecord,
        request: InvocationRequest,
        request_id: str,
        init: Outcome,
        kind: StartKind,
    ) -> InvocationResult:
        error_type = _init_error_type(init)
        if init.status is Status.INIT_ERROR and init.message:  # the agent's own finding
            payload = envmod.platform_error(error_type, request_id, init.message)
        elif init.status is Status.INIT_ERROR:
            payload = init.payload
        elif init.status is Status.TIMEOUT:
            message = f"Task timed out after {record.config.timeout:.2f} seconds"
            payload = envmod.platform_error("Sandbox.Timedout", request_id, message)
        else:
            payload = envmod.platform_error(error_type, request_id, envmod.exit_message(init))
        env.log.line(lines.start(request_id, record.version))
        env.log.flush_partial()
        env.log.line(lines.end(request_id))
        status = "timeout" if init.status is Status.TIMEOUT else "error"
        env.log.line(
            lines.report(
                request_id,
                duration_ms=init.duration_ms,
                memory_mb=record.config.memory_size,
                max_memory_mb=_memory_mb(env, init),
                status=status,
                error_type=None if status == "timeout" else error_type,
                start_kind=kind.value,
            )
        )
        return self._result(env, record, request, request_id, payload, "application/json", True)

    async def _finish(
        self,
        env: ExecutionEnvironment,
        record: FunctionRecord,
        request: InvocationRequest,
        request_id: str,
        outcome: Outcome,
        init_ms: float | None,
        kind: StartKind,
    ) -> InvocationResult:
        payload, content_type = outcome.payload, outcome.content_type
        status: str | None = None
        error_type: str | None = None
        if outcome.status is Status.TIMEOUT:
            env.log.line(lines.timed_out(request_id, self._clock.wall(), record.config.timeout))
            message = f"Task timed out after {record.config.timeout:.2f} seconds"
            payload = envmod.platform_error("Sandbox.Timedout", request_id, message)
            content_type, status = "application/json", "timeout"
        elif outcome.status is Status.EXIT:
            oom = env.sandbox.oom_killed()
            error_type = "Runtime.OutOfMemory" if oom else "Runtime.ExitError"
            message = envmod.OOM_MESSAGE if oom else envmod.exit_message(outcome)
            if outcome.error_type and not oom:  # an extension's failure ended the environment
                error_type, message = outcome.error_type, outcome.message
            payload = envmod.platform_error(error_type, request_id, message)
            content_type, status = "application/json", "error"

        def end_and_report(extensions_ms: float | None) -> None:
            env.log.flush_partial()
            env.log.line(lines.end(request_id))
            env.log.line(
                lines.report(
                    request_id,
                    duration_ms=outcome.duration_ms + (extensions_ms or 0.0),
                    memory_mb=record.config.memory_size,
                    max_memory_mb=_memory_mb(env, outcome),
                    init_ms=init_ms,
                    status=status,
                    error_type=error_type,
                    start_kind=kind.value,
                )
            )

        if env.invoke_extensions:  # END/REPORT once extensions are done (as on Lambda)
            reported = env.after_extensions(end_and_report)
            if request.tail:  # the tail holds them: wait (the caller asked for the log)
                await reported
        else:
            end_and_report(0.0)
        failed = outcome.status is not Status.OK
        return self._result(env, record, request, request_id, payload, content_type, failed)

    def _result(
        self,
        env: ExecutionEnvironment,
        record: FunctionRecord,
        request: InvocationRequest,
        request_id: str,
        payload: bytes,
        content_type: str,
        failed: bool,
    ) -> InvocationResult:
        return InvocationResult(
            request_id=request_id,
            payload=payload,
            content_type=content_type,
            executed_version=record.version,
            function_error=UNHANDLED if failed else None,
            log_result=env.log.end_tail() if request.tail else None,
        )


def _init_error_type(outcome: Outcome) -> str:
    if outcome.status is Status.INIT_ERROR:
        return outcome.error_type or "Runtime.Unknown"
    if outcome.status is Status.TIMEOUT:
        return "Sandbox.Timedout"
    return "Runtime.ExitError"


def _memory_mb(env: ExecutionEnvironment, outcome: Outcome) -> int:
    peak = env.sandbox.memory_peak_bytes()
    peak_kb = peak // 1024 if peak is not None else outcome.memory_peak_kb or env.memory_peak_kb
    return max(1, round(peak_kb / 1024))


def _trace_id(wall: float) -> str:
    """A fresh X-Ray trace header: ``Root=1-<8 hex time>-<24 hex>;Parent=<16 hex>;Sampled=0``."""
    root = f"1-{int(wall):08x}-{os.urandom(12).hex()}"
    return f"Root={root};Parent={os.urandom(8).hex()};Sampled=0"
