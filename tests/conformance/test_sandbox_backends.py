"""The sandbox conformance kit over every backend this machine can run.

A backend the host cannot run is skipped with the reason, never silently.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ember.errors import SandboxError
from ember.sandbox.base import SandboxBackend
from ember.sandbox.conformance import CHECKS, PROBE_PYTHON, Check
from ember.sandbox.registry import BACKENDS, create_backend
from ember.settings import Settings

PROBE_AVAILABLE = Path(PROBE_PYTHON).exists()


@pytest.fixture(params=sorted(BACKENDS))
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SandboxBackend]:
    if not PROBE_AVAILABLE:
        pytest.skip(f"the conformance probe needs {PROBE_PYTHON}")
    settings = Settings(
        sandbox_backend=request.param,
        agent_python=sys.executable,
        data_dir=tmp_path_factory.mktemp("data"),
    )
    try:
        made = create_backend(settings)
    except SandboxError as exc:
        pytest.skip(f"{request.param} backend unavailable here: {exc}")
    yield made
    await made.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_backend_conforms(backend: SandboxBackend, check: Check, tmp_path: Path) -> None:
    await check(backend, tmp_path)
