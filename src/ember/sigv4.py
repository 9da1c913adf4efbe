"""AWS Signature Version 4 (header form): sign a request, and verify a received one.

Stdlib only, pure (no I/O, no clock: the caller passes ``now``). Imported by the API edge
(``verify``) and by the ``ember`` CLI (``sign_headers``). The canonical request is built
exactly as botocore's ``SigV4Auth`` builds it for non-S3 services:

* canonical URI: the path as sent on the wire (already percent-encoded), dot segments
  and empty segments removed, then percent-encoded once more with ``quote(safe='/~')``:
  ``/functions/arn%3Aaws...`` is signed as ``/functions/arn%253Aaws...``;
* canonical query: each ``k=v`` pair percent-decoded, re-encoded with
  ``quote(safe='-_.~')``, sorted by key then value;
* canonical headers: the ``SignedHeaders`` names, lower-cased and sorted, each value
  trimmed with inner whitespace collapsed, repeated headers joined with ``,``;
* payload hash: the ``X-Amz-Content-SHA256`` header when present (a hex digest must match
  the body; ``UNSIGNED-PAYLOAD`` leaves the body unsigned), else hex SHA-256 of the body.

The signing region is whatever the client signed with. Presigned (query-string) URLs
are not supported: they are refused as missing authentication.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from ember.errors import (
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
# botocore.auth.SIGNED_HEADERS_BLACKLIST: never part of a signature.
UNSIGNED_HEADERS = frozenset(
    {
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
UNRECOGNIZED_CLIENT = "The security token included in the request is invalid."


@dataclass(frozen=True, slots=True)
class _Authorization:
    """The parsed ``Authorization`` header."""

    access_key: str
    date: str  # yyyymmdd of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]  # lower-case, sorted
    signature: str


# ---------------------------------------------------------------- canonical request


def _remove_dot_segments(path: str) -> str:
    """botocore's ``normalize_url_path``: RFC 3986 dot segments and empty segments go."""
    if not path:
        return "/"
    out: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
        else:
            out.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last


def canonical_uri(raw_path: str) -> str:
    """The canonical URI of a raw (as sent, percent-encoded) path."""
    return quote(_remove_dot_segments(raw_path), safe="/~")


def canonical_query(raw_query: str) -> str:
    """Pairs decoded and re-encoded with ``quote(safe='-_.~')``, sorted by key, value."""
    if not raw_query:
        return ""
    pairs: list[tuple[str, str]] = []
    for item in raw_query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def _trim(value: str) -> str:
    return " ".join(value.split())


