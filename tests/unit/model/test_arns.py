"""Function references and ARNs: every accepted form, and AWS's errors for the rest."""

from __future__ import annotations

import pytest

from ember.errors import (
    InvalidParameterValueException,
    ResourceNotFoundException,
    ValidationException,
)
from ember.model.arns import (
    FUNCTION_NAME_PATTERN,
    NAMESPACED_FUNCTION_NAME_PATTERN,
    function_arn,
    merge_qualifier,
    parse_function_ref,
    validate_qualifier,
    validation_message,
    violation,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:my-fn"


def parse(value: str, *, create: bool = False) -> tuple[str, str | None]:
    return parse_function_ref(value, REGION, ACCOUNT, create=create)


def test_function_arn() -> None:
    assert function_arn(REGION, ACCOUNT, "f") == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f"
    assert function_arn(REGION, ACCOUNT, "f", "$LATEST").endswith(":function:f:$LATEST")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("my-fn", ("my-fn", None)),
        ("My_Fn-1", ("My_Fn-1", None)),
        ("my-fn:prod", ("my-fn", "prod")),
        ("my-fn:$LATEST", ("my-fn", "$LATEST")),
        ("my-fn:7", ("my-fn", "7")),
        (f"{ACCOUNT}:function:my-fn", ("my-fn", None)),
        (f"{ACCOUNT}:function:my-fn:prod", ("my-fn", "prod")),
        (ARN, ("my-fn", None)),
        (f"{ARN}:$LATEST", ("my-fn", "$LATEST")),
        (f"{ARN}:12", ("my-fn", "12")),
        ("a" * 64, ("a" * 64, None)),
    ],
)
@pytest.mark.parametrize("create", [False, True])
def test_accepted_forms(value: str, expected: tuple[str, str | None], create: bool) -> None:
    assert parse(value, create=create) == expected


def test_dots_are_allowed_outside_create_only() -> None:
    assert parse("my.fn") == ("my.fn", None)
    with pytest.raises(InvalidParameterValueException):
        parse("my.fn", create=True)


def test_latest_published_is_a_namespaced_qualifier() -> None:
    assert parse("my-fn:$LATEST.PUBLISHED") == ("my-fn", "$LATEST.PUBLISHED")


@pytest.mark.parametrize("value", ["bad name", "my-fn:", "fn:a:b", "arn:aws:s3:::bucket", "a/b"])
def test_pattern_violation_message(value: str) -> None:
    with pytest.raises(ValidationException) as caught:
        parse(value)
    assert caught.value.message == (
        f"1 validation error detected: Value '{value}' at 'functionName' failed to satisfy "
        f"constraint: Member must satisfy regular expression pattern: "
        f"{NAMESPACED_FUNCTION_NAME_PATTERN}"
    )


def test_empty_reference() -> None:
    with pytest.raises(ValidationException, match="length greater than or equal to 1"):
        parse("")


def test_name_longer_than_64() -> None:
    with pytest.raises(ValidationException) as caught:
        parse("a" * 65)
    assert caught.value.message == (
        f"1 validation error detected: Value '{'a' * 65}' at 'functionName' failed to satisfy "
        "constraint: Member must have length less than or equal to 64"
    )


def test_arn_with_long_name_reports_the_name() -> None:
    with pytest.raises(ValidationException, match="less than or equal to 64"):
        parse(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{'a' * 65}")


def test_reference_longer_than_256() -> None:
    value = f"my-fn:{'q' * 251}"
    with pytest.raises(ValidationException, match="less than or equal to 256"):
        parse(value)


def test_create_bare_name_violations_are_invalid_parameter_value() -> None:
    with pytest.raises(InvalidParameterValueException) as caught:
        parse("bad name!" + "x" * 60, create=True)
    message = caught.value.message
    assert message.startswith("2 validation errors detected: ")
    assert f"Member must satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}" in message
    assert "; Value 'bad name!" in message
    assert message.endswith("Member must have length less than or equal to 64")


def test_create_arn_longer_than_140_is_validation_exception() -> None:
    value = f"{ACCOUNT}:function:{'a' * 64}:{'q' * 60}"
    with pytest.raises(ValidationException) as caught:
        parse(value, create=True)
    assert caught.value.message.endswith("Member must have length less than or equal to 140")


def test_other_region_is_not_reachable() -> None:
    with pytest.raises(ResourceNotFoundException) as caught:
        parse("arn:aws:lambda:eu-west-1:123456789012:function:my-fn")
    assert caught.value.message == (
        "Functions from 'eu-west-1' are not reachable in this region ('us-east-1')"
    )


def test_other_account_is_not_found() -> None:
    with pytest.raises(ResourceNotFoundException) as caught:
        parse("111111111111:function:my-fn:prod")
    assert caught.value.message == (
        "Function not found: arn:aws:lambda:us-east-1:111111111111:function:my-fn:prod"
    )


def test_region_and_account_checks_can_be_skipped() -> None:
    value = "arn:aws:lambda:eu-west-1:111111111111:function:my-fn"
    assert parse_function_ref(value, None, None) == ("my-fn", None)


def test_merge_qualifier() -> None:
    assert merge_qualifier(None, None) is None
    assert merge_qualifier("prod", None) == "prod"
    assert merge_qualifier(None, "$LATEST") == "$LATEST"
    assert merge_qualifier("1", "1") == "1"


def test_merge_qualifier_conflict() -> None:
    with pytest.raises(InvalidParameterValueException) as caught:
        merge_qualifier("prod", "1")
    assert caught.value.message == (
        "The derived qualifier from the function name does not match the specified qualifier."
    )


@pytest.mark.parametrize(
    ("qualifier", "constraint"),
    [
        ("", "Member must have length greater than or equal to 1"),
        ("q" * 129, "Member must have length less than or equal to 128"),
        ("bad qualifier", "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)"),
    ],
)
def test_query_qualifier_is_validated(qualifier: str, constraint: str) -> None:
    with pytest.raises(ValidationException) as caught:
        merge_qualifier(None, qualifier)
    assert caught.value.message == (
        f"1 validation error detected: Value '{qualifier}' at 'qualifier' failed to satisfy "
        f"constraint: {constraint}"
    )
    assert validate_qualifier("$LATEST") == "$LATEST"


def test_message_helpers() -> None:
    assert violation(None, "role", "Member must not be null") == (
        "Value null at 'role' failed to satisfy constraint: Member must not be null"
    )
    assert validation_message(["a", "b"]) == "2 validation errors detected: a; b"
