"""Alias operations: ``/2015-03-31/functions/{FunctionName}/aliases[/{Name}]``.

Create (201), Get, Update, Delete (204), List (``FunctionVersion`` filter, Marker/MaxItems).
Bodies are checked by ``control.aliases.parse_alias_input``; the rules live in the registry's
``Aliases``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ember.api.functions import FunctionsApi
from ember.api.http import json_response, parse_json_object
from ember.api.paging import page
from ember.api.shapes import alias_configuration
from ember.control import fields as f
from ember.control.aliases import ALIAS_NAME_PATTERN, FUNCTION_VERSION_PATTERN, parse_alias_input
from ember.control.registry import FunctionRegistry
from ember.model.functions import AliasRecord


class AliasesApi:
    """Scope: one per server."""

    def __init__(
        self,
        functions: FunctionsApi,
        registry: FunctionRegistry,
        alias_deleted: Callable[[str, str], Awaitable[object]] | None = None,
    ) -> None:
        self._functions = functions
        self._registry = registry
        # what else goes with an alias (its provisioned concurrency), after the delete
        self._alias_deleted = alias_deleted

    def shape(self, alias: AliasRecord) -> dict[str, Any]:
        return alias_configuration(alias, self._registry.arn(alias.function_name, alias.name))

    async def create(self, request: Request, body: bytes) -> Response:
        name = self._function(request)
        command = parse_alias_input(parse_json_object(body), create=True)
        alias = await self._registry.aliases.create(name, command)
        return json_response(self.shape(alias), 201)

    async def get(self, request: Request, _body: bytes) -> Response:
        name, alias = self._function(request), _alias_name(request)
        return json_response(self.shape(self._registry.aliases.get(name, alias)))

    async def update(self, request: Request, body: bytes) -> Response:
        name, alias = self._function(request), _alias_name(request)
        command = parse_alias_input(parse_json_object(body), create=False)
        return json_response(self.shape(await self._registry.aliases.update(name, alias, command)))

    async def delete(self, request: Request, _body: bytes) -> Response:
        name, alias = self._function(request), _alias_name(request)
        await self._registry.aliases.delete(name, alias)
        if self._alias_deleted is not None:
            await self._alias_deleted(name, alias)
        return Response(status_code=204)

    async def list(self, request: Request, _body: bytes) -> Response:
        name = self._function(request)
        version = request.query_params.get("FunctionVersion")
        if version is not None:
            checks = f.Violations()
            if checks.length(version, "functionVersion", 1024, 1):
                checks.pattern(version, "functionVersion", FUNCTION_VERSION_PATTERN)
            checks.raise_if_any()
        aliases = self._registry.aliases.of(name, version)
        chunk, marker = page(aliases, lambda a: a.name, str, request.query_params)
        shape: dict[str, Any] = {"Aliases": [self.shape(a) for a in chunk]}
        if marker is not None:
            shape["NextMarker"] = marker
        return json_response(shape)

    def _function(self, request: Request) -> str:
        name, _qualifier = self._functions.resolve(request)
        return name


def _alias_name(request: Request) -> str:
    """The ``{Name}`` path member, checked against the model."""
    name: str = request.path_params["alias"]
    checks = f.Violations()
    if checks.length(name, "name", 128, 1):
        checks.pattern(name, "name", ALIAS_NAME_PATTERN)
    checks.raise_if_any()
    return name
