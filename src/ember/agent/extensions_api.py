"""The Extensions API 2020-01-01 as RAPID serves it: registration, events, error reports.

Routes (lambda-spec §2.1), on the Runtime API's listener::

    POST /2020-01-01/extension/register     Lambda-Extension-Name; {"events": [...]}
    GET  /2020-01-01/extension/event/next   Lambda-Extension-Identifier; long poll
    POST /2020-01-01/extension/init/error   + Lambda-Extension-Function-Error-Type
    POST /2020-01-01/extension/exit/error   + Lambda-Extension-Function-Error-Type

An extension whose name is the file name of a launched ``/opt/extensions`` executable is
*external*; any other name registers an *internal* one (a thread of the runtime), which may
not subscribe to SHUTDOWN. States follow RAPID's agent states: (external: ``Launched``) →
``Registered`` → (``/event/next``) ``Ready`` → (event handed out) ``Running`` →
(``/event/next``) ``Ready`` …; ``Registered`` → (``/init/error``) ``InitError``;
``Ready``/``Running`` → (``/exit/error``) ``ExitError``.

Scope: one agent. Invariants: registration is open until ``close_registration`` (the
runtime's first ``/next``); an extension holds at most one undelivered event; every state
change calls ``on_change`` so the lifecycle can re-check what it waits for.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ember.agent.http_server import Request, Response
from ember.agent.protocol import ExtensionInfo
from ember.agent.rendering import ACCEPTED, NOT_FOUND, json_response, method_not_allowed

PREFIX = "/2020-01-01/extension/"
MAX_EXTENSIONS = 10
INVOKE = "INVOKE"
SHUTDOWN = "SHUTDOWN"

LAUNCHED = "Launched"
REGISTERED = "Registered"
READY = "Ready"
RUNNING = "Running"
INIT_ERROR = "InitError"
EXIT_ERROR = "ExitError"

NAME_HEADER = "lambda-extension-name"
ID_HEADER = "lambda-extension-identifier"
ERROR_TYPE_HEADER = "lambda-extension-function-error-type"


def extension_error(error_type: str, message: str, status: int = 403) -> Response:
    return json_response(status, {"errorMessage": message, "errorType": error_type})


def new_uuid() -> str:
    """A random (version 4) UUID, without importing ``uuid`` into the agent's start."""
    data = bytearray(os.urandom(16))
    data[6] = (data[6] & 0x0F) | 0x40
    data[8] = (data[8] & 0x3F) | 0x80
    text = data.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def is_uuid(text: str) -> bool:
    """Whether ``text`` is a UUID in its canonical 8-4-4-4-12 hex form."""
    parts = text.split("-")
    lengths = [len(part) for part in parts]
    hex_digits = "0123456789abcdefABCDEF"
    return lengths == [8, 4, 4, 4, 12] and all(c in hex_digits for c in "".join(parts))


def unknown_extension(ident: str) -> Response:
    return extension_error("Extension.UnknownExtensionIdentifier", f"Unknown extension {ident}")


def _state_error(current: str, target: str, name: str) -> Response:
    message = (
        f"State transition from {current} to {target} failed for extension {name}. "
        "Error: State transition is not allowed"
    )
    return extension_error("Extension.InvalidExtensionState", message)


@dataclass(eq=False)
class Extension:
    """One extension, registered or (external) launched and not yet registered."""

    name: str
    external: bool
    state: str = LAUNCHED
    ident: str = ""
    events: list[str] = field(default_factory=list)
    error_type: str | None = None
    pending: bytes | None = None  # an event not yet handed out
    waiter: asyncio.Future[Response] | None = None

    def info(self) -> ExtensionInfo:
        return ExtensionInfo(name=self.name, events=list(self.events), external=self.external)

    @property
    def waiting(self) -> bool:
        return self.waiter is not None and not self.waiter.done()


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """What the register response tells an extension about the function."""

    name: str
    version: str
    handler: str
    account_id: str = ""


