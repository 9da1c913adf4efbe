"""The durable async queue: accepted events and event invoke configs, in ``async.db``.

``<data-dir>/async.db``, SQLite in WAL mode with ``synchronous=FULL``: a commit returns
after its fsync, so a committed event survives a kill -9 and a power cut alike.

Group commit: every write (``write``) joins the batch being gathered; one writer task
applies a whole batch in a single transaction on one dedicated thread (never on the event
loop) and resolves every waiter after that one commit. Concurrent Event invokes therefore
share one fsync, and a caller's statements are applied together (atomically) in the
order given. A failed batch fails all its waiters and changes nothing.

Scope: one per server. Invariants: a ``write`` that returned is on disk; ``close``
commits every write already waiting before it closes the connection.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember.model.async_events import AsyncEvent, EventInvokeConfig, LastResponse

SCHEMA = """
CREATE TABLE IF NOT EXISTS async_events (
    request_id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    qualifier TEXT,
    payload BLOB NOT NULL,
    accepted_at REAL NOT NULL,
    due_at REAL NOT NULL,
    attempts_failed INTEGER NOT NULL,
    invoke_count INTEGER NOT NULL,
    last_response TEXT
);
CREATE TABLE IF NOT EXISTS event_invoke_configs (
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    config TEXT NOT NULL,
    PRIMARY KEY (function, qualifier)
);
"""
INSERT_EVENT = "INSERT OR REPLACE INTO async_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
UPDATE_EVENT = (
    "UPDATE async_events SET due_at = ?, attempts_failed = ?, invoke_count = ?, "
    "last_response = ? WHERE request_id = ?"
)
DELETE_EVENT = "DELETE FROM async_events WHERE request_id = ?"

Statement = tuple[str, tuple[Any, ...]]


@dataclass(slots=True)
class _Pending:
    statements: Sequence[Statement]
    done: asyncio.Future[None]


class AsyncQueueStore:
    """Scope: one per server; owns one connection, used from one thread only."""

    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._db = connection
        self._executor = executor
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.commits = 0
        self.statements = 0

    @classmethod
    async def open(cls, path: Path) -> AsyncQueueStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ember-async-db")
        loop = asyncio.get_running_loop()
        connection = await loop.run_in_executor(executor, _connect, path)
        return cls(connection, executor)

    async def close(self) -> None:
        """Commit what is pending, then close (writes after this are refused)."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=True)

    # writes -----------------------------------------------------------------------------

    async def write(self, statements: Sequence[Statement]) -> None:
        """Apply ``statements`` in order, in the next group commit; return once on disk."""
        if not statements:
            return
        if self._closing:
            raise RuntimeError("the async queue store is closed")
        loop = asyncio.get_running_loop()
        pending = _Pending(statements, loop.create_future())
        self._pending.append(pending)
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_forever())
        await asyncio.shield(pending.done)

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending or not self._closing:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            statements = [s for pending in batch for s in pending.statements]
            try:
                await loop.run_in_executor(self._executor, self._apply, statements)
            except Exception as error:  # noqa: BLE001 - every waiter of the batch learns of it
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(error)
                continue
            self.commits += 1
            self.statements += len(statements)
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_result(None)

    def _apply(self, statements: list[Statement]) -> None:
        try:
            self._db.execute("BEGIN")
            for sql, parameters in statements:
                self._db.execute(sql, parameters)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    # reads (start-up only) ----------------------------------------------------------------

    async def load_events(self) -> list[AsyncEvent]:
        rows = await self._read("SELECT * FROM async_events ORDER BY rowid")
        return [_event(tuple(row)) for row in rows]

    async def load_configs(self) -> list[EventInvokeConfig]:
        rows = await self._read("SELECT config FROM event_invoke_configs")
        return [EventInvokeConfig(**json.loads(row[0])) for row in rows]

    async def _read(self, sql: str) -> list[Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self._db.execute(sql).fetchall())


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(SCHEMA)
    return connection


# statements -------------------------------------------------------------------------------


def insert_event(event: AsyncEvent) -> Statement:
    return (
        INSERT_EVENT,
        (
            event.request_id,
            event.function,
            event.qualifier,
            event.payload,
            event.accepted_at,
            event.due_at,
            event.attempts_failed,
            event.invoke_count,
            _dump_response(event.last_response),
        ),
    )


def update_event(event: AsyncEvent) -> Statement:
    return (
        UPDATE_EVENT,
        (
            event.due_at,
            event.attempts_failed,
            event.invoke_count,
            _dump_response(event.last_response),
            event.request_id,
        ),
    )


def delete_event(request_id: str) -> Statement:
    return (DELETE_EVENT, (request_id,))


def put_config(config: EventInvokeConfig) -> Statement:
    data = {
        "function": config.function,
        "qualifier": config.qualifier,
        "last_modified": config.last_modified,
        "max_retry_attempts": config.max_retry_attempts,
        "max_event_age_s": config.max_event_age_s,
        "on_success": config.on_success,
        "on_failure": config.on_failure,
    }
    return (
        "INSERT OR REPLACE INTO event_invoke_configs VALUES (?, ?, ?)",
        (config.function, config.qualifier, json.dumps(data)),
    )


def delete_config(function: str, qualifier: str | None = None) -> Statement:
    """One config, or (``qualifier`` None) every config of ``function``."""
    if qualifier is None:
        return ("DELETE FROM event_invoke_configs WHERE function = ?", (function,))
    return (
        "DELETE FROM event_invoke_configs WHERE function = ? AND qualifier = ?",
        (function, qualifier),
    )


def _dump_response(response: LastResponse | None) -> str | None:
    if response is None:
        return None
    return json.dumps(
        {
            "status_code": response.status_code,
            "executed_version": response.executed_version,
            "function_error": response.function_error,
            "payload": response.payload.decode("latin-1"),
        }
    )


def _load_response(text: str | None) -> LastResponse | None:
    if text is None:
        return None
    data = json.loads(text)
    return LastResponse(
        data["status_code"],
        data["executed_version"],
        data["function_error"],
        data["payload"].encode("latin-1"),
    )


def _event(row: tuple[Any, ...]) -> AsyncEvent:
    return AsyncEvent(
        request_id=row[0],
        function=row[1],
        qualifier=row[2],
        payload=bytes(row[3]),
        accepted_at=row[4],
        due_at=row[5],
        attempts_failed=row[6],
        invoke_count=row[7],
        last_response=_load_response(row[8]),
    )
