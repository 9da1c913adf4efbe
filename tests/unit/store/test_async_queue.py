"""The durable async queue: group commit, atomic batches, and what a reopen reads back."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from ember.model.async_events import AsyncEvent, EventInvokeConfig, LastResponse
from ember.store.async_queue import (
    AsyncQueueStore,
    delete_config,
    delete_event,
    insert_event,
    put_config,
    update_event,
)


def event(n: int) -> AsyncEvent:
    return AsyncEvent(f"id-{n}", "fn", None, b'{"n": %d}' % n, 100.0 + n, 100.0 + n)


async def test_concurrent_writes_share_commits_and_survive_a_reopen(tmp_path: Path) -> None:
    store = await AsyncQueueStore.open(tmp_path / "async.db")
    await asyncio.gather(*(store.write([insert_event(event(n))]) for n in range(200)))
    assert store.commits < 200  # callers waiting at once were committed together
    await store.close()
    reopened = await AsyncQueueStore.open(tmp_path / "async.db")
    loaded = await reopened.load_events()
    assert [e.request_id for e in loaded] == [f"id-{n}" for n in range(200)]  # in order
    assert loaded[7] == event(7)
    await reopened.close()


async def test_the_database_is_in_wal_mode(tmp_path: Path) -> None:
    store = await AsyncQueueStore.open(tmp_path / "async.db")
    await store.write([insert_event(event(1))])
    await store.close()
    with sqlite3.connect(tmp_path / "async.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_updates_keep_the_last_response_and_deletes_remove(tmp_path: Path) -> None:
    store = await AsyncQueueStore.open(tmp_path / "async.db")
    first, second = event(1), event(2)
    await store.write([insert_event(first), insert_event(second)])
    first.attempts_failed, first.invoke_count, first.due_at = 1, 1, 160.0
    first.last_response = LastResponse(200, "$LATEST", "Unhandled", b"\xff\x00 raw")
    await store.write([update_event(first), delete_event("id-2")])
    assert await store.load_events() == [first]
    await store.close()


async def test_a_failing_batch_changes_nothing_and_fails_its_callers(tmp_path: Path) -> None:
    store = await AsyncQueueStore.open(tmp_path / "async.db")
    broken = ("INSERT INTO nowhere VALUES (1)", ())
    with pytest.raises(sqlite3.OperationalError):
        await store.write([insert_event(event(1)), broken])
    assert await store.load_events() == []
    await store.write([insert_event(event(2))])  # the writer goes on
    assert len(await store.load_events()) == 1
    await store.close()


async def test_configs_round_trip(tmp_path: Path) -> None:
    store = await AsyncQueueStore.open(tmp_path / "async.db")
    config = EventInvokeConfig("fn", "$LATEST", 5.0, 1, 3600, None, "arn:aws:sqs:r:1:q")
    other = EventInvokeConfig("fn", "live", 6.0, max_retry_attempts=0)
    await store.write([put_config(config), put_config(other)])
    assert sorted(await store.load_configs(), key=lambda c: c.qualifier) == [config, other]
    await store.write([delete_config("fn")])
    assert await store.load_configs() == []
    await store.close()


async def test_close_commits_the_writes_already_waiting(tmp_path: Path) -> None:
    store = await AsyncQueueStore.open(tmp_path / "async.db")
    writes = [asyncio.ensure_future(store.write([insert_event(event(n))])) for n in range(5)]
    await asyncio.sleep(0)  # one turn of the loop: the five join the queue
    await store.close()
    await asyncio.gather(*writes)
    reopened = await AsyncQueueStore.open(tmp_path / "async.db")
    assert len(await reopened.load_events()) == 5
    await reopened.close()