def _header_values(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Lower-case name => every value received under it, in order."""
    found: dict[str, list[str]] = {}
    for name, value in headers:
        found.setdefault(name.lower(), []).append(value)
    return found


def _canonical_headers(values: Mapping[str, list[str]], signed: Sequence[str]) -> str:
    lines = [f"{name}:{','.join(_trim(v) for v in values.get(name, []))}" for name in signed]
    return "\n".join(lines) + "\n"


def _canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    *,
    values: Mapping[str, list[str]],
    signed: Sequence[str],
    payload_hash: str,
) -> str:
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(raw_query),
            _canonical_headers(values, signed),
            ";".join(signed),
            payload_hash,
        ]
    )


# ---------------------------------------------------------------- signature


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


@functools.lru_cache(maxsize=64)
def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC chain over date, region, service and ``aws4_request``.

    Cached: it changes once a day per key, region and service, and four chained HMACs on
    every request were a measurable share of a warm invoke.
    """
    k_date = _hmac(f"AWS4{secret_key}".encode(), date)
    k_region = _hmac(k_date, region)
    k_service = _hmac(k_region, service)
    return _hmac(k_service, TERMINATOR)


def _signature(
    secret_key: str, amz_date: str, region: str, service: str, canonical_request: str
) -> str:
    scope = f"{amz_date[:8]}/{region}/{service}/{TERMINATOR}"
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"
    key = signing_key(secret_key, amz_date[:8], region, service)
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_headers(
    method: str,
    url_path_raw: str,
    query_raw: str,
    headers: dict[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
    amz_date: str,
) -> dict[str, str]:
    """``headers`` plus ``X-Amz-Date`` and ``Authorization``, as botocore would sign them.

    ``headers`` must contain ``Host`` exactly as it will be sent (``host:port`` for a
    non-default port). Every header except botocore's unsigned ones is signed; the
    paths and query are the raw, percent-encoded forms that go on the wire.
    """
    out = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "x-amz-date")}
    if not any(k.lower() == "host" for k in out):
        raise ValueError("sign_headers needs a Host header")
    out["X-Amz-Date"] = amz_date
    values = _header_values(list(out.items()))
    signed = sorted(name for name in values if name not in UNSIGNED_HEADERS)
    payload = values.get("x-amz-content-sha256", [hashlib.sha256(body).hexdigest()])[0]
    request = _canonical_request(
        method, url_path_raw, query_raw, values=values, signed=signed, payload_hash=payload
    )
    signature = _signature(secret_key, amz_date, region, service, request)
    out["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{amz_date[:8]}/{region}/{service}/{TERMINATOR}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return out


# ---------------------------------------------------------------- verification


def _incomplete(header: str, problem: str) -> InvalidSignatureException:
    return InvalidSignatureException(f"{problem} Authorization={header}")


_SCOPES: dict[str, _Authorization] = {}  # header before ", Signature=" => its parse
_SCOPES_MAX = 256


def _parse_authorization(header: str) -> _Authorization:
    """``_parse_full``, remembered by everything before the signature: a client sends the
    same credential scope and signed headers again and again, only the signature changes.
    A remembered prefix followed by a comma-free signature parses the same as in full."""
    prefix, sep, signature = header.rpartition(", Signature=")
    signature = signature.strip()
    known = _SCOPES.get(prefix) if sep and signature and "," not in signature else None
    if known is not None:
        return _Authorization(
            known.access_key,
            known.date,
            known.region,
            known.service,
            known.signed_headers,
            signature,
        )
    auth = _parse_full(header)
    if sep and signature == auth.signature:
        if len(_SCOPES) >= _SCOPES_MAX:
            _SCOPES.clear()
        _SCOPES[prefix] = auth
    return auth


def _parse_full(header: str) -> _Authorization:
    """Split ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(header, f"Unsupported authorization algorithm: expected {ALGORITHM}.")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts[key] = value.strip()
    for required in ("Credential", "SignedHeaders", "Signature"):
        if not parts.get(required):
            raise _incomplete(header, f"Authorization header requires '{required}' parameter.")
    credential = parts["Credential"].split("/")
    if len(credential) != 5 or not all(credential):
        raise _incomplete(
            header,
            "Credential should be of the form "
            "<AccessKeyId>/<yyyymmdd>/<region>/<service>/aws4_request.",
        )
    if credential[4] != TERMINATOR:
        raise InvalidSignatureException(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{credential[4]}'."
        )
    signed = tuple(sorted(name.strip().lower() for name in parts["SignedHeaders"].split(";")))
    if "host" not in signed:
        raise _incomplete(header, "'Host' must be a 'SignedHeader' in the AWS Authorization.")
    return _Authorization(
        access_key=credential[0],
        date=credential[1],
        region=credential[2],
        service=credential[3],
        signed_headers=signed,
        signature=parts["Signature"],
    )


def _format_amz_date(epoch: float) -> str:
    return time.strftime(AMZ_DATE_FORMAT, time.gmtime(epoch))


@functools.lru_cache(maxsize=64)  # the same second's timestamp arrives many times
def _parse_amz_date(value: str) -> int | None:
    """Epoch seconds of a ``20261123T174925Z`` timestamp, or None if malformed."""
    if _AMZ_DATE_RE.fullmatch(value) is None:
        return None
    try:  # slicing the fixed-width form: a fifth of time.strptime's cost
        moment = datetime.datetime(
            int(value[0:4]), int(value[4:6]), int(value[6:8]),
            int(value[9:11]), int(value[11:13]), int(value[13:15]),
            tzinfo=datetime.UTC,
        )  # fmt: skip
    except ValueError:
        return None
    return int(moment.timestamp())


def _check_date(amz_date: str | None, auth: _Authorization, now: float, max_skew_s: int) -> None:
    """X-Amz-Date present, well-formed, matching the scope and within ``±max_skew_s``."""
    if amz_date is None:
        raise InvalidSignatureException(
            "Authorization header requires existence of a 'X-Amz-Date' header."
        )
    signed_at = _parse_amz_date(amz_date)
    if signed_at is None:
        raise InvalidSignatureException(
            f"Invalid X-Amz-Date header value '{amz_date}': expected the form YYYYMMDD'T'HHMMSS'Z'."
        )
    if amz_date[:8] != auth.date:
        raise InvalidSignatureException(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{auth.date}' != '{amz_date[:8]}', from 'X-Amz-Date'."
        )
    window = f"{max_skew_s // 60} min." if max_skew_s % 60 == 0 else f"{max_skew_s} s."
    if signed_at < now - max_skew_s:
        raise InvalidSignatureException(
            f"Signature expired: {amz_date} is now earlier than "
            f"{_format_amz_date(now - max_skew_s)} ({_format_amz_date(now)} - {window})"
        )
    if signed_at > now + max_skew_s:
        raise InvalidSignatureException(
            f"Signature not yet current: {amz_date} is still later than "
            f"{_format_amz_date(now + max_skew_s)} ({_format_amz_date(now)} + {window})"
        )


def _payload_hash(values: Mapping[str, list[str]], body: bytes) -> str:
    """The payload hash to sign; a claimed digest must be the body's."""
    actual = hashlib.sha256(body).hexdigest()
    claimed = values.get("x-amz-content-sha256")
    if claimed is None:
        return actual
    value = claimed[0].strip()
    if value == UNSIGNED_PAYLOAD:
        return value
    if value.lower() != actual:
        raise InvalidSignatureException(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return value


def verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    lookup_secret: Callable[[str], str | None],
    now: float,
    allowed_services: Collection[str] = ("lambda",),
    max_skew_s: int = 300,
) -> str:
    """Check a SigV4-signed request; return the access key id that signed it.

    ``raw_path``/``raw_query`` are exactly as received (percent-encoded); ``headers`` as
    received (any case, repeats allowed). Raises ``MissingAuthenticationTokenException``,
    ``InvalidSignatureException`` or ``UnrecognizedClientException`` (403s).
    """
    values = _header_values(headers)
    header = values.get("authorization", [""])[0]
    if not header.strip():
        raise MissingAuthenticationTokenException("Missing Authentication Token")
    auth = _parse_authorization(header)
    amz_date = values.get("x-amz-date", [None])[0]
    _check_date(amz_date, auth, now, max_skew_s)
    assert amz_date is not None  # checked just above
    if auth.service not in allowed_services:
        expected = " or ".join(f"'{s}'" for s in sorted(allowed_services))
        raise InvalidSignatureException(
            f"Credential should be scoped to correct service: {expected}."
        )
    secret = lookup_secret(auth.access_key)
    if secret is None:
        raise UnrecognizedClientException(UNRECOGNIZED_CLIENT)
    payload = _payload_hash(values, body)
    request = _canonical_request(
        method, raw_path, raw_query, values=values, signed=auth.signed_headers, payload_hash=payload
    )
    expected_sig = _signature(secret, amz_date, auth.region, auth.service, request)
    given = auth.signature.lower().encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(expected_sig.encode("ascii"), given):
        raise InvalidSignatureException(SIGNATURE_MISMATCH)
    return auth.access_key
