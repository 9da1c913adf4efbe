"""Provisioned concurrency through boto3: the API's rules and errors."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import start_server
from tests.integration.functions import HELLO, IMPORT_ERROR
from tests.integration.test_functions_api import create, error_code
from tests.integration.test_invoke import body, invoke, tail


@pytest.fixture(scope="module")
def function(lambda_client: Any) -> str:
    create(lambda_client, "provisioned", HELLO)
    return "provisioned"


def test_latest_cannot_be_provisioned(lambda_client: Any, function: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_provisioned_concurrency_config(
            FunctionName=function, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1
        )
    assert error_code(excinfo) == ("InvalidParameterValueException", 400)
    assert excinfo.value.response["Error"]["Message"] == (
        "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
    )
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_provisioned_concurrency_config(FunctionName=function, Qualifier="$LATEST")
    assert error_code(excinfo) == ("InvalidParameterValueException", 400)
    assert excinfo.value.response["Error"]["Message"] == (
        "The function resource provided must be an alias or a published version."
    )


def test_an_unknown_version_or_function_is_not_found(lambda_client: Any, function: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_provisioned_concurrency_config(
            FunctionName=function, Qualifier="7", ProvisionedConcurrentExecutions=1
        )
    assert error_code(excinfo) == ("ResourceNotFoundException", 404)
    assert excinfo.value.response["Error"]["Message"].endswith(f"function:{function}:7")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_provisioned_concurrency_configs(FunctionName="no-such-function")
    assert error_code(excinfo) == ("ResourceNotFoundException", 404)


def test_a_function_without_configurations_lists_none(lambda_client: Any, function: str) -> None:
    listed = lambda_client.list_provisioned_concurrency_configs(FunctionName=function)
    assert listed["ProvisionedConcurrencyConfigs"] == []
    assert (
        lambda_client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
        == 1000
    )


INIT_TYPE = """
import os

INITS = {"count": 0}
INITS["count"] += 1


def handler(event, context):
    return {"init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"], "inits": INITS["count"]}
