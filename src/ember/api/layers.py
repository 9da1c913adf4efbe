"""Layer operations (API version 2018-10-31): PublishLayerVersion, GetLayerVersion,
GetLayerVersionByArn, ListLayers, ListLayerVersions, DeleteLayerVersion and the layer
version policy operations.

Each handler parses the request (``control.layer_requests``), calls the layer service
and renders the result in botocore's shapes. ``Content.Location`` is a signed download
URL of the same kind as GetFunction's ``Code.Location`` (``FunctionsApi``): the layer zip
lives in the same blob store and is served by the same ``/ember/code/{sha}.zip`` route.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ember.api.functions import FunctionsApi
from ember.api.http import json_response, parse_json_object
from ember.api.shapes import last_modified
from ember.control import layer_requests as parse
from ember.control.layers import LayerService
from ember.errors import InvalidParameterValueException, ValidationException
from ember.model.arns import validation_error, violation
from ember.model.layers import LayerStatement, LayerVersion
from ember.model.layers import parse_layer_version_arn as parse_version_arn

LAYER_VERSION_ARN_PATTERN = (
    r"arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}"
    r":layer:[a-zA-Z0-9-_]+:[0-9]+"
)


class LayersApi:
    """Scope: one per server."""

    def __init__(self, layers: LayerService, functions: FunctionsApi) -> None:
        self._layers = layers
        self._functions = functions  # signs Content.Location download URLs

    # ------------------------------------------------------------ versions

    async def publish(self, request: Request, body: bytes) -> Response:
        ref = parse.layer_name(request.path_params["name"])
        if ref.region is not None and (ref.region, ref.account) != (
            self._layers.region,
            self._layers.account,
        ):
            raise InvalidParameterValueException(
                "Layers can only be published in this server's account and region "
                f"({self._layers.account}, {self._layers.region})."
            )
        data = parse_json_object(body)  # the zip's base64 is decoded off the loop
        command = await asyncio.to_thread(parse.publish_input, ref.name, data)
        layer = await self._layers.publish(command)
        return json_response(self._version_shape(request, layer), 201)

    async def get(self, request: Request, _body: bytes) -> Response:
        ref = parse.layer_name(request.path_params["name"])
        version = parse.version_number(request.path_params["version"])
        return json_response(self._version_shape(request, self._layers.get(ref, version)))

    async def list_or_find(self, request: Request, body: bytes) -> Response:
        """``GET /2018-10-31/layers``: ListLayers, or GetLayerVersionByArn with ``?find=``."""
        if request.query_params.get("find") == "LayerVersion":
            return await self.get_by_arn(request, body)
        query = request.query_params
        runtime, architecture, limit = parse.list_filters(
            query.get("CompatibleRuntime"),
            query.get("CompatibleArchitecture"),
            query.get("MaxItems"),
        )
        layers = self._layers.list_layers(runtime, architecture)
        start = _after(
            [layer.name for layer in layers], query.get("Marker"), lambda name, after: name <= after
        )
        page = layers[start : start + limit]
        shape: dict[str, Any] = {
            "Layers": [
                {
                    "LayerName": layer.name,
                    "LayerArn": self._layers.arn(layer.name),
                    "LatestMatchingVersion": self._list_item(layer),
                }
                for layer in page
            ]
        }
        if start + limit < len(layers):
            shape["NextMarker"] = _marker(page[-1].name)
        return json_response(shape)

    async def get_by_arn(self, request: Request, _body: bytes) -> Response:
        arn = request.query_params.get("Arn")
        if arn is None:
            raise validation_error([violation(None, "arn", "Member must not be null")])
        if not 1 <= len(arn) <= 2048 or parse_version_arn(arn) is None:
            raise ValidationException(
                f"1 validation error detected: Value '{arn}' at 'arn' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: "
                f"{LAYER_VERSION_ARN_PATTERN}"
            )
        return json_response(self._version_shape(request, self._layers.get_by_arn(arn)))

    async def list_versions(self, request: Request, _body: bytes) -> Response:
        ref = parse.layer_name(request.path_params["name"])
        query = request.query_params
        runtime, architecture, limit = parse.list_filters(
            query.get("CompatibleRuntime"),
            query.get("CompatibleArchitecture"),
            query.get("MaxItems"),
        )
        versions = self._layers.list_versions(ref, runtime, architecture)
        start = _after(
            [str(layer.version) for layer in versions],
            query.get("Marker"),
            lambda number, after: int(number) >= int(after),
        )
        page = versions[start : start + limit]
        shape: dict[str, Any] = {"LayerVersions": [self._list_item(layer) for layer in page]}
        if start + limit < len(versions):
            shape["NextMarker"] = _marker(str(page[-1].version))
        return json_response(shape)

    async def delete(self, request: Request, _body: bytes) -> Response:
        ref = parse.layer_name(request.path_params["name"])
        version = parse.version_number(request.path_params["version"])
        await self._layers.delete(ref, version)
        return Response(status_code=204)

    # ------------------------------------------------------------ policies

    async def add_permission(self, request: Request, body: bytes) -> Response:
        ref = parse.layer_name(request.path_params["name"])
        version = parse.version_number(request.path_params["version"])
        sid, action, principal, organization = parse.permission_input(parse_json_object(body))
        statement = LayerStatement(sid, action, principal, organization)
        revision = request.query_params.get("RevisionId")
        layer, policy = await self._layers.add_permission(ref, version, statement, revision)
        resource = self._layers.version_arn(layer.name, layer.version)
        return json_response(
            {
                "Statement": _compact_json(statement.document(resource)),
                "RevisionId": policy.revision_id,
            },
            201,
        )

    async def remove_permission(self, request: Request, _body: bytes) -> Response:
        ref = parse.layer_name(request.path_params["name"])
        version = parse.version_number(request.path_params["version"])
        sid = parse.statement_id(request.path_params["sid"])
        revision = request.query_params.get("RevisionId")
        await self._layers.remove_permission(ref, version, sid, revision)
        return Response(status_code=204)

    async def get_policy(self, request: Request, _body: bytes) -> Response:
        ref = parse.layer_name(request.path_params["name"])
        version = parse.version_number(request.path_params["version"])
        layer, policy = self._layers.get_policy(ref, version)
        resource = self._layers.version_arn(layer.name, layer.version)
        return json_response(
            {"Policy": policy.document(resource), "RevisionId": policy.revision_id}
        )

    def total_code_size(self) -> int:
        return self._layers.total_code_size()

    # ------------------------------------------------------------ shapes

    def _version_shape(self, request: Request, layer: LayerVersion) -> dict[str, Any]:
        """PublishLayerVersion / GetLayerVersion(ByArn) response."""
        sha = layer.code.sha256_hex
        shape: dict[str, Any] = {
            "Content": {
                "Location": self._functions.signed_code_url(request, sha),
                "CodeSha256": layer.code.sha256_b64,
                "CodeSize": layer.code.size,
            },
            "LayerArn": self._layers.arn(layer.name),
        }
        shape.update(self._list_item(layer))
        return shape

    def _list_item(self, layer: LayerVersion) -> dict[str, Any]:
        """``LayerVersionsListItem``: optional members only when set, as AWS renders them."""
        item: dict[str, Any] = {
            "LayerVersionArn": self._layers.version_arn(layer.name, layer.version),
            "Version": layer.version,
            "Description": layer.description,
            "CreatedDate": last_modified(layer.created),
        }
        if layer.compatible_runtimes:
            item["CompatibleRuntimes"] = list(layer.compatible_runtimes)
        if layer.license_info is not None:
            item["LicenseInfo"] = layer.license_info
        if layer.compatible_architectures:
            item["CompatibleArchitectures"] = list(layer.compatible_architectures)
        return item


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _marker(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _after(keys: list[str], marker: str | None, passed: Callable[[str, str], bool]) -> int:
    """Index of the first item after ``marker`` (the last key of the previous page)."""
    if not marker:
        return 0
    try:
        after = base64.urlsafe_b64decode(marker.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidParameterValueException(f"Invalid marker: {marker}") from exc
    try:
        return sum(1 for key in keys if passed(key, after))
    except ValueError as exc:
        raise InvalidParameterValueException(f"Invalid marker: {marker}") from exc
