"""Function operations: Create, Get, GetConfiguration, List, UpdateCode, UpdateConfiguration,
Delete, and the code download behind ``GetFunction``'s ``Code.Location``.

Each handler parses the request into a command (``control.validation``), calls the
registry, and renders the record (``api.shapes``). No handler builds error JSON.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ember.api.http import json_response, parse_count, parse_json_object
from ember.api.shapes import function_configuration
from ember.control.registry import FunctionRegistry
from ember.control.validation import parse_create_function
from ember.errors import AccessDeniedException, InvalidParameterValueException
from ember.model.arns import merge_qualifier, parse_function_ref, runtime_version_arn
from ember.model.functions import FunctionRecord
from ember.store.blobs import BlobStore

CODE_URL_TTL_S = 600  # like a presigned S3 URL: valid for ten minutes
MAX_ITEMS = 10000


class FunctionsApi:
    """Scope: one per server."""

    def __init__(
        self,
        registry: FunctionRegistry,
        blobs: BlobStore,
        url_key: bytes,
        region: str,
        account_id: str,
        dead_letter_check: Callable[[str], None] | None = None,
    ) -> None:
        self._registry = registry
        self._dead_letter_check = dead_letter_check  # raises for a target Ember cannot use
        self._blobs = blobs
        self._url_key = url_key  # HMAC key of code download URLs
        self._region = region
        self._account = account_id

    def resolve(self, request: Request) -> tuple[str, str | None]:
        """``{FunctionName}`` (+ ``?Qualifier=``) → (name, qualifier)."""
        name, in_name = parse_function_ref(request.path_params["name"], self._region, self._account)
        return name, merge_qualifier(in_name, request.query_params.get("Qualifier"))

    def configuration(self, record: FunctionRecord) -> dict[str, Any]:
        runtime_arn = runtime_version_arn(self._region, record.config.runtime)
        return function_configuration(record, self._registry.arn(record.name), runtime_arn)

    async def create(self, _request: Request, body: bytes) -> Response:
        data = parse_json_object(body)  # decoding the zip's base64 happens off the loop
        command = await asyncio.to_thread(
            parse_create_function, data, self._registry.installed_runtimes()
        )
        self._check_dead_letter(command.config.dead_letter_target)
        record = await self._registry.create(command)
        return json_response(self.configuration(record), 201)

    async def get(self, request: Request, _body: bytes) -> Response:
        name, qualifier = self.resolve(request)
        record = self._registry.get(name, qualifier)
        shape: dict[str, Any] = {
            "Configuration": self.configuration(record),
            "Code": {"RepositoryType": "S3", "Location": self._code_url(request, record)},
        }
        if record.tags:
            shape["Tags"] = dict(record.tags)
        if record.reserved_concurrency is not None:
            shape["Concurrency"] = {"ReservedConcurrentExecutions": record.reserved_concurrency}
        return json_response(shape)

    async def get_configuration(self, request: Request, _body: bytes) -> Response:
        name, qualifier = self.resolve(request)
        return json_response(self.configuration(self._registry.get(name, qualifier)))

    async def list(self, request: Request, _body: bytes) -> Response:
        records = self._registry.list()
        start = _after_marker(records, request.query_params.get("Marker"))
        limit = _max_items(request.query_params.get("MaxItems"))
        page = records[start : start + limit]
        shape: dict[str, Any] = {"Functions": [self.configuration(r) for r in page]}
        if start + limit < len(records):
            shape["NextMarker"] = _marker(page[-1].name)
        return json_response(shape)

    async def update_code(self, request: Request, body: bytes) -> Response:
        name, _ = self.resolve(request)
        record = await self._registry.update_code(name, parse_json_object(body))
        return json_response(self.configuration(record))

    async def update_configuration(self, request: Request, body: bytes) -> Response:
        name, _ = self.resolve(request)
        data = parse_json_object(body)
        dead_letter = data.get("DeadLetterConfig")
        if isinstance(dead_letter, dict) and isinstance(dead_letter.get("TargetArn"), str):
            self._check_dead_letter(dead_letter["TargetArn"])
        record = await self._registry.update_configuration(name, data)
        return json_response(self.configuration(record))

    def _check_dead_letter(self, target: str | None) -> None:
        if target and self._dead_letter_check is not None:
            self._dead_letter_check(target)

    async def delete(self, request: Request, _body: bytes) -> Response:
        name, qualifier = self.resolve(request)
        await self._registry.delete(name, qualifier)
        return Response(status_code=204)

    async def download_code(self, request: Request) -> Response:
        """The zip behind ``Code.Location``; authorised by the URL's own signature."""
        sha = request.path_params["sha"]
        expires = request.query_params.get("Expires", "")
        signature = request.query_params.get("Signature", "")
        expected = self._url_signature(sha, expires)
        expiry = parse_count(expires)
        if expiry is None or expiry < time.time():
            raise AccessDeniedException("Request has expired")
        if not hmac.compare_digest(signature, expected):
            raise AccessDeniedException("The request signature does not match.")
        data = await self._blobs.read_zip(sha)
        return Response(data, media_type="application/zip")

    def _code_url(self, request: Request, record: FunctionRecord) -> str:
        sha = record.code.sha256_hex
        expires = str(int(time.time()) + CODE_URL_TTL_S)
        base = str(request.base_url).rstrip("/")
        signature = self._url_signature(sha, expires)
        return f"{base}/ember/code/{sha}.zip?Expires={expires}&Signature={signature}"

    def _url_signature(self, sha: str, expires: str) -> str:
        return hmac.new(self._url_key, f"{sha}:{expires}".encode(), hashlib.sha256).hexdigest()


def _marker(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _after_marker(records: list[FunctionRecord], marker: str | None) -> int:
    if not marker:
        return 0
    try:
        after = base64.urlsafe_b64decode(marker.encode()).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidParameterValueException(f"Invalid marker: {marker}") from exc
    return sum(1 for r in records if r.name <= after)


def _max_items(value: str | None) -> int:
    if value is None:
        return 50
    count = parse_count(value)
    if count is None or not 1 <= count <= MAX_ITEMS:
        raise InvalidParameterValueException(
            f"1 validation error detected: Value '{value}' at 'maxItems' failed to satisfy "
            f"constraint: Member must have value between 1 and {MAX_ITEMS}"
        )
    return count
