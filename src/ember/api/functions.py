"""Function operations: Create, Get, GetConfiguration, List, UpdateCode, UpdateConfiguration,
Delete, and the code download behind ``GetFunction``'s ``Code.Location``.

Each handler parses the request into a command (``control.validation``), calls the
registry, and renders the record (``api.shapes``). No handler builds error JSON.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ember.api.http import json_response, parse_count, parse_json_object
from ember.api.paging import page
from ember.api.shapes import function_configuration
from ember.control.registry import FunctionRegistry
from ember.control.validation import parse_create_function
from ember.errors import (
    AccessDeniedException,
    InvalidParameterValueException,
    ValidationException,
)
from ember.model.arns import merge_qualifier, parse_function_ref, runtime_version_arn
from ember.model.functions import LATEST, FunctionRecord
from ember.store.blobs import BlobStore

CODE_URL_TTL_S = 600  # like a presigned S3 URL: valid for ten minutes


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
        name, in_name = _parse_ref(request.path_params["name"], self._region, self._account)
        query = request.scope["query_string"]
        qualifier = request.query_params.get("Qualifier") if query else None
        return name, merge_qualifier(in_name, qualifier)

    def configuration(self, record: FunctionRecord, qualifier: str | None = None) -> dict[str, Any]:
        """The FunctionConfiguration shape; ``qualifier`` qualifies its FunctionArn."""
        runtime_arn = runtime_version_arn(self._region, record.config.runtime)
        arn = self._registry.arn(record.name, qualifier)
        return function_configuration(record, arn, runtime_arn)

    def resolve_latest(self, request: Request) -> str:
        """The function name of an operation that changes ``$LATEST`` only."""
        name, qualifier = self.resolve(request)
        if qualifier not in (None, LATEST):
            self._registry.get(name, qualifier)  # a missing version or alias is a 404 first
            raise InvalidParameterValueException(
                f"Published versions and aliases are immutable: only $LATEST of {name} can be "
                f"updated (qualifier {qualifier})."
            )
        return name

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
            "Configuration": self.configuration(record, qualifier),
            "Code": {"RepositoryType": "S3", "Location": self._code_url(request, record)},
        }
        tags = self._registry.get(name).tags  # the function's, whatever the qualifier
        if tags:
            shape["Tags"] = dict(tags)
        if record.reserved_concurrency is not None:
            shape["Concurrency"] = {"ReservedConcurrentExecutions": record.reserved_concurrency}
        return json_response(shape)

    async def get_configuration(self, request: Request, _body: bytes) -> Response:
        name, qualifier = self.resolve(request)
        record = self._registry.get(name, qualifier)
        return json_response(self.configuration(record, qualifier))

    async def list(self, request: Request, _body: bytes) -> Response:
        """ListFunctions: ``$LATEST`` of every function, or with ``FunctionVersion=ALL``
        every version too (by name, then ``$LATEST`` first and versions in order)."""
        every_version = _function_version_filter(request.query_params.get("FunctionVersion"))
        records = self._registry.list()
        if every_version:
            records = [version for r in records for version in self._registry.versions(r.name)]
        chunk, marker = page(records, _list_ident, _list_order, request.query_params)
        shape: dict[str, Any] = {
            "Functions": [
                self.configuration(r, r.version if every_version else None) for r in chunk
            ]
        }
        if marker is not None:
            shape["NextMarker"] = marker
        return json_response(shape)

    async def update_code(self, request: Request, body: bytes) -> Response:
        name = self.resolve_latest(request)
        record = await self._registry.update_code(name, parse_json_object(body))
        qualifier = record.version if record.published else None  # Publish: the version
        return json_response(self.configuration(record, qualifier))

    async def update_configuration(self, request: Request, body: bytes) -> Response:
        name = self.resolve_latest(request)
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
        return self.signed_code_url(request, record.code.sha256_hex)

    def signed_code_url(self, request: Request, sha: str) -> str:
        """A download URL for a zip of the blob store, valid ``CODE_URL_TTL_S`` seconds."""
        expires = str(int(time.time()) + CODE_URL_TTL_S)
        base = str(request.base_url).rstrip("/")
        signature = self._url_signature(sha, expires)
        return f"{base}/ember/code/{sha}.zip?Expires={expires}&Signature={signature}"

    def _url_signature(self, sha: str, expires: str) -> str:
        return hmac.new(self._url_key, f"{sha}:{expires}".encode(), hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=4096)
def _parse_ref(value: str, region: str, account: str) -> tuple[str, str | None]:
    """``parse_function_ref``, remembered: the invoke path parses the same few names over
    and over (a refused name raises, and exceptions are not cached)."""
    return parse_function_ref(value, region, account)


def _function_version_filter(value: str | None) -> bool:
    """ListFunctions' ``FunctionVersion``: absent, or ``ALL`` (every version)."""
    if value is None:
        return False
    if value != "ALL":
        raise ValidationException(
            f"1 validation error detected: Value '{value}' at 'functionVersion' failed to "
            "satisfy constraint: Member must satisfy enum value set: [ALL]"
        )
    return True


def _list_ident(record: FunctionRecord) -> str:
    return f"{record.name}:{record.version}"


def _list_order(ident: str) -> tuple[str, int]:
    """Names in order; within one, ``$LATEST`` first, then versions by number."""
    name, _, version = ident.rpartition(":")
    if not name:  # a marker from a list without versions: the bare name
        return ident, -1
    return name, 0 if version == "$LATEST" else int(version)
