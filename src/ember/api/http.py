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
    MissingAuthenticationTokenException,
    RequestEntityTooLargeException,
    ServiceException,
)
from ember.sigv4 import verify

log = logging.getLogger("ember.api")

Handler = Callable[[Request, bytes], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

REQUEST_ID = "x-amzn-RequestId"
MAX_REQUEST_BYTES = 70167211  # Lambda's limit for a whole CreateFunction request
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # 6291456 bytes: an Invoke request


class Authenticator:
    """SigV4 against the admin credentials. Scope: one per server."""

    def __init__(self, credentials: dict[str, str], clock: Clock, enabled: bool = True) -> None:
        self._credentials = credentials  # access key id => secret
        self._clock = clock
        self.enabled = enabled

    def check_present(self, request: Request) -> None:
        """Refuse an unsigned request before its body is read."""
        if self.enabled and "authorization" not in request.headers:
            raise MissingAuthenticationTokenException("Missing Authentication Token")

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
            auth.check_present(request)
            body = await read_body(request)
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


def body_limit(request: Request) -> tuple[int, str]:
    """The largest body this route takes, and the operation its 413 names."""
    if request.scope["path"].endswith("/invocations"):  # request.url would build a URL
        return SYNC_PAYLOAD_LIMIT, "InvokeFunction"
    return MAX_REQUEST_BYTES, "CreateFunction"


async def read_body(request: Request) -> bytes:
    """The body, refused with a 413 as soon as it exceeds the route's limit.

    Checked from Content-Length before reading, and counted while reading (a chunked body
    has no length): the server never buffers more than the limit.
    """
    limit, operation_name = body_limit(request)
    too_large = RequestEntityTooLargeException(
        f"Request must be smaller than {limit} bytes for the {operation_name} operation"
    )
    length = parse_count(request.headers.get("content-length"))
    if length is not None and length > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_count(value: str | None) -> int | None:
    """A non-negative decimal integer from a header or query value, else None."""
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def error_response(error: EmberError) -> Response:
    headers = {"x-amzn-ErrorType": error.code, **error.headers()}
    return Response(json.dumps(error.body()), error.status, headers, media_type="application/json")


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status, media_type="application/json")


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A control-plane request body: a JSON object (empty body = ``{}``)."""
    if not body.strip():
        return {}
    data = parse_json(body, "Could not parse request body into json")
    if not isinstance(data, dict):
        raise InvalidRequestContentException(
            "Could not parse request body into json: expected a JSON object"
        )
    return data


def parse_json(body: bytes, context: str) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity, no NUL or lone surrogates in strings.

    Any violation (including nesting deep enough to exhaust recursion) is a 400
    ``InvalidRequestContentException`` whose message starts with ``context``.
    """
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # refuses lone surrogates
    except (ValueError, RecursionError, UnicodeError) as exc:
        reason = "JSON nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidRequestContentException(f"{context}: {reason}") from exc
    if _has_nul(data):
        raise InvalidRequestContentException(f"{context}: strings must not contain NUL")
    return data


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
