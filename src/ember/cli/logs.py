"""``ember logs FUNCTION``: print a function's log events, fetched over the signed HTTP API."""

from __future__ import annotations

import argparse
import configparser
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ember.sigv4 import sign_headers

POLL_INTERVAL_S = 1.0


def print_logs(args: argparse.Namespace) -> int:
    key_id, secret = _credentials(Path(args.data_dir))
    after = 0
    while True:
        events = _fetch(args, key_id, secret, after)
        for event in events:
            stamp = datetime.fromtimestamp(event["timestamp"] / 1000, UTC).isoformat()
            sys.stdout.write(f"{stamp} {event['stream']} {event['message']}")
            after = event["seq"]
        sys.stdout.flush()
        if not args.follow:
            return 0
        if not events:
            time.sleep(POLL_INTERVAL_S)


def _fetch(args: argparse.Namespace, key_id: str, secret: str, after: int) -> list[Any]:
    query: dict[str, str] = {"group": f"/aws/lambda/{args.function}", "after": str(after)}
    if args.stream:
        query["stream"] = args.stream
    raw_query = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    url = urllib.parse.urlsplit(args.endpoint)
    headers = {"Host": url.netloc}
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    headers.update(
        sign_headers(
            "GET",
            "/ember/logs",
            raw_query,
            headers,
            b"",
            key_id,
            secret,
            "us-east-1",
            "lambda",
            amz_date,
        )
    )
    if url.scheme not in ("http", "https"):
        raise SystemExit(f"--endpoint must be an http(s) URL, not {args.endpoint!r}")
    target = f"{args.endpoint}/ember/logs?{raw_query}"
    request = urllib.request.Request(target, headers=headers)  # noqa: S310 - scheme checked above
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - scheme checked above
        data: dict[str, Any] = json.load(response)
    events: list[Any] = data["events"]
    return events


def _credentials(data_dir: Path) -> tuple[str, str]:
    key_id = os.environ.get("EMBER_ACCESS_KEY_ID")
    secret = os.environ.get("EMBER_SECRET_ACCESS_KEY")
    if key_id and secret:
        return key_id, secret
    parser = configparser.ConfigParser()
    parser.read(data_dir / "credentials")
    section = parser["ember"]
    return section["aws_access_key_id"], section["aws_secret_access_key"]
