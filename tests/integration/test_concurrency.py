"""Reserved concurrency and throttling through boto3; leases always come back."""

from __future__ import annotations

import json
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import EmberServer, signed_headers
from tests.integration.functions import CRASHING, HELLO, SLEEPY
from tests.integration.test_functions_api import create, error_code
from tests.integration.test_invoke import body, invoke


def statistics(server: EmberServer) -> dict[str, Any]:
    headers = signed_headers(server, "GET", "/ember/statistics")
    request = urllib.request.Request(f"{server.url}/ember/statistics", headers=headers)
    with urllib.request.urlopen(request) as response:
        data: dict[str, Any] = json.load(response)
    return data


def test_put_get_delete_function_concurrency(lambda_client: Any) -> None:
    create(lambda_client, "reserved", HELLO)
    assert (
        lambda_client.get_function_concurrency(FunctionName="reserved").get(
            "ReservedConcurrentExecutions"
        )
        is None
    )
    put = lambda_client.put_function_concurrency(
        FunctionName="reserved", ReservedConcurrentExecutions=5
    )
    assert put["ReservedConcurrentExecutions"] == 5
    assert (
        lambda_client.get_function_concurrency(FunctionName="reserved")[
            "ReservedConcurrentExecutions"
        ]
        == 5
    )
    assert lambda_client.get_function(FunctionName="reserved")["Concurrency"] == {
        "ReservedConcurrentExecutions": 5
    }
    limits = lambda_client.get_account_settings()["AccountLimit"]
    assert limits["ConcurrentExecutions"] == 1000
    assert limits["UnreservedConcurrentExecutions"] == 995
    deleted = lambda_client.delete_function_concurrency(FunctionName="reserved")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert (
        lambda_client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
        == 1000
    )


def test_the_last_100_cannot_be_reserved(lambda_client: Any) -> None:
    create(lambda_client, "greedy", HELLO)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_concurrency(
            FunctionName="greedy", ReservedConcurrentExecutions=901
        )
    assert error_code(excinfo) == ("InvalidParameterValueException", 400)
    assert "below its minimum value of [100]" in str(excinfo.value)


def test_reserved_zero_throttles_with_the_reserved_reason(lambda_client: Any) -> None:
    create(lambda_client, "disabled", HELLO)
    lambda_client.put_function_concurrency(FunctionName="disabled", ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName="disabled", Payload=b"{}")
    assert error_code(excinfo) == ("TooManyRequestsException", 429)
    error = excinfo.value.response
    assert error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert error["Error"]["Message"] == "Rate Exceeded."


def test_over_its_reservation_a_second_invoke_is_throttled(
    lambda_client: Any, server: EmberServer
) -> None:
    create(lambda_client, "one-at-a-time", SLEEPY)
    lambda_client.put_function_concurrency(
        FunctionName="one-at-a-time", ReservedConcurrentExecutions=1
    )

    def call(seconds: float) -> str:
        try:
            invoke(lambda_client, "one-at-a-time", {"seconds": seconds})
        except ClientError as error:
            return str(error.response["Reason"])
        return "ok"

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(call, 2)
        while statistics(server)["counting"]["by_function"].get("one-at-a-time") != 1:
            pass  # the first invocation holds its lease
        second = pool.submit(call, 0)
        assert second.result() == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert first.result() == "ok"


def test_leases_return_to_zero_after_every_kind_of_ending(
    lambda_client: Any, server: EmberServer
) -> None:
    create(lambda_client, "ends-ok", HELLO)
    create(lambda_client, "ends-crash", CRASHING)
    create(lambda_client, "ends-timeout", SLEEPY, Timeout=1)
    body(invoke(lambda_client, "ends-ok", {}))
    invoke(lambda_client, "ends-crash", {})
    invoke(lambda_client, "ends-timeout", {"seconds": 5})
    counting = statistics(server)["counting"]
    assert counting["in_flight"] == 0
    assert counting["by_function"] == {}


def test_metrics_in_prometheus_format(lambda_client: Any, server: EmberServer) -> None:
    create(lambda_client, "measured", HELLO)
    invoke(lambda_client, "measured", {})
    invoke(lambda_client, "measured", {})
    lambda_client.put_function_concurrency(FunctionName="measured", ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError):
        lambda_client.invoke(FunctionName="measured", Payload=b"{}")
    with urllib.request.urlopen(f"{server.url}/metrics") as response:
        text = response.read().decode()
    assert 'ember_invocations_total{function="measured"} 2.0' in text
    assert re.search(r'ember_starts_total\{function="measured",kind="(cold|prewarmed)"\} 1.0', text)
    assert 'ember_starts_total{function="measured",kind="warm"} 1.0' in text
    assert 'ember_throttles_total{function="measured"} 1.0' in text
    assert 'ember_duration_seconds_count{function="measured"} 2.0' in text
    assert 'ember_init_duration_seconds_count{function="measured"} 1.0' in text
    assert "ember_concurrent_executions 0.0" in text
    assert 'ember_environments{state="idle"}' in text
