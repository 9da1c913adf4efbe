"""The log writer: CloudWatch-style events buffered in memory, written in batches.

``emit`` never blocks and never awaits: the invoke path only appends to a list. A
background task writes whatever has accumulated in one transaction, at most ``LINGER_S``
after the first event of a batch (so a stream of invokes costs one commit per batch, not
a few per invoke: each write is several hops to the SQLite thread and back, which at one
write per log line woke the server about ten times per invoke). ``flush`` writes at once
and waits until everything emitted so far is stored (or dropped).

Bounds: the buffer holds at most ``MAX_BUFFERED`` events; beyond that, events are
dropped and counted (a function printing in a tight loop cannot exhaust the server's
memory), and the first event after a drop says how many were lost. A failed write is
logged and its batch counted as dropped; the writer carries on.

Scope: one per server. Invariant: events of one stream are stored in emit order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ember.clock import Clock, TimerHandle
from ember.store.base import LogEvent, Store

log = logging.getLogger("ember.logs")
MAX_BUFFERED = 100_000  # events waiting to be written; more are dropped and counted
LINGER_S = 0.01  # how long the first event of a batch waits for company


class LogWriter:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._buffer: list[LogEvent] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._timer: TimerHandle | None = None  # the pending batch's write, when armed
        self._writing = False
        self._urgent = False  # a flush waits: write again at once until the buffer is empty
        self.written = 0
        self.dropped = 0
        self._dropped_since_report = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def emit(self, group: str, stream: str, message: str, timestamp_ms: int | None = None) -> None:
        if timestamp_ms is None:
            timestamp_ms = int(self._clock.wall() * 1000)
        if len(self._buffer) >= MAX_BUFFERED:
            self.dropped += 1
            self._dropped_since_report += 1
            return
        if self._dropped_since_report:
            note = f"EMBER_LOGS_DROPPED {self._dropped_since_report} log events were dropped\n"
            self._buffer.append(LogEvent(group, stream, timestamp_ms, note))
            self._dropped_since_report = 0
        self._buffer.append(LogEvent(group, stream, timestamp_ms, message))
        self._idle.clear()
        if self._timer is None and not self._writing:
            self._timer = self._clock.call_later(LINGER_S, self._due)

    def _due(self) -> None:
        self._timer = None
        self._wakeup.set()

    async def flush(self) -> None:
        """Return once every event emitted before the call is in the store."""
        if self._task is None:
            await self._write_batch()
            return
        if not self._idle.is_set():
            self._urgent = True
            self._disarm()
            self._wakeup.set()
        await self._idle.wait()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def close(self) -> None:
        self._disarm()
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
            self._writing = True
            try:
                await self._write_batch()
            finally:
                self._writing = False
            if not self._buffer:
                self._urgent = False
                self._idle.set()
            elif self._urgent:
                self._wakeup.set()
            elif self._timer is None:
                self._timer = self._clock.call_later(LINGER_S, self._due)

    async def _write_batch(self) -> None:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            await self._store.append_logs(batch)
        except Exception:
            log.exception("could not store %d log events; they are dropped", len(batch))
            self.dropped += len(batch)
            return
        self.written += len(batch)
