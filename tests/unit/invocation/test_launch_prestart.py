"""The launcher's node-slot hint: what a backend may start ahead is exactly what the
START will ask for, and nothing is started ahead for a function that sets a startup
variable (NODE_OPTIONS, AWS_LAMBDA_EXEC_WRAPPER, ...) or for other runtimes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from ember.control.code import extract_zip
from ember.invocation.launch import Launcher
from ember.model.functions import FunctionRecord
from ember.observe.logs import LogWriter
from ember.runtimes import nodejs
from ember.runtimes.catalogue import Runtime, RuntimeCatalogue
from ember.store.blobs import BlobStore
from ember.store.sqlite import SqliteStore
from ember.testing import ManualClock
from tests.integration.functions import make_zip
from tests.unit.invocation.conftest import function_record
from tests.unit.invocation.test_launch_layers import RecordingBackend

Setup = tuple[Launcher, RecordingBackend, FunctionRecord]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    """A launcher, its recording backend, and a node function of 512 MB."""
    data = make_zip({"index.js": "exports.handler = async () => 1;\n"})
    sha = hashlib.sha256(data).hexdigest()
    blobs = BlobStore(tmp_path / "blobs", extract_zip)
    await blobs.put_zip(sha, data)
    backend = RecordingBackend()
    clock = ManualClock()
    store = await SqliteStore.open(tmp_path / "ember.db")
    writer = LogWriter(store, clock)
    catalogue = RuntimeCatalogue(
        [Runtime("python3.11", "/usr/bin/python3.11"), Runtime("nodejs20.x", "/usr/bin/node")]
    )
    launcher = Launcher(backend, blobs, catalogue, writer, clock, "us-east-1", "000000000000")
    plain = function_record(sha, len(data))
    node = replace(plain, config=replace(plain.config, runtime="nodejs20.x", memory_size=512))
    yield launcher, backend, node
    await store.close()


async def test_the_hint_is_what_the_start_asks_for(setup: Setup) -> None:
    launcher, backend, record = setup
    environment, start = await launcher.launch(record)
    await environment.sandbox.kill()
    hint = backend.specs[0].runtime_prestart
    assert hint is not None
    sandbox = environment.sandbox
    argv, env = hint(sandbox.task_root, sandbox.opt_root, sandbox.runtime_dir)
    assert argv == start["argv"]
    assert "--max-old-space-size=461" in argv
    assert env == nodejs.prestart_env(start["env"])
    assert {"NODE_PATH", "TZ", "LANG", "LD_LIBRARY_PATH"} <= set(env)
    assert set(env) <= set(nodejs.STARTUP_VARIABLES)


async def test_no_hint_with_a_startup_variable_or_for_python(setup: Setup) -> None:
    launcher, backend, record = setup
    for variables in ({"NODE_OPTIONS": "--no-deprecation"}, {"AWS_LAMBDA_EXEC_WRAPPER": "/x"}):
        config = replace(record.config, environment=MappingProxyType(variables))
        environment, _ = await launcher.launch(replace(record, config=config))
        await environment.sandbox.kill()
    python = replace(record, config=replace(record.config, runtime="python3.11"))
    environment, _ = await launcher.launch(python)
    await environment.sandbox.kill()
    assert [spec.runtime_prestart for spec in backend.specs] == [None, None, None]
