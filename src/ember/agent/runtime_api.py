"""The Runtime API 2018-06-01 as RAPID serves it: routes, state machine, exact bodies.

State names, transitions, status codes and JSON bodies follow RAPID (lambda-spec §1.2-1.7):
``Started`` → (first ``/next``) ``Ready`` → (event handed out) ``Running`` → (``/response``
or ``/error``) ``RuntimeResponseSentState`` → (``/next``) ``Ready`` …; ``Started`` →
(``/init/error``) ``InitError``. A request id that is not the current invoke's is refused
with 400 before the state is looked at; a transition the state does not allow gets 403.

Choices where RAPID is silent or odd (see the module's tests):

* The current invoke id is set when the event is handed to ``/next`` (not when the host
  queued it), so a second post for an answered invoke is a 403 double response.
* A ``/response`` with a bad ``Lambda-Runtime-Function-Response-Mode`` completes the
  invoke (RAPID leaves the runtime stuck in ``InvocationResponse``).
* ``streaming`` responses are buffered; an error trailer turns them into an ERROR.
* An ``/error`` body over the payload limit is refused like an oversize response (413,
  ``Function.ResponseSizeTooLarge``).
"""

from __future__ import annotations

import asyncio
import binascii
import json
from collections.abc import Callable
from typing import Any

from ember.agent.http_server import Request, Response
from ember.agent.protocol import Kind, ProtocolError
from ember.agent.rendering import (
    ACCEPTED,
    ERROR_CAUSE_CONTENT_TYPE,
    INVALID_REQUEST_ID,
    INVALID_RESPONSE_MODE,
    NOT_FOUND,
    PING,
    TOO_LARGE,
    TOO_LARGE_PAYLOAD,
    TRUNCATED_REQUEST,
    error_with_cause_body,
    forbidden,
    method_not_allowed,
    normalise_error_type,
    render_next,
)

NEXT_PATH = "/2018-06-01/runtime/invocation/next"
INVOCATION_PREFIX = "/2018-06-01/runtime/invocation/"
INIT_ERROR_PATH = "/2018-06-01/runtime/init/error"
PING_PATHS = ("/ping", "/2018-06-01/ping")

STARTED = "Started"
INIT_ERROR = "InitError"
READY = "Ready"
RUNNING = "Running"
INVOCATION_RESPONSE = "InvocationResponse"
INVOCATION_ERROR_RESPONSE = "InvocationErrorResponse"
RESPONSE_SENT = "RuntimeResponseSentState"

Report = Callable[[Kind, dict[str, Any], bytes], None]


