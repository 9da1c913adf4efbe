"""The function control plane through boto3: lifecycle, shapes, validation, persistence."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import (
    EmberServer,
    signed_headers,
    start_server,
)
from tests.integration.functions import HELLO, ROLE, make_zip, python_zip


def create(client: Any, name: str, source: str = HELLO, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": python_zip(source)},
        **extra,
    }
    response: dict[str, Any] = client.create_function(**params)
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return response


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    error = excinfo.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]


def test_create_answers_pending_then_turns_active(lambda_client: Any) -> None:
    code = python_zip(HELLO)
    created = lambda_client.create_function(
        FunctionName="lifecycle",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": code},
        Environment={"Variables": {"MY_VAR": "1"}},
        Timeout=7,
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["State"] == "Pending"
    assert created["StateReasonCode"] == "Creating"
    assert created["Version"] == "$LATEST"
    assert created["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:lifecycle"
    assert created["CodeSha256"] == base64.b64encode(hashlib.sha256(code).digest()).decode()
    assert created["CodeSize"] == len(code)
    assert created["Timeout"] == 7
    assert created["MemorySize"] == 128
    assert created["Environment"] == {"Variables": {"MY_VAR": "1"}}
    assert created["EphemeralStorage"] == {"Size": 512}
    lambda_client.get_waiter("function_active_v2").wait(FunctionName="lifecycle")
    active = lambda_client.get_function(FunctionName="lifecycle")
    assert active["Configuration"]["State"] == "Active"
    assert active["Configuration"]["LastUpdateStatus"] == "Successful"
    assert active["Configuration"]["RevisionId"] != created["RevisionId"]


def test_get_function_code_location_downloads_the_zip(lambda_client: Any) -> None:
    create(lambda_client, "download-me")
    location = lambda_client.get_function(FunctionName="download-me")["Code"]["Location"]
    assert location.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(location) as response:
        assert response.read() == python_zip(HELLO)


def test_function_refs_by_name_partial_and_full_arn(lambda_client: Any) -> None:
    create(lambda_client, "by-arn")
    for ref in (
        "by-arn",
        "000000000000:function:by-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:by-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:by-arn:$LATEST",
    ):
        config = lambda_client.get_function_configuration(FunctionName=ref)
        assert config["FunctionName"] == "by-arn"


def test_update_configuration_then_code(lambda_client: Any) -> None:
    create(lambda_client, "updatable")
    updated = lambda_client.update_function_configuration(
        FunctionName="updatable", MemorySize=256, Description="bigger"
    )
    assert updated["LastUpdateStatus"] == "InProgress"
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName="updatable")
    config = lambda_client.get_function_configuration(FunctionName="updatable")
    assert (config["MemorySize"], config["Description"]) == (256, "bigger")
    assert config["LastUpdateStatus"] == "Successful"
    new_code = python_zip(HELLO + "\n# v2\n")
    updated = lambda_client.update_function_code(FunctionName="updatable", ZipFile=new_code)
    assert updated["CodeSha256"] == base64.b64encode(hashlib.sha256(new_code).digest()).decode()
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName="updatable")


def test_revision_id_precondition(lambda_client: Any) -> None:
    create(lambda_client, "guarded")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_function_configuration(
            FunctionName="guarded", Timeout=5, RevisionId="00000000-0000-0000-0000-000000000000"
        )
    assert error_code(excinfo) == ("PreconditionFailedException", 412)


def test_list_functions_paginates(lambda_client: Any) -> None:
    for index in range(3):
        create(lambda_client, f"page-{index}")
    names = []
    for page in lambda_client.get_paginator("list_functions").paginate(
        PaginationConfig={"PageSize": 2}
    ):
        assert len(page["Functions"]) <= 2
        names += [f["FunctionName"] for f in page["Functions"]]
    assert {"page-0", "page-1", "page-2"} <= set(names)
    assert names == sorted(names)


def test_delete_then_not_found(lambda_client: Any) -> None:
    create(lambda_client, "short-lived")
    response = lambda_client.delete_function(FunctionName="short-lived")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function(FunctionName="short-lived")
    assert error_code(excinfo) == ("ResourceNotFoundException", 404)
    assert "Function not found: arn:aws:lambda:us-east-1:000000000000:function:short-lived" in str(
        excinfo.value
    )


def test_create_existing_conflicts(lambda_client: Any) -> None:
    create(lambda_client, "twice")
    with pytest.raises(ClientError) as excinfo:
        create(lambda_client, "twice")
    assert error_code(excinfo) == ("ResourceConflictException", 409)


@pytest.mark.parametrize(
    ("overrides", "code", "status", "fragment"),
    [
        ({"MemorySize": 64}, "ValidationException", 400, "memorySize"),
        ({"MemorySize": 10241}, "ValidationException", 400, "memorySize"),
        ({"Timeout": 901}, "ValidationException", 400, "timeout"),
        ({"EphemeralStorage": {"Size": 100}}, "ValidationException", 400, "size"),
        ({"Runtime": "python3.7"}, "InvalidParameterValueException", 400, "no longer supported"),
        ({"Runtime": "cobol9"}, "InvalidParameterValueException", 400, "enum value set"),
        ({"Runtime": "java21"}, "InvalidParameterValueException", 400, "python3.11"),
        (
            {"Environment": {"Variables": {"AWS_REGION": "x"}}},
            "InvalidParameterValueException",
            400,
            "reserved keys",
        ),
        (
            {"Environment": {"Variables": {"BIG": "x" * 5000}}},
            "InvalidParameterValueException",
            400,
            "4KB",
        ),
        (
            {"Code": {"ZipFile": b"not a zip"}},
            "InvalidParameterValueException",
            400,
            "Could not unzip uploaded file",
        ),
    ],
)
def test_invalid_create_is_refused_and_leaves_nothing(
    server: EmberServer, overrides: dict[str, Any], code: str, status: int, fragment: str
) -> None:
    # boto3 checks some limits itself; other SDKs and raw HTTP do not, so the server must.
    lambda_client = server.client(parameter_validation=False)
    params: dict[str, Any] = {
        "FunctionName": "invalid-one",
        "Runtime": "python3.11",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": python_zip(HELLO)},
        **overrides,
    }
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function(**params)
    assert error_code(excinfo) == (code, status)
    assert fragment in str(excinfo.value)
    with pytest.raises(ClientError):
        lambda_client.get_function(FunctionName="invalid-one")


def test_oversized_zip_is_413(lambda_client: Any) -> None:
    huge = make_zip({"app.py": "x = 1\n", "blob.bin": os.urandom(51 * 1024 * 1024)})
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function(
            FunctionName="too-big",
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": huge},
        )
    assert error_code(excinfo) == ("RequestEntityTooLargeException", 413)


def test_account_settings(lambda_client: Any) -> None:
    settings = lambda_client.get_account_settings()
    assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert settings["AccountLimit"]["CodeSizeZipped"] == 52428800
    assert settings["AccountUsage"]["FunctionCount"] >= 0


def test_functions_survive_a_restart(tmp_path: Any) -> None:
    first = start_server(tmp_path)
    try:
        create(first.client(), "persistent")
    finally:
        assert first.stop() == 0
    second: EmberServer = start_server(tmp_path)
    try:
        client = second.client()
        config = client.get_function_configuration(FunctionName="persistent")
        assert config["State"] == "Active"
        result = client.invoke(FunctionName="persistent", Payload=b'{"name": "again"}')
        assert b'"hello": "again"' in result["Payload"].read()
    finally:
        second.stop()


def test_an_oversized_request_is_refused_before_it_is_read(server: EmberServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/2015-03-31/functions")
    connection.putheader("Content-Length", str(80 * 1024 * 1024))
    connection.putheader("Authorization", "AWS4-HMAC-SHA256 placeholder")  # checked later
    connection.endheaders()  # no body follows: the server must answer from the header alone
    response = connection.getresponse()
    assert response.status == 413
    assert response.getheader("x-amzn-ErrorType") == "RequestEntityTooLargeException"
    assert (
        "smaller than 70167211 bytes for the CreateFunction operation" in response.read().decode()
    )
    connection.close()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            b'{"FunctionName": "nul", "Handler": "app.hand\\u0000ler"}',
            "InvalidRequestContentException",
        ),
        (
            b'{"FunctionName": "x", "Environment": {"Variables": {"AB": "\\ud800"}}}',
            "InvalidRequestContentException",
        ),
        (b"[" * 100_000, "InvalidRequestContentException"),
    ],
    ids=["nul-in-handler", "lone-surrogate", "deeply-nested"],
)
def test_malformed_control_plane_bodies_are_400(  # signed: the body itself is what is judged
    server: EmberServer, body: bytes, code: str
) -> None:
    headers = signed_headers(server, "POST", "/2015-03-31/functions", body=body)
    name, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(name, int(port), timeout=30)
    connection.request("POST", "/2015-03-31/functions", body=body, headers=headers)
    response = connection.getresponse()
    content = response.read()
    connection.close()
    assert response.status == 400, content
    assert response.getheader("x-amzn-ErrorType") == code


def test_a_malformed_max_items_is_400(lambda_client: Any, server: EmberServer) -> None:
    with pytest.raises(ClientError) as excinfo:
        server.client(parameter_validation=False).list_functions(MaxItems=0)
    assert error_code(excinfo)[1] == 400
