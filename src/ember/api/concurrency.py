"""Reserved concurrency: Put/Get/DeleteFunctionConcurrency, and Ember's statistics read.

Routes (botocore): PUT and DELETE under ``/2017-10-31/functions/{name}/concurrency``,
GET under ``/2019-09-30/functions/{name}/concurrency``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ember.api.functions import FunctionsApi
from ember.api.http import json_response, parse_json_object
from ember.control.registry import FunctionRegistry
from ember.errors import InvalidParameterValueException, ValidationException
from ember.invocation.invoker import Invoker
from ember.invocation.placement import Placement
from ember.observe.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE


class ConcurrencyApi:
    """Scope: one per server."""

    def __init__(
        self,
        functions: FunctionsApi,
        registry: FunctionRegistry,
        invoker: Invoker,
        placement: Placement,
        async_statistics: Callable[[], dict[str, Any]] | None = None,
        pools: Callable[[], dict[str, dict[str, int]]] = dict,
        provisioned_claim: Callable[[str], int] = lambda _name: 0,
    ) -> None:
        self._functions = functions
        self._registry = registry
        self._invoker = invoker
        self._placement = placement
        self._async_statistics = async_statistics
        self._pools = pools  # the sandbox backend's pools of pre-started sandboxes
        # provisioned concurrency of the other functions without a reservation: it is out
        # of the unreserved pool too
        self._provisioned_claim = provisioned_claim

    async def put(self, request: Request, body: bytes) -> Response:
        name = self._unqualified(request)
        value = parse_json_object(body).get("ReservedConcurrentExecutions")
        if value is None:
            raise ValidationException(
                "1 validation error detected: Value null at 'reservedConcurrentExecutions' "
                "failed to satisfy constraint: Member must not be null"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationException(
                f"1 validation error detected: Value '{value}' at 'reservedConcurrentExecutions' "
                "failed to satisfy constraint: Member must have value greater than or equal to 0"
            )
        await self._registry.set_reserved_concurrency(
            name, value, claimed_elsewhere=self._provisioned_claim(name)
        )
        return json_response({"ReservedConcurrentExecutions": value})

    async def get(self, request: Request, _body: bytes) -> Response:
        record = self._registry.get(self._unqualified(request))
        if record.reserved_concurrency is None:
            return json_response({})
        return json_response({"ReservedConcurrentExecutions": record.reserved_concurrency})

    async def delete(self, request: Request, _body: bytes) -> Response:
        await self._registry.set_reserved_concurrency(self._unqualified(request), None)
        return Response(status_code=204)

    async def metrics(self, _request: Request) -> Response:
        """Prometheus text format; unsigned, like /health (scrapers do not sign)."""
        return Response(self._invoker.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def statistics(self, _request: Request, _body: bytes) -> Response:
        """Ember's own data-plane counters (leases, throttles, environments)."""
        shape: dict[str, Any] = {
            "counting": _plain(self._invoker.counting.statistics()),
            "placement": _plain(self._placement.statistics()),
            "pools": self._pools(),
        }
        if self._async_statistics is not None:
            shape["async"] = self._async_statistics()
        return Response(json.dumps(shape), media_type="application/json")

    def _unqualified(self, request: Request) -> str:
        name, qualifier = self._functions.resolve(request)
        if qualifier is not None:
            raise InvalidParameterValueException(
                "Reserved concurrency is set on a function, not on a version or alias."
            )
        return name


def _plain(record: object) -> dict[str, Any]:
    slots: tuple[str, ...] = getattr(record, "__slots__", ())
    return {name: getattr(record, name) for name in slots}
