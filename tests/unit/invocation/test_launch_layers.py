"""The launcher gives a function's merged layers to the sandbox and sets NODE_PATH."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace
from pathlib import Path

from ember.control.code import extract_zip
from ember.invocation.envlog import EnvironmentLog
from ember.invocation.launch import Launcher
from ember.observe.logs import LogWriter
from ember.runtimes.catalogue import Runtime, RuntimeCatalogue
from ember.sandbox.base import SandboxSpec
from ember.store.blobs import BlobStore
from ember.store.sqlite import SqliteStore
from ember.testing import FakeSandbox, FakeSandboxBackend, ManualClock, echo_agent
from tests.unit.invocation.conftest import function_record

LAYER = "arn:aws:lambda:us-east-1:000000000000:layer:lib:1"


class RecordingBackend(FakeSandboxBackend):
    def __init__(self) -> None:
        super().__init__(echo_agent)
        self.specs: list[SandboxSpec] = []

    async def start(self, spec: object) -> FakeSandbox:
        assert isinstance(spec, SandboxSpec)
        self.specs.append(spec)
        return await super().start(spec)


async def test_layers_become_the_sandbox_opt_dir(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "x = 1\n")
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    blobs = BlobStore(tmp_path / "blobs", extract_zip)
    await blobs.put_zip(sha, data)
    asked: list[tuple[str, ...]] = []

    async def opt_dirs(arns: tuple[str, ...]) -> Path | None:
        asked.append(arns)
        return tmp_path / "merged"

    backend = RecordingBackend()
    clock = ManualClock()
    store = await SqliteStore.open(tmp_path / "ember.db")
    writer = LogWriter(store, clock)
    catalogue = RuntimeCatalogue(
        [Runtime("python3.11", "/usr/bin/python3.11"), Runtime("nodejs20.x", None)]
    )
    launcher = Launcher(
        backend, blobs, catalogue, writer, clock, "us-east-1", "000000000000", opt_dirs=opt_dirs
    )
    plain = function_record(sha, len(data))
    layered = replace(plain, config=replace(plain.config, layers=(LAYER,)))
    for record in (plain, layered):
        environment, _start = await launcher.launch(record)
        await environment.sandbox.kill()
    assert [spec.opt_dir for spec in backend.specs] == [None, tmp_path / "merged"]
    assert asked == [(LAYER,)]

    node = replace(plain, config=replace(plain.config, runtime="nodejs20.x"))
    sandbox = backend.started[0]
    log = EnvironmentLog(writer, "/aws/lambda/fn", "stream")
    node_runtime, python_runtime = catalogue.get("nodejs20.x"), catalogue.get("python3.11")
    assert node_runtime is not None
    assert python_runtime is not None
    env = launcher.runtime_environment(node, node_runtime, sandbox, log)
    assert env["NODE_PATH"] == (
        "/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:"
        "/var/runtime:/var/task"
    )
    python = launcher.runtime_environment(plain, python_runtime, sandbox, log)
    assert "NODE_PATH" not in python
    assert python["PATH"].endswith(":/opt/bin")
    assert python["LD_LIBRARY_PATH"].endswith(":/opt/lib")
    await writer.close()
    await store.close()
