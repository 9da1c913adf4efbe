"""Event invoke configs: ``/2019-09-25/functions/{FunctionName}/event-invoke-config``.

PUT = PutFunctionEventInvokeConfig (replace), POST = UpdateFunctionEventInvokeConfig
(merge), GET = Get, DELETE = Delete (204), each with ``?Qualifier=``; GET ``.../list`` =
ListFunctionEventInvokeConfigs (``Marker`` / ``MaxItems`` 1-50). Shapes as botocore
models ``FunctionEventInvokeConfig``: ``LastModified`` epoch seconds, ``FunctionArn``
qualified (``:$LATEST`` for the unqualified function), the retry members only when set,
``DestinationConfig`` always with both ``OnSuccess`` and ``OnFailure``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ember.api.functions import FunctionsApi
from ember.api.http import json_response, parse_count, parse_json_object
from ember.control.event_invoke import EventInvokeConfigs
from ember.control.registry import FunctionRegistry
from ember.errors import InvalidParameterValueException, ValidationException
from ember.model.async_events import EventInvokeConfig

MAX_LIST_ITEMS = 50


class EventInvokeConfigApi:
    """Scope: one per server."""

    def __init__(
        self, functions: FunctionsApi, registry: FunctionRegistry, configs: EventInvokeConfigs
    ) -> None:
        self._functions = functions
        self._registry = registry
        self._configs = configs

    async def put(self, request: Request, body: bytes) -> Response:
        name, qualifier = self._functions.resolve(request)
        config = await self._configs.put(name, qualifier, parse_json_object(body))
        return json_response(self.shape(config))

    async def update(self, request: Request, body: bytes) -> Response:
        name, qualifier = self._functions.resolve(request)
        config = await self._configs.update(name, qualifier, parse_json_object(body))
        return json_response(self.shape(config))

    async def get(self, request: Request, _body: bytes) -> Response:
        name, qualifier = self._functions.resolve(request)
        return json_response(self.shape(self._configs.get(name, qualifier)))

    async def delete(self, request: Request, _body: bytes) -> Response:
        name, qualifier = self._functions.resolve(request)
        await self._configs.delete(name, qualifier)
        return Response(status_code=204)

    async def list(self, request: Request, _body: bytes) -> Response:
        name, _ = self._functions.resolve(request)
        configs = self._configs.list(name)
        start = _start(request.query_params.get("Marker"), len(configs))
        limit = _max_items(request.query_params.get("MaxItems"))
        page = configs[start : start + limit]
        shape: dict[str, Any] = {"FunctionEventInvokeConfigs": [self.shape(c) for c in page]}
        if start + limit < len(configs):
            shape["NextMarker"] = str(start + limit)
        return json_response(shape)

    def shape(self, config: EventInvokeConfig) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "LastModified": config.last_modified,
            "FunctionArn": self._registry.arn(config.function, config.qualifier),
        }
        if config.max_retry_attempts is not None:
            shape["MaximumRetryAttempts"] = config.max_retry_attempts
        if config.max_event_age_s is not None:
            shape["MaximumEventAgeInSeconds"] = config.max_event_age_s
        shape["DestinationConfig"] = {
            "OnSuccess": {"Destination": config.on_success} if config.on_success else {},
            "OnFailure": {"Destination": config.on_failure} if config.on_failure else {},
        }
        return shape


def _start(marker: str | None, total: int) -> int:
    if not marker:
        return 0
    start = parse_count(marker)
    if start is None or start > total:
        raise InvalidParameterValueException(f"Invalid marker: {marker}")
    return start


def _max_items(value: str | None) -> int:
    if value is None:
        return MAX_LIST_ITEMS
    count = parse_count(value)
    if count is None or not 1 <= count <= MAX_LIST_ITEMS:
        raise ValidationException(
            f"1 validation error detected: Value '{value}' at 'maxItems' failed to satisfy "
            f"constraint: Member must have value less than or equal to {MAX_LIST_ITEMS}"
        )
    return count
