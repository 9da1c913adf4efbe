"""Synchronous invoke through boto3 against a real server and real sandboxes."""

from __future__ import annotations

import base64
import http.client
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ember.runtimes.catalogue import PYTHON_RUNTIMES, RuntimeCatalogue
from tests.integration.conftest import EmberServer
from tests.integration.functions import (
    BIG_RESPONSE,
    CONTEXT,
    CRASHING,
    FAILING,
    HELLO,
    IMPORT_ERROR,
    SLEEPY,
    SYNTAX_ERROR,
    python_zip,
)
from tests.integration.test_functions_api import create, error_code

REPORT = re.compile(
    r"REPORT RequestId: (?P<id>[0-9a-f-]{36})\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms"
    r"\tMemory Size: 128 MB\tMax Memory Used: \d+ MB\t(?P<rest>.*)\n$"
)


def invoke(client: Any, name: str, payload: Any = None, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"FunctionName": name, **extra}
    if payload is not None:
        params["Payload"] = json.dumps(payload).encode()
    response: dict[str, Any] = client.invoke(**params)
    response["Body"] = response["Payload"].read()
    return response


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["Body"])


def tail(response: dict[str, Any]) -> str:
    return base64.b64decode(response["LogResult"]).decode()


@pytest.fixture(scope="module")
def hello(lambda_client: Any) -> str:
    create(lambda_client, "hello")
    return "hello"


