"""The Telemetry API 2022-07-01 and Logs API 2020-08-15 subscribe routes (lambda-spec §3).

``PUT /2022-07-01/telemetry`` and ``PUT /2020-08-15/logs``, from a registered extension
(``Lambda-Extension-Identifier``), while subscriptions are open (the init phase). The body
is checked as Lambda checks it (schema version, types, buffering limits, an HTTP
destination on the sandbox's own host); a valid one replaces the extension's previous
subscription and is answered 200 ``"OK"``.

Scope: one agent; stateless apart from the ``TelemetryBus`` it feeds.
"""

from __future__ import annotations

import json
from typing import Any

from ember.agent.extensions_api import ExtensionsApi, extension_error, unknown_extension
from ember.agent.http_server import Request, Response
from ember.agent.rendering import NOT_FOUND, json_response, method_not_allowed
from ember.agent.telemetry import LOGS, TELEMETRY, Buffering, Destination, Subscriber, TelemetryBus

TELEMETRY_PATH = "/2022-07-01/telemetry"
LOGS_PATH = "/2020-08-15/logs"
TELEMETRY_SCHEMAS = ("2022-07-01", "2022-12-13", "2025-01-29")
LOGS_SCHEMAS = ("2020-08-15", "2021-03-18")
TYPES = ("platform", "function", "extension")
SANDBOX_HOSTS = ("sandbox.localdomain", "sandbox", "localhost", "127.0.0.1")
# (field, default, minimum, maximum); the Logs API's default maxItems is 10000
LIMITS = (("maxItems", 1000, 1000, 10000), ("maxBytes", 262144, 262144, 1048576))
TIMEOUT_LIMITS = ("timeoutMs", 1000, 25, 30000)
OK = Response(200, b'"OK"', [("Content-Type", "application/json")])


class InvalidSubscription(ValueError):
    """The body breaks a rule; the message says which (``<field>: <rule>``)."""


class TelemetryApi:
    """Subscribe routes of both APIs. Scope: one agent."""

    def __init__(self, extensions: ExtensionsApi, bus: TelemetryBus) -> None:
        self._extensions = extensions
        self._bus = bus

    def handles(self, path: str) -> bool:
        return path in (TELEMETRY_PATH, LOGS_PATH)

    def handle(self, request: Request) -> Response:  # noqa: PLR0911 - one return per error
        api = TELEMETRY if request.path == TELEMETRY_PATH else LOGS
        prefix = "Telemetry" if api == TELEMETRY else "Logs"
        if not self.handles(request.path):
            return NOT_FOUND
        if request.method != "PUT":
            return method_not_allowed("PUT")
        ident = request.headers.get("lambda-extension-identifier")
        if not ident:
            message = "Missing Lambda-Extension-Identifier header"
            return extension_error("Extension.MissingExtensionIdentifier", message)
        extension = self._extensions.identifier(ident)
        if extension is None:
            return unknown_extension(ident)
        if not self._bus.subscriptions_open:
            message = f"{prefix} API subscription is closed"
            return extension_error(f"{prefix}.SubscriptionClosed", message)
        other = next((s for s in self._bus.subscribers if s.name == extension.name), None)
        if other is not None and other.api != api:
            message = "An extension cannot subscribe to both the Logs API and the Telemetry API"
            return _validation(api, message)
        try:
            subscriber = parse_subscription(api, extension.name, request.body)
        except InvalidSubscription as exc:
            return _validation(api, str(exc))
        self._bus.subscribe(subscriber)
        return OK


def _validation(api: str, message: str) -> Response:
    error_type = "ValidationError" if api == TELEMETRY else "Logs.ValidationError"
    return json_response(400, {"errorMessage": message, "errorType": error_type})


def parse_subscription(api: str, name: str, body: bytes) -> Subscriber:
    """A ``Subscriber`` from a subscribe body; ``InvalidSubscription`` when it is not valid."""
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise InvalidSubscription(f"Invalid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InvalidSubscription("(root): Invalid type. Expected: object")
    schemas = TELEMETRY_SCHEMAS if api == TELEMETRY else LOGS_SCHEMAS
    schema = parsed.get("schemaVersion", None if api == TELEMETRY else LOGS_SCHEMAS[0])
    if schema is None:
        raise InvalidSubscription("(root): schemaVersion is required")
    if schema not in schemas:
        allowed = ", ".join(f'"{s}"' for s in schemas)
        raise InvalidSubscription(f"schemaVersion: must be one of the following: {allowed}")
    return Subscriber(
        name=name,
        api=api,
        schema=schema,
        types=_types(parsed.get("types")),
        buffering=_buffering(api, parsed.get("buffering")),
        destination=_destination(parsed.get("destination")),
    )


def _types(value: Any) -> frozenset[str]:
    if value is None:
        raise InvalidSubscription("(root): types is required")
    if not isinstance(value, list) or not value:
        raise InvalidSubscription("types: Array must have at least 1 items")
    for index, item in enumerate(value):
        if item not in TYPES:
            allowed = ", ".join(f'"{t}"' for t in TYPES)
            raise InvalidSubscription(f"types.{index}: must be one of the following: {allowed}")
    return frozenset(value)


def _buffering(api: str, value: Any) -> Buffering:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidSubscription("buffering: Invalid type. Expected: object")
    numbers: list[int] = []
    for key, default, low, high in (*LIMITS, TIMEOUT_LIMITS):
        fallback = 10000 if key == "maxItems" and api == LOGS else default
        number = value.get(key, fallback)
        if not isinstance(number, int) or isinstance(number, bool):
            raise InvalidSubscription(f"buffering.{key}: Invalid type. Expected: integer")
        if number < low:
            raise InvalidSubscription(f"buffering.{key}: Must be greater than or equal to {low}")
        if number > high:
            raise InvalidSubscription(f"buffering.{key}: Must be less than or equal to {high}")
        numbers.append(number)
    return Buffering(*numbers)


def _destination(value: Any) -> Destination:
    if not isinstance(value, dict):
        raise InvalidSubscription("(root): destination is required")
    protocol = value.get("protocol")
    if protocol not in ("HTTP", "TCP"):
        raise InvalidSubscription(
            'destination.protocol: must be one of the following: "HTTP", "TCP"'
        )
    uri = value.get("URI")
    if not isinstance(uri, str):
        raise InvalidSubscription("destination: URI is required")
    from urllib.parse import urlsplit  # noqa: PLC0415 - kept off the agent's start path

    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise InvalidSubscription(f"destination.URI: {exc}") from exc
    schemes = ("http",) if protocol == "HTTP" else ("tcp", "http")
    if parts.scheme not in schemes or parts.hostname not in SANDBOX_HOSTS or port is None:
        scheme = "http" if protocol == "HTTP" else "tcp"
        message = f"destination.URI: must be {scheme}://sandbox.localdomain:<port>[/<path>]"
        raise InvalidSubscription(message)
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return Destination("127.0.0.1", port, path, parts.netloc, protocol)
