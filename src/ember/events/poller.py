"""The pollers of one enabled event source mapping: receive a batch, invoke, settle it.

Scope: one ``MappingPoller`` per enabled mapping, built by the ``MappingService``. It
runs 1..N worker tasks, N = ``ScalingConfig.MaximumConcurrency`` or
``DEFAULT_MAX_CONCURRENCY``: a worker that gathers a full batch (a backlog) starts
another, one whose long poll comes back empty ends unless it is the last. Each worker:

1. gathers a batch: one long poll (≤ 20 s) for the first messages, then more until
   BatchSize, the batching window, or the 6 MB payload limit (extra messages are made
   visible again at once);
2. invokes the function synchronously with the SQS event;
3. settles it: success deletes the batch; a function error deletes nothing (the messages
   reappear after the visibility timeout, so the queue's redrive policy applies); with
   ReportBatchItemFailures only the reported ids are kept (``batches.failed_items``); a
   throttle retries the same batch after a back-off while its visibility lasts.

Invariant: a message is deleted only after an invoke whose outcome says so; a stop or a
crash at any other point leaves it to reappear after its visibility timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from ember.clock import Clock
from ember.errors import QueueDoesNotExist
from ember.events.batches import ALL, failed_items, sqs_event
from ember.events.caller import CallOutcome, FunctionCaller
from ember.events.mapping_config import MappingConfig
from ember.events.messages import Message
from ember.events.queues import QueueService

log = logging.getLogger("ember.events")

DEFAULT_MAX_CONCURRENCY = 5
LONG_POLL_S = 20
PAYLOAD_LIMIT = 6 * 1024 * 1024
RECORD_OVERHEAD = 1024  # generous: keys, ids, receipt handle, attributes of one record
MISSING_QUEUE_BACKOFF_S = 5.0
ERROR_BACKOFF_S = 1.0
RETRY_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


async def clock_sleep(clock: Clock, seconds: float) -> None:
    """A back-off on the injected clock (a timer and a future, never a busy loop)."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    timer = clock.call_later(seconds, wake)
    try:
        await future
    finally:
        timer.cancel()


@dataclass
class PollerStatistics:
    batches: int = 0
    messages: int = 0
    deleted: int = 0
    kept: int = 0
    function_errors: int = 0
    retries: int = 0
    peak_workers: int = 0


