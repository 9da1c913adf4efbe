"""The composition root: builds every service once from ``Settings`` and wires them.

Nothing else constructs services or picks concrete backends; there are no module-level
singletons. ``Ember.open`` builds and starts everything, ``Ember.close`` stops it in
reverse order (environments first, then the registry, the log writer, the store).
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import logging
import os
import random
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette

from ember.api.aliases import AliasesApi
from ember.api.concurrency import ConcurrencyApi
from ember.api.event_sources import EventSourcesApi
from ember.api.functions import FunctionsApi
from ember.api.http import Authenticator
from ember.api.invoke import InvokeApi
from ember.api.provisioned import ProvisionedApi
from ember.api.server import Services, build_app
from ember.api.sqs import SqsApi
from ember.api.versions import VersionsApi
from ember.clock import Clock, SystemClock
from ember.control.code import extract_zip
from ember.control.registry import FunctionRegistry
from ember.events.caller import InvokerCaller
from ember.events.mappings import MappingService
from ember.events.poller import MappingPoller
from ember.events.queues import QueueService
from ember.events.store import EventsStore
from ember.invocation.budget import MemoryBudget
from ember.invocation.counting import Counting
from ember.invocation.invoker import Invoker
from ember.invocation.launch import Launcher
from ember.invocation.placement import Placement
from ember.invocation.provisioned import ProvisionedConcurrency
from ember.observe.logs import LogWriter
from ember.observe.metrics import Metrics
from ember.runtimes.catalogue import RuntimeCatalogue
from ember.sandbox.base import SandboxBackend
from ember.sandbox.registry import create_backend
from ember.settings import Settings
from ember.store.blobs import BlobStore
from ember.store.sqlite import SqliteStore

log = logging.getLogger("ember")


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    generated: bool = False


@dataclass
class Ember:
    settings: Settings
    credentials: Credentials
    store: SqliteStore
    backend: SandboxBackend
    logs: LogWriter
    registry: FunctionRegistry
    placement: Placement
    invoker: Invoker
    app: Starlette
    events_store: EventsStore | None = None
    queues: QueueService | None = None
    mappings: MappingService | None = None
    provisioned: ProvisionedConcurrency | None = None
    _reaper: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, settings: Settings, clock: Clock | None = None) -> Ember:
        clock = clock or SystemClock()
        data = settings.data_dir.resolve()
        data.mkdir(parents=True, exist_ok=True)
        credentials = load_credentials(settings, data / "credentials")
        store = await SqliteStore.open(data / "ember.db")
        blobs = BlobStore(data / "blobs", extract_zip)
        backend = create_backend(settings)
        catalogue = RuntimeCatalogue.discover(settings.python_interpreters)
        logs = LogWriter(store, clock)
        launcher = Launcher(
            backend, blobs, catalogue, logs, clock, settings.region, settings.account_id
        )
        # the lambda defers the lookup: the invoker is built right below, with this placement
        placement = Placement(
            lambda r: invoker.start_environment(r),  # noqa: PLW0108
            clock,
            settings.keep_alive_s,
            MemoryBudget(settings.memory_budget_mb, clock),
            settings.memory_wait_s,
        )
        registry = FunctionRegistry(
            store,
            blobs,
            clock,
            settings.region,
            settings.account_id,
            runtimes=catalogue.identifiers,
            on_change=lambda name, version: changed(name, version),  # noqa: PLW0108 (below)
            account_concurrency=settings.account_concurrency,
            rng=random.Random(settings.routing_seed),  # noqa: S311 - traffic split, not a secret
        )
        counting = Counting(registry.account_concurrency)
        provisioned = ProvisionedConcurrency(
            placement,
            lambda r: invoker.provision_environment(r),  # noqa: PLW0108
            store,
        )

        def changed(name: str, version: str | None) -> None:
            """A function or one version changed or is gone: its idle environments go, and
            the provisioned concurrency of what is gone goes too."""
            placement.retire(name, version)
            gone = all(r.name != name for r in registry.list())
            if gone or version not in (None, "$LATEST"):
                lost = None if gone else version
                asyncio.get_running_loop().create_task(provisioned.forget(name, lost))

        invoker = Invoker(
            launcher,
            placement,
            clock,
            settings.init_timeout_s,
            counting,
            unreserved_pool=lambda: provisioned_api.unreserved_pool(),  # noqa: PLW0108 (below)
            metrics=data_plane_metrics(counting, placement),
            provisioned_for=provisioned.requested,
        )
        auth = Authenticator(
            {credentials.access_key_id: credentials.secret_access_key},
            clock,
            enabled=settings.auth_enabled,
        )
        functions = FunctionsApi(
            registry, blobs, secrets.token_bytes(32), settings.region, settings.account_id
        )
        provisioned_api = ProvisionedApi(functions, registry, provisioned, clock)
        events_store = await EventsStore.open(data / "events.db")
        queues = QueueService(events_store, clock, settings.region, settings.account_id)
        caller = InvokerCaller(registry, invoker)
        mappings = MappingService(
            events_store,
            queues,
            registry,
            lambda mapping: MappingPoller(mapping, queues, caller, clock),
            clock,
        )
        services = Services(
            auth,
            registry,
            functions,
            InvokeApi(functions, registry, invoker),
            store,
            logs,
            sqs=SqsApi(queues, auth),
            event_sources=EventSourcesApi(mappings),
            concurrency=ConcurrencyApi(
                functions, registry, invoker, placement, pools=backend.statistics
            ),
            versions=VersionsApi(functions, registry),
            aliases=AliasesApi(functions, registry),
            provisioned=provisioned_api,
        )
        ember = cls(
            settings,
            credentials,
            store,
            backend,
            logs,
            registry,
            placement,
            invoker,
            build_app(services),
            events_store=events_store,
            queues=queues,
            mappings=mappings,
            provisioned=provisioned,
        )
        await ember._start()
        return ember

    async def _start(self) -> None:
        await self.registry.load()
        if self.queues is not None:
            await self.queues.load()
        self.logs.start()
        if self.provisioned is not None:  # environments initialised ahead, again
            await self.provisioned.load(self.registry.get)
        if self.mappings is not None:
            await self.mappings.load()  # last: pollers resume and invoke at once
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reap_interval_s)
            self.placement.reap()
            if self.provisioned is not None:  # aliases may point elsewhere now
                await self.provisioned.follow(self.registry.get)

    def begin_shutdown(self) -> None:
        """SIGTERM/SIGINT: pollers stop, then long polls end, so only real work holds us up."""
        if self.mappings is not None:
            self.mappings.stop_polling()
        if self.queues is not None:
            self.queues.drain()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        if self.mappings is not None:
            await self.mappings.close()  # pollers first: invokes in flight end
        if self.provisioned is not None:
            await self.provisioned.close()
        await self.placement.close()
        await self.registry.close()
        await self.logs.close()
        await self.backend.close()
        if self.events_store is not None:
            await self.events_store.close()
        await self.store.close()


def data_plane_metrics(counting: Counting, placement: Placement) -> Metrics:
    """The metrics registry, with gauges read from the data plane's statistics()."""
    metrics = Metrics()
    metrics.add_gauges(
        "ember_concurrent_executions", "Invocations in flight (ConcurrentExecutions)", [],
        lambda: {(): float(counting.statistics().in_flight)},
    )  # fmt: skip
    metrics.add_gauges(
        "ember_environments", "Execution environments by state", ["state"],
        lambda: {("idle",): float(placement.statistics().idle),
                 ("busy",): float(placement.statistics().busy),
                 ("provisioned",): float(placement.statistics().provisioned)},
    )  # fmt: skip
    metrics.add_gauges(
        "ember_memory_bytes",
        "Host memory budget of environments: the limit, and the MemorySize held (used) "
        "of which by environments being started (starting)",
        ["part"],
        lambda: _memory_gauges(placement),
    )
    return metrics


def _memory_gauges(placement: Placement) -> dict[tuple[str, ...], float]:
    budget, mib = placement.budget, 1024 * 1024
    return {
        ("limit",): float(budget.limit_mb * mib),
        ("used",): float(budget.used_mb * mib),
        ("starting",): float(budget.starting_mb * mib),
    }


def load_credentials(settings: Settings, path: Path) -> Credentials:
    """Admin credentials: from settings, else ``<data>/credentials``, else new ones (0600)."""
    if settings.access_key_id and settings.secret_access_key:
        return Credentials(settings.access_key_id, settings.secret_access_key)
    parser = configparser.ConfigParser()
    if path.exists():
        parser.read(path)
        section = parser["ember"]
        return Credentials(section["aws_access_key_id"], section["aws_secret_access_key"])
    alphabet = string.ascii_uppercase + string.digits
    key_id = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    secret = secrets.token_urlsafe(30)[:40]
    parser["ember"] = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        parser.write(handle)
    return Credentials(key_id, secret, generated=True)
