"""TagResource / UntagResource / ListTags with boto3: AWS's shapes and errors."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.test_functions_api import create, error_code

ACCOUNT_ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


@pytest.fixture(scope="module")
def tagged(lambda_client: Any) -> str:
    create(lambda_client, "tagged", Tags={"team": "ember"})
    arn: str = lambda_client.get_function(FunctionName="tagged")["Configuration"]["FunctionArn"]
    return arn


def test_tags_are_listed_added_and_removed(lambda_client: Any, tagged: str) -> None:
    assert lambda_client.list_tags(Resource=tagged)["Tags"] == {"team": "ember"}
    lambda_client.tag_resource(Resource=tagged, Tags={"stage": "dev", "team": "platform"})
    assert lambda_client.list_tags(Resource=tagged)["Tags"] == {
        "team": "platform",
        "stage": "dev",
    }
    lambda_client.untag_resource(Resource=tagged, TagKeys=["team", "absent"])
    assert lambda_client.list_tags(Resource=tagged)["Tags"] == {"stage": "dev"}
    assert lambda_client.get_function(FunctionName="tagged")["Tags"] == {"stage": "dev"}


def test_an_untagged_function_lists_an_empty_map(lambda_client: Any) -> None:
    create(lambda_client, "untagged")
    arn = lambda_client.get_function(FunctionName="untagged")["Configuration"]["FunctionArn"]
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {}


def test_tag_operations_answer_204(lambda_client: Any, tagged: str) -> None:
    tagged_response = lambda_client.tag_resource(Resource=tagged, Tags={"a": "1"})
    untagged_response = lambda_client.untag_resource(Resource=tagged, TagKeys=["a"])
    assert tagged_response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert untagged_response["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_a_qualified_arn_is_refused(lambda_client: Any, tagged: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.tag_resource(Resource=tagged + ":$LATEST", Tags={"a": "1"})
    assert error_code(excinfo) == ("InvalidParameterValueException", 400)
    assert excinfo.value.response["Error"]["Message"] == (
        "Tags on function aliases and versions are not supported. Please specify a function ARN."
    )


def test_a_function_name_is_not_an_arn(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_tags(Resource="tagged")
    assert error_code(excinfo) == ("ValidationException", 400)
    message = excinfo.value.response["Error"]["Message"]
    assert message.startswith(
        "1 validation error detected: Value 'tagged' at 'resource' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*):lambda:"
    )


def test_an_unknown_function_is_not_found(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_tags(Resource=ACCOUNT_ARN + "nobody")
    assert error_code(excinfo) == ("ResourceNotFoundException", 404)
    assert excinfo.value.response["Error"]["Message"] == (
        f"Function not found: {ACCOUNT_ARN}nobody"
    )


def test_bad_tags_change_nothing(lambda_client: Any, tagged: str) -> None:
    before = lambda_client.list_tags(Resource=tagged)["Tags"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.tag_resource(Resource=tagged, Tags={"k" * 129: "v"})
    assert error_code(excinfo) == ("ValidationException", 400)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.tag_resource(Resource=tagged, Tags={"ember:network": "everywhere"})
    assert error_code(excinfo) == ("InvalidParameterValueException", 400)
    assert excinfo.value.response["Error"]["Message"] == (
        "The tag ember:network must be one of none, outbound, not 'everywhere'."
    )
    assert lambda_client.list_tags(Resource=tagged)["Tags"] == before


def test_create_function_refuses_an_unknown_network_setting(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        create(lambda_client, "bad-network", Tags={"ember:network": "everywhere"})
    assert error_code(excinfo) == ("InvalidParameterValueException", 400)
    with pytest.raises(ClientError) as missing:
        lambda_client.get_function(FunctionName="bad-network")
    assert error_code(missing) == ("ResourceNotFoundException", 404)
