"""How many pre-started sandboxes a warm pool aims for: its configured size, or more after
a burst of starts.

A burst of N cold starts drains a pool of 3 at once; the other N - 3 starts each pay a
whole pre-start (clone, mounts, cgroup attach, runtime fork, copy-on-write faults: about
half a cold start's CPU) while competing for the CPUs. So a pool aims for the size of the
largest burst of the last ``window_s`` (at most ``maximum``), then goes back to its
configured size: a server that had a burst is ready for the next one, and an idle server,
or one whose cold starts come one at a time, holds only its configured pool. A burst's
size is the most takes seen within ``burst_span_s`` (1 s): sequential cold starts count
as their rate per second, never as their total.

Refills never compete with a burst: while a start is taking a sandbox (``in_flight``)
the pool pre-starts nothing; beyond its configured size only once the last take is
``growth_delay_s`` old; and each batch of pre-starts (up to ``EAGER_REFILL`` ready
first, then ``GROWTH_BATCH`` at a time) waits until the CPUs have been mostly idle
(``CpuLoad``): the eager ones at most ``EAGER_MAX_DEFER_S`` from the first time they
waited, growth at most ``GROWTH_MAX_DEFER_S``. A burst's environments are still
initialising (agent, runtime, handler import) well after their sandboxes were taken (a
take from the pool is instant), and their starts come first.

Scope: one per warm pool; pure bookkeeping on monotonic times passed in (tests drive it).
Invariants: ``configured <= target(now) <= max(configured, maximum)``; a peak older than
``window_s`` is forgotten; the kept peaks are oldest first with strictly decreasing
sizes (a sliding-window maximum); ``in_flight`` = ``note_start`` calls not yet
``note_done``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path

DEMAND_WINDOW_S = 60.0  # a burst keeps the pool grown this long after its last take
BURST_SPAN_S = 1.0  # a burst's size: the most takes within this span
GROWTH_DELAY_S = 1.0  # pre-starts beyond the configured size wait this long after a take
GROWTH_MAX_BUSY = 0.5  # ... and for the CPUs to be busy less than this share of the time
GROWTH_MAX_DEFER_S = 30.0  # ... but no longer than this (a machine that is never idle)
EAGER_REFILL = 3  # pre-started after a take once the CPUs are idle, or this long after
EAGER_MAX_DEFER_S = 1.0
GROWTH_BATCH = 8  # growth pre-starts made each time the CPUs are found idle
CPU_SAMPLE_S = 0.05


@dataclass
class Peak:
    at: float  # when the take that saw it began
    takes: int  # takes within ``burst_span_s`` up to then


class PoolDemand:
    def __init__(
        self,
        configured: int,
        maximum: int,
        window_s: float = DEMAND_WINDOW_S,
        growth_delay_s: float = GROWTH_DELAY_S,
        burst_span_s: float = BURST_SPAN_S,
    ) -> None:
        self.configured = configured
        self.maximum = max(configured, maximum)
        self.window_s = window_s
        self.growth_delay_s = growth_delay_s
        self.burst_span_s = burst_span_s
        self._recent: collections.deque[float] = collections.deque()  # takes in the span
        self._peaks: collections.deque[Peak] = collections.deque()
        self.in_flight = 0
        self._last_done: float | None = None

    def configure(self, configured: int) -> None:
        """A new configured size (the pools' total is shared anew); the maximum stays."""
        self.configured = configured
        self.maximum = max(configured, self.maximum)

    def note_start(self, now: float) -> None:
        """A start is taking a sandbox (from the pool, or pre-started for it)."""
        self.in_flight += 1
        self._recent.append(now)
        while self._recent[0] <= now - self.burst_span_s:
            self._recent.popleft()
        takes = len(self._recent)
        while self._peaks and self._peaks[-1].takes <= takes:
            self._peaks.pop()  # older and no larger: never the maximum again
        self._peaks.append(Peak(now, takes))
        self._forget(now)

    def note_done(self, now: float) -> None:
        """That take is over (it got its sandbox, or failed)."""
        self.in_flight -= 1
        self._last_done = now

    def target(self, now: float) -> int:
        """How many pre-started sandboxes the pool aims for at ``now``."""
        self._forget(now)
        largest = self._peaks[0].takes if self._peaks else 0
        return max(self.configured, min(self.maximum, largest))

    def refill_target(self, now: float) -> int:
        """How many it may pre-start up to at ``now``: none while a take is in flight,
        beyond the configured size only once the last take is ``growth_delay_s`` old."""
        if self.in_flight:
            return 0
        if self._last_done is not None and now - self._last_done < self.growth_delay_s:
            return self.configured
        return self.target(now)

    def quiet_in(self, now: float) -> float:
        """Seconds until no take is in flight and the last one is ``growth_delay_s`` old
        (0: quiet now; while takes are in flight: ``growth_delay_s``, to look again)."""
        if self.in_flight:
            return self.growth_delay_s
        if self._last_done is None:
            return 0.0
        return max(0.0, self._last_done + self.growth_delay_s - now)

    def next_change(self, now: float) -> float | None:
        """When ``refill_target`` or ``target`` will next change without a new take
        (growth allowed, or a peak leaving the window); None if never."""
        if self.target(now) == self.configured:
            return None
        if self._last_done is not None and self._last_done + self.growth_delay_s > now:
            return self._last_done + self.growth_delay_s
        return self._peaks[0].at + self.window_s

    def _forget(self, now: float) -> None:
        while self._peaks and self._peaks[0].at <= now - self.window_s:
            self._peaks.popleft()


class CpuLoad:
    """The share of all CPUs busy since the last reading, from ``/proc/stat``.

    Scope: one reader (one warm pool); ``busy()`` is None when the file cannot be read.
    """

    def __init__(self, path: Path = Path("/proc/stat")) -> None:
        self._path = path
        self._last = self._counters()

    def _counters(self) -> tuple[int, int] | None:
        try:
            fields = [int(v) for v in self._path.read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        if len(fields) < 5:
            return None
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    def busy(self) -> float | None:
        now, last = self._counters(), self._last
        self._last = now
        if now is None or last is None or now[0] <= last[0]:
            return None
        return 1 - (now[1] - last[1]) / (now[0] - last[0])
