"""The Extensions API's exact statuses and bodies (lambda-spec §2.1), without processes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ember.agent.extensions_api import ExtensionsApi, FunctionInfo, is_uuid, new_uuid
from ember.agent.http_server import Request, Response

UNKNOWN = "6f7f0961-f834-4211-8a7a-f6fe80b88d56"


def request(method: str, action: str, body: bytes = b"", /, **headers: str) -> Request:
    names = {key.replace("_", "-").lower(): value for key, value in headers.items()}
    made = Request(method, f"/2020-01-01/extension/{action}", names)
    made.body = body
    return made


def answer(result: Response | asyncio.Future[Response]) -> tuple[int, Any]:
    assert isinstance(result, Response)
    return result.status, json.loads(result.body)


def error(status: int, error_type: str, message: str) -> tuple[int, Any]:
    return status, {"errorMessage": message, "errorType": error_type}


@pytest.fixture
def api() -> ExtensionsApi:
    return ExtensionsApi(FunctionInfo("fn", "7", "app.handler", "123456789012"), lambda: None)


def register(api: ExtensionsApi, name: str, events: str = "[]", **headers: str) -> Response:
    body = f'{{"events": {events}}}'.encode()
    result = api.handle(request("POST", "register", body, Lambda_Extension_Name=name, **headers))
    assert isinstance(result, Response)
    return result


def test_register_answers_the_function_and_an_identifier(api: ExtensionsApi) -> None:
    response = register(api, "ext", '["INVOKE"]', Lambda_Extension_Accept_Feature="accountId")
    assert answer(response) == (
        200,
        {
            "functionName": "fn",
            "functionVersion": "7",
            "handler": "app.handler",
            "accountId": "123456789012",
        },
    )
    assert is_uuid(dict(response.headers)["Lambda-Extension-Identifier"])


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        ("", b"{}", error(403, "Extension.InvalidExtensionName", "Empty extension name")),
        (
            "x",
            b'{"events":["INVOKE"],"configurationKeys":["a"]}',
            error(
                403,
                "InvalidRequestFormat",
                "configurationKeys are deprecated; use environment variables instead",
            ),
        ),
        (
            "x",
            b'{"events":["START"]}',
            error(403, "Extension.InvalidEventType", "START: ErrInvalidEventType"),
        ),
        (
            "x",
            b'{"events":["SHUTDOWN"]}',
            error(
                403,
                "Extension.InvalidEventType",
                "SHUTDOWN: ShutdownEventNotSupportedForInternalExtension",
            ),
        ),
    ],
)
def test_register_refusals(
    api: ExtensionsApi, name: str, body: bytes, expected: tuple[int, Any]
) -> None:
    result = api.handle(request("POST", "register", body, Lambda_Extension_Name=name))
    assert answer(result) == expected
    assert api.registered == []


def test_registration_limits_duplicates_and_closing(api: ExtensionsApi) -> None:
    for n in range(10):
        assert register(api, f"ext-{n}").status == 200
    assert answer(register(api, "ext-0")) == error(
        403, "Extension.InvalidExtensionState", "Extension with this name already registered"
    )
    assert answer(register(api, "ext-10")) == error(
        403, "Extension.TooManyExtensions", "Extension limit (10) reached"
    )
    api.close_registration()
    assert answer(register(api, "late")) == error(
        403, "Extension.RegistrationClosed", "Extension registration closed already"
    )


def test_an_external_extension_may_subscribe_to_shutdown(api: ExtensionsApi) -> None:
    api.expect_external("logger")
    assert not api.all_external_registered()
    assert register(api, "logger", '["INVOKE", "SHUTDOWN"]').status == 200
    assert api.all_external_registered()
    assert api.infos() == [{"name": "logger", "events": ["INVOKE", "SHUTDOWN"], "external": True}]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {},
            error(
                403,
                "Extension.MissingExtensionIdentifier",
                "Missing Lambda-Extension-Identifier header",
            ),
        ),
        (
            {"Lambda_Extension_Identifier": "not-a-uuid"},
            error(
                403, "Extension.InvalidExtensionIdentifier", "Invalid Lambda-Extension-Identifier"
            ),
        ),
        (
            {"Lambda_Extension_Identifier": UNKNOWN},
            error(403, "Extension.UnknownExtensionIdentifier", f"Unknown extension {UNKNOWN}"),
        ),
    ],
)
def test_identifier_errors(
    api: ExtensionsApi, headers: dict[str, str], expected: tuple[int, Any]
) -> None:
    assert answer(api.handle(request("GET", "event/next", **headers))) == expected


async def test_events_and_error_reports_follow_the_state_machine(api: ExtensionsApi) -> None:
    ident = dict(register(api, "ext", '["INVOKE"]').headers)["Lambda-Extension-Identifier"]
    known = {"Lambda_Extension_Identifier": ident}
    missing = api.handle(request("POST", "init/error", **known))
    assert answer(missing) == error(
        403, "Extension.MissingHeader", "Lambda-Extension-Function-Error-Type not found"
    )
    waiting = api.handle(request("GET", "event/next", **known))
    assert isinstance(waiting, asyncio.Future)
    assert api.all_ready()
    late_init_error = api.handle(
        request("POST", "init/error", Lambda_Extension_Function_Error_Type="X.Y", **known)
    )
    assert answer(late_init_error) == error(
        403,
        "Extension.InvalidExtensionState",
        "State transition from Ready to InitError failed for extension ext. "
        "Error: State transition is not allowed",
    )
    api.dispatch("INVOKE", {"eventType": "INVOKE", "requestId": "r"})
    event = waiting.result()
    assert event.status == 200
    assert json.loads(event.body) == {"eventType": "INVOKE", "requestId": "r"}
    headers = dict(event.headers)
    assert headers["Content-Type"] == "application/json"
    assert is_uuid(headers["Lambda-Extension-Event-Identifier"])
    assert not api.all_ready("INVOKE")  # busy with the invoke until its next /event/next
    exit_error = api.handle(
        request("POST", "exit/error", Lambda_Extension_Function_Error_Type="X.Y", **known)
    )
    assert answer(exit_error) == (202, {"status": "OK"})
    after = api.handle(request("GET", "event/next", **known))
    assert answer(after) == error(
        403,
        "Extension.InvalidExtensionState",
        "State transition from ExitError to Ready failed for extension ext. "
        "Error: State transition is not allowed",
    )


def test_new_uuids_are_version_4() -> None:
    made = new_uuid()
    assert is_uuid(made)
    assert made[14] == "4"
    assert made[19] in "89ab"
