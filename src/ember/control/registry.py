"""The function registry: functions, their published versions and aliases, with Lambda's
lifecycle.

Lifecycle (lambda-spec.md §5.6): CreateFunction answers ``State: Pending``; once the code
is unpacked the function turns ``Active`` (with a new RevisionId). An update answers
``LastUpdateStatus: InProgress`` and turns ``Successful`` the same way; a second update
while one is in progress is refused with 409. Records left Pending/InProgress by a crash
are finished at the next start.

Qualifiers (``get`` / ``resolve``): none or ``$LATEST`` is ``$LATEST``; a number is that
published version (``control/versions.py``); anything else is an alias (``aliases.py``),
which ``resolve`` turns into one of its versions by weight. Versions are immutable: updates
touch ``$LATEST`` only. Reserved concurrency is the function's, shared by all versions.

Scope: one per server. Invariants: the in-memory maps equal the store's rows (every write
goes to the store first, then the maps); writes are serialised by one lock;
``on_change(name, version)`` is called after every change of code, configuration or
existence of ``$LATEST`` (version ``$LATEST``), of one version, or of the whole function
(``None``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from ember.clock import Clock
from ember.control import versions as v
from ember.control.aliases import Aliases, pick
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
from ember.model.functions import (
    LATEST,
    CodeInfo,
    FunctionConfig,
    FunctionRecord,
    State,
    UpdateStatus,
)
from ember.store.base import Store
from ember.store.blobs import BlobStore

log = logging.getLogger("ember.control")

UNRESERVED_MINIMUM = 100  # Lambda keeps at least this much of the account unreserved

REVISION_MISMATCH = v.REVISION_MISMATCH

# Checks a configuration's Layers against the code (sha256) and fills in their sizes;
# the third argument lists the layers the function already had (control/layers.py).
LayerAttacher = Callable[[FunctionConfig, str, tuple[str, ...]], Awaitable[FunctionConfig]]


class FunctionRegistry:
    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        clock: Clock,
        region: str,
        account_id: str,
        runtimes: Callable[[], list[str]],
        on_change: Callable[[str, str | None], None] = lambda _name, _version: None,
        account_concurrency: int = 1000,
        rng: random.Random | None = None,
        attach_layers: LayerAttacher | None = None,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._clock = clock
        self._region = region
        self._account = account_id
        self._runtimes = runtimes
        self._on_change = on_change
        self.account_concurrency = account_concurrency
        self._attach_layers = attach_layers
        self._functions: dict[str, FunctionRecord] = {}  # name => current $LATEST record
        self._reserved_total = 0  # the sum of their reserved concurrency (kept by _set)
        self._versions: dict[str, dict[str, FunctionRecord]] = {}  # name => number => version
        self._lock = asyncio.Lock()
        self.aliases = Aliases(store, self, self._lock, rng)
        self._transitions: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        """Read every function, version and alias; finish interrupted transitions."""
        for record in await self._store.list_functions():
            self._set(record)
        for version in await self._store.list_versions():
            self._versions.setdefault(version.name, {})[version.version] = version
        self.aliases.load(await self._store.list_aliases())
        for name, record in self._functions.items():
            versions = self._versions.get(name, {}).values()
            if self._unsettled(record) or any(x.state is State.PENDING for x in versions):
                self._schedule_settle(name)

    def installed_runtimes(self) -> list[str]:
        return self._runtimes()

    def arn(self, name: str, qualifier: str | None = None) -> str:
        return function_arn(self._region, self._account, name, qualifier)

    def get(self, name: str, qualifier: str | None = None) -> FunctionRecord:
        """The record ``qualifier`` names: $LATEST, a version, or an alias's primary version."""
        latest = self._functions.get(name)
        if latest is None:
            raise ResourceNotFoundException(f"Function not found: {self.arn(name, qualifier)}")
        if qualifier is None or qualifier == LATEST:
            return latest
        if not v.is_version_number(qualifier):
            alias = self.aliases.find(name, qualifier)
            if alias is None:
                raise ResourceNotFoundException(f"Function not found: {self.arn(name, qualifier)}")
            qualifier = alias.function_version
            if qualifier == LATEST:
                return latest
        version = self._versions.get(name, {}).get(qualifier)
        if version is None:
            raise ResourceNotFoundException(f"Function not found: {self.arn(name, qualifier)}")
        if version.reserved_concurrency != latest.reserved_concurrency:  # the function's
            version = replace(version, reserved_concurrency=latest.reserved_concurrency)
        return version

    def resolve(self, name: str, qualifier: str | None = None) -> tuple[FunctionRecord, str]:
        """What one invocation runs: the record and its version (an alias picks by weight)."""
        if qualifier is not None and qualifier != LATEST and not v.is_version_number(qualifier):
            alias = self.aliases.find(name, qualifier)
            if alias is not None and alias.routing:
                record = self.get(name, pick(alias, self.aliases.rng))
                return record, record.version
        record = self.get(name, qualifier)
        return record, record.version

    def versions(self, name: str) -> list[FunctionRecord]:
        """$LATEST and every published version, in ListVersionsByFunction's order."""
        latest = self.get(name)
        return v.ordered(latest, [self.get(name, n) for n in self._versions.get(name, {})])

    def reserved_total(self) -> int:
        return self._reserved_total

    def _set(self, record: FunctionRecord) -> None:
        """Every change of a $LATEST record goes through here (it keeps the reserved total)."""
        previous = self._functions.get(record.name)
        self._reserved_total -= 0 if previous is None else previous.reserved_concurrency or 0
        self._reserved_total += record.reserved_concurrency or 0
        self._functions[record.name] = record

    def draws_on_unreserved(self, name: str) -> bool:
        """The function exists and has no reservation (it shares the unreserved pool)."""
        record = self._functions.get(name)
        return record is not None and record.reserved_concurrency is None

    def unreserved_pool(self) -> int:
        """What functions without a reservation share: the account limit less reservations."""
        return self.account_concurrency - self.reserved_total()

    async def set_reserved_concurrency(
        self, name: str, reserved: int | None, claimed_elsewhere: int = 0
    ) -> FunctionRecord:
        """PutFunctionConcurrency (an int) / DeleteFunctionConcurrency (None).

        ``claimed_elsewhere``: what else leaves the unreserved pool (other functions'
        provisioned concurrency), so that a reservation cannot push it below the minimum.
        """
        async with self._lock:
            current = self.get(name)
            if reserved is not None:
                others = self.reserved_total() - (current.reserved_concurrency or 0)
                free = self.account_concurrency - others - claimed_elsewhere - reserved
                if free < UNRESERVED_MINIMUM:
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
        """CreateFunction; with ``Publish`` the answer is version 1 (Pending, like $LATEST)."""
        code = await self._store_code(command.zip_file)
        config = await self._layers(command.config, code)
        async with self._lock:
            if command.name in self._functions:
                raise ResourceConflictException(f"Function already exist: {command.name}")
            record = FunctionRecord(
                name=command.name,
                config=config,
                code=code,
                revision_id=str(uuid.uuid4()),
                last_modified=self._clock.wall(),
                tags=MappingProxyType(dict(command.tags)),
            )
            if not await self._store.create_function(record):
                raise ResourceConflictException(f"Function already exist: {command.name}")
            self._set(record)
            if command.publish:
                record = await self._publish_locked(record.name, None, None, None, pending=True)
        self._on_change(record.name, None)
        self._schedule_settle(record.name)
        return record

    async def update_code(self, name: str, body: dict[str, Any]) -> FunctionRecord:
        self.get(name)  # a missing function is a 404 before any work on the upload
        command = await asyncio.to_thread(parse_update_code, body)
        code = await self._store_code(command.zip_file)
        current = self.get(name).config
        await self._layers(current, code, current.layers)  # the new code with the layers
        if command.dry_run:
            return replace(self.get(name), code=code)
        return await self._update(
            name, command.revision_id, lambda r: replace(r, code=code), publish=command.publish
        )

    async def update_configuration(self, name: str, body: dict[str, Any]) -> FunctionRecord:
        current = self.get(name)
        config, revision = parse_update_configuration(body, current.config, self._runtimes())
        config = await self._layers(config, current.code, current.config.layers)
        return await self._update(name, revision, lambda r: replace(r, config=config))

    async def publish(
        self,
        name: str,
        code_sha256: str | None = None,
        description: str | None = None,
        revision_id: str | None = None,
    ) -> FunctionRecord:
        """PublishVersion: a new version, or the last one if nothing changed since."""
        async with self._lock:
            return await self._publish_locked(name, code_sha256, description, revision_id)

    async def delete(self, name: str, qualifier: str | None = None) -> None:
        """DeleteFunction: the whole function (versions and aliases too), or one version."""
        async with self._lock:
            self.get(name)
            if qualifier is not None:
                await self._delete_version(name, qualifier)
                return
            await self._store.delete_function(name)
            self._reserved_total -= self._functions.pop(name).reserved_concurrency or 0
            self._versions.pop(name, None)
            self.aliases.forget(name)
        self._on_change(name, None)

    async def _delete_version(self, name: str, qualifier: str) -> None:
        if qualifier == LATEST:
            raise InvalidParameterValueException(
                "$LATEST version cannot be deleted without deleting the function."
            )
        if not v.is_version_number(qualifier):
            raise InvalidParameterValueException(
                f"Deletion of aliases is not supported by DeleteFunction: use DeleteAlias "
                f"for {self.arn(name, qualifier)}."
            )
        if qualifier not in self._versions.get(name, {}):
            raise ResourceNotFoundException(f"Function not found: {self.arn(name, qualifier)}")
        users = self.aliases.referencing(name, qualifier)
        if users:
            raise ResourceConflictException(
                "Unable to delete version because the following aliases reference it: "
                f"[{', '.join(users)}]"
            )
        await self._store.delete_version(name, qualifier)
        del self._versions[name][qualifier]
        self._on_change(name, qualifier)

    async def _publish_locked(
        self,
        name: str,
        code_sha256: str | None,
        description: str | None,
        revision_id: str | None,
        *,
        pending: bool = False,
    ) -> FunctionRecord:
        """Publish ``$LATEST`` (``pending``: also while it settles, for Publish=true)."""
        latest = self.get(name)
        v.check_preconditions(latest, code_sha256, revision_id)
        if not pending and self._unsettled(latest):
            raise self._in_progress(name)
        previous = self._versions.get(name, {}).get(str(latest.last_version))
        if v.unchanged(latest, previous):
            return self.get(name, str(latest.last_version))
        number = latest.last_version + 1
        version = v.snapshot(latest, number, description)
        bumped = replace(latest, last_version=number, revision_id=str(uuid.uuid4()))
        if not await self._store.publish_version(bumped, latest.revision_id, version):
            raise self._changed_concurrently(name)
        self._set(bumped)
        self._versions.setdefault(name, {})[version.version] = version
        return version

    async def _layers(
        self, config: FunctionConfig, code: CodeInfo, previous: tuple[str, ...] = ()
    ) -> FunctionConfig:
        if self._attach_layers is None:
            return config
        return await self._attach_layers(config, code.sha256_hex, previous)

    async def close(self) -> None:
        for task in list(self._transitions):
            task.cancel()
        await asyncio.gather(*self._transitions, return_exceptions=True)

    async def _update(
        self,
        name: str,
        expected_revision: str | None,
        change: Callable[[FunctionRecord], FunctionRecord],
        *,
        publish: bool = False,
    ) -> FunctionRecord:
        async with self._lock:
            current = self.get(name)
            if expected_revision is not None and expected_revision != current.revision_id:
                raise PreconditionFailedException(REVISION_MISMATCH)
            if self._unsettled(current):
                raise self._in_progress(name)
            record = replace(
                change(current),
                revision_id=str(uuid.uuid4()),
                last_modified=self._clock.wall(),
                last_update_status=UpdateStatus.IN_PROGRESS,
                last_update_status_reason="The function is being created.",
                last_update_status_reason_code="Creating",
            )
            await self._replace(current, record)
            if publish:
                record = await self._publish_locked(name, None, None, None, pending=True)
        self._on_change(name, LATEST)
        self._schedule_settle(name)
        return record

    @staticmethod
    def _unsettled(record: FunctionRecord) -> bool:
        return (
            record.state is State.PENDING or record.last_update_status is UpdateStatus.IN_PROGRESS
        )

    def _in_progress(self, name: str) -> ResourceConflictException:
        return ResourceConflictException(
            "The operation cannot be performed at this time. An update is in progress "
            f"for resource: {self.arn(name)}"
        )

    def _changed_concurrently(self, name: str) -> ResourceConflictException:
        return ResourceConflictException(
            f"The function {self.arn(name)} was changed concurrently; try again."
        )

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
                settled = current
            if settled is not current:
                await self._replace(current, settled)
            await self._settle_versions(name)

    async def _settle_versions(self, name: str) -> None:
        """Versions published while $LATEST settled (Publish=true) turn Active with it."""
        versions = self._versions.get(name, {})
        for number, version in list(versions.items()):
            if version.state is State.PENDING:
                await self._blobs.unpacked(version.code.sha256_hex)
                active = v.settled(version)
                await self._store.replace_version(active)
                versions[number] = active

    async def _replace(self, current: FunctionRecord, record: FunctionRecord) -> None:
        if not await self._store.replace_function(record, current.revision_id):
            raise self._changed_concurrently(record.name)
        self._set(record)

    async def change_tags(
        self, name: str, change: Callable[[MappingProxyType[str, str]], dict[str, str]]
    ) -> FunctionRecord:
        """Replace a function's tags by ``change(current tags)`` (control/tags.py); like a
        configuration change, it retires the function's idle environments (on_change)."""
        async with self._lock:
            current = self.get(name)
            record = replace(current, tags=MappingProxyType(change(current.tags)))
            await self._replace(current, record)
        self._on_change(name, None)  # tags are the function's: every version's environments
        return record
