"""The launcher's calibration start (``Launcher.anticipate``): the backend gets a no-op
handler under the function's Python runtime, never the function's code or variables, and
the handler's directory is gone once the backend is done with it; other runtimes ask for
nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from ember.control.code import extract_zip
from ember.invocation.launch import (
    CALIBRATION_HANDLER,
    CALIBRATION_NAME,
    CALIBRATION_SOURCE,
    Launcher,
)
from ember.model.functions import FunctionRecord
from ember.observe.logs import LogWriter
from ember.runtimes.catalogue import Runtime, RuntimeCatalogue
from ember.store.blobs import BlobStore
from ember.store.sqlite import SqliteStore
from ember.testing import FakeSandboxBackend, ManualClock, echo_agent
from tests.unit.invocation.conftest import function_record

Setup = tuple[Launcher, FakeSandboxBackend, FunctionRecord]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    backend = FakeSandboxBackend(echo_agent)
    clock = ManualClock()
    store = await SqliteStore.open(tmp_path / "ember.db")
    catalogue = RuntimeCatalogue(
        [Runtime("python3.11", "/usr/bin/python3.11"), Runtime("nodejs20.x", "/usr/bin/node")]
    )
    blobs = BlobStore(tmp_path / "blobs", extract_zip)
    launcher = Launcher(
        backend, blobs, catalogue, LogWriter(store, clock), clock, "us-east-1", "000000000000"
    )
    plain = function_record("0" * 64, 10)
    secret = MappingProxyType({"SECRET": "the function's own"})
    record = replace(plain, config=replace(plain.config, environment=secret))
    yield launcher, backend, record
    await store.close()


async def test_a_python_function_anticipates_a_no_op_start_of_its_runtime(setup: Setup) -> None:
    launcher, backend, record = setup
    await launcher.anticipate(record)
    ((spec, start, code),) = backend.anticipated
    assert code == CALIBRATION_SOURCE  # the no-op handler, nothing of the function
    assert not spec.code_dir.exists()  # a temporary directory, removed afterwards
    assert spec.interpreter == "/usr/bin/python3.11"
    assert start["argv"][0] == "/usr/bin/python3.11"
    assert start["env"]["_HANDLER"] == CALIBRATION_HANDLER
    assert start["env"]["AWS_LAMBDA_FUNCTION_NAME"] == CALIBRATION_NAME
    assert "SECRET" not in start["env"]
    assert backend.started == []  # no environment of any function


async def test_other_runtimes_anticipate_nothing(setup: Setup) -> None:
    launcher, backend, record = setup
    await launcher.anticipate(replace(record, config=replace(record.config, runtime="nodejs20.x")))
    await launcher.anticipate(replace(record, config=replace(record.config, runtime="java21")))
    assert backend.anticipated == []
