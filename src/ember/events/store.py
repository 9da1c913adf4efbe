"""The events store: queues, messages and event source mappings in their own SQLite file.

``<data-dir>/events.db``, WAL, ``synchronous=NORMAL``, driven through aiosqlite (every
statement on its worker thread, never on the event loop). A call returns after its
transaction committed, so an acknowledged send, receive (visibility, receive count) or
delete survives a kill -9 of the server. Message order is insertion order (rowid), kept
across updates by upserting in place.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from ember.events.messages import Message, MessageAttribute
from ember.events.queue_config import QueueConfig

SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    attributes TEXT NOT NULL,
    system_attributes TEXT NOT NULL,
    sent_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL,
    first_received_at REAL,
    receipt_nonce TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue);
CREATE TABLE IF NOT EXISTS mappings (uuid TEXT PRIMARY KEY, config TEXT NOT NULL);
"""
UPSERT = """
INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (message_id) DO UPDATE SET queue = excluded.queue,
    visible_at = excluded.visible_at, receive_count = excluded.receive_count,
    first_received_at = excluded.first_received_at, receipt_nonce = excluded.receipt_nonce
"""


class EventsStore:
    """Scope: one per server; owns one connection to ``events.db``."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection
        self._commits = 0

    @classmethod
    async def open(cls, path: Path) -> EventsStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path)
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA synchronous=NORMAL")
        await connection.executescript(SCHEMA)
        await connection.commit()
        return cls(connection)

    def statistics(self) -> dict[str, int]:
        return {"commits": self._commits}

    async def close(self) -> None:
        await self._db.close()

    async def _run(self, sql: str, parameters: Any = (), *, many: bool = False) -> None:
        """One statement, its cursor closed on aiosqlite's thread.

        A cursor left to the garbage collector would be reset on the event loop's thread
        while the worker thread reuses the same cached statement (SQLITE_MISUSE).
        """
        if many:
            cursor = await self._db.executemany(sql, parameters)
        else:
            cursor = await self._db.execute(sql, parameters)
        await cursor.close()

    async def _commit(self) -> None:
        await self._db.commit()
        self._commits += 1

    # queues -----------------------------------------------------------------------------

    async def load_queues(self) -> list[QueueConfig]:
        async with self._db.execute("SELECT config FROM queues") as cursor:
            rows = await cursor.fetchall()
        return [QueueConfig(**json.loads(row[0])) for row in rows]

    async def save_queue(self, config: QueueConfig) -> None:
        data = {
            "name": config.name,
            "created_at": config.created_at,
            "modified_at": config.modified_at,
            "attributes": config.attributes,
            "tags": config.tags,
        }
        await self._run(
            "INSERT OR REPLACE INTO queues (name, config) VALUES (?, ?)",
            (config.name, json.dumps(data)),
        )
        await self._commit()

    async def delete_queue(self, name: str) -> None:
        await self._run("DELETE FROM queues WHERE name = ?", (name,))
        await self._run("DELETE FROM messages WHERE queue = ?", (name,))
        await self._commit()

    async def purge_queue(self, name: str) -> None:
        await self._run("DELETE FROM messages WHERE queue = ?", (name,))
        await self._commit()

    # messages ---------------------------------------------------------------------------

    async def load_messages(self) -> list[Message]:
        async with self._db.execute("SELECT * FROM messages ORDER BY rowid") as cursor:
            rows = await cursor.fetchall()
        return [_message(tuple(row)) for row in rows]

    async def save_messages(self, messages: Iterable[Message]) -> None:
        rows = [_row(m) for m in messages]
        if rows:
            await self._run(UPSERT, rows, many=True)
            await self._commit()

    async def delete_messages(self, message_ids: Iterable[str]) -> None:
        ids = [(i,) for i in message_ids]
        if ids:
            await self._run("DELETE FROM messages WHERE message_id = ?", ids, many=True)
            await self._commit()

    # event source mappings --------------------------------------------------------------

    async def load_mappings(self) -> list[dict[str, Any]]:
        async with self._db.execute("SELECT config FROM mappings") as cursor:
            rows = await cursor.fetchall()
        return [json.loads(row[0]) for row in rows]

    async def save_mapping(self, uuid: str, config: dict[str, Any]) -> None:
        await self._run(
            "INSERT OR REPLACE INTO mappings (uuid, config) VALUES (?, ?)",
            (uuid, json.dumps(config)),
        )
        await self._commit()

    async def delete_mapping(self, uuid: str) -> None:
        await self._run("DELETE FROM mappings WHERE uuid = ?", (uuid,))
        await self._commit()


def _row(m: Message) -> tuple[Any, ...]:
    return (
        m.message_id,
        m.queue,
        m.body,
        _dump_attributes(m.attributes),
        _dump_attributes(m.system_attributes),
        m.sent_at,
        m.visible_at,
        m.receive_count,
        m.first_received_at,
        m.receipt_nonce,
    )


def _message(row: tuple[Any, ...]) -> Message:
    return Message(
        message_id=row[0],
        queue=row[1],
        body=row[2],
        attributes=_load_attributes(row[3]),
        system_attributes=_load_attributes(row[4]),
        sent_at=row[5],
        visible_at=row[6],
        receive_count=row[7],
        first_received_at=row[8],
        receipt_nonce=row[9],
    )


def _dump_attributes(attributes: dict[str, MessageAttribute]) -> str:
    return json.dumps(
        {
            name: [a.data_type, base64.b64encode(a.value).decode(), True]
            if isinstance(a.value, bytes)
            else [a.data_type, a.value, False]
            for name, a in attributes.items()
        }
    )


def _load_attributes(text: str) -> dict[str, MessageAttribute]:
    return {
        name: MessageAttribute(kind, base64.b64decode(value) if binary else value)
        for name, (kind, value, binary) in json.loads(text).items()
    }
