"""Log events: split on newlines only, partial lines held, bounded tail and buffer."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from ember.invocation.envlog import TAIL_BYTES, EnvironmentLog
from ember.observe import logs as logs_module
from ember.observe.logs import LogWriter
from ember.store.sqlite import SqliteStore
from ember.testing import ManualClock


async def test_only_newlines_split_events_and_partial_lines_wait(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db")
    writer = LogWriter(store, ManualClock())
    log = EnvironmentLog(writer, "g", "s")
    log.output(b"[ERROR] Boom\rTraceback\r  frame\n")
    log.output(b"a")
    log.output(b"b\nc")
    log.flush_partial()
    await writer.flush()
    assert [e.message for e in await store.read_logs("g")] == [
        "[ERROR] Boom\rTraceback\r  frame\n",
        "ab\n",
        "c\n",
    ]
    await store.close()


async def test_the_tail_keeps_only_the_last_4_kb(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db")
    log = EnvironmentLog(LogWriter(store, ManualClock()), "g", "s")
    log.begin_tail()
    for index in range(2000):
        log.line(f"line {index}\n")
    tail = base64.b64decode(log.end_tail())
    assert len(tail) == TAIL_BYTES
    assert tail.endswith(b"line 1999\n")
    await store.close()


async def test_a_flood_is_dropped_and_counted_not_buffered(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(logs_module, "MAX_BUFFERED", 10)
    store = await SqliteStore.open(tmp_path / "db")
    writer = LogWriter(store, ManualClock())
    for index in range(25):
        writer.emit("g", "s", f"{index}\n")
    assert writer.dropped == 15
    await writer.flush()
    writer.emit("g", "s", "after\n")
    await writer.flush()
    messages = [e.message for e in await store.read_logs("g")]
    assert messages[:10] == [f"{i}\n" for i in range(10)]
    assert messages[10:] == ["EMBER_LOGS_DROPPED 15 log events were dropped\n", "after\n"]
    await store.close()


async def test_events_linger_then_go_in_one_write_and_flush_does_not_wait(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path / "db")
    clock = ManualClock()
    writer = LogWriter(store, clock)
    writer.start()
    for index in range(3):  # one invoke's START, END, REPORT
        writer.emit("g", "s", f"{index}\n")
    for _ in range(5):
        await asyncio.sleep(0)  # let the writer task run: it must not write yet
    assert writer.written == 0
    clock.advance(logs_module.LINGER_S)
    await writer.flush()
    assert writer.written == 3
    writer.emit("g", "s", "urgent\n")
    await writer.flush()  # no clock advance: a flush writes at once
    assert [e.message for e in await store.read_logs("g")] == ["0\n", "1\n", "2\n", "urgent\n"]
    await writer.close()
    await store.close()