def test_hello_and_warm_reuse(lambda_client: Any, hello: str) -> None:
    first = invoke(lambda_client, hello, {"name": "ember"})
    assert first["StatusCode"] == 200
    assert first["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in first
    result = body(first)
    assert result["hello"] == "ember"
    second = body(invoke(lambda_client, hello, {}))
    assert second["environment"] == result["environment"]
    assert second["pid"] == result["pid"]
    assert second["inits"] == 1
    assert second["invokes"] == result["invokes"] + 1


def test_request_id_header_is_the_invocation_id(lambda_client: Any, hello: str) -> None:
    response = invoke(lambda_client, hello, {}, LogType="Tail")
    request_id = response["ResponseMetadata"]["RequestId"]
    assert f"START RequestId: {request_id} Version: $LATEST\n" in tail(response)


def test_log_tail_has_start_output_end_report(lambda_client: Any) -> None:
    create(lambda_client, "tail-cold")
    cold = invoke(lambda_client, "tail-cold", {}, LogType="Tail")
    lines = tail(cold).splitlines(keepends=True)
    request_id = cold["ResponseMetadata"]["RequestId"]
    assert lines[0] == f"START RequestId: {request_id} Version: $LATEST\n"
    assert "hello from the handler\n" in lines
    assert lines[-2] == f"END RequestId: {request_id}\n"
    report = REPORT.match(lines[-1])
    assert report is not None, lines[-1]
    assert report["id"] == request_id
    assert re.fullmatch(
        r"Init Duration: \d+\.\d\d ms\tEmber Start Kind: (cold|prewarmed)\t", report["rest"]
    )
    warm = invoke(lambda_client, "tail-cold", {}, LogType="Tail")
    warm_report = REPORT.match(tail(warm).splitlines(keepends=True)[-1])
    assert warm_report is not None
    assert warm_report["rest"] == "Ember Start Kind: warm\t"


def test_context_and_environment(lambda_client: Any) -> None:
    create(lambda_client, "ctx", CONTEXT, Environment={"Variables": {"MY_SETTING": "on"}})
    client_context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    response = invoke(lambda_client, "ctx", {}, ClientContext=client_context)
    seen = body(response)
    assert seen["request_id"] == response["ResponseMetadata"]["RequestId"]
    assert seen["function_name"] == "ctx"
    assert seen["function_version"] == "$LATEST"
    assert seen["memory_limit_in_mb"] == "128"
    assert seen["invoked_function_arn"] == "arn:aws:lambda:us-east-1:000000000000:function:ctx"
    assert seen["log_group_name"] == "/aws/lambda/ctx"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", seen["log_stream_name"])
    assert 0 < seen["remaining_ms"] <= 3000
    assert seen["client_custom"] == {"k": "v"}
    assert seen["trace_id"].startswith("Root=1-")
    env = seen["env"]
    assert env["MY_SETTING"] == "on"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "ctx"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert env["_HANDLER"] == "app.handler"
    assert env["AWS_ACCESS_KEY_ID"] != "AKIAEMBERTESTADMIN01"  # never the admin's key
    assert "EMBER_SECRET_ACCESS_KEY" not in json.dumps(env)


def test_handler_exception_is_unhandled_function_error(lambda_client: Any) -> None:
    create(lambda_client, "failing", FAILING)
    response = invoke(lambda_client, "failing", {"x": 41})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = body(response)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "bad input: 41"
    assert error["requestId"] == response["ResponseMetadata"]["RequestId"]
    assert any('raise ValueError("bad input: "' in frame for frame in error["stackTrace"])


def test_an_error_with_a_200_kb_message_is_reported_whole(lambda_client: Any) -> None:
    """The runtime client sends the error's X-Ray cause (with the message) in a request
    header; the agent takes heads as large as RAPID does (1 MiB)."""
    create(
        lambda_client,
        "big-error",
        'def handler(event, context):\n    raise ValueError("x" * 200_000)\n',
    )
    response = invoke(lambda_client, "big-error", {})
    assert response["FunctionError"] == "Unhandled"
    error = body(response)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "x" * 200_000


@pytest.mark.parametrize(
    ("name", "source", "handler", "error_type", "message"),
    [
        (
            "import-error",
            IMPORT_ERROR,
            "app.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'app': No module named 'module_that_does_not_exist'",
        ),
        (
            "no-handler",
            "x = 1\n",
            "app.handler",
            "Runtime.HandlerNotFound",
            "Handler 'handler' missing on module 'app'",
        ),
        ("syntax-error", SYNTAX_ERROR, "app.handler", "Runtime.UserCodeSyntaxError", "Syntax"),
        ("bad-handler", "x = 1\n", "nodot", "Runtime.MalformedHandlerName", "Bad handler"),
    ],
)
def test_init_failures_are_reported_like_lambda(
    lambda_client: Any, name: str, source: str, handler: str, error_type: str, message: str
) -> None:
    create(lambda_client, name, source, Handler=handler)
    for _ in range(2):  # the error is served on every attempt, environment reset between
        response = invoke(lambda_client, name, {}, LogType="Tail")
        assert response["FunctionError"] == "Unhandled"
        error = body(response)
        assert error["errorType"] == error_type
        assert message in error["errorMessage"]


def test_timeout_kills_and_resets_the_environment(lambda_client: Any) -> None:
    create(lambda_client, "too-slow", SLEEPY, Timeout=1)
    response = invoke(lambda_client, "too-slow", {"seconds": 30}, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    request_id = response["ResponseMetadata"]["RequestId"]
    assert body(response) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {request_id} Error: Task timed out after 1.00 seconds",
    }
    logs = tail(response)
    assert f"{request_id} Task timed out after 1.00 seconds\n" in logs
    assert "\tStatus: timeout\tEmber Start Kind: " in logs.splitlines()[-1]
    after = invoke(lambda_client, "too-slow", {"seconds": 0}, LogType="Tail")
    assert "FunctionError" not in after
    assert "Init Duration" in tail(after)  # a new environment was initialised


def test_runtime_exit_is_runtime_exit_error(lambda_client: Any) -> None:
    create(lambda_client, "crasher", CRASHING)
    response = invoke(lambda_client, "crasher", {"code": 3}, LogType="Tail")
    request_id = response["ResponseMetadata"]["RequestId"]
    assert response["FunctionError"] == "Unhandled"
    assert body(response) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: exit status 3",
    }
    logs = tail(response)
    assert "about to crash\n" in logs
    report = logs.splitlines()[-1]
    assert "\tStatus: error\tError Type: Runtime.ExitError\tEmber Start Kind: " in report


