"""The built-in queue service, end to end with boto3's sqs client against ``ember serve``."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import EmberServer


@pytest.fixture(scope="module")
def sqs(server: EmberServer) -> Any:
    return server.client("sqs")


def error_of(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error: dict[str, Any] = caught.value.response["Error"]
    return error


def test_queue_lifecycle(sqs: Any, server: EmberServer) -> None:
    url = sqs.create_queue(QueueName="life", Attributes={"VisibilityTimeout": "45"})["QueueUrl"]
    assert url == f"{server.url}/000000000000/life"
    assert sqs.create_queue(QueueName="life")["QueueUrl"] == url  # idempotent
    assert sqs.get_queue_url(QueueName="life")["QueueUrl"] == url
    assert url in sqs.list_queues(QueueNamePrefix="li")["QueueUrls"]
    assert (
        "QueueUrls" not in sqs.list_queues(QueueNamePrefix="zzz")
        or not sqs.list_queues(QueueNamePrefix="zzz")["QueueUrls"]
    )
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["QueueArn"] == "arn:aws:sqs:us-east-1:000000000000:life"
    assert attributes["VisibilityTimeout"] == "45"
    assert attributes["MessageRetentionPeriod"] == "345600"
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "2"})
    picked = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds"])
    assert picked["Attributes"] == {"DelaySeconds": "2"}
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName="life")
    with pytest.raises(sqs.exceptions.QueueDeletedRecently):
        sqs.create_queue(QueueName="life")


def test_tags_and_dead_letter_sources(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="tagged", tags={"team": "ember"})["QueueUrl"]
    sqs.tag_queue(QueueUrl=url, Tags={"stage": "test"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"stage": "test"}
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    policy = json.dumps({"deadLetterTargetArn": arn["QueueArn"], "maxReceiveCount": 5})
    source = sqs.create_queue(QueueName="feeds-tagged", Attributes={"RedrivePolicy": policy})
    assert sqs.list_dead_letter_source_queues(QueueUrl=url)["queueUrls"] == [source["QueueUrl"]]


def test_send_receive_delete_with_attributes(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="messages")["QueueUrl"]
    attributes = {
        "colour": {"DataType": "String", "StringValue": "blue"},
        "size": {"DataType": "Number", "StringValue": "42"},
        "raw": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
    }
    sent = sqs.send_message(QueueUrl=url, MessageBody="héllo", MessageAttributes=attributes)
    assert sent["MD5OfMessageBody"] == hashlib.md5("héllo".encode()).hexdigest()
    received = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
        WaitTimeSeconds=1,
    )
    (message,) = received["Messages"]
    assert message["MessageId"] == sent["MessageId"]
    assert message["Body"] == "héllo"
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["MessageAttributes"]["raw"]["BinaryValue"] == b"\x00\xff"
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert abs(int(message["Attributes"]["SentTimestamp"]) / 1000 - time.time()) < 60
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == "0"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_batches_and_visibility(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="batches")["QueueUrl"]
    entries = [{"Id": f"e{i}", "MessageBody": f"body {i}"} for i in range(10)]
    sent = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert len(sent["Successful"]) == 10
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=9, VisibilityTimeout=0)
    assert len(got["Messages"]) >= 1
    handles = [
        {"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got["Messages"])
    ]
    handles.append({"Id": "bad", "ReceiptHandle": "garbage"})
    deleted = sqs.delete_message_batch(QueueUrl=url, Entries=handles)
    assert len(deleted["Successful"]) == len(got["Messages"])
    assert [f["Id"] for f in deleted["Failed"]] == ["bad"]
    assert deleted["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
    left = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)
    message = left["Messages"][0]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    assert message["MessageId"] in [m["MessageId"] for m in again["Messages"]]


def test_long_polling_returns_as_soon_as_a_message_arrives(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="long-poll")["QueueUrl"]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(sqs.receive_message, QueueUrl=url, WaitTimeSeconds=20)
        sqs.send_message(QueueUrl=url, MessageBody="wake up")
        messages = waiting.result(timeout=30)["Messages"]
    assert [m["Body"] for m in messages] == ["wake up"]
    assert time.monotonic() - started < 15


def test_redrive_policy_sends_a_poison_message_to_the_dead_letter_queue(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName="dead")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    url = sqs.create_queue(QueueName="source", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    for _ in range(2):
        got = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0, WaitTimeSeconds=5)
        assert got["Messages"][0]["Body"] == "poison"
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    dead = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=5)
    assert dead["Messages"][0]["Body"] == "poison"


@pytest.mark.parametrize(
    ("operation", "kwargs", "code"),
    [
        ("get_queue_url", {"QueueName": "missing"}, "AWS.SimpleQueueService.NonExistentQueue"),
        (
            "create_queue",
            {"QueueName": "ordered.fifo"},
            "AWS.SimpleQueueService.UnsupportedOperation",
        ),
        ("create_queue", {"QueueName": "bad name!"}, "InvalidParameterValue"),
        ("create_queue", {"QueueName": "x", "Attributes": {"Nope": "1"}}, "InvalidAttributeName"),
        (
            "create_queue",
            {"QueueName": "x", "Attributes": {"VisibilityTimeout": "99999"}},
            "InvalidAttributeValue",
        ),
    ],
)
def test_queue_errors(sqs: Any, operation: str, kwargs: dict[str, Any], code: str) -> None:
    error = error_of(getattr(sqs, operation), **kwargs)
    assert error["Code"] == code
    assert error["Message"]


def test_message_limits_and_bad_input(sqs: Any, server: EmberServer) -> None:
    url = sqs.create_queue(QueueName="limits")["QueueUrl"]
    too_long = error_of(sqs.send_message, QueueUrl=url, MessageBody="x" * 262145)
    assert too_long["Code"] == "InvalidParameterValue"
    assert "262144 bytes" in too_long["Message"]
    sqs.send_message(QueueUrl=url, MessageBody="x" * 262144)  # exactly the limit is fine
    eleven = [{"Id": f"e{i}", "MessageBody": "b"} for i in range(11)]
    checks: list[tuple[Any, dict[str, Any], str]] = [
        (
            sqs.send_message_batch,
            {"Entries": eleven},
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        ),
        (sqs.send_message_batch, {"Entries": []}, "AWS.SimpleQueueService.EmptyBatchRequest"),
        (
            sqs.send_message_batch,
            {"Entries": [{"Id": "a", "MessageBody": "1"}, {"Id": "a", "MessageBody": "2"}]},
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        ),
        (
            sqs.send_message_batch,
            {"Entries": [{"Id": "a b", "MessageBody": "1"}]},
            "AWS.SimpleQueueService.InvalidBatchEntryId",
        ),
        (
            sqs.send_message_batch,
            {"Entries": [{"Id": f"e{i}", "MessageBody": "x" * 30000} for i in range(10)]},
            "AWS.SimpleQueueService.BatchRequestTooLong",
        ),
        (sqs.delete_message, {"ReceiptHandle": "not-a-handle"}, "ReceiptHandleIsInvalid"),
        (sqs.receive_message, {"MaxNumberOfMessages": 11}, "InvalidParameterValue"),
        (sqs.send_message, {"MessageBody": "bell \x07"}, "InvalidMessageContents"),
    ]
    for call, kwargs, code in checks:
        assert error_of(call, QueueUrl=url, **kwargs)["Code"] == code, code
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=f"{server.url}/000000000000/nowhere", MessageBody="x")


def test_a_bad_signature_is_refused_in_sqs_shape(server: EmberServer) -> None:
    intruder = boto3.client(
        "sqs",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="AKIAEMBERTESTADMIN01",
        aws_secret_access_key="wrong-secret",
    )
    error = error_of(intruder.list_queues)
    assert error["Code"] == "InvalidSignatureException"


def test_wrongly_typed_input_is_a_client_error_not_a_500(server: EmberServer) -> None:
    loose = server.client("sqs", parameter_validation=False)
    url = loose.create_queue(QueueName="loose")["QueueUrl"]
    calls: list[tuple[Any, dict[str, Any]]] = [
        (loose.receive_message, {"QueueUrl": url, "AttributeNames": [5]}),
        (loose.receive_message, {"QueueUrl": url, "MessageAttributeNames": [None]}),
        (loose.get_queue_attributes, {"QueueUrl": url, "AttributeNames": [5]}),
        (loose.send_message, {"QueueUrl": url, "MessageBody": "x", "DelaySeconds": "soon"}),
        (loose.create_queue, {"QueueName": "loose", "Attributes": {"DelaySeconds": 5}}),
    ]
    for call, kwargs in calls:
        with pytest.raises(ClientError) as caught:
            call(**kwargs)
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, kwargs
