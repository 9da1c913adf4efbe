"""The built-in queue service: SQS standard-queue semantics over the events store.

Scope: one per server. Every change is committed to the ``EventsStore`` before the call
returns (sends before the caller gets its MessageId; receives with their new visibility
and receive count), so a kill -9 loses no acknowledged message and an in-flight message
reappears after its visibility timeout across a restart. Time comes from the injected
clock (wall seconds for visibility, delay, retention). Long polling waits on futures
(``QueueState.wait``), never by polling.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import uuid
from dataclasses import dataclass, replace

from ember.clock import Clock
from ember.errors import (
    MessageNotInflight,
    PurgeQueueInProgress,
    QueueDeletedRecently,
    QueueDoesNotExist,
    QueueNameExists,
    ReceiptHandleIsInvalid,
    SqsInvalidParameterValue,
)
from ember.events.messages import Message, MessageAttribute
from ember.events.queue_config import MAX_MESSAGE_BYTES, QueueConfig, check_queue_name
from ember.events.queue_state import QueueState
from ember.events.store import EventsStore

RECREATE_GRACE_S = 60.0
PURGE_INTERVAL_S = 60.0
MAX_VISIBILITY_S = 43200


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A validated message to send."""

    body: str
    attributes: dict[str, MessageAttribute]
    system_attributes: dict[str, MessageAttribute]
    delay_s: int | None = None


