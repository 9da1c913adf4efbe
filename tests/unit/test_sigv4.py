"""SigV4: requests signed by real botocore verify; tampered or stale ones do not."""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

# botocore must see this before it is imported (no instance-metadata lookups).
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import botocore.auth
import botocore.session
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials

from ember import sigv4
from ember.errors import (
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
FN_ARN = "arn:aws:lambda:us-east-1:123456789012:function:my-fn"
SECRETS = {ACCESS_KEY: SECRET_KEY}


@dataclass
class Wire:
    """One request as the server receives it."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    now: float  # epoch seconds of its X-Amz-Date

    def verify(self, **overrides: Any) -> str:
        args: dict[str, Any] = {
            "method": self.method,
            "raw_path": self.path,
            "raw_query": self.query,
            "headers": self.headers,
            "body": self.body,
            "lookup_secret": SECRETS.get,
            "now": self.now,
        }
        args.update(overrides)
        return sigv4.verify(**args)

    def header(self, name: str) -> str:
        return next(v for k, v in self.headers if k.lower() == name.lower())

    def with_header(self, name: str, value: str) -> list[tuple[str, str]]:
        kept = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return [*kept, (name, value)]


class _Raw:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b"{}"


def _to_wire(url: str, method: str, headers: Any, body: bytes | None) -> Wire:
    """What the HTTP layer sends: the prepared request plus the Host header."""
    parts = urlsplit(url)
    pairs = [(str(k), v.decode() if isinstance(v, bytes) else str(v)) for k, v in headers.items()]
    if not any(k.lower() == "host" for k, _ in pairs):
        pairs.append(("Host", parts.netloc))
    amz_date = next(v for k, v in pairs if k.lower() == "x-amz-date")
    signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    return Wire(method, parts.path, parts.query, pairs, body or b"", signed_at.timestamp())


def _capture(endpoint: str, operation: str, **params: Any) -> Wire:
    """Call a real botocore Lambda client and capture the request it sends."""
    session = botocore.session.get_session()
    client = session.create_client(
        "lambda",
        region_name="eu-west-1",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    captured: list[Wire] = []

    def before_send(request: Any, **_: Any) -> AWSResponse:
        body = request.body
        data = body if isinstance(body, bytes) else (body or "").encode()
        captured.append(_to_wire(request.url, request.method, request.headers, data))
        return AWSResponse(request.url, 200, {}, _Raw())

    client.meta.events.register("before-send.lambda", before_send)
    getattr(client, operation)(**params)
    return captured[0]


LOCAL = "http://127.0.0.1:9000"


@pytest.fixture(
    params=[
        ("list_functions", {"MaxItems": 10, "FunctionVersion": "ALL", "Marker": "a b/c$"}),
        ("get_function", {"FunctionName": "my-fn", "Qualifier": "$LATEST"}),
        ("get_function", {"FunctionName": FN_ARN + ":prod"}),
        ("untag_resource", {"Resource": FN_ARN, "TagKeys": ["b", "a", "a b"]}),
        ("invoke", {"FunctionName": FN_ARN, "Payload": b'{"k": "v"}'}),
        ("invoke", {"FunctionName": "my-fn", "Payload": b""}),
        ("delete_function", {"FunctionName": "my-fn"}),
        (
            "create_function",
            {
                "FunctionName": "f",
                "Role": "arn:aws:iam::123456789012:role/r",
                "Runtime": "python3.12",
                "Handler": "app.handler",
                "Code": {"ZipFile": b"PK\x05\x06" + b"\0" * 18},
                "Environment": {"Variables": {"A": "1  2"}},
            },
        ),
    ],
    ids=[
        "list-query",
        "latest-qualifier",
        "arn-path",
        "repeated-keys",
        "post-json",
        "empty-body",
        "delete",
        "create",
    ],
)
def wire(request: pytest.FixtureRequest) -> Wire:
    operation, params = request.param
    return _capture(LOCAL, operation, **params)


def test_botocore_requests_verify(wire: Wire) -> None:
    assert wire.verify() == ACCESS_KEY


def test_arn_path_is_percent_encoded_on_the_wire() -> None:
    wire = _capture(LOCAL, "get_function", FunctionName=FN_ARN, Qualifier="$LATEST")
    assert "arn%3Aaws%3Alambda%3Aus-east-1" in wire.path
    assert wire.query == "Qualifier=%24LATEST"
    assert wire.header("Host") == "127.0.0.1:9000"
    assert wire.verify() == ACCESS_KEY


def test_default_https_port_host_verifies() -> None:
    wire = _capture("https://lambda.example.test", "get_function", FunctionName="my-fn")
    assert wire.header("Host") == "lambda.example.test"
    assert wire.verify() == ACCESS_KEY


def test_region_is_whatever_the_client_signed_with(wire: Wire) -> None:
    assert "/eu-west-1/lambda/aws4_request" in wire.header("Authorization")
    assert wire.verify() == ACCESS_KEY


def test_tampered_body_is_rejected() -> None:
    wire = _capture(LOCAL, "invoke", FunctionName="my-fn", Payload=b'{"amount": 1}')
    with pytest.raises(InvalidSignatureException) as caught:
        wire.verify(body=b'{"amount": 1000}')
    assert caught.value.message == sigv4.SIGNATURE_MISMATCH


def test_tampered_path_is_rejected() -> None:
    wire = _capture(LOCAL, "delete_function", FunctionName="my-fn")
    with pytest.raises(InvalidSignatureException):
        wire.verify(raw_path=wire.path.replace("my-fn", "other-fn"))


def test_tampered_query_is_rejected() -> None:
    wire = _capture(LOCAL, "get_function", FunctionName="my-fn", Qualifier="1")
    with pytest.raises(InvalidSignatureException):
        wire.verify(raw_query="Qualifier=2")


def test_tampered_signed_header_is_rejected() -> None:
    wire = _capture(LOCAL, "invoke", FunctionName="my-fn", InvocationType="Event")
    with pytest.raises(InvalidSignatureException):
        wire.verify(headers=wire.with_header("X-Amz-Invocation-Type", "RequestResponse"))


def test_unsigned_headers_may_change() -> None:
    wire = _capture(LOCAL, "delete_function", FunctionName="my-fn")
    assert wire.verify(headers=wire.with_header("User-Agent", "something else")) == ACCESS_KEY


def test_wrong_secret_is_rejected() -> None:
    wire = _capture(LOCAL, "delete_function", FunctionName="my-fn")
    with pytest.raises(InvalidSignatureException) as caught:
        wire.verify(lookup_secret=lambda _key: "not-the-secret")
    assert "does not match the signature you provided" in caught.value.message


def test_unknown_access_key_is_rejected() -> None:
    wire = _capture(LOCAL, "delete_function", FunctionName="my-fn")
    with pytest.raises(UnrecognizedClientException) as caught:
        wire.verify(lookup_secret=lambda _key: None)
    assert caught.value.message == "The security token included in the request is invalid."


def test_stale_date_is_rejected() -> None:
    wire = _capture(LOCAL, "delete_function", FunctionName="my-fn")
    with pytest.raises(InvalidSignatureException) as caught:
        wire.verify(now=wire.now + 301)
    assert caught.value.message.startswith(f"Signature expired: {wire.header('X-Amz-Date')}")
    assert caught.value.message.endswith(" - 5 min.)")


def test_date_within_skew_is_accepted() -> None:
    wire = _capture(LOCAL, "delete_function", FunctionName="my-fn")
    assert wire.verify(now=wire.now + 299) == ACCESS_KEY
    assert wire.verify(now=wire.now - 299) == ACCESS_KEY


def test_future_date_is_rejected() -> None:
    wire = _capture(LOCAL, "delete_function", FunctionName="my-fn")
    with pytest.raises(InvalidSignatureException) as caught:
        wire.verify(now=wire.now - 301)
    assert caught.value.message.startswith("Signature not yet current:")


def test_missing_authorization_is_rejected() -> None:
    wire = _capture(LOCAL, "delete_function", FunctionName="my-fn")
    headers = [(k, v) for k, v in wire.headers if k.lower() != "authorization"]
    with pytest.raises(MissingAuthenticationTokenException) as caught:
        wire.verify(headers=headers)
    assert caught.value.message == "Missing Authentication Token"


def test_missing_amz_date_is_rejected() -> None:
    wire = _capture(LOCAL, "delete_function", FunctionName="my-fn")
    headers = [(k, v) for k, v in wire.headers if k.lower() != "x-amz-date"]
    with pytest.raises(InvalidSignatureException, match="X-Amz-Date"):
        wire.verify(headers=headers)


def test_unparseable_amz_date_is_rejected() -> None:
    wire = _capture(LOCAL, "delete_function", FunctionName="my-fn")
    with pytest.raises(InvalidSignatureException, match="Invalid X-Amz-Date"):
        wire.verify(headers=wire.with_header("X-Amz-Date", "2026-01-01T00:00:00Z"))


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer abc",
        "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=abc",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/lambda, "
        "SignedHeaders=host, Signature=abc",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/lambda/aws4_request, "
        "SignedHeaders=x-amz-date, Signature=abc",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/lambda/aws5_request, "
        "SignedHeaders=host, Signature=abc",
    ],
)
def test_malformed_authorization_is_rejected(authorization: str) -> None:
    wire = _capture(LOCAL, "delete_function", FunctionName="my-fn")
    with pytest.raises(InvalidSignatureException):
        wire.verify(headers=wire.with_header("Authorization", authorization))


def test_other_service_is_rejected() -> None:
    wire = _capture(LOCAL, "delete_function", FunctionName="my-fn")
    request = AWSRequest(method="GET", url=f"{LOCAL}/", data=b"")
    botocore.auth.SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(
        request
    )
    signed = _to_wire(request.url, "GET", request.headers, b"")
    with pytest.raises(InvalidSignatureException, match="scoped to correct service: 'lambda'"):
        signed.verify()
    assert signed.verify(allowed_services=("lambda", "s3")) == ACCESS_KEY
    assert wire.verify(allowed_services=("lambda", "s3")) == ACCESS_KEY


def test_credential_date_must_match_amz_date() -> None:
    wire = _capture(LOCAL, "delete_function", FunctionName="my-fn")
    authorization = wire.header("Authorization").replace(
        f"/{wire.header('X-Amz-Date')[:8]}/", "/19990101/"
    )
    with pytest.raises(InvalidSignatureException, match="Date in Credential scope"):
        wire.verify(headers=wire.with_header("Authorization", authorization))


def _sign_direct(headers: dict[str, str], body: bytes, url: str) -> Wire:
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    botocore.auth.SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "lambda", "us-east-1").add_auth(
        request
    )
    return _to_wire(url, "POST", request.headers, body)


def test_content_sha256_header_must_match_body() -> None:
    body = b'{"a": 1}'
    good = _sign_direct(
        {"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()}, body, LOCAL + "/x"
    )
    assert good.verify() == ACCESS_KEY
    forged = _sign_direct({"X-Amz-Content-SHA256": hashlib.sha256(b"x").hexdigest()}, b"x", LOCAL)
    with pytest.raises(InvalidSignatureException, match="x-amz-content-sha256"):
        forged.verify(body=b"something else")


def test_unsigned_payload_is_accepted() -> None:
    wire = _sign_direct({"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}, b"abc", LOCAL + "/x")
    assert wire.verify() == ACCESS_KEY
    assert wire.verify(body=b"anything") == ACCESS_KEY


def test_dot_segments_are_normalised_like_botocore() -> None:
    wire = _sign_direct({}, b"", LOCAL + "/a/./b/../c//d")
    assert wire.path == "/a/./b/../c//d"
    assert wire.verify() == ACCESS_KEY


FIXED = datetime.datetime(2026, 11, 23, 17, 49, 25, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("path", "query", "body"),
    [
        ("/2015-03-31/functions", "FunctionVersion=ALL&MaxItems=10", b""),
        (
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af"
            "/invocations",
            "Qualifier=%24LATEST",
            b'{"x": 1}',
        ),
        ("/2017-03-31/tags/x", "tagKeys=b&tagKeys=a&tagKeys=a%20b", b""),
    ],
)
def test_sign_headers_matches_botocore(
    monkeypatch: pytest.MonkeyPatch, path: str, query: str, body: bytes
) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: FIXED)
    url = f"{LOCAL}{path}?{query}"
    headers = {"Content-Type": "application/json", "X-Amz-Invocation-Type": "Event"}
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    botocore.auth.SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "lambda", "us-east-1").add_auth(
        request
    )
    ours = sigv4.sign_headers(
        "POST",
        path,
        query,
        {**headers, "Host": "127.0.0.1:9000", "User-Agent": "ember-cli"},
        body,
        ACCESS_KEY,
        SECRET_KEY,
        "us-east-1",
        "lambda",
        FIXED.strftime("%Y%m%dT%H%M%SZ"),
    )
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["X-Amz-Date"] == request.headers["X-Amz-Date"]
    wire = Wire("POST", path, query, list(ours.items()), body, FIXED.timestamp())
    assert wire.verify() == ACCESS_KEY


def test_sign_headers_requires_host() -> None:
    with pytest.raises(ValueError, match="Host"):
        sigv4.sign_headers(
            "GET",
            "/",
            "",
            {},
            b"",
            ACCESS_KEY,
            SECRET_KEY,
            "us-east-1",
            "lambda",
            "20260101T000000Z",
        )


def test_canonical_uri_double_encodes() -> None:
    assert (
        sigv4.canonical_uri("/2015-03-31/functions/arn%3Aaws%3Alambda/invocations")
        == "/2015-03-31/functions/arn%253Aaws%253Alambda/invocations"
    )
    assert sigv4.canonical_uri("") == "/"


def test_canonical_query_sorts_and_reencodes() -> None:
    assert sigv4.canonical_query("b=2&a=2&a=1&c") == "a=1&a=2&b=2&c="
    assert sigv4.canonical_query("Qualifier=$LATEST") == "Qualifier=%24LATEST"
    assert sigv4.canonical_query("k=a%20b") == "k=a%20b"


def test_a_remembered_scope_parses_exactly_as_in_full() -> None:
    prefix = (
        "AWS4-HMAC-SHA256 Credential=AKID/20261124/us-east-1/lambda/aws4_request, "
        "SignedHeaders=host;x-amz-date"
    )
    first = sigv4._parse_authorization(prefix + ", Signature=abc")
    again = sigv4._parse_authorization(prefix + ", Signature= def ")
    assert again == sigv4._parse_full(prefix + ", Signature= def ")
    assert (first.signature, again.signature) == ("abc", "def")
    for bad in (prefix + ", Signature=", prefix + ", Signature=a, Extra=b"):
        try:
            expected: object = sigv4._parse_full(bad)
        except Exception as exc:
            expected = (type(exc), str(exc))
        try:
            got: object = sigv4._parse_authorization(bad)
        except Exception as exc:
            got = (type(exc), str(exc))
        assert got == expected