class MappingPoller:
    """See the module docstring. ``last_result`` is Lambda's LastProcessingResult."""

    def __init__(
        self, mapping: MappingConfig, queues: QueueService, caller: FunctionCaller, clock: Clock
    ) -> None:
        self.mapping = mapping
        self._queues = queues
        self._caller = caller
        self._clock = clock
        self._workers: dict[asyncio.Task[None], str] = {}  # task => "gather" | "process"
        self._stopping = False
        self.stats = PollerStatistics()
        self.last_result = "No records processed"

    @property
    def max_workers(self) -> int:
        return self.mapping.max_concurrency or DEFAULT_MAX_CONCURRENCY

    def statistics(self) -> dict[str, int]:
        return {**self.stats.__dict__, "workers": len(self._workers)}

    def start(self) -> None:
        self._spawn()

    def request_stop(self) -> None:
        """Stop polling now (synchronously): cancel workers waiting for messages."""
        self._stopping = True
        for task, phase in list(self._workers.items()):
            if phase == "gather":
                task.cancel()

    async def stop(self) -> None:
        """Stop polling and wait for the workers; invokes in flight end first."""
        self.request_stop()
        await asyncio.gather(*self._workers, return_exceptions=True)

    def _spawn(self) -> None:
        if self._stopping or len(self._workers) >= self.max_workers:
            return
        task = asyncio.get_running_loop().create_task(self._work())
        self._workers[task] = "gather"
        task.add_done_callback(lambda done: self._workers.pop(done, None))
        self.stats.peak_workers = max(self.stats.peak_workers, len(self._workers))

    async def _work(self) -> None:
        """One worker: batches until stopped, or until the backlog is gone (not the last).

        No failure ends a worker silently: anything unexpected is logged and backed off,
        and the messages involved reappear after their visibility timeout.
        """
        task = asyncio.current_task()
        assert task is not None
        while not self._stopping:
            self._workers[task] = "gather"
            try:
                batch = await self._gather()
            except QueueDoesNotExist:
                await clock_sleep(self._clock, MISSING_QUEUE_BACKOFF_S)
                continue
            except Exception:
                log.exception("event source mapping %s: receive failed", self.mapping.uuid)
                await clock_sleep(self._clock, ERROR_BACKOFF_S)
                continue
            if not batch:
                if len(self._workers) > 1:
                    return
                continue
            await self._run_batch(task, batch)

    async def _run_batch(self, task: asyncio.Task[None], batch: list[Message]) -> None:
        self._workers[task] = "process"
        if len(batch) >= self.mapping.batch_size:
            self._spawn()
        try:
            await self._process(batch)
        except Exception:
            log.exception("event source mapping %s: batch failed", self.mapping.uuid)
            await clock_sleep(self._clock, ERROR_BACKOFF_S)

    async def _gather(self) -> list[Message]:
        mapping, queue = self.mapping, self.mapping.queue
        batch = await self._queues.receive(queue, min(10, mapping.batch_size), None, LONG_POLL_S)
        if not batch:
            return []
        deadline = self._clock.monotonic() + mapping.window_s
        while len(batch) < mapping.batch_size and self._size(batch) < PAYLOAD_LIMIT:
            remaining = deadline - self._clock.monotonic()
            if mapping.window_s and remaining <= 0:
                break
            wait = min(remaining, LONG_POLL_S) if mapping.window_s else 0
            limit = min(10, mapping.batch_size - len(batch))
            more = await self._queues.receive(queue, limit, None, wait)
            if not more and not mapping.window_s:
                break
            batch.extend(more)
        return await self._fit(batch)

    @staticmethod
    def _size(batch: list[Message]) -> int:
        return sum(m.size() + RECORD_OVERHEAD for m in batch)

    async def _fit(self, batch: list[Message]) -> list[Message]:
        """Keep what fits in one 6 MB payload; make the rest visible again now."""
        total, kept = 0, list[Message]()
        for message in batch:
            total += message.size() + RECORD_OVERHEAD
            if total > PAYLOAD_LIMIT and kept:
                handle = self._queues.receipt_handle(message)
                await self._queues.change_visibility(self.mapping.queue, handle, 0)
            else:
                kept.append(message)
        return kept

    async def _process(self, batch: list[Message]) -> None:
        mapping = self.mapping
        event = sqs_event(
            batch,
            self._queues.receipt_handle,
            mapping.event_source_arn,
            self._queues.region,
            self._queues.account,
        )
        self.stats.batches += 1
        self.stats.messages += len(batch)
        outcome = await self._call(json.dumps(event).encode(), batch)
        if outcome is None or outcome.kind != "ok":
            self.stats.function_errors += 1
            self.stats.kept += len(batch)
            self.last_result = "PROBLEM: Function call failed"
            return
        keep = failed_items(outcome.payload, {m.message_id for m in batch})
        if mapping.report_failures and keep == ALL:
            self.stats.kept += len(batch)
            self.last_result = "PROBLEM: Function call failed"
            return
        kept_ids = keep if mapping.report_failures and isinstance(keep, set) else set()
        done = [m for m in batch if m.message_id not in kept_ids]
        await self._delete(done)
        self.stats.kept += len(batch) - len(done)
        self.last_result = "OK"

    async def _call(self, payload: bytes, batch: list[Message]) -> CallOutcome | None:
        """Invoke; on ``retry`` back off and try again while the batch stays invisible."""
        hidden_until = min(m.visible_at for m in batch)
        for delay in (*RETRY_BACKOFF_S, *([RETRY_BACKOFF_S[-1]] * 1000)):
            outcome = await self._caller.call(self.mapping.function_arn, payload)
            if outcome.kind != "retry":
                return outcome
            self.stats.retries += 1
            if self._stopping or self._clock.wall() + delay >= hidden_until - 1:
                return None
            await clock_sleep(self._clock, delay)
        return None

    async def _delete(self, messages: list[Message]) -> None:
        handles = [self._queues.receipt_handle(m) for m in messages]
        try:
            await self._queues.delete_messages(self.mapping.queue, handles)
        except QueueDoesNotExist:
            return
        self.stats.deleted += len(messages)
