"""The pure part of the tag operations: which resource an ARN names, which tags pass."""

from __future__ import annotations

import pytest

from ember.control.tags import QUALIFIED, parse_resource, parse_tag_keys, parse_tags
from ember.errors import (
    InvalidParameterValueException,
    ResourceNotFoundException,
    ValidationException,
)

REGION, ACCOUNT = "us-east-1", "000000000000"
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"


def test_a_function_arn_names_the_function() -> None:
    assert parse_resource(ARN + "my-fn", REGION, ACCOUNT) == "my-fn"


@pytest.mark.parametrize("qualifier", ["$LATEST", "1", "live"])
def test_qualified_arns_are_refused(qualifier: str) -> None:
    with pytest.raises(InvalidParameterValueException, match="aliases and versions") as info:
        parse_resource(f"{ARN}my-fn:{qualifier}", REGION, ACCOUNT)
    assert str(info.value) == QUALIFIED


@pytest.mark.parametrize("resource", ["my-fn", "arn:aws:s3:::bucket", ARN + "a.b", ""])
def test_what_is_not_a_taggable_arn_is_a_validation_error(resource: str) -> None:
    with pytest.raises(ValidationException, match="at 'resource' failed to satisfy"):
        parse_resource(resource, REGION, ACCOUNT)


def test_other_regions_and_accounts_hold_no_function_of_ours() -> None:
    with pytest.raises(ResourceNotFoundException, match="not reachable in this region"):
        parse_resource(f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:f", REGION, ACCOUNT)
    with pytest.raises(ResourceNotFoundException, match="Function not found"):
        parse_resource(f"arn:aws:lambda:{REGION}:111111111111:function:f", REGION, ACCOUNT)


def test_non_function_resources_are_not_supported_yet() -> None:
    mapping = "event-source-mapping:12345678-1234-1234-1234-123456789012"
    with pytest.raises(InvalidParameterValueException, match="functions only"):
        parse_resource(f"arn:aws:lambda:{REGION}:{ACCOUNT}:{mapping}", REGION, ACCOUNT)


def test_tags_are_required_and_checked() -> None:
    assert parse_tags({"Tags": {"a": "", "ember:network": "outbound"}}) == {
        "a": "",
        "ember:network": "outbound",
    }
    with pytest.raises(ValidationException, match="Value null at 'tags'"):
        parse_tags({})
    with pytest.raises(ValidationException, match="Map values must satisfy"):
        parse_tags({"Tags": {"a": "v" * 257}})
    with pytest.raises(InvalidParameterValueException, match="ember:network must be one of"):
        parse_tags({"Tags": {"ember:network": "yes"}})


def test_tag_keys_are_required_and_checked() -> None:
    assert parse_tag_keys(["a", "b"]) == ["a", "b"]
    with pytest.raises(ValidationException, match="Value null at 'tagKeys'"):
        parse_tag_keys([])
    with pytest.raises(ValidationException, match="at 'tagKeys'"):
        parse_tag_keys(["k" * 129])
