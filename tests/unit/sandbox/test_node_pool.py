"""Node slots' policy (``sandbox/node_pool.py``) with a fake zygote: one pool keyed by the
node configuration of the latest node start, counted ready only once its node said so,
and off after repeated failures to start node."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from ember.sandbox.base import SandboxSpec
from ember.sandbox.namespace import NamespaceBackend
from ember.sandbox.node_pool import MAX_FAILED_SLOTS, READY, NodeSlots
from ember.sandbox.rootless import NoCgroup
from ember.sandbox.zygote import Zygote

PATHS = ("/var/task", "/opt", "/var/runtime")


class FakeZygote:
    """Pre-starts a ``sleep`` standing for a sandbox whose pid 1 answers ``answer``."""

    interpreter = "/usr/bin/python3"
    pid = 1

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.configs: list[dict[str, Any]] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    async def prestart(self, config: dict[str, Any]) -> tuple[int, int, socket.socket]:
        self.configs.append(config)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs.send(self.answer)
        theirs.close()
        process = subprocess.Popen(["sleep", "60"])  # noqa: ASYNC220 - at once, no wait
        self.processes.append(process)
        return process.pid, os.pidfd_open(process.pid), ours


def node_spec(memory_mb: int, prestart: bool = True) -> SandboxSpec:
    def hint(task: str, opt: str, runtime_dir: str) -> tuple[list[str], dict[str, str]]:
        argv = ["/usr/bin/node", f"--max-old-space-size={memory_mb}", f"{runtime_dir}/index.mjs"]
        return argv, {"TZ": ":UTC"}

    return SandboxSpec(
        Path("/code"), None, memory_mb, 512, runtime_client=Path("/client"),
        runtime_prestart=hint if prestart else None,
    )  # fmt: skip


Slots = Callable[[bytes], tuple[NodeSlots, FakeZygote]]


@pytest.fixture
async def slots(tmp_path: Path) -> AsyncIterator[Slots]:
    made: list[tuple[NodeSlots, FakeZygote]] = []

    def make(answer: bytes) -> tuple[NodeSlots, FakeZygote]:
        backend = SimpleNamespace(
            pool_size=3, scratch=tmp_path, pool_min_available_mb=0, available_mb=lambda: None,
            base_config=lambda root, cgroup: {"root": root}, new_cgroup=lambda: NoCgroup("x"),
            warming=lambda interpreter: (False, None), pool_max=3, cpu_meter=lambda: lambda: None,
        )  # fmt: skip
        node_slots = NodeSlots(cast(NamespaceBackend, backend), 1, PATHS, b"\x01\x02")
        zygote = FakeZygote(answer)
        made.append((node_slots, zygote))
        return node_slots, zygote

    yield make
    for node_slots, zygote in made:
        await node_slots.close()
        for process in zygote.processes:
            process.kill()
            process.wait()


async def fill(node_slots: NodeSlots) -> None:
    pool = node_slots._pool
    assert pool is not None
    await pool.fill()


async def test_the_pool_follows_the_latest_node_configuration(slots: Slots) -> None:
    node_slots, fake = slots(READY)
    zygote = cast(Zygote, fake)
    assert node_slots.take(node_spec(128, prestart=False), zygote) is None  # no pool made
    assert node_slots.statistics()["ready"] == 0
    assert node_slots.take(node_spec(128), zygote) is None  # the first: makes the pool
    await fill(node_slots)
    assert node_slots.statistics()["ready"] == 1
    prestart = fake.configs[0]["node_prestart"]
    assert prestart["argv"][1] == "--max-old-space-size=128"
    assert prestart["binds"] == [["/client", "/var/runtime"]]
    assert (prestart["seccomp"], fake.configs[0]["warm"]) == ("0102", False)
    taken = node_slots.take(node_spec(128), zygote)
    assert taken is not None
    taken.discard()
    await fill(node_slots)
    assert node_slots.take(node_spec(256), zygote) is None  # another size: re-keyed
    await fill(node_slots)
    assert fake.configs[-1]["node_prestart"]["argv"][1] == "--max-old-space-size=256"
    assert node_slots.statistics() == {
        "ready": 1, "refilling": 0, "memory_low": 0, "handed_out": 1, "target": 1,
    }  # fmt: skip


async def test_slots_whose_node_does_not_start_are_dropped_then_turned_off(
    slots: Slots, caplog: pytest.LogCaptureFixture
) -> None:
    node_slots, fake = slots(b"-")
    zygote = cast(Zygote, fake)
    with caplog.at_level(logging.ERROR, logger="ember"):
        for _ in range(MAX_FAILED_SLOTS):
            assert node_slots.take(node_spec(128), zygote) is None
            await fill(node_slots)
            assert node_slots.statistics()["ready"] == 0
    assert all(process.wait(timeout=30) == -9 for process in fake.processes)  # discarded
    asked = len(fake.configs)
    assert node_slots.take(node_spec(128), zygote) is None
    assert len(fake.configs) == asked  # off: nothing more pre-started
    assert any("node slots off" in record.getMessage() for record in caplog.records)
