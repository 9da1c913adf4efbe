"""Message data: SQS's MD5 digests, body characters, attribute validation."""

from __future__ import annotations

import pytest

from ember.errors import InvalidMessageContents, SqsInvalidParameterValue
from ember.events.messages import (
    MessageAttribute,
    check_body,
    md5_of_attributes,
    md5_of_body,
    message_size,
    parse_attributes,
)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        # published reference values of other SQS implementations' test suites
        (
            {"SellerName": MessageAttribute("String", "Example Store")},
            "cd28f3b68aeee4b2eac9c66f2f694b58",
        ),
        (
            {"timestamp": MessageAttribute("Number", "1493147359900")},
            "235c5c510d26fb653d073faed50ae77c",
        ),
        (
            {
                "ordinal": MessageAttribute("Number", "1"),
                "category": MessageAttribute("String", "test"),
            },
            "d21ae90c49061e927f57df5f5d72be1f",
        ),
    ],
)
def test_attribute_digest_matches_sqs(
    attributes: dict[str, MessageAttribute], expected: str
) -> None:
    assert md5_of_attributes(attributes) == expected


def test_binary_attributes_use_transport_type_two() -> None:
    as_binary = md5_of_attributes({"b": MessageAttribute("Binary", b"abc")})
    as_string = md5_of_attributes({"b": MessageAttribute("Binary", "abc")})
    assert as_binary != as_string
    assert md5_of_attributes({}) is None


def test_body_digest_and_size() -> None:
    assert md5_of_body("hello") == "5d41402abc4b2a76b9719d911017c592"
    attributes = {"ab": MessageAttribute("String", "xyz")}
    assert message_size("héllo", attributes) == 6 + 2 + 6 + 3


def test_body_must_be_valid_xml_characters() -> None:
    assert check_body("tab\tand\nnewline") == "tab\tand\nnewline"
    with pytest.raises(InvalidMessageContents):
        check_body("bell\x07")
    with pytest.raises(SqsInvalidParameterValue, match="MessageBody"):
        check_body("")


def test_attributes_are_validated() -> None:
    parsed = parse_attributes(
        {
            "s": {"DataType": "String", "StringValue": "v"},
            "n": {"DataType": "Number.int", "StringValue": "7"},
            "b": {"DataType": "Binary", "BinaryValue": "AAE="},
        }
    )
    assert parsed["b"].value == b"\x00\x01"
    assert parsed["n"].data_type == "Number.int"
    with pytest.raises(SqsInvalidParameterValue, match="cast"):
        parse_attributes({"n": {"DataType": "Number", "StringValue": "seven"}})
    with pytest.raises(SqsInvalidParameterValue, match="type"):
        parse_attributes({"x": {"DataType": "Float", "StringValue": "1"}})
    with pytest.raises(SqsInvalidParameterValue, match="exceeds"):
        parse_attributes({f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)})
    with pytest.raises(SqsInvalidParameterValue, match="name"):
        parse_attributes({"AWS.reserved": {"DataType": "String", "StringValue": "v"}})
