"""Layer versions in SQLite: one table of their own in ``<data-dir>/ember.db``.

The table sits beside the function store's tables but is driven through its own
aiosqlite connection (WAL allows several), so the two stay independent. A deleted layer
version keeps its row with ``deleted = 1``: its number is never handed out again
(``next_version`` counts every row) and functions that use it still find its code.
Cursors are closed on aiosqlite's thread (``async with``), as in ``store/sqlite.py``.
"""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from ember.model.layers import LayerVersion, dump_layer_version, load_layer_version

SCHEMA = """
CREATE TABLE IF NOT EXISTS layer_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    record TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
"""


class LayerStore:
    """Scope: one per server process; owns one connection.

    Invariant: ``(name, version)`` is unique and rows are never removed.
    """

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection

    @classmethod
    async def open(cls, path: Path) -> LayerStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, timeout=30)
        for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"):
            async with connection.execute(pragma):
                pass
        await connection.executescript(SCHEMA)
        await connection.commit()
        return cls(connection)

    async def insert(self, layer: LayerVersion) -> bool:
        """Add a new version; False if that number exists (nothing written)."""
        async with self._db.execute(
            "INSERT OR IGNORE INTO layer_versions (name, version, deleted, record) "
            "VALUES (?, ?, ?, ?)",
            (layer.name, layer.version, int(layer.deleted), dump_layer_version(layer)),
        ) as cursor:
            inserted = cursor.rowcount == 1
        await self._db.commit()
        return inserted

    async def replace(self, layer: LayerVersion) -> None:
        """Store a changed version (its policy or its ``deleted`` flag)."""
        async with self._db.execute(
            "UPDATE layer_versions SET deleted = ?, record = ? WHERE name = ? AND version = ?",
            (int(layer.deleted), dump_layer_version(layer), layer.name, layer.version),
        ):
            pass
        await self._db.commit()

    async def list_all(self) -> list[LayerVersion]:
        """Every version ever published, deleted ones included, by name then number."""
        async with self._db.execute(
            "SELECT record FROM layer_versions ORDER BY name, version"
        ) as cursor:
            rows = await cursor.fetchall()
        return [load_layer_version(row[0]) for row in rows]

    async def close(self) -> None:
        await self._db.close()
