"""The async dispatcher: runs accepted ``Event`` invocations, with Lambda's retry rules.

``accept`` commits an event to the durable queue (``store/async_queue.py``, fsync'd group
commit) before it returns, so the API answers 202 only for events on disk. Events run
through the same ``Invoker`` as synchronous invokes (concurrency leases, placement,
environments, log lines), under the request id the 202 gave.

Outcomes of one run (lambda-spec.md §6.1):
- success → the OnSuccess destination, then the event is removed;
- function error (incl. timeouts, runtime exits) → retried ``MaximumRetryAttempts`` times
  (default 2) after ``retry_delays_s`` (Lambda: 1 min, then 2 min), then RetriesExhausted;
- throttle (429) → the function is *parked* for an exponential back-off (1 s doubling to
  5 min) and its events wait untried; platform errors and a not-yet-Active function →
  the event alone backs off the same way. Neither counts as a retry;
- older than ``MaximumEventAgeInSeconds`` when its turn comes → EventAgeExceeded;
- reserved concurrency 0 → ZeroReservedConcurrency at once, no invoke;
- function deleted → the event is discarded.
Failures go to the OnFailure destination and the dead-letter queue (``async_delivery``).

Fairness: ``FairSchedule`` round-robins over functions with ready events, each capped at
``function_in_flight`` (and at its reserved concurrency), so one function's backlog or
throttling never starves another's events.

Delivery is at-least-once: an event leaves the store only after its outcome was
delivered; events in flight at a crash run again at the next start (their function may
see them twice; none is lost). All delays come from ``AsyncPolicy`` (settings) and the
injected clock; wall time marks due instants, so they survive restarts.

Scope: one per server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ember.clock import Clock, TimerHandle
from ember.errors import EmberError, TooManyRequestsException
from ember.invocation.async_delivery import Delivery
from ember.invocation.async_schedule import FairSchedule
from ember.invocation.invoker import InvocationRequest, InvocationResult
from ember.model.async_events import AsyncEvent, Condition, EventInvokeConfig, LastResponse
from ember.model.functions import LATEST, FunctionRecord, State
from ember.observe.metrics import Metrics
from ember.store.async_queue import AsyncQueueStore, delete_event, insert_event, update_event

log = logging.getLogger("ember.async")


@dataclass(frozen=True, slots=True)
class AsyncPolicy:
    """Timing and limits of the dispatcher (from settings; tests shorten them)."""

    retry_delays_s: tuple[float, ...] = (60.0, 120.0)
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    event_age_scale: float = 1.0  # seconds per configured MaximumEventAgeInSeconds second
    workers: int = 64  # events in flight, all functions together
    function_in_flight: int = 16  # events in flight per function

    def retry_delay(self, failed_attempts: int) -> float:
        return self.retry_delays_s[min(failed_attempts, len(self.retry_delays_s)) - 1]

    def backoff(self, streak: int) -> float:
        return min(self.backoff_initial_s * 2.0 ** max(streak - 1, 0), self.backoff_max_s)


class InvokeFunction(Protocol):
    """The invoker (``Invoker.invoke``): raises TooManyRequestsException over a limit."""

    async def invoke(
        self, record: FunctionRecord, request: InvocationRequest
    ) -> InvocationResult: ...


class FunctionDirectory(Protocol):
    """The registry, seen from here: a record by name and qualifier (None = gone)."""

    def resolve(self, name: str, qualifier: str | None) -> FunctionRecord | None: ...

    def arn(self, name: str, qualifier: str | None = None) -> str: ...


ConfigLookup = Callable[[str, str], EventInvokeConfig]  # (name, qualifier) => config


class AsyncDispatcher:
    def __init__(
        self,
        store: AsyncQueueStore,
        invoker: InvokeFunction,
        functions: FunctionDirectory,
        configs: ConfigLookup,
        delivery: Delivery,
        clock: Clock,
        policy: AsyncPolicy,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._invoker = invoker
        self._functions = functions
        self._configs = configs
        self._delivery = delivery
        self._clock = clock
        self._policy = policy
        self._schedule = FairSchedule(self._cap)
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: TimerHandle | None = None
        self._timer_due: float | None = None
        self._throttle_streak: Counter[str] = Counter()  # function => 429s in a row
        self._error_streak: Counter[str] = Counter()  # request id => platform errors in a row
        self._closed = False
        self.counts: Counter[str] = Counter()
        self._metrics = metrics
        if metrics is not None:
            self._register_metrics(metrics)

    # lifecycle --------------------------------------------------------------------------

    async def load(self) -> None:
        """Re-queue every stored event (those in flight at a crash included) and start."""
        now = self._clock.wall()
        for event in await self._store.load_events():
            self._schedule.add(event, now)
        self._pump()

    async def close(self) -> None:
        """Stop dispatching; events in flight stay stored and run again at the next start."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def idle(self) -> None:
        """Wait until no event is being run (tests; the clock may still hold timers)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # accepting --------------------------------------------------------------------------

    async def accept(
        self, name: str, qualifier: str | None, payload: bytes, request_id: str
    ) -> None:
        """Commit one event durably (returns once on disk), then queue it."""
        now = self._clock.wall()
        event = AsyncEvent(request_id, name, qualifier, payload, now, now)
        await self._store.write([insert_event(event)])
        self._count(name, "accepted")
        self._schedule.add(event, self._clock.wall())
        self._pump()

    # dispatching ------------------------------------------------------------------------

    def _cap(self, name: str) -> int:
        record = self._functions.resolve(name, None)
        cap = self._policy.function_in_flight
        if record is not None and record.reserved_concurrency is not None:
            cap = min(cap, record.reserved_concurrency)
        return max(cap, 1)  # reserved 0 still takes its events, to fail them

    def _pump(self) -> None:
        if self._closed:
            return
        now = self._clock.wall()
        self._schedule.release(now)
        loop = asyncio.get_running_loop()
        while self._running < self._policy.workers:
            event = self._schedule.take()
            if event is None:
                break
            self._running += 1
            task = loop.create_task(self._run(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._arm(now)

    def _arm(self, now: float) -> None:
        wake = self._schedule.next_wake()
        if wake == self._timer_due:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_due = wake
        if wake is not None:
            self._timer = self._clock.call_later(max(wake - now, 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_due = None
        self._pump()

    async def _run(self, event: AsyncEvent) -> None:
        try:
            await self._attempt(event)
        except asyncio.CancelledError:
            raise  # closing: the event stays stored and runs again at the next start
        except Exception:
            log.exception("async event %s: unexpected failure; retried later", event.request_id)
            event.due_at = self._clock.wall() + self._policy.backoff_max_s
            self._schedule.put_back(event, self._clock.wall())
        finally:
            self._running -= 1
            self._pump()

    async def _attempt(self, event: AsyncEvent) -> None:
        record = self._functions.resolve(event.function, event.qualifier)
        if record is None:
            await self._finish(event, None, None)
            self._count(event.function, "discarded")
            return
        config = self._configs(event.function, event.qualifier or LATEST)
        if await self._settled_without_invoke(event, record, config):
            return
        request = InvocationRequest(
            payload=event.payload,
            invoked_arn=self._functions.arn(event.function, event.qualifier),
            request_id=event.request_id,
        )
        try:
            result = await self._invoker.invoke(record, request)
        except TooManyRequestsException:
            self._throttled(event, config)
            return
        except EmberError as error:
            log.warning("async event %s: %s; retried later", event.request_id, error.message)
            await self._back_off(event, config)
            return
        self._throttle_streak.pop(event.function, None)
        self._error_streak.pop(event.request_id, None)
        event.invoke_count += 1
        event.last_response = LastResponse(
            200, result.executed_version, result.function_error, result.payload
        )
        await self._after_run(event, record, config)

    async def _settled_without_invoke(
        self, event: AsyncEvent, record: FunctionRecord, config: EventInvokeConfig
    ) -> bool:
        """Too old, reserved concurrency 0, or not Active: dealt with, no invoke."""
        if self._clock.wall() >= self._expiry(event, config):
            await self._finish(event, Condition.EVENT_AGE_EXCEEDED, config, record)
        elif record.reserved_concurrency == 0:
            await self._finish(event, Condition.ZERO_RESERVED_CONCURRENCY, config, record)
        elif record.state is not State.ACTIVE:
            await self._back_off(event, config)
        else:
            return False
        return True

    async def _after_run(
        self, event: AsyncEvent, record: FunctionRecord, config: EventInvokeConfig
    ) -> None:
        response = event.last_response
        if response is None or not response.function_error:
            await self._finish(event, Condition.SUCCESS, config, record)
            return
        event.attempts_failed += 1
        if event.attempts_failed > config.retry_attempts:
            await self._finish(event, Condition.RETRIES_EXHAUSTED, config, record)
            return
        self._count(event.function, "retried")
        due = self._clock.wall() + self._policy.retry_delay(event.attempts_failed)
        await self._reschedule(event, min(due, self._expiry(event, config)))

    def _expiry(self, event: AsyncEvent, config: EventInvokeConfig) -> float:
        return event.accepted_at + config.event_age_s * self._policy.event_age_scale

    def _throttled(self, event: AsyncEvent, config: EventInvokeConfig) -> None:
        """Park the function (its events wait untried); this event goes back in front."""
        name = event.function
        self._throttle_streak[name] += 1
        now = self._clock.wall()
        until = min(
            now + self._policy.backoff(self._throttle_streak[name]), self._expiry(event, config)
        )
        self._schedule.park(name, until)
        self._schedule.put_back(event, now, front=True)
        self._count(name, "throttled")

    async def _back_off(self, event: AsyncEvent, config: EventInvokeConfig) -> None:
        self._error_streak[event.request_id] += 1
        delay = self._policy.backoff(self._error_streak[event.request_id])
        await self._reschedule(event, min(self._clock.wall() + delay, self._expiry(event, config)))
        self._count(event.function, "retried")

    async def _reschedule(self, event: AsyncEvent, due: float) -> None:
        event.due_at = due
        await self._store.write([update_event(event)])
        self._schedule.put_back(event, self._clock.wall())

    async def _finish(
        self,
        event: AsyncEvent,
        condition: Condition | None,
        config: EventInvokeConfig | None,
        record: FunctionRecord | None = None,
    ) -> None:
        """Deliver the outcome (none for a discarded event), remove it, free its slot."""
        self._error_streak.pop(event.request_id, None)
        if condition is None or config is None:
            await self._store.write([delete_event(event.request_id)])
            created: list[AsyncEvent] = []
        else:
            dead_letter = record.config.dead_letter_target if record is not None else None
            self._count(event.function, str(condition))  # before a reader can see the record
            created = await self._delivery.finish(event, condition, config, dead_letter)
        self._schedule.finish(event)
        now = self._clock.wall()
        for new in created:
            self._schedule.add(new, now)

    def _count(self, function: str, outcome: str) -> None:
        self.counts[outcome] += 1
        if self._metrics is not None:
            self._metrics.async_events.labels(function, outcome).inc()

    # visibility -------------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        now = self._clock.wall()
        return {
            "queued": len(self._schedule),
            "in_flight": self._schedule.in_flight(),
            "counts": {**self.counts, **self._delivery.counts},
            "store_commits": self._store.commits,
            "functions": {
                name: {"depth": d.depth, "oldest_event_age_s": round(now - d.oldest_accepted_at, 3)}
                for name, d in sorted(self._schedule.depths().items())
            },
        }

    def _register_metrics(self, metrics: Metrics) -> None:
        def read(field: str) -> dict[tuple[str, ...], float]:
            now = self._clock.wall()
            depths = self._schedule.depths()
            if field == "depth":
                return {(name,): float(d.depth) for name, d in depths.items()}
            return {(name,): now - d.oldest_accepted_at for name, d in depths.items()}

        metrics.add_gauges(
            "ember_async_queue_depth", "Async events queued or in flight, by function",
            ["function"], lambda: read("depth"),
        )  # fmt: skip
        metrics.add_gauges(
            "ember_async_oldest_event_age_seconds",
            "Age of the oldest queued async event, by function (AsyncEventAge)",
            ["function"], lambda: read("age"),
        )  # fmt: skip
