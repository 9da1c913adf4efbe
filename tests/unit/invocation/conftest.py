"""Real invocation services over a fake sandbox backend and a manual clock."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ember.control.code import extract_zip
from ember.invocation.invoker import Invoker
from ember.invocation.launch import Launcher
from ember.invocation.placement import Placement
from ember.model.functions import CodeInfo, FunctionConfig, FunctionRecord, State
from ember.observe.logs import LogWriter
from ember.runtimes.catalogue import Runtime, RuntimeCatalogue
from ember.store.blobs import BlobStore
from ember.store.sqlite import SqliteStore
from ember.testing import FakeSandboxBackend, ManualClock, echo_agent


@dataclass
class Plane:
    clock: ManualClock
    backend: FakeSandboxBackend
    store: SqliteStore
    logs: LogWriter
    placement: Placement
    invoker: Invoker
    record: FunctionRecord
    launcher: Launcher


def function_record(blob_sha: str, size: int, timeout: int = 3) -> FunctionRecord:
    return FunctionRecord(
        name="fn",
        config=FunctionConfig(
            runtime="python3.11", handler="app.handler", role="r", timeout=timeout
        ),
        code=CodeInfo(blob_sha, "b64", size),
        revision_id="rev-1",
        last_modified=1.0,
        state=State.ACTIVE,
    )


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(e, c):\n    return e\n")
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    blobs = BlobStore(tmp_path / "blobs", extract_zip)
    await blobs.put_zip(sha, data)
    clock = ManualClock()
    backend = FakeSandboxBackend(echo_agent)
    store = await SqliteStore.open(tmp_path / "ember.db")
    logs = LogWriter(store, clock)
    catalogue = RuntimeCatalogue([Runtime("python3.11", "/usr/bin/python3.11")])
    launcher = Launcher(backend, blobs, catalogue, logs, clock, "us-east-1", "000000000000")
    placement = Placement(lambda r: invoker.start_environment(r), clock, 60)  # noqa: PLW0108
    invoker = Invoker(launcher, placement, clock, init_timeout_s=10)
    record = function_record(sha, len(data))
    yield Plane(clock, backend, store, logs, placement, invoker, record, launcher)
    await placement.close()
    await logs.close()
    await store.close()
