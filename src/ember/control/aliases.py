"""Aliases: named pointers to a published version (or $LATEST), with weighted routing.

Create/Get/Update/Delete/List with Lambda's rules and messages:

* name: 1-128 characters of ``[a-zA-Z0-9-_]``, not all digits (a number is a version);
* FunctionVersion: ``$LATEST`` or a version number, which must exist;
* RoutingConfig.AdditionalVersionWeights: at most one more version, a published one other
  than the primary, with a weight in [0, 1); the primary must be published too, and both
  versions must have the same execution role and the same dead-letter configuration
  (Lambda's requirements for weighted aliases).

Invoking an alias picks the extra version with its weight, else the primary, with an
injected ``random.Random`` (deterministic under a seed).

Scope: one per server, owned by the registry. Invariants: the in-memory map equals the
store's rows (store first, then the map); every change holds the registry's lock, so a
version that an alias names is not deleted under it.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Protocol

from ember.control import fields as f
from ember.control.versions import REVISION_MISMATCH, is_version_number
from ember.errors import (
    InvalidParameterValueException,
    PreconditionFailedException,
    ResourceConflictException,
    ResourceNotFoundException,
)
from ember.model.arns import validation_error
from ember.model.functions import LATEST, AliasRecord, FunctionRecord
from ember.store.base import Store

ALIAS_NAME_PATTERN = r"(?!^[0-9]+$)([a-zA-Z0-9-_]+)"
FUNCTION_VERSION_PATTERN = r"(\$LATEST|[0-9]+)"
WEIGHT_KEY_PATTERN = r"[0-9]+"
MAX_DESCRIPTION = 256


class VersionDirectory(Protocol):
    """What aliases need of the registry."""

    def get(self, name: str, qualifier: str | None = None) -> FunctionRecord: ...

    def arn(self, name: str, qualifier: str | None = None) -> str: ...


@dataclass(frozen=True, slots=True)
class AliasInput:
    """A CreateAlias / UpdateAlias body, checked against the model. None = not given."""

    name: str | None = None
    function_version: str | None = None
    description: str | None = None
    routing: dict[str, float] | None = None
    revision_id: str | None = None


def parse_alias_input(body: Mapping[str, Any], *, create: bool) -> AliasInput:
    checks = f.Violations()
    name = f.opt_str(body, "Name") if create else None
    if create and checks.required(name, "name"):
        assert name is not None
        if checks.length(name, "name", 128, 1):
            checks.pattern(name, "name", ALIAS_NAME_PATTERN)
    version = f.opt_str(body, "FunctionVersion")
    present = (not create or checks.required(version, "functionVersion")) and version is not None
    if present and checks.length(version or "", "functionVersion", 1024, 1):
        checks.pattern(version or "", "functionVersion", FUNCTION_VERSION_PATTERN)
    description = f.opt_str(body, "Description")
    if description is not None:
        checks.length(description, "description", MAX_DESCRIPTION)
    checks.raise_if_any()
    return AliasInput(name, version, description, _routing(body), f.opt_str(body, "RevisionId"))


def _routing(body: Mapping[str, Any]) -> dict[str, float] | None:
    config = f.opt_object(body, "RoutingConfig")
    if config is None:
        return None
    weights = f.opt_object(
        config, "AdditionalVersionWeights", "RoutingConfig.AdditionalVersionWeights"
    )
    if weights is None:
        return {}
    parsed: dict[str, float] = {}
    for key, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise f.type_error("RoutingConfig.AdditionalVersionWeights", "a number", value)
        parsed[key] = float(value)
    return parsed


def pick(alias: AliasRecord, rng: random.Random) -> str:
    """The version one invocation of ``alias`` runs: the extra one with its weight."""
    for version, weight in alias.routing.items():
        if rng.random() < weight:
            return version
    return alias.function_version


class Aliases:
    def __init__(
        self,
        store: Store,
        directory: VersionDirectory,
        lock: asyncio.Lock,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._directory = directory
        self._lock = lock
        self.rng = rng or random.Random()  # noqa: S311 - traffic split, not a secret
        self._aliases: dict[str, dict[str, AliasRecord]] = {}  # function => name => alias

    def load(self, aliases: list[AliasRecord]) -> None:
        for alias in aliases:
            self._aliases.setdefault(alias.function_name, {})[alias.name] = alias

    def find(self, function_name: str, name: str) -> AliasRecord | None:
        return self._aliases.get(function_name, {}).get(name)

    def get(self, function_name: str, name: str) -> AliasRecord:
        self._directory.get(function_name)  # the function's own 404 first
        alias = self.find(function_name, name)
        if alias is None:
            arn = self._directory.arn(function_name, name)
            raise ResourceNotFoundException(f"Cannot find alias arn: {arn}")
        return alias

    def of(self, function_name: str, function_version: str | None = None) -> list[AliasRecord]:
        """ListAliases: a function's aliases by name (those of ``function_version`` only)."""
        self._directory.get(function_name)
        aliases = self._aliases.get(function_name, {})
        return [
            aliases[name]
            for name in sorted(aliases)
            if function_version is None or aliases[name].function_version == function_version
        ]

    def referencing(self, function_name: str, version: str) -> list[str]:
        """Names of the aliases that route to ``version`` (DeleteFunction refuses then)."""
        aliases = self._aliases.get(function_name, {})
        return [name for name in sorted(aliases) if version in aliases[name].versions()]

    def forget(self, function_name: str) -> None:
        """The function was deleted (its rows went with it)."""
        self._aliases.pop(function_name, None)

    async def create(self, function_name: str, command: AliasInput) -> AliasRecord:
        assert command.name is not None
        assert command.function_version is not None
        async with self._lock:
            self._directory.get(function_name)
            existing = self.find(function_name, command.name)
            if existing is not None:
                arn = self._directory.arn(function_name, command.name)
                raise ResourceConflictException(f"Alias already exists: {arn}")
            self._directory.get(function_name, command.function_version)
            routing = self._check_routing(function_name, command.function_version, command.routing)
            alias = AliasRecord(
                function_name=function_name,
                name=command.name,
                function_version=command.function_version,
                revision_id=str(uuid.uuid4()),
                description=command.description or "",
                routing=MappingProxyType(routing),
            )
            if not await self._store.put_alias(alias, None):
                arn = self._directory.arn(function_name, command.name)
                raise ResourceConflictException(f"Alias already exists: {arn}")
            self._aliases.setdefault(function_name, {})[alias.name] = alias
        return alias

    async def update(self, function_name: str, name: str, command: AliasInput) -> AliasRecord:
        async with self._lock:
            current = self.get(function_name, name)
            if command.revision_id and command.revision_id != current.revision_id:
                raise PreconditionFailedException(REVISION_MISMATCH)
            version = command.function_version or current.function_version
            self._directory.get(function_name, version)
            routing = dict(current.routing) if command.routing is None else command.routing
            alias = replace(
                current,
                function_version=version,
                description=current.description
                if command.description is None
                else command.description,
                routing=MappingProxyType(self._check_routing(function_name, version, routing)),
                revision_id=str(uuid.uuid4()),
            )
            if not await self._store.put_alias(alias, current.revision_id):
                raise PreconditionFailedException(REVISION_MISMATCH)
            self._aliases[function_name][name] = alias
        return alias

    async def delete(self, function_name: str, name: str) -> None:
        async with self._lock:
            self.get(function_name, name)
            await self._store.delete_alias(function_name, name)
            del self._aliases[function_name][name]

    def _check_routing(
        self, function_name: str, primary: str, weights: dict[str, float] | None
    ) -> dict[str, float]:
        """AdditionalVersionWeights in Lambda's order of checks and words."""
        if not weights:
            return {}
        if len(weights) > 1:
            raise InvalidParameterValueException(
                "Number of items in AdditionalVersionWeights cannot be greater than 1"
            )
        ((version, weight),) = weights.items()
        if not 0.0 <= weight < 1.0:
            raise validation_error(
                [
                    f"Value '{{{version}={weight}}}' at 'routingConfig.additionalVersionWeights' "
                    "failed to satisfy constraint: Map value must satisfy constraint: [Member "
                    "must have value less than or equal to 1.0, Member must have value greater "
                    "than or equal to 0.0, Member must not be null]"
                ]
            )
        if version == primary:
            raise InvalidParameterValueException(
                f"Invalid function version {primary}. Function version {primary} is already "
                "included in routing configuration."
            )
        if primary == LATEST:
            raise InvalidParameterValueException(
                "$LATEST is not supported for an alias pointing to more than 1 version"
            )
        if not is_version_number(version):
            raise validation_error(
                [
                    f"Value '{{{version}={weight}}}' at 'routingConfig.additionalVersionWeights' "
                    "failed to satisfy constraint: Map keys must satisfy constraint: [Member "
                    "must have length less than or equal to 1024, Member must have length "
                    "greater than or equal to 1, Member must satisfy regular expression "
                    f"pattern: {WEIGHT_KEY_PATTERN}, Member must not be null]"
                ]
            )
        _check_compatible(
            self._directory.get(function_name, primary), self._directory.get(function_name, version)
        )
        return {version: weight}


def _check_compatible(primary: FunctionRecord, extra: FunctionRecord) -> None:
    """Lambda routes an alias between two versions only with one role and one DLQ."""
    if primary.config.role != extra.config.role:
        raise InvalidParameterValueException(
            f"Versions {primary.version} and {extra.version} of an alias must have the same "
            f"execution role ({primary.config.role} != {extra.config.role})."
        )
    if primary.config.dead_letter_target != extra.config.dead_letter_target:
        raise InvalidParameterValueException(
            f"Versions {primary.version} and {extra.version} of an alias must have the same "
            "dead-letter queue configuration."
        )
