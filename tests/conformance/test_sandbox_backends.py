"""The sandbox conformance kit over every backend this machine can run.

A backend the host cannot run is skipped with the reason, never silently. The namespace
backend runs the kit twice: sandboxes from its pre-warmed zygotes (the default), and
through the exec path (``sandbox_zygote=False``, also its fallback).
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ember.errors import SandboxError
from ember.sandbox import cgroups
from ember.sandbox.base import SandboxBackend
from ember.sandbox.conformance import (
    CHECKS,
    PROBE_PYTHON,
    Check,
    anticipate_probe,
    invoke,
    start_probe,
)
from ember.sandbox.namespace import NamespaceBackend
from ember.sandbox.registry import BACKENDS, create_backend
from ember.sandbox.zygote import Zygote, ZygoteUnavailable
from ember.settings import Settings

PROBE_AVAILABLE = Path(PROBE_PYTHON).exists()
EXEC_PATH = "namespace-exec"  # the namespace backend with pre-warmed zygotes off
WAIT_S = 30.0


def make_backend(
    name: str, data_dir: Path, pool_size: int = 2, prefault: str = "off"
) -> SandboxBackend:
    settings = Settings(
        sandbox_prefault=prefault,
        sandbox_backend=name.removesuffix("-exec"),
        agent_python=sys.executable,
        data_dir=data_dir,
        sandbox_zygote=name != EXEC_PATH,
        sandbox_pool_size=pool_size,
    )
    try:
        return create_backend(settings)
    except SandboxError as exc:
        pytest.skip(f"{name} backend unavailable here: {exc}")


@pytest.fixture(params=[*sorted(BACKENDS), EXEC_PATH])
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SandboxBackend]:
    if not PROBE_AVAILABLE:
        pytest.skip(f"the conformance probe needs {PROBE_PYTHON}")
    made = make_backend(request.param, tmp_path_factory.mktemp("data"))
    yield made
    await made.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_backend_conforms(backend: SandboxBackend, check: Check, tmp_path: Path) -> None:
    await check(backend, tmp_path)
    if isinstance(backend, NamespaceBackend):  # the path under test was the path taken
        assert backend.last_started_by == ("zygote" if backend.prewarm else "exec")


def wait_for_exit(pid: int) -> None:
    fd = os.pidfd_open(pid)
    try:
        assert select.select([fd], [], [], WAIT_S)[0], f"process {pid} did not end"
    finally:
        os.close(fd)


async def test_a_dead_zygote_falls_back_to_exec_and_is_restarted(tmp_path: Path) -> None:
    if not PROBE_AVAILABLE:
        pytest.skip(f"the conformance probe needs {PROBE_PYTHON}")
    backend = make_backend("namespace", tmp_path / "data", pool_size=0)  # all on demand
    assert isinstance(backend, NamespaceBackend)
    try:
        first = await start_probe(backend, tmp_path)
        assert backend.last_started_by == "zygote"
        (zygote,) = backend.zygotes()
        old_pid = zygote.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        wait_for_exit(old_pid)
        assert (await invoke(first, {"n": 1}))["echo"] == {"n": 1}, "running sandboxes live on"
        fallback = await start_probe(backend, tmp_path)
        assert backend.last_started_by == "exec"
        assert (await invoke(fallback, {"n": 2}))["echo"] == {"n": 2}
        again = await start_probe(backend, tmp_path)
        assert backend.last_started_by == "zygote"
        assert zygote.pid not in (None, old_pid)
        assert (await invoke(again, {"n": 3}))["echo"] == {"n": 3}
        for sandbox in (first, fallback, again):
            await sandbox.kill()
    finally:
        await backend.close()


@pytest.mark.parametrize("prefault", ["off", "full"], ids=["lazy", "prefaulted"])
async def test_warm_pool_sandboxes_serve_and_outlive_their_zygote(
    tmp_path: Path, prefault: str
) -> None:
    if not PROBE_AVAILABLE:
        pytest.skip(f"the conformance probe needs {PROBE_PYTHON}")
    backend = make_backend("namespace", tmp_path / "data", pool_size=2, prefault=prefault)
    assert isinstance(backend, NamespaceBackend)
    try:
        (zygote,) = backend.zygotes()
        pool = backend.pool(zygote)
        await asyncio.wait_for(pool.fill(), WAIT_S)
        assert pool.ready == 2
        pid = zygote.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for_exit(pid)
        sandboxes = []
        for n in (1, 2):  # pre-started (and warmed) before the zygote died
            sandbox = await start_probe(backend, tmp_path)
            assert backend.last_started_by == "zygote"
            assert (await invoke(sandbox, {"n": n}))["echo"] == {"n": n}
            sandboxes.append(sandbox)
        for sandbox in sandboxes:
            await sandbox.kill()
            await asyncio.wait_for(sandbox.wait_closed(), WAIT_S)
    finally:
        await backend.close()


async def test_a_closed_backend_starts_nothing_more(tmp_path: Path) -> None:
    """A refill timer that fires after close must not spawn a new zygote (it would
    outlive the server)."""
    if not PROBE_AVAILABLE:
        pytest.skip(f"the conformance probe needs {PROBE_PYTHON}")
    backend = make_backend("namespace", tmp_path / "data", pool_size=1)
    assert isinstance(backend, NamespaceBackend)
    sandbox = await start_probe(backend, tmp_path)  # take() arms a refill timer
    await sandbox.kill()
    (zygote,) = backend.zygotes()
    pool = backend.pool(zygote)
    await backend.close()
    pool.refill_soon()  # what the timer would do
    assert pool.ready == 0
    assert not pool.refilling
    assert zygote.pid is None
    with pytest.raises(ZygoteUnavailable):
        await zygote.prestart({})
    assert zygote.pid is None


async def test_the_first_start_records_a_working_set_that_the_pool_then_prefaults(
    tmp_path: Path,
) -> None:
    if not PROBE_AVAILABLE:
        pytest.skip(f"the conformance probe needs {PROBE_PYTHON}")
    backend = make_backend("namespace", tmp_path / "data", pool_size=2, prefault="working-set")
    assert isinstance(backend, NamespaceBackend)
    first_invoke_done = asyncio.Event()
    backend.record_after = first_invoke_done.wait  # by default: a second after the start
    try:
        (zygote,) = backend.zygotes()
        assert backend.warming(zygote.interpreter) == (False, None)  # nothing recorded yet
        first = await start_probe(backend, tmp_path)
        assert (await invoke(first, {"n": 1}))["echo"] == {"n": 1}
        first_invoke_done.set()
        await backend.quiesce()
        await assert_recorded_and_pool_filled(backend, zygote)  # renewed: pre-faulting
        second = await start_probe(backend, tmp_path)
        assert (await invoke(second, {"n": 2}))["echo"] == {"n": 2}
        for sandbox in (first, second):
            await sandbox.kill()
    finally:
        await backend.close()


async def test_takes_that_never_pause_do_not_keep_the_working_set_from_being_recorded(
    tmp_path: Path,
) -> None:
    if not PROBE_AVAILABLE:
        pytest.skip(f"the conformance probe needs {PROBE_PYTHON}")
    backend = make_backend("namespace", tmp_path / "data", pool_size=1, prefault="working-set")
    assert isinstance(backend, NamespaceBackend)
    first_invoke_done = asyncio.Event()
    backend.record_after = first_invoke_done.wait
    backend.record_quiet_max_s = 0.0  # a pause in takes is waited for this long at most
    try:
        (zygote,) = backend.zygotes()
        first = await start_probe(backend, tmp_path)
        assert (await invoke(first, {"n": 1}))["echo"] == {"n": 1}
        pool = backend.pool(zygote)
        pool._demand.note_start(asyncio.get_running_loop().time())  # a take never ending
        first_invoke_done.set()
        await asyncio.wait_for(backend.quiesce(), WAIT_S)
        assert backend.warming(zygote.interpreter)[0]
        await first.kill()
    finally:
        await backend.close()


async def test_a_calibration_start_records_the_working_set_before_any_start(
    tmp_path: Path,
) -> None:
    """``anticipate``: one start of the probe in a sandbox of its own records the pages,
    the pool fills pre-faulted, and the calibration's sandbox and cgroup are gone."""
    if not PROBE_AVAILABLE:
        pytest.skip(f"the conformance probe needs {PROBE_PYTHON}")
    backend = make_backend("namespace", tmp_path / "data", pool_size=2, prefault="working-set")
    assert isinstance(backend, NamespaceBackend)
    try:
        (zygote,) = backend.zygotes()
        await asyncio.wait_for(anticipate_probe(backend, tmp_path), WAIT_S)
        await assert_recorded_and_pool_filled(backend, zygote)
        names = cgroups.leftover_names(backend.cgroup_version or 1)
        ours = [n for n in names if n.startswith(backend.cgroup_prefix)]
        assert len(ours) == 2  # the pool's: the calibration's cgroup was removed
        sandbox = await start_probe(backend, tmp_path)
        assert (await invoke(sandbox, {"n": 1}))["echo"] == {"n": 1}
        await sandbox.kill()
    finally:
        await backend.close()


async def assert_recorded_and_pool_filled(backend: NamespaceBackend, zygote: Zygote) -> None:
    """A working set of both roles is recorded, and the pool fills (to 2) pre-faulting it."""
    prefault, ranges = backend.warming(zygote.interpreter)
    assert prefault
    assert ranges is not None
    assert ranges["agent"]
    assert ranges["runtime"]
    pool = backend.pool(zygote)
    await asyncio.wait_for(pool.fill(), WAIT_S)
    assert pool.ready == 2
