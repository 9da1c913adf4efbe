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
import shutil
import string
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

from ember.api.aliases import AliasesApi
from ember.api.concurrency import ConcurrencyApi
from ember.api.event_invoke_config import EventInvokeConfigApi
from ember.api.event_sources import EventSourcesApi
from ember.api.functions import FunctionsApi
from ember.api.http import Authenticator
from ember.api.invoke import InvokeApi
from ember.api.layers import LayersApi
from ember.api.provisioned import ProvisionedApi
from ember.api.server import Services, build_app
from ember.api.sqs import SqsApi
from ember.api.tags import TagsApi
from ember.api.versions import VersionsApi
from ember.clock import Clock, SystemClock
from ember.control.code import extract_zip
from ember.control.event_invoke import EventInvokeConfigs
from ember.control.layers import LayerService
from ember.control.registry import FunctionRegistry
from ember.control.tags import FunctionTags
from ember.events.async_targets import QueueServiceSink, RegistryFunctions
from ember.events.caller import InvokerCaller
from ember.events.mappings import MappingService
from ember.events.poller import MappingPoller
from ember.events.queues import QueueService
from ember.events.store import EventsStore
from ember.invocation.async_delivery import Delivery
from ember.invocation.async_events import AsyncDispatcher, AsyncPolicy
from ember.invocation.budget import MemoryBudget
from ember.invocation.counting import Counting
from ember.invocation.invoker import Invoker
from ember.invocation.launch import Launcher
from ember.invocation.placement import Placement
from ember.invocation.provisioned import ProvisionedConcurrency
from ember.model.functions import FunctionRecord
from ember.observe.logs import LogWriter
from ember.observe.metrics import Metrics
from ember.runtimes.catalogue import RuntimeCatalogue
from ember.sandbox.base import SandboxBackend
from ember.sandbox.registry import create_backend
from ember.settings import Settings
from ember.store.async_queue import AsyncQueueStore
from ember.store.blobs import BlobStore
from ember.store.layer_trees import OptTrees
from ember.store.layers import LayerStore
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
    app: ASGIApp
    events_store: EventsStore | None = None
    queues: QueueService | None = None
    mappings: MappingService | None = None
    layers: LayerService | None = None
    async_store: AsyncQueueStore | None = None
    dispatcher: AsyncDispatcher | None = None
    event_configs: EventInvokeConfigs | None = None
    provisioned: ProvisionedConcurrency | None = None
    # background clean-ups (a deleted function's configurations), awaited at close
    chores: set[asyncio.Task[None]] = field(default_factory=set)
    # a function exists: get its runtime's sandboxes ready ahead (once per runtime); the
    # tasks doing it, cancelled at close
    anticipate: Callable[[FunctionRecord], None] = lambda _record: None
    anticipating: set[asyncio.Task[None]] = field(default_factory=set)
    _reaper: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, settings: Settings, clock: Clock | None = None) -> Ember:
        clock = clock or SystemClock()
        data = settings.data_dir.resolve()
        data.mkdir(parents=True, exist_ok=True)
        for stale in data.glob("calibration-*"):  # a calibration start's, left by a crash
            shutil.rmtree(stale, ignore_errors=True)
        credentials = load_credentials(settings, data / "credentials")
        store = await SqliteStore.open(data / "ember.db")
        blobs = BlobStore(data / "blobs", extract_zip)
        layers = LayerService(
            await LayerStore.open(data / "ember.db"),
            blobs,
            OptTrees(data / "blobs" / "opt", blobs),  # beside the trees it hard-links
            clock,
            settings.region,
            settings.account_id,
        )
        backend = create_backend(settings)
        catalogue = RuntimeCatalogue.discover(settings.python_interpreters)
        logs = LogWriter(store, clock)
        launcher = Launcher(
            backend,
            blobs,
            catalogue,
            logs,
            clock,
            settings.region,
            settings.account_id,
            opt_dirs=layers.opt_dir,
            function_tags=lambda name: registry.get(name).tags,
            scratch=data,
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
            # defined below, once the async configs it also updates exist
            on_change=lambda name, version: function_changed(name, version),  # noqa: PLW0108
            account_concurrency=settings.account_concurrency,
            rng=random.Random(settings.routing_seed),  # noqa: S311 - traffic split, not a secret
            attach_layers=layers.attach,
        )
        counting = Counting(registry.account_concurrency)
        provisioned = ProvisionedConcurrency(
            placement,
            lambda r: invoker.provision_environment(r),  # noqa: PLW0108
            store,
        )

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
        events_store = await EventsStore.open(data / "events.db")
        queues = QueueService(events_store, clock, settings.region, settings.account_id)
        async_store = await AsyncQueueStore.open(data / "async.db")
        sink = QueueServiceSink(queues)
        event_configs = EventInvokeConfigs(
            async_store, registry, clock, sink.exists, settings.region, settings.account_id
        )
        dispatcher = AsyncDispatcher(
            async_store,
            invoker,
            RegistryFunctions(registry),
            event_configs.lookup,
            Delivery(async_store, sink, clock, registry.arn, settings.region, settings.account_id),
            clock,
            async_policy(settings),
            invoker.metrics,
        )
        forgetting: set[asyncio.Task[None]] = set()

        def forget(work: Coroutine[Any, Any, None]) -> None:
            task = asyncio.get_running_loop().create_task(work)
            forgetting.add(task)
            task.add_done_callback(forgetting.discard)

        anticipating: set[asyncio.Task[None]] = set()
        anticipate = anticipation(launcher, anticipating)

        def function_changed(name: str, version: str | None) -> None:
            """A function or one version changed or is gone: its idle environments go, and
            what belonged to what is gone (provisioned concurrency, async configs) too."""
            placement.retire(name, version)
            current = next((r for r in registry.list() if r.name == name), None)
            gone = current is None
            if gone or version not in (None, "$LATEST"):
                forget(provisioned.forget(name, None if gone else version))
            if current is None:
                forget(event_configs.forget_function(name))
            else:
                anticipate(current)

        functions = FunctionsApi(
            registry,
            blobs,
            secrets.token_bytes(32),
            settings.region,
            settings.account_id,
            dead_letter_check=event_configs.check_dead_letter_target,
        )
        provisioned_api = ProvisionedApi(functions, registry, provisioned, clock)
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
            InvokeApi(functions, registry, invoker, dispatcher, settings.async_payload_limit),
            store,
            logs,
            sqs=SqsApi(queues, auth),
            event_sources=EventSourcesApi(mappings),
            versions=VersionsApi(functions, registry),
            aliases=AliasesApi(functions, registry, alias_deleted=provisioned.delete),
            layers=LayersApi(layers, functions),
            tags=TagsApi(FunctionTags(registry, settings.region, settings.account_id)),
            concurrency=ConcurrencyApi(
                functions,
                registry,
                invoker,
                placement,
                async_statistics=dispatcher.statistics,
                pools=backend.statistics,
                provisioned_claim=lambda name: provisioned_api.unreserved_claim(excluding=name),
            ),
            event_invoke=EventInvokeConfigApi(functions, registry, event_configs),
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
            layers=layers,
            async_store=async_store,
            dispatcher=dispatcher,
            event_configs=event_configs,
            provisioned=provisioned,
            chores=forgetting,
            anticipate=anticipate,
            anticipating=anticipating,
        )
        await ember._start()
        return ember

    async def _start(self) -> None:
        if self.layers is not None:
            await self.layers.load()  # before functions: their /opt trees name layers
        await self.registry.load()
        for record in self.registry.list():
            self.anticipate(record)
        if self.queues is not None:
            await self.queues.load()
        self.logs.start()
        if self.event_configs is not None:
            await self.event_configs.load()
        if self.dispatcher is not None:
            await self.dispatcher.load()  # stored events (in flight at a crash too) run again
        if self.provisioned is not None:  # environments initialised ahead, again
            await self.provisioned.load(self.registry.get)
        if self.mappings is not None:
            await self.mappings.load()  # last: pollers resume and invoke at once
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reap_interval_s)
            try:
                self.placement.reap()
                if self.provisioned is not None:  # aliases may point elsewhere now
                    await self.provisioned.follow(self.registry.get)
            except Exception:  # one failure must not end reaping for the server's life
                log.exception("reaping idle environments failed; trying again later")

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
        if self.dispatcher is not None:
            await self.dispatcher.close()  # events in flight stay stored for the next start
        if self.provisioned is not None:
            await self.provisioned.close()
        for task in self.anticipating:  # a calibration start in flight: its sandbox goes
            task.cancel()
        await asyncio.gather(*self.anticipating, return_exceptions=True)
        await asyncio.gather(*self.chores, return_exceptions=True)  # before the stores close
        await self.placement.close()
        await self.registry.close()
        await self.logs.close()
        await self.backend.close()
        if self.events_store is not None:
            await self.events_store.close()
        if self.layers is not None:
            await self.layers.close()
        if self.async_store is not None:
            await self.async_store.close()
        await self.store.close()


