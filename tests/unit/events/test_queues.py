"""The queue service on a manual clock: visibility, delay, long polling, redrive, restart."""

from __future__ import annotations

import asyncio
import json

import pytest

from ember.errors import (
    MessageNotInflight,
    PurgeQueueInProgress,
    QueueDeletedRecently,
    QueueDoesNotExist,
    QueueNameExists,
    ReceiptHandleIsInvalid,
    SqsInvalidParameterValue,
    SqsUnsupportedOperation,
)
from ember.events.queues import QueueService
from ember.events.store import EventsStore
from ember.testing import ManualClock
from tests.unit.events.conftest import ACCOUNT, REGION, text, until


async def test_a_received_message_is_hidden_for_its_visibility_timeout(
    queues: QueueService, clock: ManualClock
) -> None:
    await queues.create("q", {"VisibilityTimeout": "30"})
    (sent,) = await queues.send("q", [text("one")])
    (got,) = await queues.receive("q", 10, wait_s=0)
    assert (got.message_id, got.receive_count) == (sent.message_id, 1)
    assert await queues.receive("q", 10, wait_s=0) == []
    assert queues.counts("q") == {"visible": 0, "in_flight": 1, "delayed": 0}
    clock.advance(29.9)
    assert await queues.receive("q", 10, wait_s=0) == []
    clock.advance(0.1)
    (again,) = await queues.receive("q", 10, wait_s=0)
    assert again.receive_count == 2
    assert again.first_received_at == got.first_received_at


async def test_delete_and_the_receipt_handle_rules(queues: QueueService) -> None:
    await queues.create("q", {})
    await queues.create("other", {})
    await queues.send("q", [text("one")])
    (got,) = await queues.receive("q", 1, wait_s=0)
    handle = queues.receipt_handle(got)
    with pytest.raises(ReceiptHandleIsInvalid):
        await queues.delete_message("q", "not-a-handle")
    with pytest.raises(ReceiptHandleIsInvalid):
        await queues.delete_message("other", handle)
    await queues.delete_message("q", handle)
    await queues.delete_message("q", handle)  # deleting twice is not an error (as SQS)
    assert queues.counts("q") == {"visible": 0, "in_flight": 0, "delayed": 0}


async def test_change_visibility(queues: QueueService, clock: ManualClock) -> None:
    await queues.create("q", {"VisibilityTimeout": "30"})
    await queues.send("q", [text("one")])
    (got,) = await queues.receive("q", 1, wait_s=0)
    handle = queues.receipt_handle(got)
    await queues.change_visibility("q", handle, 0)
    (again,) = await queues.receive("q", 1, wait_s=0)
    with pytest.raises(SqsInvalidParameterValue, match="expired"):
        await queues.change_visibility("q", handle, 10)  # the older receipt
    with pytest.raises(SqsInvalidParameterValue):
        await queues.change_visibility("q", queues.receipt_handle(again), 43201)
    clock.advance(30)
    with pytest.raises(MessageNotInflight):
        await queues.change_visibility("q", queues.receipt_handle(again), 10)


async def test_delay_seconds_per_queue_and_per_message(
    queues: QueueService, clock: ManualClock
) -> None:
    await queues.create("q", {"DelaySeconds": "5"})
    await queues.send("q", [text("queue-delay"), text("no-delay", delay=0)])
    assert [m.body for m in await queues.receive("q", 10, wait_s=0)] == ["no-delay"]
    assert queues.counts("q")["delayed"] == 1
    clock.advance(5)
    assert [m.body for m in await queues.receive("q", 10, wait_s=0)] == ["queue-delay"]


async def test_long_poll_wakes_on_send_without_the_clock_moving(queues: QueueService) -> None:
    await queues.create("q", {})
    waiting = asyncio.create_task(queues.receive("q", 10, wait_s=20))
    await until(lambda: queues.statistics()["queues"]["q"]["waiters"] == 1)  # type: ignore[index]
    await queues.send("q", [text("wake")])
    assert [m.body for m in await asyncio.wait_for(waiting, 5)] == ["wake"]


