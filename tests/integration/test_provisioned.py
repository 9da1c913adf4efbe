"""Provisioned concurrency through boto3: the API's rules and errors."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.functions import HELLO
from tests.integration.test_functions_api import create, error_code


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
