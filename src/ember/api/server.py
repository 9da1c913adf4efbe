"""The ASGI application: every route of the Lambda API that Ember serves, in one table.

Routes match botocore's request URIs (lambda-spec.md §5.3); a path botocore writes with a
trailing slash is matched with and without it. Anything else is an AWS-shaped 404.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ember.api.aliases import AliasesApi
from ember.api.concurrency import ConcurrencyApi
from ember.api.event_invoke_config import EventInvokeConfigApi
from ember.api.event_sources import EventSourcesApi
from ember.api.functions import FunctionsApi
from ember.api.http import (
    Authenticator,
    Endpoint,
    Handler,
    error_response,
    json_response,
    operation,
    parse_count,
)
from ember.api.invoke import InvokeApi
from ember.api.layers import LayersApi
from ember.api.provisioned import ProvisionedApi
from ember.api.sqs import SqsApi
from ember.api.tags import TagsApi
from ember.api.versions import VersionsApi
from ember.control.registry import FunctionRegistry
from ember.errors import EmberError, UnknownOperationException
from ember.observe.logs import LogWriter
from ember.store.base import Store

CODE_STORAGE_LIMIT = 80530636800


@dataclass(frozen=True, slots=True)
class Services:
    auth: Authenticator
    registry: FunctionRegistry
    functions: FunctionsApi
    invoke: InvokeApi
    store: Store
    logs: LogWriter
    sqs: SqsApi | None = None  # the built-in queue service's edge (POST / + X-Amz-Target)
    event_sources: EventSourcesApi | None = None
    concurrency: ConcurrencyApi | None = None
    versions: VersionsApi | None = None
    aliases: AliasesApi | None = None
    layers: LayersApi | None = None
    tags: TagsApi | None = None
    event_invoke: EventInvokeConfigApi | None = None
    provisioned: ProvisionedApi | None = None


INVOKE_PREFIX = "/2015-03-31/functions/"
INVOKE_SUFFIX = "/invocations"


class InvokeFastPath:
    """The ASGI application: ``POST /2015-03-31/functions/{name}/invocations`` goes straight
    to the invoke endpoint; everything else to starlette.

    The hot path skips starlette's middleware stack, route table and request wrapper (about
    a tenth of the server's CPU per warm invoke) and nothing else: the endpoint is the same
    ``operation`` (body limit, SigV4, AWS-shaped errors, request id), and ``{name}`` is
    matched as starlette's route would (one non-empty path segment).
    """

    def __init__(self, app: Starlette, invoke: Endpoint) -> None:
        self.app = app
        self._invoke = invoke

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX):
                name = path[len(INVOKE_PREFIX) : -len(INVOKE_SUFFIX)]
                if name and "/" not in name and not scope.get("root_path"):
                    scope["path_params"] = {"name": name}
                    response = await self._invoke(Request(scope, receive))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def build_app(services: Services) -> ASGIApp:
    def op(handler: Handler) -> Any:
        return operation(handler, services.auth)

    functions, invoke = services.functions, services.invoke
    invoke_endpoint = op(invoke.invoke)
    fn = "/2015-03-31/functions/{name}"
    routes = [
        # the hot path (InvokeFastPath takes it before starlette; the route stays for a
        # request the fast path leaves alone, and for 405s on the path)
        Route(fn + "/invocations", invoke_endpoint, methods=["POST"]),
        Route("/2015-03-31/functions", op(functions.create), methods=["POST"]),
        Route("/2015-03-31/functions/", op(functions.create), methods=["POST"]),
        Route("/2015-03-31/functions", op(functions.list), methods=["GET"]),
        Route("/2015-03-31/functions/", op(functions.list), methods=["GET"]),
        Route(fn, op(functions.get), methods=["GET"]),
        Route(fn, op(functions.delete), methods=["DELETE"]),
        Route(fn + "/code", op(functions.update_code), methods=["PUT"]),
        Route(fn + "/configuration", op(functions.get_configuration), methods=["GET"]),
        Route(fn + "/configuration", op(functions.update_configuration), methods=["PUT"]),
        Route("/2016-08-19/account-settings", op(_account_settings(services)), methods=["GET"]),
        Route("/2016-08-19/account-settings/", op(_account_settings(services)), methods=["GET"]),
        Route("/ember/logs", op(_read_logs(services)), methods=["GET"]),
        Route("/ember/code/{sha:str}.zip", _unsigned(functions.download_code), methods=["GET"]),
        Route("/health", _health, methods=["GET"]),
    ]
    if services.sqs is not None:
        routes.append(Route("/", services.sqs.endpoint, methods=["POST"]))
    if services.concurrency is not None:
        routes.extend(_concurrency_routes(services.concurrency, op))
    if services.event_sources is not None:
        routes.extend(_event_source_routes(services.event_sources, op))
    if services.versions is not None:
        routes.append(Route(fn + "/versions", op(services.versions.publish), methods=["POST"]))
        routes.append(Route(fn + "/versions", op(services.versions.list), methods=["GET"]))
    if services.aliases is not None:
        routes.extend(_alias_routes(services.aliases, op))
    if services.layers is not None:
        routes.extend(_layer_routes(services.layers, op))
    if services.tags is not None:
        routes.extend(_tag_routes(services.tags, op))
    if services.event_invoke is not None:
        routes.extend(_event_invoke_routes(services.event_invoke, op))
    if services.provisioned is not None:
        routes.extend(_provisioned_routes(services.provisioned, op))
    app = Starlette(routes=routes)
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(405, _not_found)
    return InvokeFastPath(app, invoke_endpoint)


def _concurrency_routes(api: ConcurrencyApi, op: Callable[[Handler], Any]) -> list[Route]:
    path = "/functions/{name}/concurrency"
    return [
        Route("/2017-10-31" + path, op(api.put), methods=["PUT"]),
        Route("/2017-10-31" + path, op(api.delete), methods=["DELETE"]),
        Route("/2019-09-30" + path, op(api.get), methods=["GET"]),
        Route("/ember/statistics", op(api.statistics), methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
    ]


def _provisioned_routes(api: ProvisionedApi, op: Callable[[Handler], Any]) -> list[Route]:
    path = "/2019-09-30/functions/{name}/provisioned-concurrency"
    return [
        Route(path, op(api.put), methods=["PUT"]),
        Route(path, op(api.get), methods=["GET"]),  # Get, or List with ?List=ALL
        Route(path, op(api.delete), methods=["DELETE"]),
    ]


def _alias_routes(api: AliasesApi, op: Callable[[Handler], Any]) -> list[Route]:
    aliases = "/2015-03-31/functions/{name}/aliases"
    return [
        Route(aliases, op(api.create), methods=["POST"]),
        Route(aliases, op(api.list), methods=["GET"]),
        Route(aliases + "/{alias}", op(api.get), methods=["GET"]),
        Route(aliases + "/{alias}", op(api.update), methods=["PUT"]),
        Route(aliases + "/{alias}", op(api.delete), methods=["DELETE"]),
    ]


def _event_source_routes(api: EventSourcesApi, op: Callable[[Handler], Any]) -> list[Route]:
    esm = "/2015-03-31/event-source-mappings"
    return [
        Route(esm, op(api.create), methods=["POST"]),
        Route(esm + "/", op(api.create), methods=["POST"]),
        Route(esm, op(api.list), methods=["GET"]),
        Route(esm + "/", op(api.list), methods=["GET"]),
        Route(esm + "/{uuid}", op(api.get), methods=["GET"]),
        Route(esm + "/{uuid}", op(api.update), methods=["PUT"]),
        Route(esm + "/{uuid}", op(api.delete), methods=["DELETE"]),
    ]


def _layer_routes(api: LayersApi, op: Callable[[Handler], Any]) -> list[Route]:
    layers = "/2018-10-31/layers"
    versions = layers + "/{name}/versions"
    version = versions + "/{version}"
    return [
        Route(layers, op(api.list_or_find), methods=["GET"]),  # also GetLayerVersionByArn
        Route(layers + "/", op(api.list_or_find), methods=["GET"]),
        Route(versions, op(api.publish), methods=["POST"]),
        Route(versions, op(api.list_versions), methods=["GET"]),
        Route(version, op(api.get), methods=["GET"]),
        Route(version, op(api.delete), methods=["DELETE"]),
        Route(version + "/policy", op(api.add_permission), methods=["POST"]),
        Route(version + "/policy", op(api.get_policy), methods=["GET"]),
        Route(version + "/policy/{sid}", op(api.remove_permission), methods=["DELETE"]),
    ]


def _tag_routes(api: TagsApi, op: Callable[[Handler], Any]) -> list[Route]:
    path = "/2017-03-31/tags/{resource:path}"
    return [
        Route(path, op(api.list), methods=["GET"]),
        Route(path, op(api.tag), methods=["POST"]),
        Route(path, op(api.untag), methods=["DELETE"]),
    ]


def _event_invoke_routes(api: EventInvokeConfigApi, op: Callable[[Handler], Any]) -> list[Route]:
    path = "/2019-09-25/functions/{name}/event-invoke-config"
    return [
        Route(path, op(api.put), methods=["PUT"]),
        Route(path, op(api.update), methods=["POST"]),
        Route(path, op(api.get), methods=["GET"]),
        Route(path, op(api.delete), methods=["DELETE"]),
        Route(path + "/list", op(api.list), methods=["GET"]),
    ]


def _account_settings(services: Services) -> Handler:
    async def handler(_request: Request, _body: bytes) -> Response:
        records = services.registry.list()
        layer_bytes = services.layers.total_code_size() if services.layers is not None else 0
        return json_response(
            {
                "AccountLimit": {
                    "TotalCodeSize": CODE_STORAGE_LIMIT,
                    "CodeSizeUnzipped": 262144000,
                    "CodeSizeZipped": 52428800,
                    "ConcurrentExecutions": services.registry.account_concurrency,
                    "UnreservedConcurrentExecutions": _unreserved_pool(services),
                },
                "AccountUsage": {
                    "TotalCodeSize": sum(r.code.size for r in records) + layer_bytes,
                    "FunctionCount": len(records),
                },
            }
        )

    return handler


def _unreserved_pool(services: Services) -> int:
    """The account less reservations, and less provisioned concurrency of the others."""
    if services.provisioned is not None:
        return services.provisioned.unreserved_pool()
    return services.registry.unreserved_pool()


def _read_logs(services: Services) -> Handler:
    """Ember's own log read API (for ``ember logs``): events of a group after a sequence."""

    async def handler(request: Request, _body: bytes) -> Response:
        query = request.query_params
        await services.logs.flush()
        events = await services.store.read_logs(
            query.get("group", ""),
            stream=query.get("stream"),
            after_seq=parse_count(query.get("after")) or 0,
            limit=min(parse_count(query.get("limit")) or 1000, 10000),
        )
        return json_response(
            {
                "events": [
                    {
                        "seq": e.seq,
                        "stream": e.stream,
                        "timestamp": e.timestamp_ms,
                        "message": e.message,
                    }
                    for e in events
                ]
            }
        )

    return handler


def _unsigned(handler: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            response: Response = await handler(request)
        except EmberError as error:
            return error_response(error)
        return response

    return endpoint


async def _health(_request: Request) -> Response:
    return json_response({"status": "ok"})


async def _not_found(request: Request, _exc: Exception) -> Response:
    return error_response(
        UnknownOperationException(f"No operation at {request.method} {request.url.path}")
    )
