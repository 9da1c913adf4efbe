"""Which queued async event runs next: per-function fairness, caps, delays and parking.

Pure bookkeeping (no I/O, no clock: the caller passes ``now``, wall seconds).

- Every event is in exactly one place: a function's *ready* line (FIFO), the *delayed*
  heap (by due instant), or *in flight* (taken, not yet finished or put back).
- Functions with ready events take turns (round-robin): ``take`` serves the function at
  the head of the rotation one event and sends it to the back, so a function's backlog
  never delays another function by more than one turn.
- A function runs at most ``cap(name)`` events at once; one over its cap leaves the
  rotation until ``finish`` frees a slot.
- A *parked* function (throttled: 429) is skipped until its instant passes; its events
  wait in its ready line without being tried.

Scope: one per dispatcher. Invariants: a name is in the rotation at most once; a name in
the rotation has ready events (checked lazily at ``take``).
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from ember.model.async_events import AsyncEvent


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """What one function has queued: events, and when the oldest was accepted."""

    depth: int
    oldest_accepted_at: float


class FairSchedule:
    def __init__(self, cap: Callable[[str], int]) -> None:
        self._cap = cap
        self._ready: dict[str, deque[AsyncEvent]] = {}
        self._delayed: list[tuple[float, int, AsyncEvent]] = []
        self._seq = itertools.count()
        self._rotation: deque[str] = deque()
        self._rotating: set[str] = set()
        self._in_flight: Counter[str] = Counter()
        self._parked: dict[str, float] = {}  # name => wall instant it may run again
        self._events: dict[str, AsyncEvent] = {}  # request id => every event held

    # adding -----------------------------------------------------------------------------

    def add(self, event: AsyncEvent, now: float) -> None:
        """A new or recovered event: ready if due, else delayed until ``due_at``."""
        self._events[event.request_id] = event
        if event.due_at <= now:
            self._make_ready(event, front=False)
        else:
            heapq.heappush(self._delayed, (event.due_at, next(self._seq), event))

    def put_back(self, event: AsyncEvent, now: float, *, front: bool = False) -> None:
        """A taken event that must run again (``due_at`` set by the caller)."""
        self._release_slot(event.function)
        if event.due_at <= now:
            self._make_ready(event, front=front)
        else:
            heapq.heappush(self._delayed, (event.due_at, next(self._seq), event))

    def finish(self, event: AsyncEvent) -> None:
        """A taken event is done for good (delivered, failed, or discarded)."""
        self._events.pop(event.request_id, None)
        self._release_slot(event.function)

    def park(self, name: str, until: float) -> None:
        self._parked[name] = max(until, self._parked.get(name, until))

    def parked_until(self, name: str) -> float | None:
        return self._parked.get(name)

    def unpark(self, name: str) -> None:
        if self._parked.pop(name, None) is not None:
            self._enter_rotation(name)

    # taking -----------------------------------------------------------------------------

    def release(self, now: float) -> None:
        """Move due delayed events to their ready lines; end parkings that are over."""
        while self._delayed and self._delayed[0][0] <= now:
            _, _, event = heapq.heappop(self._delayed)
            self._make_ready(event, front=False)
        for name, until in list(self._parked.items()):
            if until <= now:
                del self._parked[name]
                self._enter_rotation(name)

    def take(self) -> AsyncEvent | None:
        """The next event to run, fairly across functions; None if nothing may run now."""
        for _ in range(len(self._rotation)):
            name = self._rotation.popleft()
            self._rotating.discard(name)
            line = self._ready.get(name)
            if not line or name in self._parked or self._in_flight[name] >= self._cap(name):
                continue  # re-enters on add / finish / unpark
            event = line.popleft()
            if not line:
                del self._ready[name]
            self._in_flight[name] += 1
            self._enter_rotation(name)
            return event
        return None

    def next_wake(self) -> float | None:
        """The earliest instant at which ``release`` would change something."""
        instants = list(self._parked.values())
        if self._delayed:
            instants.append(self._delayed[0][0])
        return min(instants) if instants else None

    def ready_of(self, name: str) -> list[AsyncEvent]:
        return list(self._ready.get(name, ()))

    # reading ----------------------------------------------------------------------------

    def in_flight(self, name: str | None = None) -> int:
        if name is None:
            return sum(self._in_flight.values())
        return self._in_flight[name]

    def __len__(self) -> int:
        return len(self._events)

    def depths(self) -> dict[str, QueueDepth]:
        """Per function: events held (ready, delayed, in flight) and the oldest's age mark."""
        counts: Counter[str] = Counter()
        oldest: dict[str, float] = {}
        for event in self._events.values():
            counts[event.function] += 1
            mark = oldest.get(event.function)
            if mark is None or event.accepted_at < mark:
                oldest[event.function] = event.accepted_at
        return {name: QueueDepth(counts[name], oldest[name]) for name in counts}

    # internals --------------------------------------------------------------------------

    def _make_ready(self, event: AsyncEvent, *, front: bool) -> None:
        line = self._ready.setdefault(event.function, deque())
        if front:
            line.appendleft(event)
        else:
            line.append(event)
        self._enter_rotation(event.function)

    def _release_slot(self, name: str) -> None:
        self._in_flight[name] -= 1
        if self._in_flight[name] <= 0:
            del self._in_flight[name]
        self._enter_rotation(name)

    def _enter_rotation(self, name: str) -> None:
        if name not in self._rotating and self._ready.get(name):
            self._rotation.append(name)
            self._rotating.add(name)
