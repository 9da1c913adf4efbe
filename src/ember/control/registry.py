"""The function registry: create, read, update, delete functions, with Lambda's lifecycle.

Lifecycle (lambda-spec.md §5.6): CreateFunction answers ``State: Pending``; once the code
is unpacked the function turns ``Active`` (with a new RevisionId). An update answers
``LastUpdateStatus: InProgress`` and turns ``Successful`` the same way; a second update
while one is in progress is refused with 409. Records left Pending/InProgress by a crash
are finished at the next start.

Scope: one per server. Invariants: the in-memory map equals the store's rows (every write
goes to the store first, then the map); writes are serialised by one lock; ``on_change``
is called after every change of code, configuration or existence of a function.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from ember.clock import Clock
from ember.control.code import inspect_zip
from ember.control.validation import (
    CreateFunctionInput,
    parse_update_code,
    parse_update_configuration,
)
from ember.errors import (
    InvalidParameterValueException,
    PreconditionFailedException,
    ResourceConflictException,
    ResourceNotFoundException,
)
from ember.model.arns import function_arn
from ember.model.functions import CodeInfo, FunctionRecord, State, UpdateStatus
from ember.store.base import Store
from ember.store.blobs import BlobStore

log = logging.getLogger("ember.control")

UNRESERVED_MINIMUM = 100  # Lambda keeps at least this much of the account unreserved

REVISION_MISMATCH = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)


class FunctionRegistry:
    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        clock: Clock,
        region: str,
        account_id: str,
        runtimes: Callable[[], list[str]],
        on_change: Callable[[str], None] = lambda _name: None,
        account_concurrency: int = 1000,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._clock = clock
        self._region = region
        self._account = account_id
        self._runtimes = runtimes
        self._on_change = on_change
        self.account_concurrency = account_concurrency
        self._functions: dict[str, FunctionRecord] = {}  # name => current $LATEST record
        self._lock = asyncio.Lock()
        self._transitions: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        """Read every function from the store and finish interrupted transitions."""
        for record in await self._store.list_functions():
            self._functions[record.name] = record
            if (
                record.state is State.PENDING
                or record.last_update_status is UpdateStatus.IN_PROGRESS
            ):
                self._schedule_settle(record.name)

    def installed_runtimes(self) -> list[str]:
        return self._runtimes()

    def arn(self, name: str, qualifier: str | None = None) -> str:
        return function_arn(self._region, self._account, name, qualifier)

    def get(self, name: str, qualifier: str | None = None) -> FunctionRecord:
        record = self._functions.get(name)
        if record is None or qualifier not in (None, "$LATEST"):
            raise ResourceNotFoundException(f"Function not found: {self.arn(name, qualifier)}")
        return record

    def reserved_total(self) -> int:
        return sum(r.reserved_concurrency or 0 for r in self._functions.values())

    def unreserved_pool(self) -> int:
        """What functions without a reservation share: the account limit less reservations."""
        return self.account_concurrency - self.reserved_total()

    async def set_reserved_concurrency(self, name: str, reserved: int | None) -> FunctionRecord:
        """PutFunctionConcurrency (an int) / DeleteFunctionConcurrency (None)."""
        async with self._lock:
            current = self.get(name)
            if reserved is not None:
                others = self.reserved_total() - (current.reserved_concurrency or 0)
                if self.account_concurrency - others - reserved < UNRESERVED_MINIMUM:
                    raise InvalidParameterValueException(
                        "Specified ReservedConcurrentExecutions for function decreases "
                        "account's UnreservedConcurrentExecution below its minimum value of "
                        f"[{UNRESERVED_MINIMUM}]."
                    )
            record = replace(current, reserved_concurrency=reserved)
            await self._replace(current, record)
        return record

    def list(self) -> list[FunctionRecord]:
        return [self._functions[name] for name in sorted(self._functions)]

    async def create(self, command: CreateFunctionInput) -> FunctionRecord:
        if command.publish:
            raise InvalidParameterValueException(
                "Publish is not supported yet by Ember: create the function without it."
            )
        code = await self._store_code(command.zip_file)
        async with self._lock:
            if command.name in self._functions:
                raise ResourceConflictException(f"Function already exist: {command.name}")
            record = FunctionRecord(
                name=command.name,
                config=command.config,
                code=code,
                revision_id=str(uuid.uuid4()),
                last_modified=self._clock.wall(),
                tags=MappingProxyType(dict(command.tags)),
            )
            if not await self._store.create_function(record):
                raise ResourceConflictException(f"Function already exist: {command.name}")
            self._functions[record.name] = record
        self._on_change(record.name)
        self._schedule_settle(record.name)
        return record

    async def update_code(self, name: str, body: dict[str, Any]) -> FunctionRecord:
        self.get(name)  # a missing function is a 404 before any work on the upload
        command = await asyncio.to_thread(parse_update_code, body)
        if command.publish:
            raise InvalidParameterValueException(
                "Publish is not supported yet by Ember: update the code without it."
            )
        code = await self._store_code(command.zip_file)
        if command.dry_run:
            return replace(self.get(name), code=code)
        return await self._update(name, command.revision_id, lambda r: replace(r, code=code))

    async def update_configuration(self, name: str, body: dict[str, Any]) -> FunctionRecord:
        current = self.get(name)
        config, revision = parse_update_configuration(body, current.config, self._runtimes())
        return await self._update(name, revision, lambda r: replace(r, config=config))

    async def delete(self, name: str, qualifier: str | None = None) -> None:
        if qualifier not in (None, "$LATEST"):
            raise ResourceNotFoundException(f"Function not found: {self.arn(name, qualifier)}")
        async with self._lock:
            self.get(name)
            await self._store.delete_function(name)
            del self._functions[name]
        self._on_change(name)

    async def close(self) -> None:
        for task in list(self._transitions):
            task.cancel()
        await asyncio.gather(*self._transitions, return_exceptions=True)

    async def _update(
        self,
        name: str,
        expected_revision: str | None,
        change: Callable[[FunctionRecord], FunctionRecord],
    ) -> FunctionRecord:
        async with self._lock:
            current = self.get(name)
            if expected_revision is not None and expected_revision != current.revision_id:
                raise PreconditionFailedException(REVISION_MISMATCH)
            if (
                current.last_update_status is UpdateStatus.IN_PROGRESS
                or current.state is State.PENDING
            ):
                raise ResourceConflictException(
                    "The operation cannot be performed at this time. An update is in progress "
                    f"for resource: {self.arn(name)}"
                )
            record = replace(
                change(current),
                revision_id=str(uuid.uuid4()),
                last_modified=self._clock.wall(),
                last_update_status=UpdateStatus.IN_PROGRESS,
                last_update_status_reason="The function is being created.",
                last_update_status_reason_code="Creating",
            )
            await self._replace(current, record)
        self._on_change(name)
        self._schedule_settle(name)
        return record

    async def _store_code(self, zip_file: bytes) -> CodeInfo:
        summary = await asyncio.to_thread(inspect_zip, zip_file)  # decompresses: off the loop
        await self._blobs.put_zip(summary.sha256_hex, zip_file)
        await self._blobs.unpacked(summary.sha256_hex)
        return CodeInfo(summary.sha256_hex, summary.sha256_b64, summary.size)

    def _schedule_settle(self, name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._settle(name))
        self._transitions.add(task)
        task.add_done_callback(self._transitions.discard)

    async def _settle(self, name: str) -> None:
        """Pending → Active, InProgress → Successful (the code is unpacked by now)."""
        try:
            await self._settle_locked(name)
        except Exception:
            log.exception("could not finish the update of %s; retried at the next start", name)

    async def _settle_locked(self, name: str) -> None:
        async with self._lock:
            current = self._functions.get(name)
            if current is None:
                return
            await self._blobs.unpacked(current.code.sha256_hex)
            settled = replace(current, revision_id=str(uuid.uuid4()))
            if current.state is State.PENDING:
                settled = replace(
                    settled,
                    state=State.ACTIVE,
                    state_reason=None,
                    state_reason_code=None,
                    last_update_status=UpdateStatus.SUCCESSFUL,
                )
            elif current.last_update_status is UpdateStatus.IN_PROGRESS:
                settled = replace(
                    settled,
                    last_update_status=UpdateStatus.SUCCESSFUL,
                    last_update_status_reason=None,
                    last_update_status_reason_code=None,
                )
            else:
                return
            await self._replace(current, settled)

    async def _replace(self, current: FunctionRecord, record: FunctionRecord) -> None:
        if not await self._store.replace_function(record, current.revision_id):
            raise ResourceConflictException(
                f"The function {self.arn(record.name)} was changed concurrently; try again."
            )
        self._functions[record.name] = record

    async def change_tags(
        self, name: str, change: Callable[[MappingProxyType[str, str]], dict[str, str]]
    ) -> FunctionRecord:
        """Replace a function's tags by ``change(current tags)`` (control/tags.py); like a
        configuration change, it retires the function's idle environments (on_change)."""
        async with self._lock:
            current = self.get(name)
            record = replace(current, tags=MappingProxyType(change(current.tags)))
            await self._replace(current, record)
        self._on_change(name)
        return record
