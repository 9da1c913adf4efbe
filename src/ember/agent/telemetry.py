"""Telemetry delivery: events, per-subscriber buffers, HTTP POSTs inside the sandbox.

The lifecycle ``emit``s Telemetry API 2022-07-01 events (``platform.*`` records as in
lambda-spec §3.2, ``function`` and ``extension`` log lines as strings). Each subscriber
(``telemetry_api.py`` validates subscriptions) gets the events of the types it asked for,
in its API's shape (the Logs API 2020-08-15 has fewer platform types, ``platform.end``,
and ``platform.logsSubscription``), batched: a batch is sent when it holds ``maxItems``
events or ``maxBytes`` bytes, or ``timeoutMs`` after its first event, as one ``POST`` of a
JSON array to the subscriber's listener on the sandbox's loopback (or as newline-delimited
JSON on one kept TCP connection).

Scope: one agent. Invariants: one delivery at a time per subscriber, so batches arrive in
order; a subscriber holds at most the batch in delivery and one pending batch: a pending
batch that fills up while the previous one is still in delivery is dropped (the
subscriber is slower than the production rate, as RAPID does it); a batch that cannot be
delivered is retried (``RETRY_DELAYS_S``), then dropped; dropped records are counted in a
``platform.logsDropped`` event at the head of the subscriber's next batch; events emitted
while subscriptions are still open are kept (at most ``BACKLOG_ITEMS``) and replayed to
each new subscriber, so a subscriber sees the init phase it subscribed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

BACKLOG_ITEMS = 1000
RETRY_DELAYS_S = (0.1, 0.5, 1.0)
SLOW_CONSUMER = (
    "Some logs were dropped because the downstream consumer is slower than the logs production rate"
)
DELIVERY_TIMEOUT_S = 5.0
TELEMETRY = "telemetry"
LOGS = "logs"

# Telemetry API event types that the Logs API also has (others are not sent to it).
LOGS_API_TYPES = {"platform.start", "platform.report", "platform.extension", "platform.fault"}


def timestamp(wall: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds: ``2022-10-12T00:00:15.064Z``."""
    moment = time.time() if wall is None else wall
    millis = int(moment * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{millis:03d}Z"


def category(event_type: str) -> str:
    """``platform``, ``function`` or ``extension``: what a subscription's ``types`` name."""
    return "platform" if event_type.startswith("platform.") else event_type


@dataclass(frozen=True, slots=True)
class Event:
    time: str
    type: str
    record: Any
    line: str = ""  # a JSON-format log line as written (its record is the parsed object)

    def encode(self) -> bytes:
        body = {"time": self.time, "type": self.type, "record": self.record}
        return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    port: int
    path: str
    host_header: str
    protocol: str = "HTTP"  # or "TCP": newline-delimited JSON on one kept connection


@dataclass(frozen=True, slots=True)
class Buffering:
    max_items: int
    max_bytes: int
    timeout_ms: int


def translate(api: str, schema: str, event: Event) -> list[Event]:  # noqa: PLR0911 - a table
    """``event`` as ``api`` delivers it (the Logs API knows fewer platform events)."""
    if api == TELEMETRY:
        return [event]
    if not event.type.startswith("platform."):  # the Logs API's log records are strings
        return [Event(event.time, event.type, event.line)] if event.line else [event]
    record = event.record
    if event.type == "platform.runtimeDone":
        if schema != "2021-03-18":
            return []
        return [Event(event.time, event.type, {k: record[k] for k in ("requestId", "status")})]
    if event.type == "platform.telemetrySubscription":
        return [Event(event.time, "platform.logsSubscription", record)]
    if event.type not in LOGS_API_TYPES:
        return []
    if event.type == "platform.start":
        return [Event(event.time, event.type, {"requestId": record["requestId"]})]
    if event.type == "platform.report":
        end = Event(event.time, "platform.end", {"requestId": record["requestId"]})
        report = {"requestId": record["requestId"], "metrics": record["metrics"]}
        return [end, Event(event.time, event.type, report)]
    return [event]


@dataclass(eq=False)
class Subscriber:
    """One extension's subscription and its pending batch."""

    name: str
    api: str
    schema: str
    types: frozenset[str]
    buffering: Buffering
    destination: Destination
    queue: list[bytes] = field(default_factory=list)
    size: int = 0
    dropped_records: int = 0
    dropped_bytes: int = 0
    drop_reason: str = ""
    timer: asyncio.TimerHandle | None = None
    sending: asyncio.Task[None] | None = None
    stream: asyncio.StreamWriter | None = None  # the TCP destination's connection

    def wants(self, event: Event) -> bool:
        return category(event.type) in self.types

    @property
    def full(self) -> bool:
        """The pending batch reached ``maxItems`` or ``maxBytes``."""
        limits = self.buffering
        return len(self.queue) >= limits.max_items or self.size >= limits.max_bytes

    def dropped(self, records: int, size: int, reason: str) -> None:
        """Account records lost; the next batch starts with a ``platform.logsDropped``."""
        self.dropped_records += records
        self.dropped_bytes += size
        self.drop_reason = reason


class TelemetryBus:
    """Events to subscribers. See the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._subscribers: dict[str, Subscriber] = {}
        self._backlog: list[Event] | None = []  # None once subscriptions are closed
        self.subscriptions_open = True

    @property
    def active(self) -> bool:
        """Whether an event emitted now reaches anyone (a subscriber, or the init backlog)."""
        return bool(self._subscribers) or self._backlog is not None

    @property
    def subscribers(self) -> list[Subscriber]:
        return list(self._subscribers.values())

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add ``subscriber.name``'s subscription and replay the backlog to it. A repeated
        subscription is idempotent (Lambda's docs): it updates the existing one in place,
        which keeps what it holds and already delivered, and is announced again by a
        ``platform.telemetrySubscription`` only when its types changed."""
        old = self._subscribers.get(subscriber.name)
        if old is not None:
            changed = old.types != subscriber.types
            if old.destination != subscriber.destination and old.stream is not None:
                old.stream.close()  # the next batch connects to the new destination
                old.stream = None
            old.schema, old.types = subscriber.schema, subscriber.types
            old.buffering, old.destination = subscriber.buffering, subscriber.destination
            if not changed:
                return
        else:
            self._subscribers[subscriber.name] = subscriber
            for event in self._backlog or ():
                self._offer(subscriber, event)
        record = {"name": subscriber.name, "state": "Subscribed", "types": sorted(subscriber.types)}
        self.emit("platform.telemetrySubscription", record)

    def close_subscriptions(self) -> None:
        self.subscriptions_open = False
        self._backlog = None

    def emit(self, event_type: str, record: Any, line: str = "") -> None:
        event = Event(timestamp(), event_type, record, line)
        if self._backlog is not None and len(self._backlog) < BACKLOG_ITEMS:
            self._backlog.append(event)
        for subscriber in self._subscribers.values():
            self._offer(subscriber, event)

    def log_lines(self, event_type: str, data: bytes, *, json_lines: bool = False) -> None:
        """``function`` or ``extension`` output: one event per line, without its newline;
        with ``json_lines`` (the function's JSON log format) a JSON object line is sent to
        Telemetry API subscribers as the object, as Lambda does (the Logs API's clients
        know only string records: they get the line)."""
        if not self.active:
            return
        for line in data.decode("utf-8", errors="replace").splitlines():
            record: Any = line
            if json_lines and line.startswith("{"):
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
            self.emit(event_type, record, "" if record is line else line)

    async def flush(self, timeout_s: float) -> None:
        """Send every pending batch now and wait (at most ``timeout_s``) until all are
        delivered: a batch queued behind a delivery in flight goes out once that one ends,
        and is waited for too."""
        deadline = self._loop.time() + timeout_s
        while True:
            for subscriber in self._subscribers.values():
                self._send(subscriber)
            tasks = [
                s.sending
                for s in self._subscribers.values()
                if s.sending is not None and not s.sending.done()
            ]
            remaining = deadline - self._loop.time()
            if not tasks or remaining <= 0:
                return
            try:
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), remaining)
            except TimeoutError:
                return

    def close(self) -> None:
        for subscriber in self._subscribers.values():
            if subscriber.timer is not None:
                subscriber.timer.cancel()
            if subscriber.sending is not None:
                subscriber.sending.cancel()
            if subscriber.stream is not None:
                subscriber.stream.close()

    def _offer(self, subscriber: Subscriber, event: Event) -> None:
        if not subscriber.wants(event):
            return
        for shaped in translate(subscriber.api, subscriber.schema, event):
            data = shaped.encode()
            subscriber.queue.append(data)
            subscriber.size += len(data)
        if subscriber.full:
            self._send(subscriber)
        elif subscriber.queue and subscriber.timer is None:
            delay = subscriber.buffering.timeout_ms / 1000
            subscriber.timer = self._loop.call_later(delay, self._send, subscriber)

    def _send(self, subscriber: Subscriber) -> None:
        if subscriber.timer is not None:
            subscriber.timer.cancel()
            subscriber.timer = None
        if subscriber.sending is not None and not subscriber.sending.done():
            if subscriber.full:  # a full batch and the last one not taken yet: Lambda drops it
                subscriber.dropped(len(subscriber.queue), subscriber.size, SLOW_CONSUMER)
                subscriber.queue, subscriber.size = [], 0
            return  # otherwise sent when the delivery in flight ends
        if not subscriber.queue and not subscriber.dropped_records:
            return
        batch, size = subscriber.queue, subscriber.size
        if subscriber.dropped_records and "platform" in subscriber.types:
            dropped = {
                "droppedBytes": subscriber.dropped_bytes,
                "droppedRecords": subscriber.dropped_records,
                "reason": subscriber.drop_reason,
            }
            batch = [Event(timestamp(), "platform.logsDropped", dropped).encode(), *batch]
        subscriber.dropped_records = subscriber.dropped_bytes = 0
        subscriber.queue, subscriber.size = [], 0
        if subscriber.destination.protocol == "TCP":
            body = b"".join(event + b"\n" for event in batch)
        else:
            body = b"[" + b",".join(batch) + b"]"
        delivery = self._deliver(subscriber, body, len(batch), size)
        subscriber.sending = self._loop.create_task(delivery)

    async def _deliver(self, subscriber: Subscriber, body: bytes, count: int, size: int) -> None:
        failure: str | None = None
        for delay in (0.0, *RETRY_DELAYS_S):
            if delay:
                await asyncio.sleep(delay)
            failure = await self._deliver_once(subscriber, body)
            if failure is None:
                break
        else:
            subscriber.dropped(count, size, f"could not send events: {failure}")
        subscriber.sending = None
        if subscriber.queue or subscriber.dropped_records:
            self._send(subscriber)

    async def _deliver_once(self, subscriber: Subscriber, body: bytes) -> str | None:
        """None once ``body`` is delivered, else why it was not."""
        if subscriber.destination.protocol != "TCP":
            return await post(subscriber.destination, body)
        destination = subscriber.destination
        try:
            async with asyncio.timeout(DELIVERY_TIMEOUT_S):
                if subscriber.stream is None or subscriber.stream.is_closing():
                    _, subscriber.stream = await asyncio.open_connection(
                        destination.host, destination.port
                    )
                subscriber.stream.write(body)
                await subscriber.stream.drain()
        except (OSError, TimeoutError) as exc:
            if subscriber.stream is not None:
                subscriber.stream.close()
                subscriber.stream = None
            return _reason(exc)
        return None


def _reason(exc: BaseException) -> str:
    return "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__


async def post(destination: Destination, body: bytes) -> str | None:
    """One HTTP/1.1 POST of a JSON body: None on a 2xx answer, else why it failed."""
    head = (
        f"POST {destination.path} HTTP/1.1\r\n"
        f"Host: {destination.host_header}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(DELIVERY_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(destination.host, destination.port)
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
    except (OSError, TimeoutError) as exc:
        return _reason(exc)
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    parts = status_line.split()
    if len(parts) >= 2 and parts[1][:1] == b"2":
        return None
    status = parts[1].decode(errors="replace") if len(parts) >= 2 else "no answer"
    return f"status {status}"
