"""After a burst of cold starts the warm pool grows to the burst's size, and the next
burst's environments all start from it (``sandbox/pool_demand.py``), through a real
server with real sandboxes."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import EmberServer, start_server
from tests.integration.esm_support import wait_for
from tests.integration.functions import SLEEPY
from tests.integration.test_concurrency import statistics
from tests.integration.test_functions_api import create
from tests.integration.test_invoke import body, invoke

BURST = 4


@pytest.fixture
def growing(tmp_path: Path) -> Iterator[EmberServer]:
    env = {
        "EMBER_SANDBOX_POOL_SIZE": "1",
        "EMBER_SANDBOX_POOL_MAX": str(BURST),
        # no working-set recording, whose pool renewal would race with the second burst
        "EMBER_SANDBOX_PREFAULT": "off",
    }
    server = start_server(tmp_path / "data", env=env)
    yield server
    server.stop()


def burst(client: Any, name: str) -> set[str]:
    """``BURST`` invokes at once, each holding its environment 2 s: their log streams."""
    with ThreadPoolExecutor(BURST) as pool:
        responses = list(pool.map(lambda _: invoke(client, name, {"seconds": 2}), range(BURST)))
    return {body(response)["environment"] for response in responses}


def pool(server: EmberServer) -> dict[str, int]:
    pools = [p for name, p in statistics(server)["pools"].items() if name != "node"]
    assert len(pools) == 1
    found: dict[str, int] = pools[0]
    return found


def test_a_burst_grows_the_pool_and_the_next_burst_starts_from_it(
    growing: EmberServer,
) -> None:
    client = growing.client()
    create(client, "first", SLEEPY)
    create(client, "second", SLEEPY)
    assert len(burst(client, "first")) == BURST  # one environment each
    assert pool(growing)["target"] == BURST
    wait_for(
        lambda: pool(growing)["ready"] == BURST and not pool(growing)["refilling"],
        60,
        "the pool to grow to the burst's size",
    )
    before = statistics(growing)["placement"]["starts"]["prewarmed"]
    assert len(burst(client, "second")) == BURST
    assert statistics(growing)["placement"]["starts"]["prewarmed"] - before == BURST
