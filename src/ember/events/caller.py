"""How a poller calls its function: synchronously, through the invoker, one outcome kind.

``InvokerCaller`` resolves the mapping's function ARN at every call (so an update or delete
of the function is seen at once; a qualified ARN runs that version, or the version its
alias routes to) and reduces whatever happened to ``ok`` (the response
payload follows), ``error`` (function error, init error, timeout, platform failure: the
batch stays in the queue) or ``retry`` (throttled, or the function is not Active yet:
try the same batch again after a back-off).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

from ember.control.registry import FunctionRegistry
from ember.errors import EmberError, ResourceNotFoundException, TooManyRequestsException
from ember.invocation.invoker import InvocationRequest, Invoker
from ember.model.arns import parse_function_ref
from ember.model.functions import State

log = logging.getLogger("ember.events")


@dataclass(frozen=True, slots=True)
class CallOutcome:
    kind: Literal["ok", "error", "retry"]
    payload: bytes = b""
    detail: str = ""


class FunctionCaller(Protocol):
    async def call(self, function_arn: str, payload: bytes) -> CallOutcome: ...


class InvokerCaller:
    """Scope: one per server; stateless over the registry and the invoker."""

    def __init__(self, registry: FunctionRegistry, invoker: Invoker) -> None:
        self._registry = registry
        self._invoker = invoker

    async def call(self, function_arn: str, payload: bytes) -> CallOutcome:
        name, qualifier = parse_function_ref(function_arn, None, None)
        try:
            record, _ = self._registry.resolve(name, qualifier)
        except ResourceNotFoundException:
            record = None
        if record is None or record.state is not State.ACTIVE:
            pending = record is not None and record.state is State.PENDING
            state = record.state if record else "deleted"
            return CallOutcome("retry" if pending else "error", detail=f"function is {state}")
        invoked_arn = self._registry.arn(name, qualifier)
        request = InvocationRequest(payload=payload, invoked_arn=invoked_arn)
        try:
            result = await self._invoker.invoke(record, request)
        except TooManyRequestsException as error:
            return CallOutcome("retry", detail=error.message)
        except EmberError as error:
            log.warning("event source invoke of %s failed: %s", function_arn, error.message)
            return CallOutcome("error", detail=error.message)
        if result.function_error:
            return CallOutcome("error", result.payload, detail=result.function_error)
        return CallOutcome("ok", result.payload)
