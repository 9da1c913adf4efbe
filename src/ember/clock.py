"""Time, injected: every timeout, keep-alive and back-off reads a ``Clock``.

``SystemClock`` is the real one (the running asyncio loop's timers). ``ManualClock`` in
``ember.testing`` moves only when a test advances it, so no test sleeps to wait for a
deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic time for deadlines, wall time for timestamps, and timers."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (durations and deadlines)."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch (timestamps, LastModified, deadlines for runtimes)."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` on the event loop after ``delay`` seconds of this clock."""
        ...


class SystemClock:
    """The process clock; timers run on the running asyncio loop."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)