def test_concurrent_invokes_get_separate_environments(lambda_client: Any) -> None:
    create(lambda_client, "parallel", SLEEPY)
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda _: body(invoke(lambda_client, "parallel", {"seconds": 1})), range(2))
        )
    assert results[0]["environment"] != results[1]["environment"]


def test_response_too_large(lambda_client: Any) -> None:
    create(lambda_client, "big-response", BIG_RESPONSE)
    response = invoke(lambda_client, "big-response", {})
    assert response["FunctionError"] == "Unhandled"
    assert body(response) == {
        "errorMessage": "Response payload size exceeded maximum allowed payload size "
        "(6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }


def test_request_payload_limits_and_json(lambda_client: Any, hello: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName=hello, Payload=b'"' + b"x" * (6 * 1024 * 1024) + b'"')
    assert error_code(excinfo) == ("RequestEntityTooLargeException", 413)
    assert "Request must be smaller than 6291456 bytes for the InvokeFunction operation" in str(
        excinfo.value
    )
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName=hello, Payload=b"{not json")
    assert error_code(excinfo) == ("InvalidRequestContentException", 400)
    assert "Could not parse request body into json" in str(excinfo.value)


def test_invocation_types(lambda_client: Any, hello: str) -> None:
    dry = lambda_client.invoke(FunctionName=hello, InvocationType="DryRun")
    assert dry["Payload"].read() == b""  # also hands the connection back to the pool
    assert dry["StatusCode"] == 204
    event = lambda_client.invoke(FunctionName=hello, InvocationType="Event", Payload=b"{}")
    assert event["Payload"].read() == b""
    assert event["StatusCode"] == 202  # the rest: test_async_invoke.py


def test_invoke_missing_function_and_bad_qualifier(lambda_client: Any, hello: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName="nope", Payload=b"{}")
    assert error_code(excinfo) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName=f"{hello}:7", Payload=b"{}")
    assert error_code(excinfo) == ("ResourceNotFoundException", 404)


def test_updated_code_gets_a_new_environment(lambda_client: Any) -> None:
    create(lambda_client, "evolving")
    before = body(invoke(lambda_client, "evolving", {}))
    lambda_client.update_function_code(
        FunctionName="evolving", ZipFile=python_zip(HELLO.replace("hello", "howdy"))
    )
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName="evolving")
    after = body(invoke(lambda_client, "evolving", {}))
    assert "howdy" in after
    assert after["environment"] != before["environment"]


VERSION = """
import sys


def handler(event, context):
    return {"version": list(sys.version_info[:2]), "flags_isolated": sys.flags.isolated}
"""


@pytest.mark.parametrize("runtime", PYTHON_RUNTIMES)
def test_each_installed_python_runtime(lambda_client: Any, runtime: str) -> None:
    if RuntimeCatalogue.discover({}).get(runtime) is None:
        pytest.skip(f"no {runtime} interpreter on this machine")
    name = "version-" + runtime.replace(".", "-")
    create(lambda_client, name, VERSION, Runtime=runtime)
    seen = body(invoke(lambda_client, name, {}))
    assert seen["version"] == [3, int(runtime.split(".")[1])]
    assert seen["flags_isolated"] == 1


@pytest.mark.parametrize(
    "payload",
    [b"[" * 100_000, b'{"a": NaN}', '{"a": 1}'.encode("utf-16")],
    ids=["deeply-nested", "nan", "utf-16"],
)
def test_malformed_payloads_are_400_not_500(lambda_client: Any, hello: str, payload: bytes) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName=hello, Payload=payload)
    assert error_code(excinfo) == ("InvalidRequestContentException", 400)


def test_an_oversized_invoke_is_refused_from_its_length(server: EmberServer, hello: str) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", f"/2015-03-31/functions/{hello}/invocations")
    connection.putheader("Content-Length", str(7 * 1024 * 1024))
    connection.putheader("Authorization", "AWS4-HMAC-SHA256 placeholder")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert b"smaller than 6291456 bytes for the InvokeFunction operation" in response.read()
    connection.close()
