"""Queue durability: kill -9 of the server loses no sent message, and an in-flight message
reappears after its visibility timeout across the restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.integration.conftest import start_server

VISIBILITY_S = 8


def test_kill_9_loses_nothing_and_visibility_holds_across_restart(tmp_path: Path) -> None:
    first = start_server(tmp_path)
    try:
        sqs = first.client("sqs")
        url = sqs.create_queue(
            QueueName="durable", Attributes={"VisibilityTimeout": str(VISIBILITY_S)}
        )["QueueUrl"]
        for start in range(0, 50, 10):
            entries = [{"Id": f"e{i}", "MessageBody": f"m{i}"} for i in range(start, start + 10)]
            assert len(sqs.send_message_batch(QueueUrl=url, Entries=entries)["Successful"]) == 10
        in_flight = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=5)["Messages"]
        received_at = time.monotonic()
    finally:
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = start_server(tmp_path)
    try:
        sqs = second.client("sqs")
        url = sqs.get_queue_url(QueueName="durable")["QueueUrl"]
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert time.monotonic() - received_at < VISIBILITY_S, "restart too slow for this check"
        assert counts["ApproximateNumberOfMessages"] == str(50 - len(in_flight))
        assert counts["ApproximateNumberOfMessagesNotVisible"] == str(len(in_flight))
        hidden = {m["MessageId"] for m in in_flight}
        seen: dict[str, str] = {}
        while len(seen) < 50:
            got = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=20,
                VisibilityTimeout=300,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            assert got.get("Messages"), "messages lost"
            for message in got["Messages"]:
                count = message["Attributes"]["ApproximateReceiveCount"]
                seen[message["MessageId"]] = count
        assert sorted(m for m, c in seen.items() if c == "2") == sorted(hidden)
        assert time.monotonic() - received_at >= VISIBILITY_S - 1
    finally:
        second.stop()