class RuntimeApi:
    """The Runtime API of one runtime process, and its state machine.

    Scope: one runtime process. Invariants: at most one host invoke is outstanding (not yet
    answered with RESPONSE/ERROR) at a time; ``_current`` is the invoke last handed to
    ``/next`` and the only id a post is accepted for; every frame goes through ``report``,
    which sends the runtime's pending output first.
    """

    def __init__(
        self,
        *,
        report: Report,
        memory_peak_kb: Callable[[], int],
        started_at: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.state = STARTED
        self._report = report
        self._memory_peak_kb = memory_peak_kb
        self._started_at = started_at
        self._loop = loop
        self._current_id = ""
        self._current: Response | None = None
        self._queued: tuple[str, Response] | None = None
        self._outstanding = False
        self._waiters: list[asyncio.Future[Response]] = []

    # Host side.

    def invoke(self, meta: dict[str, Any], payload: bytes) -> None:
        """An INVOKE frame; raises ``ProtocolError`` if one is already outstanding."""
        if self._outstanding:
            raise ProtocolError("INVOKE while another invoke is outstanding")
        rendered = render_next(meta, payload)
        self._outstanding = True
        self._queued = (meta["id"], rendered)
        if self.state == READY and any(not waiter.done() for waiter in self._waiters):
            self._hand_out()

    # Runtime side.

    def handle(self, request: Request) -> Response | asyncio.Future[Response]:
        """Route one request (the HTTP server's handler)."""
        path = request.path
        if path == NEXT_PATH:
            return self._next() if request.method == "GET" else method_not_allowed("GET")
        if path.startswith(INVOCATION_PREFIX):
            return self._route_invocation(request)
        if path == INIT_ERROR_PATH:
            if request.method != "POST":
                return method_not_allowed("POST")
            return self._post_init_error(request)
        return PING if path in PING_PATHS else NOT_FOUND

    def _route_invocation(self, request: Request) -> Response:
        invoke_id, _, action = request.path[len(INVOCATION_PREFIX) :].partition("/")
        if not invoke_id or action not in ("response", "error"):
            return NOT_FOUND
        if request.method != "POST":
            return method_not_allowed("POST")
        if action == "response":
            return self._post_response(request, invoke_id)
        return self._post_error(request, invoke_id)

    def _next(self) -> Response | asyncio.Future[Response]:
        if self.state == RUNNING and self._current is not None:
            return self._current  # RAPID re-renders the current event
        if self.state == STARTED:
            self._report(Kind.INIT_DONE, {"init_ms": self._elapsed_ms()}, b"")
        elif self.state == RESPONSE_SENT:
            self._report(Kind.NEXT, {}, b"")  # back for more: the host may reuse us
        elif self.state != READY:
            return forbidden(self.state, READY)
        self.state = READY
        if self._queued is not None:
            return self._hand_out()
        waiter: asyncio.Future[Response] = self._loop.create_future()
        self._waiters = [w for w in self._waiters if not w.done()]
        self._waiters.append(waiter)
        return waiter

    def _hand_out(self) -> Response:
        assert self._queued is not None
        self._current_id, self._current = self._queued
        self._queued = None
        self.state = RUNNING
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(self._current)
        self._waiters = []
        return self._current

    def _check_post(self, invoke_id: str, target: str) -> Response | None:
        if invoke_id != self._current_id:
            return INVALID_REQUEST_ID
        if self.state != RUNNING:
            return forbidden(self.state, target)
        self.state = RESPONSE_SENT
        self._outstanding = False
        return None

    def _post_response(self, request: Request, invoke_id: str) -> Response:
        refused = self._check_post(invoke_id, INVOCATION_RESPONSE)
        if refused is not None:
            return refused
        mode = request.headers.get("lambda-runtime-function-response-mode")
        if mode is not None and mode != "streaming":
            message = "Invalid function response mode"
            self._send_error(invoke_id, "Runtime.InvalidResponseModeHeader", message)
            return INVALID_RESPONSE_MODE
        if request.truncated:
            message = "HTTP request detected as truncated"
            self._send_error(invoke_id, "Runtime.TruncatedResponse", message)
            return TRUNCATED_REQUEST
        if request.oversize:
            return self._too_large(invoke_id)
        if trailer_error := request.trailers.get("lambda-runtime-function-error-type"):
            body = request.trailers.get("lambda-runtime-function-error-body", "")
            try:
                payload = binascii.a2b_base64(body)
            except binascii.Error:
                payload = body.encode()
            self._forward_error(invoke_id, normalise_error_type(trailer_error), payload)
            return ACCEPTED
        meta = {
            "id": invoke_id,
            "content_type": request.headers.get("content-type", "application/json"),
            "memory_peak_kb": self._memory_peak_kb(),
        }
        self._report(Kind.RESPONSE, meta, request.body)
        return ACCEPTED

    def _post_error(self, request: Request, invoke_id: str) -> Response:
        refused = self._check_post(invoke_id, INVOCATION_ERROR_RESPONSE)
        if refused is not None:
            return refused
        if request.oversize:
            return self._too_large(invoke_id)
        error_type = normalise_error_type(
            request.headers.get("lambda-runtime-function-error-type", "")
        )
        content_type = request.headers.get("content-type", "application/json")
        payload = request.body
        if content_type == ERROR_CAUSE_CONTENT_TYPE:
            payload, content_type = error_with_cause_body(payload)
        self._forward_error(invoke_id, error_type, payload, content_type)
        return ACCEPTED

    def _post_init_error(self, request: Request) -> Response:
        if self.state != STARTED:
            return forbidden(self.state, INIT_ERROR)
        self.state = INIT_ERROR
        error_type = normalise_error_type(
            request.headers.get("lambda-runtime-function-error-type", "")
        )
        meta = {"error_type": error_type, "init_ms": self._elapsed_ms()}
        self._report(Kind.INIT_ERROR, meta, request.body)
        return ACCEPTED

    def _too_large(self, invoke_id: str) -> Response:
        self._forward_error(invoke_id, "Function.ResponseSizeTooLarge", TOO_LARGE_PAYLOAD)
        return TOO_LARGE

    def _send_error(self, invoke_id: str, error_type: str, message: str) -> None:
        """A platform-made error, in RAPID's ``RequestId: <id> Error: <msg>`` format."""
        body = {"errorType": error_type, "errorMessage": f"RequestId: {invoke_id} Error: {message}"}
        self._forward_error(invoke_id, error_type, json.dumps(body, separators=(",", ":")).encode())

    def _forward_error(
        self,
        invoke_id: str,
        error_type: str,
        payload: bytes,
        content_type: str = "application/json",
    ) -> None:
        meta = {
            "id": invoke_id,
            "error_type": error_type,
            "content_type": content_type,
            "memory_peak_kb": self._memory_peak_kb(),
        }
        self._report(Kind.ERROR, meta, payload)

    def _elapsed_ms(self) -> float:
        return round((self._loop.time() - self._started_at) * 1000, 3)
