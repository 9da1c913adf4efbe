"""The store port: what the control plane and the log writer persist.

The embedded implementation is SQLite (``store/sqlite.py``); a PostgreSQL one will
implement the same protocol for clusters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ember.model.functions import AliasRecord, FunctionRecord


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One CloudWatch-style log event. ``seq`` is assigned by the store (0 before)."""

    group: str
    stream: str
    timestamp_ms: int
    message: str
    seq: int = 0


class Store(Protocol):
    """Durable state. Every method is atomic; none blocks the event loop."""

    async def create_function(self, record: FunctionRecord) -> bool:
        """Insert; False if a function of that name exists (nothing written)."""
        ...

    async def replace_function(self, record: FunctionRecord, expected_revision: str) -> bool:
        """Compare-and-set on the stored revision; False if it did not match."""
        ...

    async def get_function(self, name: str) -> FunctionRecord | None: ...

    async def list_functions(self) -> list[FunctionRecord]:
        """Every function, ordered by name."""
        ...

    async def delete_function(self, name: str) -> bool:
        """Delete a function with its versions and aliases (one transaction)."""
        ...

    async def publish_version(
        self, latest: FunctionRecord, expected_revision: str, version: FunctionRecord
    ) -> bool:
        """Compare-and-set ``$LATEST`` (its new ``last_version``) and insert ``version``,
        in one transaction; False (nothing written) if the revision did not match."""
        ...

    async def replace_version(self, version: FunctionRecord) -> None:
        """Overwrite a published version's row (its lifecycle state only ever changes)."""
        ...

    async def list_versions(self) -> list[FunctionRecord]:
        """Every published version of every function, by name then number."""
        ...

    async def delete_version(self, name: str, version: str) -> bool: ...

    async def put_alias(self, alias: AliasRecord, expected_revision: str | None) -> bool:
        """Insert (``expected_revision=None``; False if it exists) or compare-and-set."""
        ...

    async def delete_alias(self, function_name: str, name: str) -> bool: ...

    async def list_aliases(self) -> list[AliasRecord]:
        """Every alias of every function, by function then alias name."""
        ...

    async def append_logs(self, events: Sequence[LogEvent]) -> None: ...

    async def read_logs(
        self, group: str, *, stream: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[LogEvent]:
        """Events of a group (or one stream) with ``seq > after_seq``, oldest first."""
        ...

    async def close(self) -> None: ...
