"""Event source mappings end to end: the API, exactly-once delivery, partial failures,
poison messages to the dead-letter queue, and kill -9 in the middle of a stream."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import EmberServer, start_server
from tests.integration.esm_support import (
    deploy,
    function_log,
    make_queue,
    marked,
    queue_empty,
    send_bodies,
    wait_for,
)
from tests.integration.functions import python_zip

RECORDER = """
def handler(event, context):
    for record in event["Records"]:
        print("PROCESSED", record["body"], flush=True)
"""

PARTIAL = """
def handler(event, context):
    failures = []
    for record in event["Records"]:
        print("SEEN", record["body"], flush=True)
        if record["body"].startswith("bad"):
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
"""

POISON = """
def handler(event, context):
    for record in event["Records"]:
        print("SEEN", record["body"], record["attributes"]["ApproximateReceiveCount"], flush=True)
        if record["body"] == "poison":
            raise ValueError("cannot digest this one")
"""

SLOW_RECORDER = """
import time

def handler(event, context):
    for record in event["Records"]:
        print("PROCESSED", record["body"], flush=True)
    time.sleep(0.2)  # the log lines are stored well before the batch is deleted
"""


@pytest.fixture(scope="module")
def sqs(server: EmberServer) -> Any:
    return server.client("sqs")


def state_of(lambda_client: Any, uuid: str) -> str:
    state: str = lambda_client.get_event_source_mapping(UUID=uuid)["State"]
    return state


def test_mapping_api_and_state_transitions(server: EmberServer, sqs: Any) -> None:
    lam = server.client()
    url, arn = make_queue(sqs, "api-source")
    deploy(lam, "api-target", RECORDER)
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="api-target")
    uuid = created["UUID"]
    assert (created["State"], created["BatchSize"], created["StateTransitionReason"]) == (
        "Creating",
        10,
        "USER_INITIATED",
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    wait_for(lambda: state_of(lam, uuid) == "Enabled", 10, "Enabled")
    listed = lam.list_event_source_mappings(FunctionName="api-target")["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uuid]
    assert lam.list_event_source_mappings(EventSourceArn=arn + "x")["EventSourceMappings"] == []
    updated = lam.update_event_source_mapping(
        UUID=uuid,
        BatchSize=100,
        MaximumBatchingWindowInSeconds=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        ScalingConfig={"MaximumConcurrency": 2},
    )
    assert (updated["State"], updated["BatchSize"]) == ("Updating", 100)
    assert updated["ScalingConfig"] == {"MaximumConcurrency": 2}
    wait_for(lambda: state_of(lam, uuid) == "Enabled", 10, "Enabled after update")
    assert lam.update_event_source_mapping(UUID=uuid, Enabled=False)["State"] == "Disabling"
    wait_for(lambda: state_of(lam, uuid) == "Disabled", 10, "Disabled")
    sqs.send_message(QueueUrl=url, MessageBody="while disabled")
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == "1"  # no poller takes it
    assert lam.update_event_source_mapping(UUID=uuid, Enabled=True)["State"] == "Enabling"
    wait_for(lambda: state_of(lam, uuid) == "Enabled", 10, "Enabled again")
    wait_for(queue_empty(sqs, url), 30, "the message sent while disabled")
    assert lam.delete_event_source_mapping(UUID=uuid)["State"] == "Deleting"
    wait_for(lambda: not lam.list_event_source_mappings()["EventSourceMappings"], 10, "gone")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_event_source_mapping(UUID=uuid)


def test_mapping_errors(server: EmberServer, sqs: Any) -> None:
    lam = server.client()
    _, arn = make_queue(sqs, "errors-source")
    deploy(lam, "errors-target", RECORDER)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"FunctionName": "nowhere"}, "ResourceNotFoundException"),
        (
            {"EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:missing"},
            "InvalidParameterValueException",
        ),
        ({"BatchSize": 11}, "InvalidParameterValueException"),
        ({"BatchSize": 10001, "MaximumBatchingWindowInSeconds": 1}, "ValidationException"),
        ({"ScalingConfig": {"MaximumConcurrency": 1001}}, "ValidationException"),
    ]
    for change, code in cases:
        params = {"EventSourceArn": arn, "FunctionName": "errors-target", **change}
        with pytest.raises(ClientError) as caught:
            lam.create_event_source_mapping(**params)
        assert caught.value.response["Error"]["Code"] == code, change
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="errors-target")
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="errors-target")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.update_event_source_mapping(UUID="00000000-0000-0000-0000-000000000000", BatchSize=5)


def test_a_thousand_messages_are_processed_exactly_once(server: EmberServer, sqs: Any) -> None:
    lam = server.client()
    url, arn = make_queue(sqs, "thousand", VisibilityTimeout="120")
    bodies = [f"message-{i:04d}" for i in range(1000)]
    send_bodies(sqs, url, bodies)
    deploy(lam, "thousand-target", RECORDER)
    lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName="thousand-target",
        BatchSize=10,
        ScalingConfig={"MaximumConcurrency": 4},
    )
    wait_for(queue_empty(sqs, url), 90, "the queue to drain")
    processed = Counter(marked(function_log(server, "thousand-target"), "PROCESSED"))
    assert set(processed) == set(bodies)
    assert set(processed.values()) == {1}


def test_partial_batch_failures_keep_only_the_reported_messages(
    server: EmberServer, sqs: Any
) -> None:
    lam = server.client()
    dlq_url, dlq_arn = make_queue(sqs, "partial-dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    url, arn = make_queue(sqs, "partial", VisibilityTimeout="1", RedrivePolicy=policy)
    good = [f"good-{i}" for i in range(20)]
    bad = [f"bad-{i}" for i in range(5)]
    send_bodies(sqs, url, good + bad)
    deploy(lam, "partial-target", PARTIAL)
    lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName="partial-target",
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    wait_for(queue_empty(sqs, url), 60, "the source queue to drain")
    seen = Counter(marked(function_log(server, "partial-target"), "SEEN"))
    assert {b: seen[b] for b in good} == dict.fromkeys(good, 1)
    assert {b: seen[b] for b in bad} == dict.fromkeys(bad, 2)
    dead: list[str] = []
    while len(dead) < len(bad):
        got = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=5)
        dead.extend(m["Body"] for m in got.get("Messages", []))
        assert got.get("Messages"), "dead-letter queue is short"
    assert sorted(dead) == sorted(bad)


def test_a_poison_message_ends_in_the_dead_letter_queue(server: EmberServer, sqs: Any) -> None:
    lam = server.client()
    dlq_url, dlq_arn = make_queue(sqs, "poison-dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
    url, arn = make_queue(sqs, "poisoned", VisibilityTimeout="1", RedrivePolicy=policy)
    send_bodies(sqs, url, ["poison", *(f"fine-{i}" for i in range(9))])
    deploy(lam, "poison-target", POISON)
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="poison-target", BatchSize=1)
    dead = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=20)["Messages"]
    assert [m["Body"] for m in dead] == ["poison"]
    wait_for(queue_empty(sqs, url), 30, "the source queue to drain")
    seen = marked(function_log(server, "poison-target"), "SEEN")
    assert sorted(s for s in seen if s.startswith("poison")) == ["poison 1", "poison 2", "poison 3"]
    assert sorted(s for s in seen if s.startswith("fine")) == [f"fine-{i} 1" for i in range(9)]


def test_kill_9_mid_stream_loses_no_message(tmp_path: Path) -> None:
    bodies = [f"stream-{i:03d}" for i in range(300)]
    first = start_server(tmp_path)
    try:
        sqs, lam = first.client("sqs"), first.client()
        url, arn = make_queue(sqs, "stream", VisibilityTimeout="5")
        send_bodies(sqs, url, bodies)
        deploy(lam, "stream-target", SLOW_RECORDER)
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="stream-target")
        wait_for(
            lambda: len(marked(function_log(first, "stream-target"), "PROCESSED")) >= 60,
            60,
            "the stream to be under way",
        )
    finally:
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    second = start_server(tmp_path)
    try:
        sqs, lam = second.client("sqs"), second.client()
        (mapping,) = lam.list_event_source_mappings()["EventSourceMappings"]
        assert mapping["State"] in {"Enabled", "Creating", "Updating"}
        wait_for(queue_empty(sqs, url), 90, "the stream to finish after the restart")
        processed = Counter(marked(function_log(second, "stream-target"), "PROCESSED"))
        assert set(bodies) - set(processed) == set(), "messages lost"
        assert sum(processed.values()) - len(bodies) <= 60  # redelivered in-flight batches only
    finally:
        second.stop()


def test_a_mapping_to_an_alias_runs_the_alias_version(server: EmberServer, sqs: Any) -> None:
    lam = server.client()
    url, arn = make_queue(sqs, "alias-source")
    deploy(lam, "alias-target", RECORDER.replace("PROCESSED", "OLD-CODE"))
    lam.get_waiter("function_active_v2").wait(FunctionName="alias-target")
    version = lam.publish_version(FunctionName="alias-target")["Version"]
    lam.update_function_code(
        FunctionName="alias-target",
        ZipFile=python_zip(RECORDER.replace("PROCESSED", "NEW-CODE")),
    )
    lam.create_alias(FunctionName="alias-target", Name="live", FunctionVersion=version)
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="alias-target:live")
    assert created["FunctionArn"].endswith(":function:alias-target:live")
    # the same queue may feed another qualifier of the function, not the same one twice
    with pytest.raises(ClientError) as twice:
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="alias-target:live")
    assert twice.value.response["Error"]["Code"] == "ResourceConflictException"
    send_bodies(sqs, url, ["via-alias"])
    wait_for(queue_empty(sqs, url), 30, "the queue to drain")
    log = function_log(server, "alias-target")
    assert any("OLD-CODE via-alias" in line for line in log)
    assert not any("NEW-CODE" in line for line in log)
    assert any(line.startswith("START") and f"Version: {version}" in line for line in log)
