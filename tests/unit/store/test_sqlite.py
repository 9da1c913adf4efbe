"""The SQLite store: compare-and-set, persistence across reopen, log reads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ember.model.functions import CodeInfo, FunctionConfig, FunctionRecord, State
from ember.store.base import LogEvent
from ember.store.sqlite import SqliteStore


def record(name: str = "fn", revision: str = "r1") -> FunctionRecord:
    return FunctionRecord(
        name=name,
        config=FunctionConfig(runtime="python3.11", handler="a.b", role="role"),
        code=CodeInfo("ab" * 32, "b64", 10),
        revision_id=revision,
        last_modified=1.0,
    )


async def test_create_get_replace_delete(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db")
    assert await store.create_function(record())
    assert not await store.create_function(record())
    active = replace(record(), revision_id="r2", state=State.ACTIVE)
    assert not await store.replace_function(active, expected_revision="stale")
    assert await store.replace_function(active, expected_revision="r1")
    assert await store.get_function("fn") == active
    assert await store.delete_function("fn")
    assert await store.get_function("fn") is None
    await store.close()


async def test_functions_survive_reopen(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db")
    for name in ("b", "a"):
        await store.create_function(record(name))
    await store.close()
    reopened = await SqliteStore.open(tmp_path / "db")
    assert [r.name for r in await reopened.list_functions()] == ["a", "b"]
    await reopened.close()


async def test_logs_by_group_stream_and_sequence(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db")
    await store.append_logs(
        [
            LogEvent("g", "s1", 1, "one\n"),
            LogEvent("g", "s2", 2, "two\n"),
            LogEvent("other", "s1", 3, "x\n"),
        ]
    )
    events = await store.read_logs("g")
    assert [e.message for e in events] == ["one\n", "two\n"]
    assert [e.message for e in await store.read_logs("g", stream="s2")] == ["two\n"]
    assert await store.read_logs("g", after_seq=events[-1].seq) == []
    await store.close()
