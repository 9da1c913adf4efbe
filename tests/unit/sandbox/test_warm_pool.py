"""The namespace backend's warm pool pauses its refills while the machine is short of memory."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from ember.sandbox.namespace import NamespaceBackend, WarmPool
from ember.sandbox.zygote import Zygote


class NoPrestarts:
    interpreter = "/usr/bin/python3"

    async def prestart(self, config: dict[str, Any]) -> Any:
        raise AssertionError("a refill pre-started a sandbox while memory was low")


def pool(available: list[int | None], tmp_path: Path) -> WarmPool:
    backend = SimpleNamespace(
        pool_size=3, prefault=False, scratch=tmp_path, pool_min_available_mb=512,
        available_mb=lambda: None,
    )  # fmt: skip
    return WarmPool(
        cast(NamespaceBackend, backend), cast(Zygote, NoPrestarts()), lambda: available[0]
    )


async def test_refills_skip_below_the_threshold_and_say_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    available: list[int | None] = [300]
    warm = pool(available, tmp_path)
    with caplog.at_level(logging.WARNING, logger="ember"):
        await warm.fill()
        await warm.fill()
    assert warm.ready == 0
    notes = [r.getMessage() for r in caplog.records if "not refilled" in r.getMessage()]
    assert notes == [
        "cold starts: warm pool of /usr/bin/python3 not refilled: 300 MB available, below "
        "512 MB (EMBER_SANDBOX_POOL_MIN_AVAILABLE_MB)"
    ]
    available[0] = 4096
    assert not warm.memory_low()
    available[0] = 100  # low again: said again, once
    with caplog.at_level(logging.WARNING, logger="ember"):
        assert warm.memory_low()
        assert warm.memory_low()
    assert sum("not refilled" in r.getMessage() for r in caplog.records) == 2
    await warm.close()


async def test_an_unknown_reading_never_blocks_refills(tmp_path: Path) -> None:
    warm = pool([None], tmp_path)
    assert not warm.memory_low()
    await warm.close()
