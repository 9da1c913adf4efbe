"""The runtime's JSON rules against awslambdaric's own marshaller (simplejson-based)."""

from __future__ import annotations

import decimal
import enum
from typing import Any, NamedTuple

import pytest

from ember.runtimes.python.ember_ric import marshal
from ember.runtimes.python.ember_ric.errors import FaultException

theirs = pytest.importorskip("awslambdaric.lambda_runtime_marshaller")


class Colour(enum.IntEnum):
    RED = 1


class Point(NamedTuple):
    x: int
    y: int


class Record:
    def _asdict(self) -> dict[str, int]:
        return {"a": 1}


VALUES: list[Any] = [
    {"a": [1, 2.5, None, True, False], "b": {"c": "d"}},
    "caf\u00e9 \u2028 <&> \x00",
    {"price": decimal.Decimal("1.10"), "qty": decimal.Decimal("5"), "neg": decimal.Decimal("-0")},
    [decimal.Decimal("1E+2"), decimal.Decimal("NaN"), decimal.Decimal("-Infinity")],
    [decimal.Decimal("0.1"), decimal.Decimal("123456789012345678901234567890")],
    {"bytes": b"raw", b"key": 1, 2: "int key", 1.5: "float key", None: 0, True: 1},
    [float("nan"), float("inf"), -0.0, 1e100, 10**30],
    (1, (2, 3)),
    {"enum": Colour.RED, Colour.RED: "key"},
    Record(),
    [],
    {},
    None,
]

FAILURES: list[Any] = [{1, 2}, object(), {"k": b"\xff"}, {(1, 2): 1}, {decimal.Decimal(1): 1}]


@pytest.mark.parametrize("execution_env", ["AWS_Lambda_python3.11", "AWS_Lambda_python3.12"])
@pytest.mark.parametrize("value", VALUES, ids=[str(i) for i in range(len(VALUES))])
def test_results_encode_like_awslambdaric(
    monkeypatch: pytest.MonkeyPatch, execution_env: str, value: Any
) -> None:
    monkeypatch.setenv("AWS_EXECUTION_ENV", execution_env)
    assert marshal.marshal_response(value) == (
        theirs.LambdaMarshaller().marshal_response(value)[0].encode(),
        "application/json",
    )


@pytest.mark.parametrize("value", FAILURES, ids=[str(i) for i in range(len(FAILURES))])
def test_encoding_failures_match_awslambdaric(value: Any) -> None:
    with pytest.raises(Exception) as raised:  # noqa: PT011 - awslambdaric's FaultException
        theirs.LambdaMarshaller().marshal_response(value)
    their_error: Any = raised.value
    with pytest.raises(FaultException) as our_error:
        marshal.marshal_response(value)
    assert (our_error.value.exception_type, our_error.value.msg) == (
        their_error.exception_type,
        their_error.msg,
    )


def test_bytes_results_are_application_unknown() -> None:
    assert marshal.marshal_response(b"\x00") == (b"\x00", "application/unknown")


def test_events_are_decoded_only_when_json() -> None:
    assert marshal.unmarshal_request(b'{"a": 1}', "application/json") == {"a": 1}
    assert marshal.unmarshal_request(b"plain", "text/plain") == b"plain"
    assert marshal.unmarshal_request(b"plain", None) == b"plain"
    with pytest.raises(FaultException) as error:
        marshal.unmarshal_request(b"{", "application/json")
    assert error.value.exception_type == "Runtime.UnmarshalError"
    # simplejson words some decode errors differently from the stdlib; Lambda only ever
    # delivers valid JSON events, so only the prefix is part of the contract.
    assert error.value.msg.startswith("Unable to unmarshal input: Expecting property name")


def test_namedtuples_are_the_one_known_difference() -> None:
    point = Point(1, 2)
    assert theirs.to_json(point) == '{"x": 1, "y": 2}'
    assert marshal.to_json(point) == "[1, 2]"
