"""Provisioned concurrency: Put/Get/Delete/ListProvisionedConcurrencyConfig(s).

Routes (botocore): ``/2019-09-30/functions/{name}/provisioned-concurrency`` with
``?Qualifier=`` (PUT 202, GET 200, DELETE 204) or ``?List=ALL`` (GET 200).

Rules, as Lambda applies them (lambda-spec.md §7.1): a configuration lives on a
published version or an alias, never ``$LATEST``; ``ProvisionedConcurrentExecutions`` ≥ 1;
a function with reserved concurrency provisions at most its reservation (all its
configurations together); one without draws on the unreserved pool, which must keep 100.
An alias must point to a published version, without weights; a version and an alias that
points to it cannot both be provisioned.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ember.api.functions import FunctionsApi
from ember.api.http import json_response, parse_json_object
from ember.clock import Clock
from ember.control.registry import UNRESERVED_MINIMUM, FunctionRegistry
from ember.control.versions import is_version_number
from ember.errors import (
    InvalidParameterValueException,
    ProvisionedConcurrencyConfigNotFoundException,
    ResourceConflictException,
    ValidationException,
)
from ember.invocation.provisioned import ProvisionedConcurrency, ProvisionedState
from ember.model.functions import FunctionRecord
from ember.model.provisioned import ProvisionedConfig

LATEST = "$LATEST"
UNPUBLISHED = "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
NOT_A_VERSION = "The function resource provided must be an alias or a published version."
NOT_FOUND = "No Provisioned Concurrency Config found for this function"
OVER_RESERVED = (
    "Requested Provisioned Concurrency should not be greater than the "
    "reservedConcurrentExecution for function"
)
FIELD = "provisionedConcurrentExecutions"
WEIGHTED = "Alias with weights can not be used with Provisioned Concurrency"
VERSION_TAKEN = (
    "Alias can't be used for Provisioned Concurrency configuration on an already "
    "Provisioned version"
)
ALIAS_TAKEN = "Version is pointed by a Provisioned Concurrency alias"


class ProvisionedApi:
    """Scope: one per server."""

    def __init__(
        self,
        functions: FunctionsApi,
        registry: FunctionRegistry,
        provisioned: ProvisionedConcurrency,
        clock: Clock,
    ) -> None:
        self._functions = functions
        self._registry = registry
        self._provisioned = provisioned
        self._clock = clock

    def unreserved_claim(self, excluding: str | None = None) -> int:
        """Provisioned concurrency of functions without a reservation (but ``excluding``):
        it leaves the unreserved pool (GetAccountSettings' UnreservedConcurrentExecutions)."""
        totals = self._provisioned.requested_by_function()  # usually empty: cheap per invoke
        return sum(
            total
            for name, total in totals.items()
            if name != excluding and self._registry.draws_on_unreserved(name)
        )

    def unreserved_pool(self) -> int:
        return self._registry.unreserved_pool() - self.unreserved_claim()

    async def put(self, request: Request, body: bytes) -> Response:
        name, qualifier = self._functions.resolve(request)
        if qualifier in (None, LATEST):
            raise InvalidParameterValueException(UNPUBLISHED)
        assert qualifier is not None
        requested = _requested(parse_json_object(body).get("ProvisionedConcurrentExecutions"))
        record = self._registry.get(name, qualifier)
        self._check_target(name, qualifier, record)
        self._check_limits(name, qualifier, requested)
        config = ProvisionedConfig(name, qualifier, requested, self._clock.wall())
        state = await self._provisioned.put(config, record)
        return json_response(_shape(state), 202)

    async def get(self, request: Request, _body: bytes) -> Response:
        if request.query_params.get("List") == "ALL":
            return self._list(request)
        name, qualifier = self._qualified(request)
        state = self._provisioned.get(name, qualifier)
        if state is None:
            raise ProvisionedConcurrencyConfigNotFoundException(NOT_FOUND)
        return json_response(_shape(state))

    async def delete(self, request: Request, _body: bytes) -> Response:
        name, qualifier = self._qualified(request)
        if not await self._provisioned.delete(name, qualifier):
            raise ProvisionedConcurrencyConfigNotFoundException(NOT_FOUND)
        return Response(status_code=204)

    def _list(self, request: Request) -> Response:
        name, _ = self._functions.resolve(request)
        self._registry.get(name)
        configs = [
            {"FunctionArn": self._registry.arn(name, state.config.qualifier), **_shape(state)}
            for state in self._provisioned.of_function(name)
        ]
        return json_response({"ProvisionedConcurrencyConfigs": configs})

    def _qualified(self, request: Request) -> tuple[str, str]:
        """(name, qualifier) of an existing version or alias of an existing function."""
        name, qualifier = self._functions.resolve(request)
        if qualifier in (None, LATEST):
            self._registry.get(name)
            raise InvalidParameterValueException(NOT_A_VERSION)
        assert qualifier is not None
        self._registry.get(name, qualifier)
        return name, qualifier

    def _check_target(self, name: str, qualifier: str, record: FunctionRecord) -> None:
        """Lambda's rules on what may be provisioned (see the module docstring)."""
        if record.version == LATEST:  # an alias of $LATEST
            raise InvalidParameterValueException(UNPUBLISHED)
        if is_version_number(qualifier):
            for alias in self._registry.aliases.of(name, qualifier):
                if self._provisioned.get(name, alias.name) is not None:
                    raise ResourceConflictException(ALIAS_TAKEN)
            return
        alias = self._registry.aliases.get(name, qualifier)
        if alias.routing:
            raise InvalidParameterValueException(WEIGHTED)
        if self._provisioned.get(name, alias.function_version) is not None:
            raise ResourceConflictException(VERSION_TAKEN)

    def _check_limits(self, name: str, qualifier: str, requested: int) -> None:
        existing = self._provisioned.get(name, qualifier)
        mine = existing.config.requested if existing is not None else 0
        others = self._provisioned.requested(name) - mine
        reserved = self._registry.get(name).reserved_concurrency
        if reserved is not None:
            if others + requested > reserved:
                raise InvalidParameterValueException(OVER_RESERVED)
        elif self.unreserved_pool() + mine - requested < UNRESERVED_MINIMUM:
            raise InvalidParameterValueException(
                "Specified ConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{UNRESERVED_MINIMUM}]."
            )


def _requested(value: object) -> int:
    if value is None:
        raise ValidationException(
            f"1 validation error detected: Value null at '{FIELD}' failed to satisfy "
            "constraint: Member must not be null"
        )
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationException(
            f"1 validation error detected: Value '{value}' at '{FIELD}' failed to satisfy "
            "constraint: Member must have value greater than or equal to 1"
        )
    return value


def _shape(state: ProvisionedState) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "RequestedProvisionedConcurrentExecutions": state.config.requested,
        "AvailableProvisionedConcurrentExecutions": state.available,
        "AllocatedProvisionedConcurrentExecutions": state.allocated,
        "Status": state.status.value,
        "LastModified": time.strftime(
            "%Y-%m-%dT%H:%M:%S+0000", time.gmtime(state.config.last_modified)
        ),
    }
    if state.reason:
        shape["StatusReason"] = state.reason
    return shape