class ExtensionsApi:
    """The Extensions API of one environment. See the module docstring."""

    def __init__(self, function: FunctionInfo, on_change: Callable[[], None]) -> None:
        self._function = function
        self._on_change = on_change
        self._by_name: dict[str, Extension] = {}
        self._by_id: dict[str, Extension] = {}
        self.registration_open = True
        self.failure: tuple[str, str] | None = None  # (error type, message) of an init failure

    # The lifecycle's side.

    def expect_external(self, name: str) -> None:
        """A launched ``/opt/extensions`` executable, which must register before the runtime."""
        self._by_name[name] = Extension(name, external=True)

    def close_registration(self) -> None:
        self.registration_open = False

    @property
    def registered(self) -> list[Extension]:
        return [ext for ext in self._by_name.values() if ext.state != LAUNCHED]

    def infos(self) -> list[ExtensionInfo]:
        return [ext.info() for ext in self.registered]

    def all_external_registered(self) -> bool:
        return all(ext.state != LAUNCHED for ext in self._by_name.values() if ext.external)

    def all_ready(self, event: str | None = None) -> bool:
        """Every registered extension (subscribed to ``event``, if given) is on /event/next."""
        return all(
            ext.state == READY for ext in self.registered if event is None or event in ext.events
        )

    def subscribed(self, event: str) -> list[Extension]:
        return [ext for ext in self.registered if event in ext.events]

    def dispatch(self, event: str, body: dict[str, Any]) -> None:
        """Hand ``body`` to every extension subscribed to ``event`` (now or on its next poll)."""
        data = json.dumps(body, separators=(",", ":")).encode()
        for ext in self.subscribed(event):
            if ext.state in (READY, RUNNING):
                ext.pending = data
                if ext.waiting:
                    self._hand_out(ext)

    def identifier(self, ident: str) -> Extension | None:
        return self._by_id.get(ident)

    def external_named(self, name: str) -> Extension | None:
        ext = self._by_name.get(name)
        return ext if ext is not None and ext.external else None

    # HTTP side.

    def handle(self, request: Request) -> Response | asyncio.Future[Response]:
        action = request.path[len(PREFIX) :]
        if action == "register":
            return self._register(request) if request.method == "POST" else _not_allowed("POST")
        if action == "event/next":
            return self._next(request) if request.method == "GET" else _not_allowed("GET")
        if action in ("init/error", "exit/error"):
            if request.method != "POST":
                return _not_allowed("POST")
            return self._report_error(request, init=action == "init/error")
        return NOT_FOUND

    def _register(self, request: Request) -> Response:  # noqa: PLR0911 - one return per error
        name = request.headers.get(NAME_HEADER, "")
        if not name:
            return extension_error("Extension.InvalidExtensionName", "Empty extension name")
        try:
            events = _parse_events(request.body)
        except ValueError as exc:
            return extension_error("InvalidRequestFormat", str(exc))
        if not self.registration_open:
            return extension_error(
                "Extension.RegistrationClosed", "Extension registration closed already"
            )
        ext = self._by_name.get(name)
        external = ext is not None and ext.external
        for event in events:
            if event not in (INVOKE, SHUTDOWN):
                return extension_error(
                    "Extension.InvalidEventType", f"{event}: ErrInvalidEventType"
                )
            if event == SHUTDOWN and not external:
                message = f"{event}: ShutdownEventNotSupportedForInternalExtension"
                return extension_error("Extension.InvalidEventType", message)
        if ext is not None and ext.state != LAUNCHED:
            message = "Extension with this name already registered"
            return extension_error("Extension.InvalidExtensionState", message)
        if ext is None and len(self._by_name) >= MAX_EXTENSIONS:
            return extension_error(
                "Extension.TooManyExtensions", f"Extension limit ({MAX_EXTENSIONS}) reached"
            )
        if ext is None:
            ext = self._by_name[name] = Extension(name, external=False)
        ext.state, ext.ident, ext.events = REGISTERED, new_uuid(), events
        self._by_id[ext.ident] = ext
        body: dict[str, Any] = {
            "functionName": self._function.name,
            "functionVersion": self._function.version,
            "handler": self._function.handler,
        }
        features = request.headers.get("lambda-extension-accept-feature", "")
        if "accountId" in (f.strip() for f in features.split(",")) and self._function.account_id:
            body["accountId"] = self._function.account_id
        response = json_response(200, body)
        response.headers.append(("Lambda-Extension-Identifier", ext.ident))
        self._on_change()
        return response

    def _lookup(self, request: Request) -> Extension | Response:
        ident = request.headers.get(ID_HEADER)
        if not ident:
            message = "Missing Lambda-Extension-Identifier header"
            return extension_error("Extension.MissingExtensionIdentifier", message)
        if not is_uuid(ident):
            message = "Invalid Lambda-Extension-Identifier"
            return extension_error("Extension.InvalidExtensionIdentifier", message)
        ext = self._by_id.get(ident)
        if ext is None:
            return extension_error(
                "Extension.UnknownExtensionIdentifier", f"Unknown extension {ident}"
            )
        return ext

    def _next(self, request: Request) -> Response | asyncio.Future[Response]:
        ext = self._lookup(request)
        if isinstance(ext, Response):
            return ext
        if ext.state not in (REGISTERED, READY, RUNNING):
            return _state_error(ext.state, READY, ext.name)
        changed = ext.state != READY
        ext.state = READY
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        if ext.waiter is not None and not ext.waiter.done():
            ext.waiter.cancel()  # a client that gave up and asked again
        ext.waiter = waiter
        if ext.pending is not None:
            self._hand_out(ext)
        if changed:
            self._on_change()
        return waiter

    def _hand_out(self, ext: Extension) -> None:
        assert ext.waiter is not None
        assert ext.pending is not None
        headers = [
            ("Content-Type", "application/json"),
            ("Lambda-Extension-Event-Identifier", new_uuid()),
        ]
        ext.waiter.set_result(Response(200, ext.pending, headers))
        ext.pending, ext.waiter = None, None
        ext.state = RUNNING

    def _report_error(self, request: Request, *, init: bool) -> Response:
        ext = self._lookup(request)
        if isinstance(ext, Response):
            return ext
        error_type = request.headers.get(ERROR_TYPE_HEADER)
        if not error_type:
            message = "Lambda-Extension-Function-Error-Type not found"
            return extension_error("Extension.MissingHeader", message)
        allowed = (REGISTERED,) if init else (REGISTERED, READY, RUNNING)
        target = INIT_ERROR if init else EXIT_ERROR
        if ext.state not in allowed:
            return _state_error(ext.state, target, ext.name)
        ext.state, ext.error_type = target, error_type
        if init and self.failure is None:
            self.failure = ("Extension.InitError", f"{ext.name}: {error_type}")
        self._on_change()
        return ACCEPTED


def _parse_events(body: bytes) -> list[str]:
    """The register body's event list; ``ValueError`` with RAPID's message otherwise."""
    try:
        parsed = json.loads(body or b"{}")
    except ValueError as exc:
        raise ValueError(f"Error unmarshalling request body: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ValueError("Error unmarshalling request body: not a JSON object")  # noqa: TRY004 - one error kind
    if "configurationKeys" in parsed:
        raise ValueError("configurationKeys are deprecated; use environment variables instead")
    events = parsed.get("events") or []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ValueError("Error unmarshalling request body: events must be a list of strings")
    return list(dict.fromkeys(events))


def _not_allowed(allowed: str) -> Response:
    return method_not_allowed(allowed)
