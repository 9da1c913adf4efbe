"""The log writer: CloudWatch-style events buffered in memory, written in batches.

``emit`` never blocks and never awaits: the invoke path only appends to a list. A
background task writes whatever has accumulated in one transaction, so a burst of
invocations costs one commit. ``flush`` waits until everything emitted so far is stored.

Scope: one per server. Invariant: events of one stream are stored in emit order.
"""

from __future__ import annotations

import asyncio
import contextlib

from ember.clock import Clock
from ember.store.base import LogEvent, Store


class LogWriter:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._buffer: list[LogEvent] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def emit(self, group: str, stream: str, message: str, timestamp_ms: int | None = None) -> None:
        if timestamp_ms is None:
            timestamp_ms = int(self._clock.wall() * 1000)
        self._buffer.append(LogEvent(group, stream, timestamp_ms, message))
        self._idle.clear()
        self._wakeup.set()

    async def flush(self) -> None:
        """Return once every event emitted before the call is in the store."""
        if self._task is None:
            await self._write_batch()
            return
        await self._idle.wait()

    async def close(self) -> None:
        if self._task is not None:
            await self.flush()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._write_batch()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._write_batch()
            if not self._buffer:
                self._idle.set()

    async def _write_batch(self) -> None:
        batch, self._buffer = self._buffer, []
        if batch:
            await self._store.append_logs(batch)
            self.written += len(batch)
