"""SigV4: every API request must be signed with the admin credentials."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.conftest import ACCESS_KEY, EmberServer, start_server


def _status_and_body(url: str) -> tuple[int, dict[str, Any], str]:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, json.load(response), ""
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error), error.headers["x-amzn-ErrorType"]


def test_unsigned_request_is_403(server: EmberServer) -> None:
    status, body, code = _status_and_body(f"{server.url}/2015-03-31/functions/")
    assert (status, code) == (403, "MissingAuthenticationTokenException")
    assert body["Message"] == "Missing Authentication Token"


def _client(server: EmberServer, key: str, secret: str) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def test_wrong_secret_is_invalid_signature(server: EmberServer) -> None:
    with pytest.raises(ClientError) as excinfo:
        _client(server, ACCESS_KEY, "wrong-secret").list_functions()
    assert excinfo.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unknown_key_is_unrecognized_client(server: EmberServer) -> None:
    with pytest.raises(ClientError) as excinfo:
        _client(server, "AKIAUNKNOWNUNKNOWN00", "whatever").list_functions()
    assert excinfo.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_no_auth_mode_accepts_unsigned(tmp_path: Path) -> None:
    open_server = start_server(tmp_path, "--no-auth")
    try:
        status, body, _ = _status_and_body(f"{open_server.url}/2015-03-31/functions/")
        assert status == 200
        assert body == {"Functions": []}
        assert any("authentication is OFF" in line for line in open_server.output)
    finally:
        open_server.stop()


def test_generated_credentials_file_is_private(tmp_path: Path) -> None:
    generated = start_server(
        tmp_path, env={"EMBER_ACCESS_KEY_ID": "", "EMBER_SECRET_ACCESS_KEY": ""}
    )
    try:
        credentials = tmp_path / "credentials"
        assert oct(credentials.stat().st_mode & 0o777) == "0o600"
        text = credentials.read_text()
        assert "aws_access_key_id" in text
        assert any("aws configure set aws_access_key_id" in line for line in generated.output)
    finally:
        generated.stop()
