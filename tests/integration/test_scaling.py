"""The host memory budget through a real server: LRU eviction, refusal, start kinds.

The server runs with a budget of 3 x 128 MB and waits 1 s for memory before refusing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import EmberServer, start_server
from tests.integration.functions import HELLO, SLEEPY
from tests.integration.test_concurrency import statistics
from tests.integration.test_functions_api import create, error_code
from tests.integration.test_invoke import invoke, tail

START_KIND = re.compile(r"\tEmber Start Kind: (\w+)\t\n$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    env = {"EMBER_MEMORY_BUDGET_MB": "384", "EMBER_MEMORY_WAIT_SECONDS": "1"}
    running = start_server(tmp_path_factory.mktemp("ember-data"), env=env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lambda_client(server: EmberServer) -> Any:
    return server.client()


def start_kind(client: Any, name: str, payload: Any = None) -> str:
    match = START_KIND.search(tail(invoke(client, name, payload or {}, LogType="Tail")))
    assert match is not None
    return match.group(1)


def settle(server: EmberServer) -> dict[str, Any]:
    """Statistics once no invocation is in flight (a response is sent before the lease
    of its invocation is given back)."""
    while (stats := statistics(server))["counting"]["in_flight"]:
        time.sleep(0.01)
    return stats


def test_the_least_recently_used_idle_environment_makes_room(
    lambda_client: Any, server: EmberServer
) -> None:
    for name in ("lru-a", "lru-b", "lru-c", "lru-d"):
        create(lambda_client, name, HELLO)
    for name in ("lru-a", "lru-b", "lru-c"):
        assert start_kind(lambda_client, name) in ("cold", "prewarmed")
    assert start_kind(lambda_client, "lru-a") == "warm"  # b is now the least recently used
    placement = settle(server)["placement"]
    assert (placement["memory_used_mb"], placement["memory_budget_mb"]) == (384, 384)
    assert start_kind(lambda_client, "lru-d") in ("cold", "prewarmed")  # evicts b
    assert start_kind(lambda_client, "lru-a") == "warm"
    assert start_kind(lambda_client, "lru-c") == "warm"
    assert start_kind(lambda_client, "lru-b") in ("cold", "prewarmed")  # evicts d
    stats = settle(server)
    placement = stats["placement"]
    assert stats["pools"]  # the namespace backend's warm pool, by interpreter
    assert all({"ready", "refilling", "memory_low"} <= set(p) for p in stats["pools"].values())
    assert placement["evicted"] == 2
    assert placement["memory_used_mb"] == 384
    assert placement["idle"] == 3


def test_without_memory_an_invoke_is_refused_and_counters_stay_right(
    lambda_client: Any, server: EmberServer
) -> None:
    for name in ("hold-a", "hold-b", "hold-c", "squeezed"):
        create(lambda_client, name, SLEEPY)
    with ThreadPoolExecutor(3) as pool:
        names = ("hold-a", "hold-b", "hold-c")
        held = [pool.submit(invoke, lambda_client, n, {"seconds": 4}) for n in names]
        while statistics(server)["placement"]["busy"] < 3:
            time.sleep(0.01)
        with pytest.raises(ClientError) as excinfo:
            lambda_client.invoke(FunctionName="squeezed", Payload=b"{}")
        assert all(future.result()["StatusCode"] == 200 for future in held)
    assert error_code(excinfo) == ("TooManyRequestsException", 429)
    response = excinfo.value.response
    assert response["Reason"] == "ConcurrentInvocationLimitExceeded"
    assert "host memory budget (384 MB, EMBER_MEMORY_BUDGET_MB)" in response["Error"]["Message"]
    stats = settle(server)
    assert stats["counting"]["by_function"] == {}
    placement = stats["placement"]
    assert placement["memory_refusals"] == 1
    assert placement["memory_starting_mb"] == 0
    assert placement["busy"] == 0
    assert placement["memory_used_mb"] == 128 * placement["idle"]
    assert invoke(lambda_client, "squeezed", {})["StatusCode"] == 200  # room again: evicts


def test_a_function_larger_than_the_budget_is_refused(lambda_client: Any) -> None:
    create(lambda_client, "too-big", HELLO, MemorySize=512)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName="too-big", Payload=b"{}")
    assert error_code(excinfo) == ("TooManyRequestsException", 429)
