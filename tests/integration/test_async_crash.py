"""Crash test: 2,000 Event invokes while the server is SIGKILLed at random (seeded) points
and restarted; every accepted request id ends up in a destination queue (success or
failure), none missing. Duplicates are allowed (at-least-once), losses are not."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.async_support import EventSender, make_queue, start_async_server
from tests.integration.conftest import EmberServer
from tests.integration.test_functions_api import create

EVENTS = 2000
KILLS = 3
SENDERS = 8
SEED = 6

MOSTLY_WORKS = """
def handler(event, context):
    if event["n"] % 10 == 0:
        raise RuntimeError("every tenth event fails")
    return event["n"]
"""


class Sender:
    """Sends Event invokes from a few threads; remembers the ids that got their 202."""

    def __init__(self) -> None:
        self.accepted: set[str] = set()
        self.next_n = 0
        self.changed = threading.Condition()

    def take(self) -> int | None:
        with self.changed:
            if self.next_n >= EVENTS:
                return None
            self.next_n += 1
            return self.next_n - 1

    def run(self, server: EmberServer) -> None:
        sender = EventSender(server, "crashy")
        try:
            while (n := self.take()) is not None:
                request_id = sender.send(json.dumps({"n": n}).encode())
                if request_id is None:
                    return  # the server was killed: this event may or may not be stored
                with self.changed:
                    self.accepted.add(request_id)
                    self.changed.notify_all()
        finally:
            sender.close()

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.accepted) >= count, timeout=120)


def send(server: EmberServer, sender: Sender, kill_at: int | None) -> None:
    """Send until the events run out, or SIGKILL the server once ``kill_at`` are accepted."""
    with ThreadPoolExecutor(SENDERS) as pool:
        runs = [pool.submit(sender.run, server) for _ in range(SENDERS)]
        if kill_at is not None:
            sender.wait_for(kill_at)
            assert server.stop(signal.SIGKILL) == -signal.SIGKILL  # senders mid-request
        for run in runs:
            run.result()


def collect(server: EmberServer, urls: list[str], expected: set[str]) -> dict[str, int]:
    """Read both destination queues until every expected id was seen: id => times."""
    sqs = server.client("sqs")
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while not expected <= seen.keys():
        missing = expected - seen.keys()
        assert time.monotonic() < deadline, f"{len(missing)} accepted events lost"
        arrived = 0
        for url in urls:
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600
            ).get("Messages", [])
            arrived += len(messages)
            for message in messages:
                request_id = json.loads(message["Body"])["requestContext"]["requestId"]
                seen[request_id] = seen.get(request_id, 0) + 1
        if not arrived:  # both empty for now: wait (long poll) for the dispatcher
            sqs.receive_message(QueueUrl=urls[0], WaitTimeSeconds=1, VisibilityTimeout=0)
    return seen


@pytest.mark.slow
def test_no_accepted_event_is_lost_across_kill_9s(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    kill_points = sorted(rng.sample(range(200, EVENTS - 200), KILLS))
    env = {"EMBER_ASYNC_FUNCTION_IN_FLIGHT": "4", "EMBER_ASYNC_RETRY_DELAYS": "0.2"}
    server = start_async_server(tmp_path, **env)
    sender = Sender()
    try:
        client, sqs = server.client(), server.client("sqs")
        success_url, success_arn = make_queue(sqs, "crash-successes")
        failure_url, failure_arn = make_queue(sqs, "crash-failures")
        create(client, "crashy", MOSTLY_WORKS)
        client.put_function_event_invoke_config(
            FunctionName="crashy",
            MaximumRetryAttempts=1,
            DestinationConfig={
                "OnSuccess": {"Destination": success_arn},
                "OnFailure": {"Destination": failure_arn},
            },
        )
        for point in kill_points:
            send(server, sender, kill_at=point)
            server = start_async_server(tmp_path, **env)
        send(server, sender, kill_at=None)
        assert len(sender.accepted) >= EVENTS - SENDERS * KILLS  # a few died in flight
        seen = collect(server, [success_url, failure_url], sender.accepted)
        assert sender.accepted <= seen.keys()  # duplicates allowed, losses not
        duplicates = sum(times - 1 for times in seen.values())
        print(f"accepted {len(sender.accepted)}, delivered twice or more: {duplicates}")
    finally:
        server.stop()