"""


def ready(client: Any, name: str, qualifier: str) -> dict[str, Any]:
    """The configuration once it has left IN_PROGRESS (allocation runs in the background)."""
    while True:
        config: dict[str, Any] = client.get_provisioned_concurrency_config(
            FunctionName=name, Qualifier=qualifier
        )
        if config["Status"] != "IN_PROGRESS":
            return config
        time.sleep(0.02)


@pytest.fixture(scope="module")
def version(lambda_client: Any) -> str:
    create(lambda_client, "pc-flow", INIT_TYPE)
    published: str = lambda_client.publish_version(FunctionName="pc-flow")["Version"]
    return published


def test_a_version_gets_environments_initialised_ahead(lambda_client: Any, version: str) -> None:
    put = lambda_client.put_provisioned_concurrency_config(
        FunctionName="pc-flow", Qualifier=version, ProvisionedConcurrentExecutions=2
    )
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert put["Status"] == "IN_PROGRESS"
    assert put["RequestedProvisionedConcurrentExecutions"] == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", put["LastModified"])
    config = ready(lambda_client, "pc-flow", version)
    assert config["Status"] == "READY"
    assert config["AvailableProvisionedConcurrentExecutions"] == 2
    assert config["AllocatedProvisionedConcurrentExecutions"] == 2
    response = invoke(lambda_client, "pc-flow", {}, Qualifier=version, LogType="Tail")
    assert body(response) == {"init_type": "provisioned-concurrency", "inits": 1}
    report = tail(response).splitlines()[-1]
    assert report.endswith("\tEmber Start Kind: provisioned\t")
    assert "Init Duration" not in report
    listed = lambda_client.list_provisioned_concurrency_configs(FunctionName="pc-flow")
    [entry] = listed["ProvisionedConcurrencyConfigs"]
    assert entry["FunctionArn"].endswith(f":function:pc-flow:{version}")
    limits = lambda_client.get_account_settings()["AccountLimit"]
    assert limits["UnreservedConcurrentExecutions"] == 998
    latest = invoke(lambda_client, "pc-flow", {}, LogType="Tail")  # $LATEST: on demand
    assert body(latest)["init_type"] == "on-demand"


def test_delete_gives_the_environments_back(lambda_client: Any, version: str) -> None:
    lambda_client.put_provisioned_concurrency_config(
        FunctionName="pc-flow", Qualifier=version, ProvisionedConcurrentExecutions=1
    )
    ready(lambda_client, "pc-flow", version)
    deleted = lambda_client.delete_provisioned_concurrency_config(
        FunctionName="pc-flow", Qualifier=version
    )
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_provisioned_concurrency_config(FunctionName="pc-flow", Qualifier=version)
    assert error_code(excinfo) == ("ProvisionedConcurrencyConfigNotFoundException", 404)


def test_an_init_failure_fails_the_configuration(lambda_client: Any) -> None:
    create(lambda_client, "pc-broken", IMPORT_ERROR)
    version = lambda_client.publish_version(FunctionName="pc-broken")["Version"]
    lambda_client.put_provisioned_concurrency_config(
        FunctionName="pc-broken", Qualifier=version, ProvisionedConcurrentExecutions=1
    )
    config = ready(lambda_client, "pc-broken", version)
    assert config["Status"] == "FAILED"
    assert config["StatusReason"] == "FUNCTION_ERROR_INIT_FAILURE"


def test_over_the_reservation_is_refused(lambda_client: Any) -> None:
    create(lambda_client, "pc-reserved", INIT_TYPE)
    version = lambda_client.publish_version(FunctionName="pc-reserved")["Version"]
    lambda_client.put_function_concurrency(
        FunctionName="pc-reserved", ReservedConcurrentExecutions=1
    )
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_provisioned_concurrency_config(
            FunctionName="pc-reserved", Qualifier=version, ProvisionedConcurrentExecutions=2
        )
    assert error_code(excinfo) == ("InvalidParameterValueException", 400)


def test_configurations_survive_a_restart(tmp_path: Path) -> None:
    first = start_server(tmp_path)
    client = first.client()
    create(client, "pc-durable", INIT_TYPE)
    version = client.publish_version(FunctionName="pc-durable")["Version"]
    client.put_provisioned_concurrency_config(
        FunctionName="pc-durable", Qualifier=version, ProvisionedConcurrentExecutions=1
    )
    ready(client, "pc-durable", version)
    first.stop()
    second = start_server(tmp_path)
    try:
        client = second.client()
        assert ready(client, "pc-durable", version)["Status"] == "READY"
        response = invoke(client, "pc-durable", {}, Qualifier=version, LogType="Tail")
        assert tail(response).splitlines()[-1].endswith("\tEmber Start Kind: provisioned\t")
    finally:
        second.stop()


def test_an_alias_is_provisioned_for_its_version(lambda_client: Any) -> None:
    create(lambda_client, "pc-alias", INIT_TYPE)
    one = lambda_client.publish_version(FunctionName="pc-alias")["Version"]
    lambda_client.create_alias(FunctionName="pc-alias", Name="live", FunctionVersion=one)
    lambda_client.put_provisioned_concurrency_config(
        FunctionName="pc-alias", Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    assert ready(lambda_client, "pc-alias", "live")["Status"] == "READY"
    response = invoke(lambda_client, "pc-alias", {}, Qualifier="live", LogType="Tail")
    assert body(response)["init_type"] == "provisioned-concurrency"
    assert tail(response).splitlines()[-1].endswith("\tEmber Start Kind: provisioned\t")
    with pytest.raises(ClientError) as excinfo:  # its version is taken through the alias
        lambda_client.put_provisioned_concurrency_config(
            FunctionName="pc-alias", Qualifier=one, ProvisionedConcurrentExecutions=1
        )
    assert error_code(excinfo) == ("ResourceConflictException", 409)
    assert excinfo.value.response["Error"]["Message"] == (
        "Version is pointed by a Provisioned Concurrency alias"
    )


def test_aliases_of_latest_or_with_weights_cannot_be_provisioned(lambda_client: Any) -> None:
    create(lambda_client, "pc-odd", INIT_TYPE)
    one = lambda_client.publish_version(FunctionName="pc-odd")["Version"]
    lambda_client.update_function_configuration(FunctionName="pc-odd", Description="two")
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName="pc-odd")
    two = lambda_client.publish_version(FunctionName="pc-odd")["Version"]
    lambda_client.create_alias(FunctionName="pc-odd", Name="head", FunctionVersion="$LATEST")
    lambda_client.create_alias(
        FunctionName="pc-odd",
        Name="canary",
        FunctionVersion=one,
        RoutingConfig={"AdditionalVersionWeights": {two: 0.1}},
    )
    for alias, message in (
        ("head", "Provisioned Concurrency Configs cannot be applied to unpublished function "
                 "versions."),
        ("canary", "Alias with weights can not be used with Provisioned Concurrency"),
    ):  # fmt: skip
        with pytest.raises(ClientError) as excinfo:
            lambda_client.put_provisioned_concurrency_config(
                FunctionName="pc-odd", Qualifier=alias, ProvisionedConcurrentExecutions=1
            )
        assert error_code(excinfo) == ("InvalidParameterValueException", 400)
        assert excinfo.value.response["Error"]["Message"] == message


def test_deleting_an_alias_deletes_its_provisioned_concurrency(lambda_client: Any) -> None:
    create(lambda_client, "alias-provisioned", HELLO)
    version = lambda_client.publish_version(FunctionName="alias-provisioned")["Version"]
    lambda_client.create_alias(
        FunctionName="alias-provisioned", Name="live", FunctionVersion=version
    )
    lambda_client.put_provisioned_concurrency_config(
        FunctionName="alias-provisioned", Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    listed = lambda_client.list_provisioned_concurrency_configs(FunctionName="alias-provisioned")
    assert len(listed["ProvisionedConcurrencyConfigs"]) == 1
    lambda_client.delete_alias(FunctionName="alias-provisioned", Name="live")
    listed = lambda_client.list_provisioned_concurrency_configs(FunctionName="alias-provisioned")
    assert listed["ProvisionedConcurrencyConfigs"] == []


def test_a_reservation_counts_the_others_provisioned_concurrency(tmp_path: Path) -> None:
    """Provisioned concurrency of a function without a reservation is out of the unreserved
    pool: a reservation elsewhere may not push that pool below 100 either."""
    server = start_server(tmp_path, env={"EMBER_ACCOUNT_CONCURRENCY": "110"})
    try:
        client = server.client()
        create(client, "claimer", HELLO)
        version = client.publish_version(FunctionName="claimer")["Version"]
        client.put_provisioned_concurrency_config(
            FunctionName="claimer", Qualifier=version, ProvisionedConcurrentExecutions=5
        )
        create(client, "reserver", HELLO)
        with pytest.raises(ClientError) as excinfo:
            client.put_function_concurrency(FunctionName="reserver", ReservedConcurrentExecutions=6)
        assert error_code(excinfo) == ("InvalidParameterValueException", 400)
        assert "below its minimum value of [100]" in excinfo.value.response["Error"]["Message"]
        client.put_function_concurrency(FunctionName="reserver", ReservedConcurrentExecutions=5)
        settings = client.get_account_settings()["AccountLimit"]
        assert settings["UnreservedConcurrentExecutions"] == 100
    finally:
        server.stop()
