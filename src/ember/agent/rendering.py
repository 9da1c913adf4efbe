"""RAPID's renderings: exact JSON bodies, ``/next`` headers, error-type rules (stdlib only).

Bodies are what RAPID's Go code writes (``json.Encoder``: compact, newline-terminated,
``Content-Type: application/json``); sources in lambda-spec §1.3-1.7.
"""

from __future__ import annotations

import json
from typing import Any

from ember.agent.http_server import Response
from ember.agent.protocol import ProtocolError

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024 + 100  # RAPID interop.MaxPayloadSize = 6291556

ERROR_CAUSE_CONTENT_TYPE = "application/vnd.aws.lambda.error.cause+json"
TOO_LARGE_PAYLOAD = (
    b'{"errorMessage":"Response payload size exceeded maximum allowed payload size '
    b'(6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}'
)


def json_response(status: int, body: dict[str, Any]) -> Response:
    """A RAPID-rendered JSON body: compact, newline-terminated, application/json."""
    data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
    return Response(status, data, [("Content-Type", "application/json")])


def _error(status: int, error_type: str, message: str) -> Response:
    return json_response(status, {"errorMessage": message, "errorType": error_type})


ACCEPTED = json_response(202, {"status": "OK"})
INVALID_REQUEST_ID = _error(400, "InvalidRequestID", "Invalid request ID")
INVALID_RESPONSE_MODE = _error(400, "InvalidFunctionResponseMode", "Invalid function response mode")
TRUNCATED_REQUEST = _error(400, "TruncatedHTTPRequest", "HTTP request detected as truncated")
TOO_LARGE = _error(
    413,
    "RequestEntityTooLarge",
    f"Exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes).",
)
NOT_FOUND = _error(404, "NotFound", "Not Found")
PING = Response(200, b"pong", [("Content-Type", "text/plain; charset=utf-8")])


def forbidden(current: str, target: str) -> Response:
    message = (
        f"State transition from {current} to {target} failed for runtime. "
        "Error: State transition is not allowed"
    )
    return _error(403, "InvalidStateTransition", message)


def method_not_allowed(allowed: str) -> Response:
    response = _error(405, "MethodNotAllowed", "Method Not Allowed")
    response.headers.append(("Allow", allowed))
    return response


def normalise_error_type(value: str) -> str:
    """RAPID's ``GetValidRuntimeOrFunctionErrorType``: keep ``(Runtime|Function).Xy…``."""
    for prefix in ("Runtime.", "Function."):
        start = value.find(prefix)
        while start >= 0:
            rest = value[start + len(prefix) : start + len(prefix) + 2]
            if len(rest) == 2 and rest[0].isascii() and rest[0].isupper() and rest.isalpha():
                return value
            start = value.find(prefix, start + 1)
    return "Function.Unknown" if value.startswith("Function.") else "Runtime.Unknown"


def _go_json(value: dict[str, Any]) -> bytes:
    """``json.Marshal`` output: compact, UTF-8, with Go's HTML-safe escapes."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def _go_field(obj: dict[str, Any], name: str, kind: type) -> Any:
    """A field as Go's case-insensitive ``json.Unmarshal`` fills it (None when absent)."""
    value = None
    for key, item in obj.items():
        if key.lower() == name.lower():
            value = item
    if value is not None and not isinstance(value, kind):
        raise TypeError(name)
    return value


def _filter_error_cause(body: bytes) -> dict[str, Any]:
    parsed = json.loads(body) if body.strip() != b"null" else {}
    if not isinstance(parsed, dict):
        raise TypeError("not an object")
    filtered = {
        "errorMessage": _go_field(parsed, "errorMessage", str) or "",
        "errorType": _go_field(parsed, "errorType", str) or "",
    }
    trace = _go_field(parsed, "stackTrace", list)
    if trace and not all(isinstance(line, str) for line in trace):
        raise TypeError("stackTrace")
    if trace:
        filtered["stackTrace"] = trace
    return filtered


def error_with_cause_body(body: bytes) -> tuple[bytes, str]:
    """RAPID's filtering of an ``error.cause+json`` body: drop ``errorCause``."""
    try:
        filtered = _filter_error_cause(body)
    except (ValueError, TypeError):
        return b'"Invalid error body"', "application/octet-stream"
    return _go_json(filtered), "application/json"


def _header_value(meta: dict[str, Any], key: str) -> str:
    value = meta.get(key, "")
    if not isinstance(value, str):
        raise ProtocolError(f"INVOKE meta {key!r} must be a string")
    return value


def render_next(meta: dict[str, Any], payload: bytes) -> Response:
    """The ``/next`` response for one INVOKE frame; optional headers only when present."""
    invoke_id = _header_value(meta, "id")
    deadline = meta.get("deadline_ms")
    if not invoke_id or not isinstance(deadline, int) or isinstance(deadline, bool):
        raise ProtocolError("INVOKE meta needs a non-empty 'id' and an integer 'deadline_ms'")
    headers = [("Lambda-Runtime-Aws-Request-Id", invoke_id)]
    headers.append(("Lambda-Runtime-Deadline-Ms", str(deadline)))
    headers.append(("Lambda-Runtime-Invoked-Function-Arn", _header_value(meta, "arn")))
    for key, name in (
        ("trace_id", "Lambda-Runtime-Trace-Id"),
        ("client_context", "Lambda-Runtime-Client-Context"),
        ("identity", "Lambda-Runtime-Cognito-Identity"),
        ("tenant_id", "Lambda-Runtime-Aws-Tenant-Id"),
    ):
        if value := _header_value(meta, key):
            headers.append((name, value))
    headers.append(("Content-Type", "application/json"))
    return Response(200, payload, headers)
