"""Provisioned concurrency: environments initialised ahead of invokes, per version or alias.

A configuration (``model/provisioned.py``) asks for ``requested`` environments of the
version its qualifier names (an alias: the version it points to). Allocation starts
them through placement (``Placement.provision``, so they hold their memory like any
environment), each initialised outside any invoke with
``AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency``, all at once. Status: ``IN_PROGRESS``
while allocating, ``READY`` once ``requested`` are initialised, ``FAILED`` with a reason
when an init fails (``FUNCTION_ERROR_INIT_FAILURE``, as Lambda says) or the host memory
budget has no room. Environments are kept (never reaped, never evicted); one that dies is
replaced. Lowering ``requested`` or deleting the configuration gives environments back
(idle ones are stopped at once, busy ones when their invoke ends). When an alias is
pointed elsewhere, ``follow`` (run with the reaper) moves its configuration along.

Configurations are durable (the store's ``provisioned_concurrency`` table) and allocated
again after a restart (``load``).

Scope: one per server. Invariants: at most one allocation task per configuration at a
time; ``_Allocation.envs`` holds only environments placement knows as provisioned; an
environment belongs to at most one allocation.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ember.errors import EmberError, InitFailed, TooManyRequestsException
from ember.invocation.environment import ExecutionEnvironment
from ember.invocation.placement import Placement, generation
from ember.model.functions import FunctionRecord
from ember.model.provisioned import ProvisionedConfig

log = logging.getLogger("ember")

Provisioner = Callable[[FunctionRecord], Awaitable[ExecutionEnvironment]]
Resolver = Callable[[str, str], FunctionRecord]  # (function, qualifier) => version record
INIT_FAILURE = "FUNCTION_ERROR_INIT_FAILURE"


class ProvisionedStatus(enum.StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    READY = "READY"
    FAILED = "FAILED"


class ProvisionedStore(Protocol):
    async def put_provisioned(self, config: ProvisionedConfig) -> None: ...

    async def delete_provisioned(
        self, function_name: str, qualifier: str | None = None
    ) -> None: ...

    async def list_provisioned(self) -> list[ProvisionedConfig]: ...


@dataclass(frozen=True, slots=True)
class ProvisionedState:
    """What Get/List report for one configuration."""

    config: ProvisionedConfig
    status: ProvisionedStatus
    reason: str | None
    allocated: int  # environments initialised now
    available: int  # of those, ready to take an invoke (not being replaced)


class _Allocation:
    def __init__(self, config: ProvisionedConfig, record: FunctionRecord) -> None:
        self.config = config
        self.record = record
        self.envs: set[ExecutionEnvironment] = set()
        self.status = ProvisionedStatus.IN_PROGRESS
        self.reason: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.removed = False


class ProvisionedConcurrency:
    def __init__(
        self, placement: Placement, provision: Provisioner, store: ProvisionedStore
    ) -> None:
        self._placement = placement
        self._provision = provision
        self._store = store
        self._allocations: dict[tuple[str, str], _Allocation] = {}
        self._owner: dict[ExecutionEnvironment, _Allocation] = {}
        placement.on_provisioned_lost = self._lost

    async def load(self, resolve: Resolver) -> None:
        """Allocate again every stored configuration (after a restart)."""
        for config in await self._store.list_provisioned():
            try:
                record = resolve(config.function_name, config.qualifier)
            except EmberError as error:
                log.warning("provisioned concurrency of %s:%s not restored: %s",
                            config.function_name, config.qualifier, error)  # fmt: skip
                continue
            self._begin(_Allocation(config, record))

    async def put(self, config: ProvisionedConfig, record: FunctionRecord) -> ProvisionedState:
        """Create or change a configuration; allocation goes on in the background."""
        await self._store.put_provisioned(config)
        current = self._allocations.get(config.key)
        if current is not None and generation(current.record) == generation(record):
            current.config = config
            current.status, current.reason = ProvisionedStatus.IN_PROGRESS, None
            self._shrink(current)
            if current.task is None:
                self._begin(current)
            return self.state(current)
        if current is not None:  # the alias points to another version now
            self._drop(current)
        allocation = _Allocation(config, record)
        self._begin(allocation)
        return self.state(allocation)

    async def delete(self, function_name: str, qualifier: str) -> bool:
        allocation = self._allocations.get((function_name, qualifier))
        if allocation is None:
            return False
        await self._store.delete_provisioned(function_name, qualifier)
        self._drop(allocation)
        return True

    async def forget(self, function_name: str, version: str | None = None) -> None:
        """The function (``version`` None) or one version is gone: its configurations go."""
        if version is None:
            await self._store.delete_provisioned(function_name)
        for key in [k for k in self._allocations if k[0] == function_name]:
            allocation = self._allocations.get(key)  # a delete may have come in meanwhile
            if allocation is None:
                continue
            if version is None or allocation.record.version == version:
                await self._store.delete_provisioned(function_name, key[1])
                if self._allocations.get(key) is allocation:
                    self._drop(allocation)

    async def follow(self, resolve: Resolver) -> None:
        """Aliases move: a configuration whose alias now names another version is allocated
        for that one (its old environments go); one whose alias is gone goes too."""
        for key, allocation in list(self._allocations.items()):
            try:
                record = resolve(*key)
            except EmberError:
                await self._store.delete_provisioned(*key)
                self._drop(allocation)
                continue
            if generation(record) != generation(allocation.record):
                await self.put(allocation.config, record)

    def get(self, function_name: str, qualifier: str) -> ProvisionedState | None:
        allocation = self._allocations.get((function_name, qualifier))
        return None if allocation is None else self.state(allocation)

    def of_function(self, function_name: str) -> list[ProvisionedState]:
        return [self.state(a) for k, a in sorted(self._allocations.items())
                if k[0] == function_name]  # fmt: skip

    def requested(self, function_name: str) -> int:
        """The function's provisioned concurrency, all its configurations together."""
        return sum(a.config.requested for k, a in self._allocations.items()
                   if k[0] == function_name)  # fmt: skip

    def requested_by_function(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for (name, _), allocation in self._allocations.items():
            totals[name] = totals.get(name, 0) + allocation.config.requested
        return totals

    def state(self, allocation: _Allocation) -> ProvisionedState:
        allocated = len(allocation.envs)
        return ProvisionedState(
            allocation.config, allocation.status, allocation.reason, allocated, allocated
        )

    async def close(self) -> None:
        """Stop allocating. Starts under way are waited for, not cancelled (a cancelled
        start could leave a sandbox behind); placement stops every environment after."""
        allocations = list(self._allocations.values())
        for allocation in allocations:
            allocation.removed = True
        tasks = [a.task for a in allocations if a.task is not None]
        if tasks:
            await asyncio.wait(tasks)

    def _begin(self, allocation: _Allocation) -> None:
        self._allocations[allocation.config.key] = allocation
        allocation.task = asyncio.get_running_loop().create_task(self._allocate(allocation))

    async def _allocate(self, allocation: _Allocation) -> None:
        """Start the missing environments, all at once, until there are enough."""
        try:
            while not allocation.removed:
                missing = allocation.config.requested - len(allocation.envs)
                if missing <= 0:
                    allocation.status = ProvisionedStatus.READY
                    break
                starts = [self._placement.provision(allocation.record, self._provision)
                          for _ in range(missing)]  # fmt: skip
                results = await asyncio.gather(*starts, return_exceptions=True)
                failure = self._adopt(allocation, results)
                if failure is not None:
                    allocation.status, allocation.reason = ProvisionedStatus.FAILED, failure
                    break
            self._shrink(allocation)
        finally:
            allocation.task = None

    def _adopt(
        self, allocation: _Allocation, results: list[ExecutionEnvironment | BaseException]
    ) -> str | None:
        """Keep the environments that started; the first failure's reason, if any."""
        failure: str | None = None
        for result in results:
            if isinstance(result, ExecutionEnvironment):
                if allocation.removed:
                    self._placement.unprovision(result)
                else:
                    allocation.envs.add(result)
                    self._owner[result] = allocation
            elif isinstance(result, BaseException) and failure is None:
                failure = _reason(result)
        return failure

    def _shrink(self, allocation: _Allocation) -> None:
        """Give back environments beyond ``requested``."""
        while len(allocation.envs) > allocation.config.requested:
            self._release(allocation, next(iter(allocation.envs)))

    def _drop(self, allocation: _Allocation) -> None:
        allocation.removed = True
        self._allocations.pop(allocation.config.key, None)
        for env in list(allocation.envs):
            self._release(allocation, env)

    def _release(self, allocation: _Allocation, env: ExecutionEnvironment) -> None:
        allocation.envs.discard(env)
        self._owner.pop(env, None)
        self._placement.unprovision(env)

    def _lost(self, env: ExecutionEnvironment) -> None:
        """Placement says a provisioned environment died: replace it."""
        allocation = self._owner.pop(env, None)
        if allocation is None:
            return
        allocation.envs.discard(env)
        if not allocation.removed and allocation.task is None:
            self._begin(allocation)


def _reason(error: BaseException) -> str:
    if isinstance(error, InitFailed):
        return INIT_FAILURE
    if isinstance(error, TooManyRequestsException):
        return error.message.removeprefix("Rate Exceeded. ")
    return f"Environments could not be started: {error}"
