"""Event source mapping operations: ``/2015-03-31/event-source-mappings[/{UUID}]``.

Create, Update and Delete answer 202 with the mapping in its transitional state (Creating,
Enabling, Updating, Disabling, Deleting); Get and List show the settled one once the
pollers have started or stopped. Validation lives in ``events/mapping_config.py``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ember.api.http import json_response, parse_json_object
from ember.events.mappings import MappingService
from ember.model.arns import validation_error, violation


class EventSourcesApi:
    """Scope: one per server; stateless over the ``MappingService``."""

    def __init__(self, mappings: MappingService) -> None:
        self._mappings = mappings

    async def create(self, _request: Request, body: bytes) -> Response:
        mapping = await self._mappings.create(parse_json_object(body))
        return json_response(mapping.to_wire(), 202)

    async def get(self, request: Request, _body: bytes) -> Response:
        return json_response(self._mappings.get(request.path_params["uuid"]).to_wire())

    async def update(self, request: Request, body: bytes) -> Response:
        mapping = await self._mappings.update(request.path_params["uuid"], parse_json_object(body))
        return json_response(mapping.to_wire(), 202)

    async def delete(self, request: Request, _body: bytes) -> Response:
        mapping = await self._mappings.delete(request.path_params["uuid"])
        return json_response(mapping.to_wire(), 202)

    async def list(self, request: Request, _body: bytes) -> Response:
        query = request.query_params
        mappings = self._mappings.list(query.get("EventSourceArn"), query.get("FunctionName"))
        limit = _max_items(query.get("MaxItems"))
        marker = query.get("Marker", "")
        start = int(marker) if marker.isdigit() else 0
        page = mappings[start : start + limit]
        shape: dict[str, object] = {"EventSourceMappings": [m.to_wire() for m in page]}
        if start + limit < len(mappings):
            shape["NextMarker"] = str(start + limit)
        return json_response(shape)


def _max_items(value: str | None) -> int:
    if value is None:
        return 100
    if not value.isdigit() or not 1 <= int(value) <= 10000:
        raise validation_error(
            [violation(value, "maxItems", "Member must have value between 1 and 10000")]
        )
    return int(value)
