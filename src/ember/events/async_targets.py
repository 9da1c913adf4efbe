"""What the async dispatcher sees of the registry and of the queue service.

The dispatcher (``invocation/async_events.py``) sits below ``control`` and ``events`` in
the import order, so these two adapters hand it the function registry (a record by name,
None once deleted) and the queue service (send one message to a queue named by ARN).

Scope: one of each per server; stateless.
"""

from __future__ import annotations

from ember.control.registry import FunctionRegistry
from ember.errors import ClientError
from ember.events.messages import MessageAttribute
from ember.events.queues import OutgoingMessage, QueueService
from ember.model.functions import FunctionRecord


class RegistryFunctions:
    def __init__(self, registry: FunctionRegistry) -> None:
        self._registry = registry

    def resolve(self, name: str, qualifier: str | None) -> FunctionRecord | None:
        """What one dispatch runs (an alias with a routing weight picks its version)."""
        try:
            return self._registry.resolve(name, qualifier)[0]
        except ClientError:
            return None

    def arn(self, name: str, qualifier: str | None = None) -> str:
        return self._registry.arn(name, qualifier)


class QueueServiceSink:
    def __init__(self, queues: QueueService) -> None:
        self._queues = queues

    def exists(self, queue_arn: str) -> bool:
        name = self._queues.name_from_arn(queue_arn)
        return name is not None and self._queues.exists(name)

    async def send(self, queue_arn: str, body: str, attributes: dict[str, tuple[str, str]]) -> bool:
        name = self._queues.name_from_arn(queue_arn)
        if name is None or not self._queues.exists(name):
            return False
        message = OutgoingMessage(
            body=body,
            attributes={
                key: MessageAttribute(kind, value) for key, (kind, value) in attributes.items()
            },
            system_attributes={},
        )
        await self._queues.send(name, [message])
        return True
