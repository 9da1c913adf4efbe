"""Edge plumbing shared by every operation: authentication, errors, request ids, JSON.

``operation`` wraps a handler ``(request, body) -> Response``: it reads the body,
checks the SigV4 signature, turns any ``EmberError`` into the AWS error shape
(``x-amzn-ErrorType`` header + JSON body) and any other exception into a 500
ServiceException (logged, never a stack trace to the client), and sets
``x-amzn-RequestId`` unless the handler already did.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ember.clock import Clock
from ember.errors import (
    EmberError,
    InvalidRequestContentException,
    RequestEntityTooLargeException,
    ServiceException,
)
from ember.sigv4 import verify

log = logging.getLogger("ember.api")

Handler = Callable[[Request, bytes], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

REQUEST_ID = "x-amzn-RequestId"
MAX_REQUEST_BYTES = 70167211  # Lambda's limit for a whole CreateFunction request


class Authenticator:
    """SigV4 against the admin credentials. Scope: one per server."""

    def __init__(self, credentials: dict[str, str], clock: Clock, enabled: bool = True) -> None:
        self._credentials = credentials  # access key id => secret
        self._clock = clock
        self.enabled = enabled

    def check(self, request: Request, body: bytes, service: str = "lambda") -> None:
        if not self.enabled:
            return
        verify(
            request.method,
            request.scope["raw_path"].decode("latin-1"),
            request.scope["query_string"].decode("latin-1"),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            body,
            self._credentials.get,
            self._clock.wall(),
            allowed_services=(service,),
        )


def operation(handler: Handler, auth: Authenticator, service: str = "lambda") -> Endpoint:
    """An endpoint for ``handler``, signed for ``service`` (SigV4's credential scope)."""

    async def endpoint(request: Request) -> Response:
        try:
            _check_length(request)
            body = await request.body()
            auth.check(request, body, service)
            response = await handler(request, body)
        except EmberError as error:
            response = error_response(error)
        except Exception:
            log.exception("internal error in %s %s", request.method, request.url.path)
            response = error_response(ServiceException("An internal error occurred in Ember."))
        if REQUEST_ID not in response.headers:
            response.headers[REQUEST_ID] = str(uuid.uuid4())
        return response

    return endpoint


def _check_length(request: Request) -> None:
    """Refuse an oversized body from its Content-Length, before reading it."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_REQUEST_BYTES:
        raise RequestEntityTooLargeException(
            f"Request must be smaller than {MAX_REQUEST_BYTES} bytes for the "
            f"{_operation_name(request)} operation"
        )


def _operation_name(request: Request) -> str:
    return "InvokeFunction" if request.url.path.endswith("/invocations") else "CreateFunction"


def error_response(error: EmberError) -> Response:
    headers = {"x-amzn-ErrorType": error.code, **error.headers()}
    return Response(json.dumps(error.body()), error.status, headers, media_type="application/json")


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status, media_type="application/json")


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A control-plane request body: a JSON object (empty body = ``{}``)."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise InvalidRequestContentException(
            f"Could not parse request body into json: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise InvalidRequestContentException(
            "Could not parse request body into json: expected a JSON object"
        )
    return data
