"""The embedded store: one SQLite database in WAL mode, driven through aiosqlite.

aiosqlite runs every statement on its own worker thread, so nothing here blocks the
event loop. Every cursor is closed explicitly (``async with``), on that thread: a cursor
left to the garbage collector is reset on the loop thread, racing the worker that may be
reusing the same cached statement (SQLITE_MISUSE under load). Statements of concurrent
coroutines share the one connection, so a write that spans several statements (publish,
delete a function with its versions and aliases) holds ``_writing``, and so does every
other commit: no one commits another's half-done transaction. WAL with
``synchronous=NORMAL`` survives a kill of the server process (a committed transaction is
in the WAL before ``commit`` returns).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from ember.model.functions import AliasRecord, FunctionRecord
from ember.model.provisioned import ProvisionedConfig
from ember.store.base import LogEvent
from ember.store.codec import dump_alias, dump_record, load_alias, load_record

SCHEMA = """
CREATE TABLE IF NOT EXISTS functions (
    name TEXT PRIMARY KEY,
    revision TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    log_group TEXT NOT NULL,
    log_stream TEXT NOT NULL,
    ts INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_events_by_group ON log_events (log_group, seq);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    function_name TEXT NOT NULL,
    name TEXT NOT NULL,
    revision TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (function_name, name)
);
"""
PROVISIONED_SCHEMA = """
CREATE TABLE IF NOT EXISTS provisioned_concurrency (
    function_name TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    requested INTEGER NOT NULL,
    last_modified REAL NOT NULL,
    PRIMARY KEY (function_name, qualifier)
);
"""


class SqliteStore:
    """Scope: one per server process; owns one connection.

    Invariants: ``functions.revision`` always equals the stored record's ``revision_id``
    (``aliases.revision`` likewise); a version or alias row exists only while its
    function's row does.
    """

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection
        self._writing = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path)
        for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"):
            async with connection.execute(pragma):
                pass
        await connection.executescript(SCHEMA)
        await connection.executescript(PROVISIONED_SCHEMA)
        await connection.commit()
        return cls(connection)

    async def create_function(self, record: FunctionRecord) -> bool:
        return await self._write(
            "INSERT OR IGNORE INTO functions (name, revision, record) VALUES (?, ?, ?)",
            (record.name, record.revision_id, dump_record(record)),
        )

    async def replace_function(self, record: FunctionRecord, expected_revision: str) -> bool:
        return await self._write(
            "UPDATE functions SET revision = ?, record = ? WHERE name = ? AND revision = ?",
            (record.revision_id, dump_record(record), record.name, expected_revision),
        )

    async def get_function(self, name: str) -> FunctionRecord | None:
        async with self._db.execute(
            "SELECT record FROM functions WHERE name = ?", (name,)
        ) as cursor:
            row = await cursor.fetchone()
        return load_record(row[0]) if row else None

    async def list_functions(self) -> list[FunctionRecord]:
        async with self._db.execute("SELECT record FROM functions ORDER BY name") as cursor:
            rows = await cursor.fetchall()
        return [load_record(row[0]) for row in rows]

    async def delete_function(self, name: str) -> bool:
        async with self._writing:
            for statement in (
                "DELETE FROM versions WHERE name = ?",
                "DELETE FROM aliases WHERE function_name = ?",
            ):
                async with self._db.execute(statement, (name,)):
                    pass
            async with self._db.execute("DELETE FROM functions WHERE name = ?", (name,)) as c:
                deleted = c.rowcount == 1
            await self._db.commit()
        return deleted

    async def publish_version(
        self, latest: FunctionRecord, expected_revision: str, version: FunctionRecord
    ) -> bool:
        async with self._writing:
            async with self._db.execute(
                "UPDATE functions SET revision = ?, record = ? WHERE name = ? AND revision = ?",
                (latest.revision_id, dump_record(latest), latest.name, expected_revision),
            ) as cursor:
                if cursor.rowcount != 1:
                    await self._db.rollback()
                    return False
            async with self._db.execute(
                "INSERT INTO versions (name, version, record) VALUES (?, ?, ?)",
                (version.name, int(version.version), dump_record(version)),
            ):
                pass
            await self._db.commit()
        return True

    async def replace_version(self, version: FunctionRecord) -> None:
        await self._write(
            "UPDATE versions SET record = ? WHERE name = ? AND version = ?",
            (dump_record(version), version.name, int(version.version)),
        )

    async def list_versions(self) -> list[FunctionRecord]:
        async with self._db.execute("SELECT record FROM versions ORDER BY name, version") as c:
            rows = await c.fetchall()
        return [load_record(row[0]) for row in rows]

    async def delete_version(self, name: str, version: str) -> bool:
        return await self._write(
            "DELETE FROM versions WHERE name = ? AND version = ?", (name, int(version))
        )

    async def put_alias(self, alias: AliasRecord, expected_revision: str | None) -> bool:
        if expected_revision is None:
            return await self._write(
                "INSERT OR IGNORE INTO aliases (function_name, name, revision, record) "
                "VALUES (?, ?, ?, ?)",
                (alias.function_name, alias.name, alias.revision_id, dump_alias(alias)),
            )
        return await self._write(
            "UPDATE aliases SET revision = ?, record = ? "
            "WHERE function_name = ? AND name = ? AND revision = ?",
            (alias.revision_id, dump_alias(alias), alias.function_name, alias.name,
             expected_revision),
        )  # fmt: skip

    async def delete_alias(self, function_name: str, name: str) -> bool:
        return await self._write(
            "DELETE FROM aliases WHERE function_name = ? AND name = ?", (function_name, name)
        )

    async def list_aliases(self) -> list[AliasRecord]:
        async with self._db.execute(
            "SELECT record FROM aliases ORDER BY function_name, name"
        ) as cursor:
            rows = await cursor.fetchall()
        return [load_alias(row[0]) for row in rows]

    async def append_logs(self, events: Sequence[LogEvent]) -> None:
        async with self._writing:
            async with self._db.executemany(
                "INSERT INTO log_events (log_group, log_stream, ts, message) VALUES (?, ?, ?, ?)",
                [(e.group, e.stream, e.timestamp_ms, e.message) for e in events],
            ):
                pass
            await self._db.commit()

    async def _write(self, statement: str, params: Sequence[object]) -> bool:
        """One statement, committed; whether it changed exactly one row."""
        async with self._writing:
            async with self._db.execute(statement, params) as cursor:
                changed = cursor.rowcount == 1
            await self._db.commit()
        return changed

    async def read_logs(
        self, group: str, *, stream: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[LogEvent]:
        query = "SELECT seq, log_stream, ts, message FROM log_events WHERE log_group = ?"
        params: list[object] = [group]
        if stream is not None:
            query += " AND log_stream = ?"
            params.append(stream)
        query += " AND seq > ? ORDER BY seq LIMIT ?"
        params += [after_seq, limit]
        async with self._db.execute(query, params) as cursor:
            rows = await cursor.fetchall()
        return [LogEvent(group, row[1], row[2], row[3], seq=row[0]) for row in rows]

    async def put_provisioned(self, config: ProvisionedConfig) -> None:
        async with self._db.execute(
            "INSERT OR REPLACE INTO provisioned_concurrency "
            "(function_name, qualifier, requested, last_modified) VALUES (?, ?, ?, ?)",
            (config.function_name, config.qualifier, config.requested, config.last_modified),
        ):
            pass
        await self._db.commit()

    async def delete_provisioned(self, function_name: str, qualifier: str | None = None) -> None:
        """One configuration, or every one of the function (``qualifier`` None)."""
        query = "DELETE FROM provisioned_concurrency WHERE function_name = ?"
        params: tuple[str, ...] = (function_name,)
        if qualifier is not None:
            query += " AND qualifier = ?"
            params += (qualifier,)
        async with self._db.execute(query, params):
            pass
        await self._db.commit()

    async def list_provisioned(self) -> list[ProvisionedConfig]:
        async with self._db.execute(
            "SELECT function_name, qualifier, requested, last_modified "
            "FROM provisioned_concurrency ORDER BY function_name, qualifier"
        ) as cursor:
            rows = await cursor.fetchall()
        return [ProvisionedConfig(row[0], row[1], int(row[2]), float(row[3])) for row in rows]

    async def close(self) -> None:
        await self._db.close()
