"""The ``aws sqs`` CLI (v1, ``awscli`` in the dev extras: ``make setup``) against Ember."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.conftest import ACCESS_KEY, SECRET_KEY, EmberServer
from tests.integration.functions import ROLE, python_zip

AWS = Path(sys.executable).parent / "aws"


def aws(server: EmberServer, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    return subprocess.run(
        [str(AWS), "--endpoint-url", server.url, "--output", "json", *args],
        env=env,
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


def aws_json(server: EmberServer, *args: str) -> Any:
    return json.loads(aws(server, *args).stdout or "null")


def test_queue_round_trip_with_the_cli(server: EmberServer) -> None:
    url = aws_json(server, "sqs", "create-queue", "--queue-name", "cli-queue")["QueueUrl"]
    assert url.endswith("/000000000000/cli-queue")
    sent = aws_json(
        server,
        "sqs",
        "send-message",
        "--queue-url",
        url,
        "--message-body",
        "from the cli",
        "--message-attributes",
        '{"kind": {"DataType": "String", "StringValue": "cli"}}',
    )
    received = aws_json(
        server,
        "sqs",
        "receive-message",
        "--queue-url",
        url,
        "--message-attribute-names",
        "All",
        "--wait-time-seconds",
        "5",
    )
    (message,) = received["Messages"]
    assert message["Body"] == "from the cli"
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    aws(
        server,
        "sqs",
        "delete-message",
        "--queue-url",
        url,
        "--receipt-handle",
        message["ReceiptHandle"],
    )
    attributes = aws_json(
        server, "sqs", "get-queue-attributes", "--queue-url", url, "--attribute-names", "All"
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert url in aws_json(server, "sqs", "list-queues")["QueueUrls"]


def test_cli_errors_name_the_sqs_code(server: EmberServer) -> None:
    missing = aws(server, "sqs", "get-queue-url", "--queue-name", "nowhere", check=False)
    assert missing.returncode != 0
    assert "AWS.SimpleQueueService.NonExistentQueue" in missing.stderr
    fifo = aws(server, "sqs", "create-queue", "--queue-name", "ordered.fifo", check=False)
    assert fifo.returncode != 0
    assert "FIFO queues are not supported by Ember" in fifo.stderr


def test_event_source_mapping_with_the_cli(server: EmberServer) -> None:
    url = aws_json(server, "sqs", "create-queue", "--queue-name", "cli-source")["QueueUrl"]
    arn = aws_json(
        server, "sqs", "get-queue-attributes", "--queue-url", url, "--attribute-names", "QueueArn"
    )["Attributes"]["QueueArn"]
    server.client().create_function(
        FunctionName="cli-target",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": python_zip("def handler(event, context):\n    return None\n")},
    )
    created = aws_json(
        server,
        "lambda",
        "create-event-source-mapping",
        "--event-source-arn",
        arn,
        "--function-name",
        "cli-target",
        "--batch-size",
        "5",
    )
    assert (created["State"], created["BatchSize"]) == ("Creating", 5)
    listed = aws_json(
        server, "lambda", "list-event-source-mappings", "--function-name", "cli-target"
    )
    assert [m["UUID"] for m in listed["EventSourceMappings"]] == [created["UUID"]]
    deleted = aws_json(server, "lambda", "delete-event-source-mapping", "--uuid", created["UUID"])
    assert deleted["State"] == "Deleting"
