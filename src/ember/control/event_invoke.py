"""Event invoke configs (Put/Update/Get/Delete/ListFunctionEventInvokeConfig[s]) and the
rules for async destinations and dead-letter targets.

A config belongs to a function, version or alias (``$LATEST`` for the unqualified
function). Put replaces it (unset members are removed), Update merges into an existing
one. Validation follows Lambda (lambda-spec.md §6.1): ranges as a ``ValidationException``,
"You must specify at least one of error handling or destination setting.", "You can't
specify the function as a destination for itself.", "The destination ARN <arn> is
invalid." Ember delivers to Ember functions and Ember queues only: an SNS topic, event
bus or bucket is refused with a message that says so.

Scope: one per server. Invariants: the in-memory map equals the ``event_invoke_configs``
rows (every change is committed first); a deleted function's configs are removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ember.clock import Clock
from ember.control import fields as f
from ember.control.registry import FunctionRegistry
from ember.errors import (
    ClientError,
    InvalidParameterValueException,
    ResourceNotFoundException,
)
from ember.model.arns import parse_function_ref
from ember.model.async_events import EventInvokeConfig, default_config
from ember.model.functions import LATEST
from ember.store.async_queue import AsyncQueueStore, delete_config, put_config

# botocore shape ``DestinationArn``
DESTINATION_PATTERN = (
    r"^$|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\d{1})?"
    r":(\d{12})?:(.*)"
)
UNSUPPORTED_SERVICES = ("sns", "events", "s3")
NOTHING_SET = "You must specify at least one of error handling or destination setting."
SELF_DESTINATION = "You can't specify the function as a destination for itself."
DLQ_NO_QUEUE = "The provided execution role does not have permissions to call SendMessage on SQS"


class EventInvokeConfigs:
    def __init__(
        self,
        store: AsyncQueueStore,
        registry: FunctionRegistry,
        clock: Clock,
        queue_exists: Callable[[str], bool],
        region: str,
        account: str,
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock
        self._queue_exists = queue_exists  # queue ARN => is it an Ember queue
        self._region = region
        self._account = account
        self._configs: dict[tuple[str, str], EventInvokeConfig] = {}

    async def load(self) -> None:
        for config in await self._store.load_configs():
            self._configs[(config.function, config.qualifier)] = config

    def lookup(self, name: str, qualifier: str) -> EventInvokeConfig:
        """The config that applies to async events of ``name:qualifier`` (default if none)."""
        return self._configs.get((name, qualifier)) or default_config(name, qualifier)

    def get(self, name: str, qualifier: str | None) -> EventInvokeConfig:
        key = (name, qualifier or LATEST)
        config = self._configs.get(key)
        if config is None:
            raise ResourceNotFoundException(
                f"The function {self._registry.arn(*key)} doesn't have an EventInvokeConfig"
            )
        return config

    def list(self, name: str) -> list[EventInvokeConfig]:
        self._function(name, None)
        return sorted(
            (c for (fn, _), c in self._configs.items() if fn == name), key=lambda c: c.qualifier
        )

    async def put(
        self, name: str, qualifier: str | None, body: dict[str, Any]
    ) -> EventInvokeConfig:
        """PutFunctionEventInvokeConfig: replace (members not given are removed)."""
        values = self._parse(name, body)
        self._function(name, qualifier)
        config = EventInvokeConfig(name, qualifier or LATEST, self._clock.wall(), **values)
        return await self._save(config)

    async def update(
        self, name: str, qualifier: str | None, body: dict[str, Any]
    ) -> EventInvokeConfig:
        """UpdateFunctionEventInvokeConfig: merge into the existing config."""
        values = self._parse(name, body)
        self._function(name, qualifier)
        current = self.get(name, qualifier)
        config = replace(current, last_modified=self._clock.wall(), **values)
        return await self._save(config)

    async def delete(self, name: str, qualifier: str | None) -> None:
        config = self.get(name, qualifier)
        await self._store.write([delete_config(config.function, config.qualifier)])
        del self._configs[(config.function, config.qualifier)]

    async def forget_function(self, name: str) -> None:
        """The function is gone: so are its configs."""
        if any(fn == name for fn, _ in self._configs):
            await self._store.write([delete_config(name)])
            for key in [k for k in self._configs if k[0] == name]:
                del self._configs[key]

    def check_dead_letter_target(self, arn: str) -> None:
        """A DeadLetterConfig.TargetArn must name an existing Ember queue (or be empty)."""
        if not arn or re.fullmatch(f.TARGET_ARN_PATTERN, arn) is None:
            return  # empty clears it; a malformed one is the validator's to report
        service = arn.split(":")[2]
        if service == "sqs":
            if not self._queue_exists(arn):
                raise InvalidParameterValueException(DLQ_NO_QUEUE)
            return
        raise InvalidParameterValueException(
            f"Ember supports only Ember SQS queues as dead-letter targets; {arn} is not one."
        )

    # internals --------------------------------------------------------------------------

    async def _save(self, config: EventInvokeConfig) -> EventInvokeConfig:
        await self._store.write([put_config(config)])
        self._configs[(config.function, config.qualifier)] = config
        return config

    def _function(self, name: str, qualifier: str | None) -> None:
        try:
            self._registry.get(name, qualifier)
        except ResourceNotFoundException:
            raise ResourceNotFoundException("The function doesn't exist.") from None

    def _parse(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """The members present in ``body``, checked; absent ones are not in the result."""
        checks = f.Violations()
        values: dict[str, Any] = {}
        retries = f.opt_int(body, "MaximumRetryAttempts")
        if retries is not None and checks.range(retries, "maximumRetryAttempts", 0, 2):
            values["max_retry_attempts"] = retries
        age = f.opt_int(body, "MaximumEventAgeInSeconds")
        if age is not None and checks.range(age, "maximumEventAgeInSeconds", 60, 21600):
            values["max_event_age_s"] = age
        destinations = f.opt_object(body, "DestinationConfig")
        if destinations is not None:
            for member, key in (("OnSuccess", "on_success"), ("OnFailure", "on_failure")):
                target = f.opt_object(destinations, member, f"DestinationConfig.{member}") or {}
                arn = f.opt_str(target, "Destination", f"DestinationConfig.{member}.Destination")
                field = f"destinationConfig.{member[0].lower()}{member[1:]}.destination"
                if arn is not None and checks.pattern(arn, field, DESTINATION_PATTERN):
                    values[key] = arn or None
                elif arn is None:
                    values[key] = None
        checks.raise_if_any()
        if retries is None and age is None and destinations is None:
            raise InvalidParameterValueException(NOTHING_SET)
        for key in ("on_success", "on_failure"):
            if values.get(key):
                self._check_destination(name, values[key])
        return values

    def _check_destination(self, name: str, arn: str) -> None:
        invalid = InvalidParameterValueException(f"The destination ARN {arn} is invalid.")
        service = arn.split(":")[2]
        if service == "lambda":
            try:
                target, qualifier = parse_function_ref(arn, self._region, self._account)
                self._registry.get(target, qualifier)
            except ClientError:
                raise invalid from None
            if target == name:
                raise InvalidParameterValueException(SELF_DESTINATION)
        elif service == "sqs":
            if not self._queue_exists(arn):
                raise invalid
        elif service in UNSUPPORTED_SERVICES:
            raise InvalidParameterValueException(
                f"Ember delivers async invocation records only to Ember functions and Ember "
                f"SQS queues; {arn} is neither."
            )
        else:
            raise invalid