async def test_long_poll_ends_at_its_wait_time_or_when_a_delay_ends(
    queues: QueueService, clock: ManualClock
) -> None:
    await queues.create("q", {})
    empty = asyncio.create_task(queues.receive("q", 10, wait_s=20))
    await until(lambda: queues.statistics()["queues"]["q"]["waiters"] == 1)  # type: ignore[index]
    clock.advance(20)
    assert await asyncio.wait_for(empty, 5) == []
    await queues.send("q", [text("later", delay=3)])
    delayed = asyncio.create_task(queues.receive("q", 10, wait_s=20))
    await until(lambda: queues.statistics()["queues"]["q"]["waiters"] == 1)  # type: ignore[index]
    clock.advance(3)
    assert [m.body for m in await asyncio.wait_for(delayed, 5)] == ["later"]


async def test_redrive_moves_a_message_after_max_receive_count(
    queues: QueueService, clock: ManualClock
) -> None:
    await queues.create("dlq", {})
    policy = json.dumps({"deadLetterTargetArn": queues.arn("dlq"), "maxReceiveCount": 2})
    await queues.create("q", {"VisibilityTimeout": "10", "RedrivePolicy": policy})
    (sent,) = await queues.send("q", [text("poison")])
    for _ in range(2):
        assert len(await queues.receive("q", 1, wait_s=0)) == 1
        clock.advance(10)
    assert await queues.receive("q", 1, wait_s=0) == []
    (dead,) = await queues.receive("dlq", 1, wait_s=0)
    assert (dead.message_id, dead.body, dead.receive_count) == (sent.message_id, "poison", 1)
    assert queues.statistics()["dead_lettered"] == 1


async def test_redrive_needs_an_existing_dead_letter_queue(queues: QueueService) -> None:
    policy = json.dumps({"deadLetterTargetArn": queues.arn("missing"), "maxReceiveCount": 2})
    with pytest.raises(SqsInvalidParameterValue, match="Dead letter target does not exist"):
        await queues.create("q", {"RedrivePolicy": policy})


async def test_retention_drops_old_messages(queues: QueueService, clock: ManualClock) -> None:
    await queues.create("q", {"MessageRetentionPeriod": "60"})
    await queues.send("q", [text("old")])
    clock.advance(60)
    assert await queues.receive("q", 1, wait_s=0) == []
    assert queues.counts("q")["visible"] == 0


async def test_queue_lifecycle_errors(queues: QueueService, clock: ManualClock) -> None:
    await queues.create("q", {"VisibilityTimeout": "10"})
    assert (await queues.create("q", {"VisibilityTimeout": "10"})).name == "q"
    with pytest.raises(QueueNameExists):
        await queues.create("q", {"VisibilityTimeout": "11"})
    with pytest.raises(SqsUnsupportedOperation, match="FIFO"):
        await queues.create("q.fifo", {})
    with pytest.raises(SqsInvalidParameterValue):
        await queues.create("bad name", {})
    await queues.purge("q")
    with pytest.raises(PurgeQueueInProgress):
        await queues.purge("q")
    await queues.delete("q")
    with pytest.raises(QueueDoesNotExist):
        await queues.send("q", [text("x")])
    with pytest.raises(QueueDeletedRecently):
        await queues.create("q", {})
    clock.advance(60)
    await queues.create("q", {})


async def test_messages_and_visibility_survive_a_reopen(
    queues: QueueService, store: EventsStore, clock: ManualClock
) -> None:
    await queues.create("q", {"VisibilityTimeout": "30"})
    await queues.send("q", [text("kept"), text("in-flight")])
    (received,) = await queues.receive("q", 1, wait_s=0)
    reopened = QueueService(store, clock, REGION, ACCOUNT)
    await reopened.load()
    assert reopened.counts("q") == {"visible": 1, "in_flight": 1, "delayed": 0}
    (visible,) = await reopened.receive("q", 10, visibility_s=100, wait_s=0)
    assert visible.message_id != received.message_id
    clock.advance(30)
    (back,) = await reopened.receive("q", 10, wait_s=0)
    assert (back.message_id, back.receive_count) == (received.message_id, 2)


async def test_drain_ends_long_polls_at_once(queues: QueueService) -> None:
    await queues.create("q", {})
    poll = asyncio.create_task(queues.receive("q", 10, wait_s=20))
    await asyncio.sleep(0)  # let the poll start waiting (the manual clock never moves)
    assert not poll.done()
    queues.drain()  # SIGTERM: the server is stopping
    assert await poll == []
