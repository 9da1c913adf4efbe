"""One queue's messages in memory: what is visible, what is delayed or in flight, who waits.

No I/O: the queue service persists what ``claim`` and friends changed. Visibility is a
wall-clock instant (``Message.visible_at``, epoch seconds from the injected clock) so it
means the same after a restart.

Invariants:
- every stored message of the queue is in ``messages``;
- a message is visible iff ``visible_at <= now``; each message whose ``visible_at`` lies
  in the future has a heap entry ``(visible_at, seq, id, nonce)``; ``ready`` holds ids in
  arrival order that were visible when queued (stale ids are skipped when popped);
- long pollers wait on futures in ``waiters``; they are woken on arrival, and by one clock
  timer at the earliest heap instant while anyone waits. Nothing polls.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ember.clock import Clock, TimerHandle
from ember.events.messages import Message
from ember.events.queue_config import QueueConfig


@dataclass(slots=True)
class Claim:
    """What one receive changed: the messages handed out, dead-lettered and expired."""

    received: list[Message]
    dead_lettered: list[Message]
    expired: list[str]


class QueueState:
    """Scope: one queue of one server; owned by the ``QueueService``."""

    def __init__(self, config: QueueConfig, clock: Clock) -> None:
        self.config = config
        self.messages: dict[str, Message] = {}
        self._clock = clock
        self._ready: deque[str] = deque()
        self._pending: list[tuple[float, int, str, str]] = []
        self._sequence = itertools.count()  # heap tie-breaker: equal instants keep order
        self._waiters: set[asyncio.Future[None]] = set()
        self._wake_timer: TimerHandle | None = None
        self._wake_at = float("inf")
        self.last_purge: float | None = None

    def add(self, message: Message) -> None:
        """Put a (new, restored or dead-lettered) message in place and wake waiters."""
        self.messages[message.message_id] = message
        self._schedule(message)
        if message.visible_at <= self._clock.wall():
            self.wake()

    def remove(self, message_id: str) -> Message | None:
        return self.messages.pop(message_id, None)

    def clear(self) -> list[str]:
        ids = list(self.messages)
        self.messages.clear()
        self._ready.clear()
        self._pending.clear()
        return ids

    def set_visibility(self, message: Message, visible_at: float) -> None:
        message.visible_at = visible_at
        self._schedule(message)
        if visible_at <= self._clock.wall():
            self.wake()

    def _schedule(self, message: Message) -> None:
        if message.visible_at <= self._clock.wall():
            self._ready.append(message.message_id)
        else:
            entry = (
                message.visible_at,
                next(self._sequence),
                message.message_id,
                message.receipt_nonce,
            )
            heapq.heappush(self._pending, entry)
            self._arm_wake()

    def claim(
        self,
        limit: int,
        visibility_s: float,
        new_nonce: Callable[[], str],
        dead_letter: Callable[[Message], bool],
    ) -> Claim:
        """Hand out up to ``limit`` visible messages, hidden for ``visibility_s``.

        ``dead_letter(message)`` moves a message past its maxReceiveCount elsewhere and
        says whether it did; expired messages (retention) are dropped.
        """
        now = self._clock.wall()
        self._promote(now)
        claim = Claim([], [], [])
        while self._ready and len(claim.received) < limit:
            message = self.messages.get(self._ready.popleft())
            if message is None or message.visible_at > now:
                continue
            if message.sent_at + self.config.retention_s <= now:
                self.remove(message.message_id)
                claim.expired.append(message.message_id)
            elif dead_letter(message):
                self.remove(message.message_id)
                claim.dead_lettered.append(message)
            else:
                message.receive_count += 1
                message.first_received_at = message.first_received_at or now
                message.receipt_nonce = new_nonce()
                self.set_visibility(message, now + visibility_s)
                claim.received.append(message)
        return claim

    def _promote(self, now: float) -> None:
        while self._pending and self._pending[0][0] <= now:
            visible_at, _, message_id, nonce = heapq.heappop(self._pending)
            message = self.messages.get(message_id)
            if message and message.visible_at == visible_at and message.receipt_nonce == nonce:
                self._ready.append(message_id)

    async def wait(self, timeout_s: float) -> None:
        """Wait until something may have become visible, or ``timeout_s`` passed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self._clock.call_later(timeout_s, lambda: _resolve(future))
        self._waiters.add(future)
        self._arm_wake()
        try:
            await future
        finally:
            timer.cancel()
            self._waiters.discard(future)

    def wake(self) -> None:
        for future in self._waiters:
            _resolve(future)

    def _arm_wake(self) -> None:
        """One clock timer at the earliest pending instant, while anyone waits."""
        if not self._waiters or not self._pending:
            return
        due = self._pending[0][0]
        if due >= self._wake_at:
            return
        if self._wake_timer is not None:
            self._wake_timer.cancel()
        self._wake_at = due
        self._wake_timer = self._clock.call_later(max(due - self._clock.wall(), 0.0), self._due)

    def _due(self) -> None:
        self._wake_timer, self._wake_at = None, float("inf")
        self._promote(self._clock.wall())
        self.wake()
        self._arm_wake()

    def counts(self) -> dict[str, int]:
        now = self._clock.wall()
        visible = delayed = in_flight = 0
        for message in self.messages.values():
            if message.visible_at <= now:
                visible += 1
            elif message.receive_count:
                in_flight += 1
            else:
                delayed += 1
        return {"visible": visible, "in_flight": in_flight, "delayed": delayed}

    def statistics(self) -> dict[str, int]:
        return {**self.counts(), "waiters": len(self._waiters), "pending": len(self._pending)}


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