class QueueService:
    """Queues by name; see the module docstring for durability and timing rules."""

    def __init__(self, store: EventsStore, clock: Clock, region: str, account: str) -> None:
        self._store = store
        self._clock = clock
        self.region = region
        self.account = account
        self._queues: dict[str, QueueState] = {}
        self._draining = False  # shutting down: long polls end at once, empty
        self._deleted_at: dict[str, float] = {}
        self._counters = {"sent": 0, "received": 0, "deleted": 0, "dead_lettered": 0}

    async def load(self) -> None:
        for config in await self._store.load_queues():
            self._queues[config.name] = QueueState(config, self._clock)
        for message in await self._store.load_messages():
            if message.queue in self._queues:
                self._queues[message.queue].add(message)

    def statistics(self) -> dict[str, object]:
        return {
            **self._counters,
            "queues": {name: q.statistics() for name, q in self._queues.items()},
        }

    def arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account}:{name}"

    def name_from_arn(self, arn: str) -> str | None:
        prefix = f"arn:aws:sqs:{self.region}:{self.account}:"
        return arn[len(prefix) :] if arn.startswith(prefix) else None

    # queues -----------------------------------------------------------------------------

    def get(self, name: str) -> QueueConfig:
        return self._queue(name).config

    def exists(self, name: str) -> bool:
        return name in self._queues

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self._queues if n.startswith(prefix))

    def _queue(self, name: str) -> QueueState:
        queue = self._queues.get(name)
        if queue is None:
            raise QueueDoesNotExist("The specified queue does not exist.")
        return queue

    async def create(
        self, name: str, attributes: dict[str, str], tags: dict[str, str] | None = None
    ) -> QueueConfig:
        check_queue_name(name)
        self._check_dead_letter_target(attributes)
        existing = self._queues.get(name)
        if existing is not None:
            for key, value in attributes.items():
                if existing.config.attributes.get(key, value) != value:
                    raise QueueNameExists(
                        "A queue already exists with the same name and a different value "
                        f"for attribute {key}"
                    )
            return existing.config
        deleted = self._deleted_at.get(name)
        if deleted is not None and self._clock.monotonic() - deleted < RECREATE_GRACE_S:
            raise QueueDeletedRecently(
                "You must wait 60 seconds after deleting a queue before you can create "
                "another queue with the same name."
            )
        now = self._clock.wall()
        config = QueueConfig(name, now, now, dict(attributes), dict(tags or {}))
        await self._store.save_queue(config)
        self._queues[name] = QueueState(config, self._clock)
        return config

    async def set_attributes(self, name: str, attributes: dict[str, str]) -> None:
        queue = self._queue(name)
        self._check_dead_letter_target(attributes)
        merged = {**queue.config.attributes, **attributes}
        if merged.get("RedrivePolicy") == "":
            del merged["RedrivePolicy"]
        config = replace(queue.config, modified_at=self._clock.wall(), attributes=merged)
        await self._store.save_queue(config)
        queue.config = config

    def _check_dead_letter_target(self, attributes: dict[str, str]) -> None:
        config = QueueConfig("", 0, 0, {"RedrivePolicy": attributes.get("RedrivePolicy", "")})
        redrive = config.redrive
        if redrive is not None and (
            self.name_from_arn(redrive.dead_letter_arn) is None
            or redrive.dead_letter_queue not in self._queues
        ):
            raise SqsInvalidParameterValue(
                f"Value {attributes['RedrivePolicy']} for parameter RedrivePolicy is invalid. "
                "Reason: Dead letter target does not exist."
            )

    async def set_tags(self, name: str, add: dict[str, str], remove: list[str]) -> None:
        queue = self._queue(name)
        tags = {k: v for k, v in {**queue.config.tags, **add}.items() if k not in remove}
        config = replace(queue.config, tags=tags)
        await self._store.save_queue(config)
        queue.config = config

    def dead_letter_sources(self, name: str) -> list[str]:
        """Queues whose RedrivePolicy targets ``name``."""
        target = self.arn(self._queue(name).config.name)
        return sorted(
            n
            for n, q in self._queues.items()
            if (policy := q.config.redrive) is not None and policy.dead_letter_arn == target
        )

    async def delete(self, name: str) -> None:
        queue = self._queue(name)
        await self._store.delete_queue(name)
        del self._queues[name]
        self._deleted_at[name] = self._clock.monotonic()
        queue.wake()

    async def purge(self, name: str) -> None:
        queue = self._queue(name)
        now = self._clock.monotonic()
        if queue.last_purge is not None and now - queue.last_purge < PURGE_INTERVAL_S:
            raise PurgeQueueInProgress(
                f"Only one PurgeQueue operation on {name} is allowed every 60 seconds."
            )
        queue.last_purge = now
        await self._store.purge_queue(name)
        queue.clear()

    def counts(self, name: str) -> dict[str, int]:
        return self._queue(name).counts()

    # messages ---------------------------------------------------------------------------

    async def send(self, name: str, outgoing: list[OutgoingMessage]) -> list[Message]:
        """Store and enqueue messages (one transaction); sizes are already checked."""
        queue = self._queue(name)
        now = self._clock.wall()
        messages = [
            Message(
                message_id=str(uuid.uuid4()),
                queue=name,
                body=item.body,
                attributes=item.attributes,
                system_attributes=item.system_attributes,
                sent_at=now,
                visible_at=now + _delay(item, queue.config),
            )
            for item in outgoing
        ]
        await self._store.save_messages(messages)
        for message in messages:
            queue.add(message)
        self._counters["sent"] += len(messages)
        return messages

    def drain(self) -> None:
        """The server is stopping: every long poll returns now (empty, as on a timeout)."""
        self._draining = True
        for queue in self._queues.values():
            queue.wake()

    def max_message_bytes(self, name: str) -> int:
        return min(self._queue(name).config.max_message_bytes, MAX_MESSAGE_BYTES)

    async def receive(
        self, name: str, limit: int, visibility_s: int | None = None, wait_s: float | None = None
    ) -> list[Message]:
        """Up to ``limit`` messages, long-polling up to ``wait_s`` (queue default)."""
        queue = self._queue(name)
        visibility = queue.config.visibility_timeout if visibility_s is None else visibility_s
        wait = queue.config.receive_wait_s if wait_s is None else wait_s
        deadline = self._clock.monotonic() + wait
        while True:
            claim = queue.claim(limit, visibility, _nonce, self._dead_letter_for(queue))
            await self._persist_claim(claim.received + claim.dead_lettered, claim.expired)
            if claim.received:
                self._counters["received"] += len(claim.received)
                return claim.received
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0 or self._draining:
                return []
            await queue.wait(remaining)
            queue = self._queue(name)  # deleted while waiting => QueueDoesNotExist

    async def _persist_claim(self, changed: list[Message], expired: list[str]) -> None:
        await self._store.save_messages(changed)
        await self._store.delete_messages(expired)

    def _dead_letter_for(self, queue: QueueState) -> _DeadLetter:
        return _DeadLetter(self, queue)

    def move_to_dead_letter(self, message: Message, target: str) -> None:
        message.queue = target
        message.receive_count = 0
        message.first_received_at = None
        message.receipt_nonce = ""
        message.visible_at = self._clock.wall()
        self._queues[target].add(message)
        self._counters["dead_lettered"] += 1

    async def delete_message(self, name: str, receipt_handle: str) -> None:
        queue = self._queue(name)
        message_id, _ = self._parse_handle(name, receipt_handle)
        if queue.remove(message_id) is not None:
            await self._store.delete_messages([message_id])
            self._counters["deleted"] += 1

    async def delete_messages(
        self, name: str, receipt_handles: list[str]
    ) -> list[ReceiptHandleIsInvalid | None]:
        """Delete several in one transaction; per handle, None or why it was refused."""
        queue = self._queue(name)
        outcomes: list[ReceiptHandleIsInvalid | None] = []
        removed: list[str] = []
        for handle in receipt_handles:
            try:
                message_id, _ = self._parse_handle(name, handle)
            except ReceiptHandleIsInvalid as error:
                outcomes.append(error)
                continue
            outcomes.append(None)
            if queue.remove(message_id) is not None:
                removed.append(message_id)
        await self._store.delete_messages(removed)
        self._counters["deleted"] += len(removed)
        return outcomes

    async def change_visibility(self, name: str, receipt_handle: str, timeout_s: int) -> None:
        queue = self._queue(name)
        message_id, nonce = self._parse_handle(name, receipt_handle)
        if not 0 <= timeout_s <= MAX_VISIBILITY_S:
            raise SqsInvalidParameterValue(
                f"Value {timeout_s} for parameter VisibilityTimeout is invalid. Reason: Must "
                f"be between 0 and {MAX_VISIBILITY_S}."
            )
        message = queue.messages.get(message_id)
        now = self._clock.wall()
        if message is None or message.visible_at <= now:
            raise MessageNotInflight("The message referred to isn't in flight.")
        if message.receipt_nonce != nonce:
            raise SqsInvalidParameterValue(
                f"Value {receipt_handle} for parameter ReceiptHandle is invalid. Reason: "
                "The receipt handle has expired."
            )
        queue.set_visibility(message, now + timeout_s)
        await self._store.save_messages([message])

    def receipt_handle(self, message: Message) -> str:
        raw = f"{message.queue}\n{message.message_id}\n{message.receipt_nonce}".encode()
        return "EMBER" + base64.urlsafe_b64encode(raw).decode()

    def _parse_handle(self, name: str, handle: str) -> tuple[str, str]:
        try:
            queue, message_id, nonce = (
                base64.urlsafe_b64decode(handle.removeprefix("EMBER").encode()).decode().split("\n")
            )
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise ReceiptHandleIsInvalid(
                f'The input receipt handle "{handle}" is not a valid receipt handle.'
            ) from exc
        if not handle.startswith("EMBER") or queue != name:
            raise ReceiptHandleIsInvalid(
                f'The input receipt handle "{handle}" is not a valid receipt handle for this queue.'
            )
        return message_id, nonce


class _DeadLetter:
    """The redrive rule of one queue at one receive: past maxReceiveCount → its DLQ."""

    def __init__(self, service: QueueService, queue: QueueState) -> None:
        self._service = service
        self._redrive = queue.config.redrive

    def __call__(self, message: Message) -> bool:
        redrive = self._redrive
        if redrive is None or message.receive_count < redrive.max_receive_count:
            return False
        target = redrive.dead_letter_queue
        if target == message.queue or not self._service.exists(target):
            return False
        self._service.move_to_dead_letter(message, target)
        return True


def _delay(item: OutgoingMessage, config: QueueConfig) -> int:
    return config.delay_seconds if item.delay_s is None else item.delay_s


def _nonce() -> str:
    return secrets.token_hex(8)
