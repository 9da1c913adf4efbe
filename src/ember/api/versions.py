"""PublishVersion and ListVersionsByFunction (``/2015-03-31/functions/{FunctionName}/versions``).

Both render versions with qualified FunctionArns (``…:function:name:1``, and ``…:$LATEST``
in the list), as Lambda does.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ember.api.functions import FunctionsApi
from ember.api.http import json_response, parse_json_object
from ember.api.paging import page
from ember.control import fields as f
from ember.control.registry import FunctionRegistry
from ember.model.arns import validation_error, violation
from ember.model.functions import LATEST

MAX_DESCRIPTION = 256


class VersionsApi:
    """Scope: one per server."""

    def __init__(self, functions: FunctionsApi, registry: FunctionRegistry) -> None:
        self._functions = functions
        self._registry = registry

    async def publish(self, request: Request, body: bytes) -> Response:
        name = self._functions.resolve_latest(request)
        data = parse_json_object(body)
        description = f.opt_str(data, "Description")
        if description is not None and len(description) > MAX_DESCRIPTION:
            constraint = f"Member must have length less than or equal to {MAX_DESCRIPTION}"
            raise validation_error([violation(description, "description", constraint)])
        version = await self._registry.publish(
            name,
            code_sha256=f.opt_str(data, "CodeSha256"),
            description=description,
            revision_id=f.opt_str(data, "RevisionId"),
        )
        return json_response(self._functions.configuration(version, version.version), 201)

    async def list(self, request: Request, _body: bytes) -> Response:
        name, _ = self._functions.resolve(request)
        versions = self._registry.versions(name)
        chunk, marker = page(versions, lambda r: r.version, _order, request.query_params)
        shape: dict[str, Any] = {
            "Versions": [self._functions.configuration(r, r.version) for r in chunk]
        }
        if marker is not None:
            shape["NextMarker"] = marker
        return json_response(shape)


def _order(version: str) -> int:
    """$LATEST first, then by number (a marker that is neither is invalid: ValueError)."""
    return -1 if version == LATEST else int(version)
