"""The layer service on a real SQLite file: numbering, deletion, policies, function checks."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from ember.control import layer_requests
from ember.control.code import extract_zip
from ember.control.layers import LayerService
from ember.errors import (
    ClientError,
    InvalidParameterValueException,
    PreconditionFailedException,
    ResourceConflictException,
    ResourceNotFoundException,
    ValidationException,
)
from ember.model.functions import FunctionConfig
from ember.model.layers import LayerRef, LayerStatement, PublishLayerInput
from ember.store.blobs import BlobStore
from ember.store.layer_trees import OptTrees
from ember.store.layers import LayerStore
from ember.testing import ManualClock

ARN = "arn:aws:lambda:us-east-1:000000000000:layer:"


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def _service(tmp_path: Path) -> LayerService:
    blobs = BlobStore(tmp_path / "blobs", extract_zip)
    service = LayerService(
        await LayerStore.open(tmp_path / "ember.db"),
        blobs,
        OptTrees(tmp_path / "blobs" / "opt", blobs),
        ManualClock(),
        "us-east-1",
        "000000000000",
    )
    await service.load()
    return service


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[LayerService]:
    running = await _service(tmp_path)
    yield running
    await running.close()


def _publish(name: str, files: dict[str, bytes] | None = None) -> PublishLayerInput:
    return PublishLayerInput(name, _zip(files or {"a": b"1"}))


async def test_numbers_grow_and_survive_deletion_and_restart(tmp_path: Path) -> None:
    service = await _service(tmp_path)
    assert (await service.publish(_publish("lib"))).version == 1
    assert (await service.publish(_publish("lib"))).version == 2
    await service.delete(LayerRef("lib"), 2)
    with pytest.raises(ResourceNotFoundException):
        service.get(LayerRef("lib"), 2)
    await service.close()
    reopened = await _service(tmp_path)
    assert (await reopened.publish(_publish("lib"))).version == 3
    assert [v.version for v in reopened.list_versions(LayerRef("lib"), None, None)] == [3, 1]
    await reopened.close()


async def test_other_accounts_and_regions_name_no_layer(service: LayerService) -> None:
    await service.publish(_publish("lib"))
    assert service.get(LayerRef("lib", "us-east-1", "000000000000"), 1).version == 1
    with pytest.raises(ResourceNotFoundException):
        service.get(LayerRef("lib", "us-east-1", "111111111111"), 1)
    with pytest.raises(ResourceNotFoundException):
        service.get_by_arn("arn:aws:lambda:eu-west-1:000000000000:layer:lib:1")


async def test_policy_revisions(service: LayerService) -> None:
    await service.publish(_publish("lib"))
    ref = LayerRef("lib")
    _, first = await service.add_permission(ref, 1, LayerStatement("a", "x", "*"), None)
    with pytest.raises(PreconditionFailedException):
        await service.add_permission(ref, 1, LayerStatement("b", "x", "*"), "stale")
    with pytest.raises(ResourceConflictException):
        await service.add_permission(ref, 1, LayerStatement("a", "x", "*"), None)
    _, second = await service.add_permission(
        ref, 1, LayerStatement("b", "x", "*"), first.revision_id
    )
    assert second.revision_id != first.revision_id
    await service.remove_permission(ref, 1, "a", second.revision_id)
    await service.remove_permission(ref, 1, "b", None)
    with pytest.raises(ResourceNotFoundException, match="No policy"):
        service.get_policy(ref, 1)


async def test_attach_checks_existence_and_the_combined_size(service: LayerService) -> None:
    small = await service.publish(_publish("small"))
    code = _zip({"app.py": b"x"})
    sha = await _code(service, code)
    config = FunctionConfig("python3.11", "app.handler", "role", layers=(ARN + "small:1",))
    attached = await service.attach(config, sha)
    assert attached.layer_code_sizes == (small.code.size,)
    with pytest.raises(InvalidParameterValueException, match="does not exist"):
        await service.attach(FunctionConfig("p", "h", "r", layers=(ARN + "small:2",)), sha)
    big = replace(small, name="big", version=1, unzipped_size=200 * 1024 * 1024)
    bigger = replace(small, name="bigger", version=1, unzipped_size=60 * 1024 * 1024)
    for layer in (big, bigger):  # recorded sizes: no need to unpack 260 MB for the check
        await service._store.insert(layer)
    await service.load()
    layers = (ARN + "big:1", ARN + "bigger:1")
    total = big.unzipped_size + bigger.unzipped_size + 1
    with pytest.raises(InvalidParameterValueException) as excinfo:
        await service.attach(FunctionConfig("p", "h", "r", layers=layers), sha)
    assert excinfo.value.message == (
        "Function code combined with layers exceeds the maximum allowed size of 262144000 "
        f"bytes. The actual size is {total} bytes."
    )
    await service.delete(LayerRef("small"), 1)
    with pytest.raises(InvalidParameterValueException):
        await service.attach(config, sha)
    kept = await service.attach(config, sha, previous=config.layers)  # still in use
    assert kept.layer_code_sizes == (small.code.size,)
    assert await service.opt_dir(config.layers) is not None


async def _code(service: LayerService, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    await service._blobs.put_zip(sha, data)
    return sha


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("bad.name", ValidationException),
        ("x" * 141, ValidationException),
        ("arn:aws:lambda:us-east-1:000000000000:layer:ok", None),
        ("ok_name-1", None),
    ],
)
def test_layer_names(value: str, error: type[ClientError] | None) -> None:
    if error is None:
        assert layer_requests.layer_name(value).name.endswith(("ok", "ok_name-1"))
    else:
        with pytest.raises(error):
            layer_requests.layer_name(value)


def test_version_numbers_and_filters() -> None:
    assert layer_requests.version_number("3") == 3
    with pytest.raises(InvalidParameterValueException, match="Layer Version Cannot be less than 1"):
        layer_requests.version_number("0")
    with pytest.raises(ValidationException, match="compatibleArchitecture"):
        layer_requests.list_filters(None, "sparc", None)
    with pytest.raises(ValidationException, match="maxItems"):
        layer_requests.list_filters(None, None, "0")
    assert layer_requests.list_filters("python3.12", "arm64", "7") == ("python3.12", "arm64", 7)


def test_publish_body_violations_are_reported_together() -> None:
    with pytest.raises(ValidationException) as excinfo:
        layer_requests.publish_input(
            "lib", {"CompatibleArchitectures": ["sparc"], "Description": "d" * 257}
        )
    message = excinfo.value.message
    assert message.startswith("3 validation errors detected: Value null at 'content'")
    assert "'description' failed to satisfy constraint" in message
    assert "Value '[sparc]' at 'compatibleArchitectures'" in message


def test_permission_body() -> None:
    body = {"StatementId": "s1", "Action": "lambda:GetLayerVersion", "Principal": "*"}
    assert layer_requests.permission_input(body) == ("s1", "lambda:GetLayerVersion", "*", None)
    with pytest.raises(ValidationException, match="'principal'"):
        layer_requests.permission_input({**body, "Principal": "someone"})
