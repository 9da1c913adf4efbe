"""Event source mappings: CRUD, Lambda's state transitions, persistence, their pollers.

Scope: one per server. Every mapping is in the events store and in memory (store first).
A request leaves the mapping in a transitional state (Creating, Enabling, Updating,
Disabling, Deleting) and returns it; a settle task then starts or stops the pollers and
records the settled state (Enabled, Disabled, or gone). After a restart ``load`` settles
every stored mapping the same way, so pollers resume where they were enabled.

Invariant: a mapping has a running ``MappingPoller`` iff its settled state is Enabled.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from ember.clock import Clock
from ember.errors import (
    InvalidParameterValueException,
    ResourceConflictException,
    ResourceInUseException,
    ResourceNotFoundException,
)
from ember.events.mapping_config import MappingConfig, apply_settings
from ember.events.poller import MappingPoller
from ember.events.queues import QueueService
from ember.events.store import EventsStore
from ember.model.arns import parse_function_ref
from ember.model.functions import FunctionRecord

PollerFactory = Callable[[MappingConfig], MappingPoller]


class FunctionDirectory(Protocol):
    """What mappings need of the function registry (``control.registry`` provides it)."""

    def get(self, name: str, qualifier: str | None = None) -> FunctionRecord: ...

    def arn(self, name: str, qualifier: str | None = None) -> str: ...


class MappingService:
    """See the module docstring."""

    def __init__(
        self,
        store: EventsStore,
        queues: QueueService,
        registry: FunctionDirectory,
        pollers: PollerFactory,
        clock: Clock,
    ) -> None:
        self._store = store
        self._queues = queues
        self._registry = registry
        self._new_poller = pollers
        self._clock = clock
        self._mappings: dict[str, MappingConfig] = {}
        self._pollers: dict[str, MappingPoller] = {}
        self._settling: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def statistics(self) -> dict[str, object]:
        return {
            "mappings": len(self._mappings),
            "pollers": {key: p.statistics() for key, p in self._pollers.items()},
        }

    async def load(self) -> None:
        for data in await self._store.load_mappings():
            mapping = MappingConfig.from_json(data)
            self._mappings[mapping.uuid] = mapping
            self._settle_later(mapping.uuid)

    def stop_polling(self) -> None:
        """Server shutdown: every poller stops taking batches, at once."""
        for poller in self._pollers.values():
            poller.request_stop()

    async def close(self) -> None:
        for task in list(self._settling):
            task.cancel()
        await asyncio.gather(*self._settling, return_exceptions=True)
        await asyncio.gather(*(p.stop() for p in self._pollers.values()))
        self._pollers.clear()

    # reads ------------------------------------------------------------------------------

    def get(self, mapping_id: str) -> MappingConfig:
        mapping = self._mappings.get(mapping_id)
        if mapping is None:
            raise ResourceNotFoundException("The resource you requested does not exist.")
        poller = self._pollers.get(mapping_id)
        return replace(mapping, last_result=poller.last_result) if poller else mapping

    def list(self, source_arn: str | None, function_name: str | None) -> list[MappingConfig]:
        wanted = self._function(function_name)[0] if function_name else None
        return [
            self.get(m.uuid)
            for m in sorted(self._mappings.values(), key=lambda m: (m.last_modified, m.uuid))
            if (source_arn is None or m.event_source_arn == source_arn)
            and (wanted is None or m.function_name == wanted)
        ]

    def _function(self, reference: str) -> tuple[str, str]:
        name, qualifier = parse_function_ref(reference, self._queues.region, self._queues.account)
        try:
            record = self._registry.get(name, qualifier)
        except ResourceNotFoundException as exc:
            raise ResourceNotFoundException("Function does not exist") from exc
        return record.name, self._registry.arn(record.name, qualifier)

    # writes -----------------------------------------------------------------------------

    async def create(self, body: dict[str, Any]) -> MappingConfig:
        source = body.get("EventSourceArn")
        if not isinstance(body.get("FunctionName"), str):
            raise InvalidParameterValueException("FunctionName is required.")
        name, arn = self._function(body["FunctionName"])
        queue = self._queue_of(source)
        for existing in self._mappings.values():
            if existing.event_source_arn == source and existing.function_arn == arn:
                raise ResourceConflictException(
                    f'An event source mapping with SQS arn (" {source} ") and function '
                    f'(" {name} ") already exists. Please update or delete the existing '
                    f"mapping with UUID {existing.uuid}"
                )
        mapping_id = str(uuid.uuid4())
        region, account = self._queues.region, self._queues.account
        mapping = MappingConfig(
            uuid=mapping_id,
            mapping_arn=f"arn:aws:lambda:{region}:{account}:event-source-mapping:{mapping_id}",
            function_name=name,
            function_arn=arn,
            event_source_arn=str(source),
            queue=queue,
            last_modified=self._clock.wall(),
        )
        mapping = apply_settings(mapping, body)
        return await self._transition(mapping, "Creating")

    def _queue_of(self, source: Any) -> str:
        if not isinstance(source, str) or not source.startswith("arn:aws:sqs:"):
            raise InvalidParameterValueException(
                "Unrecognized event source: Ember maps queues of its built-in SQS service only "
                "(EventSourceArn arn:aws:sqs:<region>:<account>:<queue>)."
            )
        queue = self._queues.name_from_arn(source)
        if queue is None or not self._queues.exists(queue):
            raise InvalidParameterValueException(
                "Error occurred while ReceiveMessage. SQS Error Code: "
                "AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified "
                "queue does not exist."
            )
        return queue

    async def update(self, mapping_id: str, body: dict[str, Any]) -> MappingConfig:
        current = self.get(mapping_id)
        if current.state == "Deleting":
            raise ResourceInUseException(
                f"Cannot update the event source mapping {mapping_id} because it is in use."
            )
        updated = apply_settings(current, body)
        if isinstance(body.get("FunctionName"), str):
            name, arn = self._function(body["FunctionName"])
            updated = replace(updated, function_name=name, function_arn=arn)
        updated = replace(updated, last_modified=self._clock.wall())
        if updated.enabled and not current.enabled:
            state = "Enabling"
        elif current.enabled and not updated.enabled:
            state = "Disabling"
        else:
            state = "Updating"
        return await self._transition(updated, state)

    async def delete(self, mapping_id: str) -> MappingConfig:
        current = self.get(mapping_id)
        return await self._transition(current, "Deleting")

    async def _transition(self, mapping: MappingConfig, state: str) -> MappingConfig:
        mapping = mapping.with_state(state)
        await self._store.save_mapping(mapping.uuid, mapping.to_json())
        self._mappings[mapping.uuid] = mapping
        self._settle_later(mapping.uuid)
        return mapping

    def _settle_later(self, mapping_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._settle(mapping_id))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, mapping_id: str) -> None:
        """Converge on the latest requested state; one settle per mapping at a time."""
        async with self._locks.setdefault(mapping_id, asyncio.Lock()):
            mapping = self._mappings.get(mapping_id)
            if mapping is None or self._is_settled(mapping):
                return
            poller = self._pollers.pop(mapping_id, None)
            if poller is not None:
                await poller.stop()
            if mapping.state == "Deleting":
                await self._store.delete_mapping(mapping_id)
                self._mappings.pop(mapping_id, None)
                self._locks.pop(mapping_id, None)
                return
            settled = "Enabled" if mapping.enabled and mapping.state != "Disabling" else "Disabled"
            if settled == "Enabled":
                self._pollers[mapping_id] = started = self._new_poller(mapping)
                started.start()
            if self._mappings.get(mapping_id) is mapping:  # no newer request meanwhile
                mapping = mapping.with_state(settled)
                await self._store.save_mapping(mapping_id, mapping.to_json())
                self._mappings[mapping_id] = mapping

    def _is_settled(self, mapping: MappingConfig) -> bool:
        running = mapping.uuid in self._pollers
        return (mapping.state == "Enabled" and running) or (
            mapping.state == "Disabled" and not running
        )