def anticipation(
    launcher: Launcher, tasks: set[asyncio.Task[None]]
) -> Callable[[FunctionRecord], None]:
    """What to call when a function exists: the backend gets ready to start its runtime's
    sandboxes (``Launcher.anticipate``: a calibration start, a filled warm pool) in a
    background task kept in ``tasks`` until done, once per runtime and server (a failed
    calibration is not tried again: the first real start records the pages instead)."""
    anticipated: set[str] = set()

    async def anticipate_logged(record: FunctionRecord) -> None:
        try:
            await launcher.anticipate(record)
        except Exception:  # a bug must not go unseen in a task nobody awaits
            log.exception("getting %s ready ahead failed", record.config.runtime)

    def anticipate(record: FunctionRecord) -> None:
        if record.config.runtime not in anticipated:
            anticipated.add(record.config.runtime)
            task = asyncio.get_running_loop().create_task(anticipate_logged(record))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    return anticipate


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


def async_policy(settings: Settings) -> AsyncPolicy:
    return AsyncPolicy(
        retry_delays_s=settings.async_retry_delays_s,
        backoff_initial_s=settings.async_backoff_initial_s,
        backoff_max_s=settings.async_backoff_max_s,
        event_age_scale=settings.async_event_age_scale,
        workers=settings.async_workers,
        function_in_flight=settings.async_function_in_flight,
    )


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
