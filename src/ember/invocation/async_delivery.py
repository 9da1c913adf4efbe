"""Where a finished async event goes: destinations (OnSuccess / OnFailure) and the DLQ.

A destination is an Ember function (the invocation record becomes a new async event of
that function, committed in the same transaction that removes the finished one) or an
Ember queue (the record is the message body). The dead-letter queue of the function's
configuration gets the original event as body, with Lambda's attributes ``RequestID``
(String), ``ErrorCode`` (Number) and ``ErrorMessage`` (String, first 1 KB).

Queue sends commit before the finished event is removed from the async queue: a crash in
between delivers the record twice (at-least-once), never zero times. A destination that
no longer exists is logged and counted (``undeliverable``), as Lambda counts
``DestinationDeliveryFailures``; the event is not kept for it.

Scope: one per dispatcher.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from ember.clock import Clock
from ember.errors import ClientError
from ember.model.arns import parse_function_ref
from ember.model.async_events import (
    AsyncEvent,
    Condition,
    EventInvokeConfig,
    dead_letter_error,
    invocation_record,
)
from ember.store.async_queue import AsyncQueueStore, Statement, delete_event, insert_event

log = logging.getLogger("ember.async")

Attributes = dict[str, tuple[str, str]]  # name => (DataType, StringValue)


class QueueSink(Protocol):
    """Sends to Ember queues by ARN (the built-in queue service, seen from here)."""

    async def send(self, queue_arn: str, body: str, attributes: Attributes) -> bool:
        """Commit one message; False if no such queue exists."""
        ...


class Delivery:
    def __init__(
        self,
        store: AsyncQueueStore,
        sink: QueueSink,
        clock: Clock,
        function_arn: Callable[[str, str | None], str],
        region: str,
        account: str,
    ) -> None:
        self._store = store
        self._sink = sink
        self._clock = clock
        self._function_arn = function_arn
        self._region = region
        self._account = account
        self.counts: Counter[str] = Counter()

    async def finish(
        self,
        event: AsyncEvent,
        condition: Condition,
        config: EventInvokeConfig,
        dead_letter_target: str | None,
    ) -> list[AsyncEvent]:
        """Deliver ``event``'s outcome, then remove it; the new async events it made."""
        created: list[AsyncEvent] = []
        destination = config.on_success if condition is Condition.SUCCESS else config.on_failure
        if destination:
            qualified = self._function_arn(event.function, event.qualifier or "$LATEST")
            record = invocation_record(event, qualified, condition, self._clock.wall())
            body = json.dumps(record)
            if ":lambda:" in destination:
                created.append(self._function_event(destination, body))
            else:
                await self._send(destination, body, {}, "destination")
        if condition is not Condition.SUCCESS and dead_letter_target:
            code, message = dead_letter_error(event, condition)
            attributes: Attributes = {
                "RequestID": ("String", event.request_id),
                "ErrorCode": ("Number", str(code)),
                "ErrorMessage": ("String", message or "Unknown error"),
            }
            body = event.payload.decode("utf-8", "replace")
            await self._send(dead_letter_target, body, attributes, "dead_letter")
        statements: list[Statement] = [insert_event(e) for e in created]
        statements.append(delete_event(event.request_id))
        await self._store.write(statements)
        return created

    def _function_event(self, destination: str, body: str) -> AsyncEvent:
        try:
            name, qualifier = parse_function_ref(destination, self._region, self._account)
        except ClientError:
            name, qualifier = destination.rsplit(":", 1)[-1], None
        now = self._clock.wall()
        self.counts["destination_invokes"] += 1
        return AsyncEvent(str(uuid.uuid4()), name, qualifier, body.encode(), now, now)

    async def _send(self, arn: str, body: str, attributes: Attributes, kind: str) -> None:
        if await self._sink.send(arn, body, attributes):
            self.counts[f"{kind}_messages"] += 1
            return
        self.counts["undeliverable"] += 1
        log.warning("async %s %s does not exist; the record is dropped", kind, arn)
