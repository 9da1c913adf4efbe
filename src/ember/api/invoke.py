"""Invoke: ``POST /2015-03-31/functions/{FunctionName}/invocations``.

Edge checks, in AWS's order: the function exists (404) and is Active (409); the
invocation type and log type are known values; the payload is at most 6 MB (413) and is
JSON (400); the client context is base64 JSON. ``Event``: at most the async payload
limit (1 MB, 413 with Lambda's message), committed durably by the async dispatcher, then
202 with an empty body and the event's ``x-amzn-RequestId``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid

from starlette.requests import Request
from starlette.responses import Response

from ember.api.functions import FunctionsApi
from ember.api.http import REQUEST_ID, SYNC_PAYLOAD_LIMIT
from ember.control.registry import FunctionRegistry
from ember.errors import (
    InvalidParameterValueException,
    InvalidRequestContentException,
    RequestEntityTooLargeException,
    ResourceConflictException,
    ValidationException,
)
from ember.invocation.async_events import AsyncDispatcher
from ember.invocation.invoker import InvocationRequest, Invoker
from ember.model.functions import State

OFF_LOOP_BYTES = 256 * 1024  # payloads larger than this are JSON-checked on a thread
CLIENT_CONTEXT_LIMIT = 3583
INVOCATION_TYPES = ("Event", "RequestResponse", "DryRun")
LOG_TYPES = ("None", "Tail")
ASYNC_PAYLOAD_LIMIT = 1024 * 1024  # 1 MB since 2025 (256 KB before)


class InvokeApi:
    """Scope: one per server."""

    def __init__(
        self,
        functions: FunctionsApi,
        registry: FunctionRegistry,
        invoker: Invoker,
        dispatcher: AsyncDispatcher | None = None,
        async_payload_limit: int = ASYNC_PAYLOAD_LIMIT,
    ) -> None:
        self._functions = functions
        self._registry = registry
        self._invoker = invoker
        self._dispatcher = dispatcher
        self._async_limit = async_payload_limit

    async def invoke(self, request: Request, body: bytes) -> Response:
        name, qualifier = self._functions.resolve(request)
        record, _version = self._registry.resolve(name, qualifier)  # an alias picks by weight
        headers = request.headers
        invocation_type = _enum(
            headers.get("x-amz-invocation-type", "RequestResponse"),
            "invocationType",
            INVOCATION_TYPES,
        )
        tail = _enum(headers.get("x-amz-log-type", "None"), "logType", LOG_TYPES) == "Tail"
        if record.state is not State.ACTIVE:
            raise ResourceConflictException(
                "The operation cannot be performed at this time. The function is currently "
                f"in the following state: {record.state}"
            )
        if invocation_type == "Event" and len(body) > self._async_limit:
            raise RequestEntityTooLargeException(
                f"{len(body)} byte payload is too large for the Event invocation type "
                f"(limit {self._async_limit} bytes)"
            )
        if len(body) > SYNC_PAYLOAD_LIMIT:
            raise RequestEntityTooLargeException(
                f"Request must be smaller than {SYNC_PAYLOAD_LIMIT} bytes "
                "for the InvokeFunction operation"
            )
        payload = await _json_payload(body)
        client_context = _client_context(headers.get("x-amz-client-context"))
        if invocation_type == "DryRun":
            return Response(status_code=204)
        if invocation_type == "Event":
            return await self._enqueue(name, qualifier, payload)
        result = await self._invoker.invoke(
            record,
            InvocationRequest(
                payload=payload,
                invoked_arn=self._registry.arn(name, qualifier),
                client_context=client_context,
                tail=tail,
                tenant_id=headers.get("x-amz-tenant-id"),
            ),
        )
        response_headers = {
            "Content-Type": _content_type(result.content_type),
            REQUEST_ID: result.request_id,
            "X-Amz-Executed-Version": result.executed_version,
        }
        if result.function_error:
            response_headers["X-Amz-Function-Error"] = result.function_error
        if result.log_result is not None:
            response_headers["X-Amz-Log-Result"] = result.log_result
        return Response(result.payload, 200, headers=response_headers)  # at once: no scans

    async def _enqueue(self, name: str, qualifier: str | None, payload: bytes) -> Response:
        """Commit the event durably, then 202 (empty body) with the id every attempt uses."""
        if self._dispatcher is None:
            raise InvalidParameterValueException(
                "InvocationType Event is not served by this Ember server."
            )
        request_id = str(uuid.uuid4())
        await self._dispatcher.accept(name, qualifier, payload, request_id)
        return Response(status_code=202, headers={REQUEST_ID: request_id})


def _enum(value: str, field: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValidationException(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{', '.join(allowed)}]"
        )
    return value


async def _json_payload(body: bytes) -> bytes:
    """The event bytes, unchanged, once known to be JSON (large ones checked off the loop)."""
    if not body:
        return b"{}"
    context = "Could not parse request body into json: Could not parse payload into json"
    if len(body) > OFF_LOOP_BYTES:
        await asyncio.to_thread(_check_event_json, body, context)
    else:
        _check_event_json(body, context)
    return body


def _check_event_json(body: bytes, context: str) -> None:
    try:
        json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError, UnicodeError) as exc:
        reason = "JSON nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidRequestContentException(f"{context}: {reason}") from exc


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _content_type(value: str) -> str:
    """The runtime's Content-Type if it is a clean header value, else a neutral one."""
    if value and value.isascii() and value.isprintable():
        return value
    return "application/octet-stream"


def _client_context(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > CLIENT_CONTEXT_LIMIT:
        raise InvalidParameterValueException(
            f"Client context must be at most {CLIENT_CONTEXT_LIMIT} bytes."
        )
    invalid = InvalidParameterValueException(
        "Client context must be a valid Base64-encoded JSON object."
    )
    try:
        text = base64.b64decode(value, validate=True).decode()
        decoded = json.loads(text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise invalid from exc
    if not isinstance(decoded, dict):
        raise invalid
    return text
