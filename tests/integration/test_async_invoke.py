"""InvocationType Event end to end: 202, retries, event age, destinations, DLQ, fairness."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.async_support import (
    ECHO_ID,
    FAILING,
    RECORD_KEYS,
    RESPONSE_KEYS,
    SLOW,
    invoke_event,
    make_queue,
    receive,
    records,
    request_ids_until,
    start_async_server,
)
from tests.integration.conftest import EmberServer
from tests.integration.esm_support import function_log, marked
from tests.integration.functions import SLEEPY, python_zip
from tests.integration.test_concurrency import statistics
from tests.integration.test_functions_api import create, error_code

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    running = start_async_server(tmp_path_factory.mktemp("ember-async"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sqs(server: EmberServer) -> Any:
    return server.client("sqs")


def test_event_is_accepted_with_202_and_runs_under_that_request_id(
    lambda_client: Any, sqs: Any
) -> None:
    url, queue_arn = make_queue(sqs, "echo-success")
    create(lambda_client, "echo", ECHO_ID)
    lambda_client.put_function_event_invoke_config(
        FunctionName="echo", DestinationConfig={"OnSuccess": {"Destination": queue_arn}}
    )
    request_id = invoke_event(lambda_client, "echo", {"n": 1})
    (record,) = records(sqs, url, 1)
    assert set(record) == RESPONSE_KEYS
    assert record["version"] == "1.0"
    assert TIMESTAMP.fullmatch(record["timestamp"])
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": ARN + "echo:$LATEST",
        "condition": "Success",
        "approximateInvokeCount": 1,
    }
    assert record["requestPayload"] == {"n": 1}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"request_id": request_id, "event": {"n": 1}}


def test_event_payload_over_1_mb_is_refused(lambda_client: Any) -> None:
    create(lambda_client, "big-event", ECHO_ID)
    payload = json.dumps("x" * (1024 * 1024))
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName="big-event", InvocationType="Event", Payload=payload)
    assert error_code(excinfo) == ("RequestEntityTooLargeException", 413)
    assert excinfo.value.response["Error"]["Message"] == (
        f"{len(payload)} byte payload is too large for the Event invocation type "
        "(limit 1048576 bytes)"
    )


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_function_errors_are_retried_then_reported(
    lambda_client: Any, sqs: Any, server: EmberServer, retries: int
) -> None:
    name = f"failing-{retries}"
    url, queue_arn = make_queue(sqs, f"{name}-failures")
    create(lambda_client, name, FAILING)
    lambda_client.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=retries,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    request_id = invoke_event(lambda_client, name, {"try": retries})
    (record,) = records(sqs, url, 1)
    assert set(record) == RESPONSE_KEYS
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": ARN + name + ":$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": retries + 1,
    }
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert record["responsePayload"]["errorMessage"] == "nope: " + request_id
    ends = marked(function_log(server, name), "END RequestId:")
    assert ends == [request_id] * (retries + 1)


def test_an_event_too_old_for_its_next_retry_is_reported_as_event_age_exceeded(
    lambda_client: Any, sqs: Any
) -> None:
    url, queue_arn = make_queue(sqs, "aging-failures")
    create(lambda_client, "aging", FAILING)
    lambda_client.put_function_event_invoke_config(
        FunctionName="aging",
        MaximumEventAgeInSeconds=60,  # 0.6 s on this server; retries need 0.3 + 0.6 s
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    request_id = invoke_event(lambda_client, "aging", {})
    (record,) = records(sqs, url, 1)
    context = record["requestContext"]
    assert context["condition"] == "EventAgeExceeded"
    assert context["requestId"] == request_id
    assert context["approximateInvokeCount"] in (1, 2)
    assert record["responseContext"]["functionError"] == "Unhandled"


def test_zero_reserved_concurrency_fails_at_once(lambda_client: Any, sqs: Any) -> None:
    url, queue_arn = make_queue(sqs, "zero-failures")
    create(lambda_client, "zero", ECHO_ID)
    lambda_client.put_function_concurrency(FunctionName="zero", ReservedConcurrentExecutions=0)
    lambda_client.put_function_event_invoke_config(
        FunctionName="zero", DestinationConfig={"OnFailure": {"Destination": queue_arn}}
    )
    request_id = invoke_event(lambda_client, "zero", {"z": 0})
    (record,) = records(sqs, url, 1)
    assert set(record) == RECORD_KEYS
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": ARN + "zero:$LATEST",
        "condition": "ZeroReservedConcurrency",
        "approximateInvokeCount": 0,
    }
    assert record["requestPayload"] == {"z": 0}


@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_a_function_destination_gets_the_record_as_its_event(
    lambda_client: Any, sqs: Any, outcome: str
) -> None:
    source, target = f"source-{outcome}", f"target-{outcome}"
    url, queue_arn = make_queue(sqs, f"{target}-seen")
    create(lambda_client, target, ECHO_ID)
    lambda_client.put_function_event_invoke_config(
        FunctionName=target, DestinationConfig={"OnSuccess": {"Destination": queue_arn}}
    )
    create(lambda_client, source, ECHO_ID if outcome == "success" else FAILING)
    member = "OnSuccess" if outcome == "success" else "OnFailure"
    lambda_client.put_function_event_invoke_config(
        FunctionName=source,
        MaximumRetryAttempts=0,
        DestinationConfig={member: {"Destination": ARN + target}},
    )
    request_id = invoke_event(lambda_client, source, {"from": source})
    (seen,) = records(sqs, url, 1)
    delivered = seen["requestPayload"]  # the record the target function ran with
    assert seen["responsePayload"]["event"] == delivered
    assert set(delivered) == RESPONSE_KEYS
    assert delivered["requestContext"]["requestId"] == request_id
    assert delivered["requestContext"]["functionArn"] == ARN + source + ":$LATEST"
    expected = "Success" if outcome == "success" else "RetriesExhausted"
    assert delivered["requestContext"]["condition"] == expected
    assert delivered["requestPayload"] == {"from": source}
    assert seen["requestContext"]["requestId"] != request_id


def test_dead_letter_queue_gets_the_original_event_with_lambda_attributes(
    lambda_client: Any, sqs: Any
) -> None:
    url, queue_arn = make_queue(sqs, "dead-letters")
    create(lambda_client, "dead-lettered", FAILING, DeadLetterConfig={"TargetArn": queue_arn})
    configuration = lambda_client.get_function_configuration(FunctionName="dead-lettered")
    assert configuration["DeadLetterConfig"] == {"TargetArn": queue_arn}
    lambda_client.put_function_event_invoke_config(
        FunctionName="dead-lettered", MaximumRetryAttempts=0
    )
    request_id = invoke_event(lambda_client, "dead-lettered", {"keep": "me"})
    (message,) = receive(sqs, url, 1)
    assert json.loads(message["Body"]) == {"keep": "me"}
    attributes = message["MessageAttributes"]
    assert attributes["RequestID"] == {"DataType": "String", "StringValue": request_id}
    assert attributes["ErrorCode"] == {"DataType": "Number", "StringValue": "200"}
    assert attributes["ErrorMessage"] == {
        "DataType": "String",
        "StringValue": "nope: " + request_id,
    }


def test_dead_letter_target_must_be_an_ember_queue(lambda_client: Any) -> None:
    missing = "arn:aws:sqs:us-east-1:000000000000:no-such-queue"
    with pytest.raises(ClientError) as excinfo:
        create(lambda_client, "bad-dlq", ECHO_ID, DeadLetterConfig={"TargetArn": missing})
    assert error_code(excinfo) == ("InvalidParameterValueException", 400)
    create(lambda_client, "sns-dlq", ECHO_ID)
    topic = "arn:aws:sns:us-east-1:000000000000:topic"
    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_function_configuration(
            FunctionName="sns-dlq", DeadLetterConfig={"TargetArn": topic}
        )
    assert error_code(excinfo) == ("InvalidParameterValueException", 400)
    assert "only Ember SQS queues" in excinfo.value.response["Error"]["Message"]


def test_event_invoke_config_operations(lambda_client: Any, sqs: Any) -> None:
    _, queue_arn = make_queue(sqs, "config-destination")
    create(lambda_client, "configured", ECHO_ID)
    put = lambda_client.put_function_event_invoke_config(
        FunctionName="configured", MaximumRetryAttempts=1
    )
    assert put["FunctionArn"] == ARN + "configured:$LATEST"
    assert put["MaximumRetryAttempts"] == 1
    assert "MaximumEventAgeInSeconds" not in put
    assert put["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    updated = lambda_client.update_function_event_invoke_config(
        FunctionName="configured",
        MaximumEventAgeInSeconds=3600,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    assert updated["MaximumRetryAttempts"] == 1
    assert updated["MaximumEventAgeInSeconds"] == 3600
    assert updated["DestinationConfig"] == {
        "OnSuccess": {},
        "OnFailure": {"Destination": queue_arn},
    }
    got = lambda_client.get_function_event_invoke_config(FunctionName="configured")
    assert got["LastModified"] == updated["LastModified"]
    listed = lambda_client.list_function_event_invoke_configs(FunctionName="configured")
    assert [c["FunctionArn"] for c in listed["FunctionEventInvokeConfigs"]] == [
        ARN + "configured:$LATEST"
    ]
    replaced = lambda_client.put_function_event_invoke_config(
        FunctionName="configured", MaximumEventAgeInSeconds=60
    )
    assert "MaximumRetryAttempts" not in replaced
    assert replaced["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    deleted = lambda_client.delete_function_event_invoke_config(FunctionName="configured")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function_event_invoke_config(FunctionName="configured")
    assert error_code(excinfo) == ("ResourceNotFoundException", 404)
    assert excinfo.value.response["Error"]["Message"] == (
        f"The function {ARN}configured:$LATEST doesn't have an EventInvokeConfig"
    )


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ({}, "InvalidParameterValueException",
         "You must specify at least one of error handling or destination setting."),
        ({"MaximumRetryAttempts": 3}, "ValidationException",
         "1 validation error detected: Value '3' at 'maximumRetryAttempts' failed to satisfy "
         "constraint: Member must have value less than or equal to 2"),
        ({"MaximumEventAgeInSeconds": 59}, "ValidationException",
         "1 validation error detected: Value '59' at 'maximumEventAgeInSeconds' failed to "
         "satisfy constraint: Member must have value greater than or equal to 60"),
        ({"DestinationConfig": {"OnSuccess": {"Destination": ARN + "checked"}}},
         "InvalidParameterValueException",
         "You can't specify the function as a destination for itself."),
        ({"DestinationConfig": {"OnFailure": {"Destination": ARN + "nobody"}}},
         "InvalidParameterValueException", f"The destination ARN {ARN}nobody is invalid."),
        ({"DestinationConfig": {"OnFailure": {
            "Destination": "arn:aws:sqs:us-east-1:000000000000:nothing-here"}}},
         "InvalidParameterValueException",
         "The destination ARN arn:aws:sqs:us-east-1:000000000000:nothing-here is invalid."),
    ],
)  # fmt: skip
def test_event_invoke_config_errors(
    lambda_client: Any, server: EmberServer, params: dict[str, Any], code: str, message: str
) -> None:
    with contextlib.suppress(ClientError):  # created by an earlier case
        create(lambda_client, "checked", ECHO_ID)
    unchecked = server.client(parameter_validation=False)  # botocore checks minimums itself
    with pytest.raises(ClientError) as excinfo:
        unchecked.put_function_event_invoke_config(FunctionName="checked", **params)
    assert excinfo.value.response["Error"]["Code"] == code
    assert excinfo.value.response["Error"]["Message"] == message


def test_sns_destination_is_refused_clearly(lambda_client: Any) -> None:
    create(lambda_client, "to-sns", ECHO_ID)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_event_invoke_config(
            FunctionName="to-sns",
            DestinationConfig={
                "OnFailure": {"Destination": "arn:aws:sns:us-east-1:000000000000:topic"}
            },
        )
    assert error_code(excinfo) == ("InvalidParameterValueException", 400)
    assert (
        "only to Ember functions and Ember SQS queues" in excinfo.value.response["Error"]["Message"]
    )


def test_a_throttled_backlog_does_not_delay_another_function(
    lambda_client: Any, sqs: Any, server: EmberServer
) -> None:
    """``slow`` may run one event at a time (2 s each) and has 20 queued; ``quick``'s five
    events all finish while most of that backlog is still waiting."""
    url, queue_arn = make_queue(sqs, "quick-success")
    create(lambda_client, "slow", SLOW, Timeout=30)
    lambda_client.put_function_concurrency(FunctionName="slow", ReservedConcurrentExecutions=1)
    for n in range(20):
        invoke_event(lambda_client, "slow", {"n": n})
    create(lambda_client, "quick", ECHO_ID)
    lambda_client.put_function_event_invoke_config(
        FunctionName="quick", DestinationConfig={"OnSuccess": {"Destination": queue_arn}}
    )
    ids = {invoke_event(lambda_client, "quick", {"n": n}) for n in range(5)}
    done = records(sqs, url, 5)
    assert {r["requestContext"]["requestId"] for r in done} == ids
    backlog = statistics(server)["async"]["functions"]["slow"]
    assert backlog["depth"] >= 10
    assert backlog["oldest_event_age_s"] > 0
    with urllib.request.urlopen(f"{server.url}/metrics") as response:
        text = response.read().decode()
    assert re.search(r'ember_async_queue_depth\{function="slow"\} \d+', text)
    assert 'ember_async_oldest_event_age_seconds{function="slow"}' in text
    assert 'ember_async_events_total{function="quick",outcome="Success"} 5.0' in text
    lambda_client.delete_function(FunctionName="slow")  # its queued events are discarded


def test_accepted_events_survive_kill_9(tmp_path: Path) -> None:
    first = start_async_server(tmp_path)
    try:
        client, queues = first.client(), first.client("sqs")
        url, queue_arn = make_queue(queues, "survivors")
        create(client, "survivor", ECHO_ID)
        client.put_function_event_invoke_config(
            FunctionName="survivor", DestinationConfig={"OnSuccess": {"Destination": queue_arn}}
        )
        ids = {invoke_event(client, "survivor", {"n": n}) for n in range(30)}
    finally:
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # right after the last 202
    second = start_async_server(tmp_path)
    try:
        queues = second.client("sqs")
        assert ids <= request_ids_until(queues, url, ids).keys()
    finally:
        second.stop()


def test_deleting_a_function_deletes_its_event_invoke_config(lambda_client: Any) -> None:
    create(lambda_client, "short-lived", ECHO_ID)
    lambda_client.put_function_event_invoke_config(
        FunctionName="short-lived", MaximumRetryAttempts=0
    )
    lambda_client.delete_function(FunctionName="short-lived")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_function_event_invoke_configs(FunctionName="short-lived")
    assert error_code(excinfo) == ("ResourceNotFoundException", 404)
    create(lambda_client, "short-lived", ECHO_ID)
    listed = lambda_client.list_function_event_invoke_configs(FunctionName="short-lived")
    assert listed["FunctionEventInvokeConfigs"] == []


def test_a_throttled_event_waits_and_runs_once_the_lease_is_free(
    lambda_client: Any, sqs: Any, server: EmberServer
) -> None:
    url, queue_arn = make_queue(sqs, "held-success")
    create(lambda_client, "held", SLEEPY, Timeout=30)
    lambda_client.put_function_concurrency(FunctionName="held", ReservedConcurrentExecutions=1)
    lambda_client.put_function_event_invoke_config(
        FunctionName="held", DestinationConfig={"OnSuccess": {"Destination": queue_arn}}
    )
    with ThreadPoolExecutor(1) as pool:
        sync = pool.submit(
            lambda_client.invoke, FunctionName="held", Payload=json.dumps({"seconds": 2})
        )
        while statistics(server)["counting"]["by_function"].get("held") != 1:
            pass  # the synchronous invocation holds the only lease
        request_id = invoke_event(lambda_client, "held", {"seconds": 0})
        (record,) = records(sqs, url, 1)
        answer = sync.result()
        assert answer["StatusCode"] == 200
        assert b"pid" in answer["Payload"].read()  # read: the connection goes back to the pool
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["approximateInvokeCount"] == 1  # 429s are not invokes
    assert statistics(server)["async"]["counts"]["throttled"] >= 1


def test_an_event_for_an_alias_runs_its_version_with_the_alias_config(
    lambda_client: Any, sqs: Any
) -> None:
    url, queue_arn = make_queue(sqs, "alias-success")
    create(lambda_client, "echo-alias", ECHO_ID.replace('"event": event', '"event": "v1"'))
    version = lambda_client.publish_version(FunctionName="echo-alias")["Version"]
    lambda_client.update_function_code(FunctionName="echo-alias", ZipFile=python_zip(ECHO_ID))
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName="echo-alias")
    lambda_client.create_alias(FunctionName="echo-alias", Name="live", FunctionVersion=version)
    lambda_client.put_function_event_invoke_config(
        FunctionName="echo-alias",
        Qualifier="live",
        DestinationConfig={"OnSuccess": {"Destination": queue_arn}},
    )
    request_id = invoke_event(lambda_client, "echo-alias:live", {"n": 1})
    invoke_event(lambda_client, "echo-alias", {"n": 2})  # $LATEST: no config, no record
    (record,) = records(sqs, url, 1)
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["functionArn"] == ARN + "echo-alias:live"
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": version}
    assert record["responsePayload"] == {"request_id": request_id, "event": "v1"}
