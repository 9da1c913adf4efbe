"""Event decoding and result encoding: awslambdaric's rules (simplejson) with the stdlib."""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

from .errors import FaultException


class _NeedsExactEncoding(Exception):
    """The fast stdlib encoder met something only the exact encoder renders right."""


# awslambdaric writes non-ASCII characters as they are only on these runtimes.
UNICODE_EXECUTION_ENVS = frozenset(f"AWS_Lambda_python3.{minor}" for minor in (12, 13, 14, 15))


def _ensure_ascii() -> bool:
    return os.environ.get("AWS_EXECUTION_ENV") not in UNICODE_EXECUTION_ENVS


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _decimal_type() -> type | None:
    module = sys.modules.get("decimal")  # a Decimal result means user code imported it
    return getattr(module, "Decimal", None)


def _fast_default(value: object) -> object:
    decimal_type = _decimal_type()
    if decimal_type is not None and isinstance(value, decimal_type):
        if value.is_nan():  # type: ignore[attr-defined]
            return math.nan
        text = str(value)
        if text.lstrip("-").isdigit() and str(int(text)) == text:
            return int(text)
        if _float_text(float(text)) == text:
            return float(text)
        raise _NeedsExactEncoding
    if isinstance(value, bytes):
        return value.decode("utf-8")
    as_dict = getattr(value, "_asdict", None)
    if callable(as_dict):
        return as_dict()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        return key.decode("utf-8")
    if isinstance(key, float):
        return _float_text(key)
    if key is True or key is False or key is None:
        return json.dumps(key)
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _encode_exact(value: object, ensure_ascii: bool) -> str:
    """simplejson's encoding, in Python: used only when the fast path cannot be exact."""
    quote = json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    decimal_type = _decimal_type()
    parts: list[str] = []
    active: set[int] = set()

    def emit_items(items: Any, opening: str, closing: str, mapping: bool) -> None:
        if id(items) in active:
            raise ValueError("Circular reference detected")
        active.add(id(items))
        parts.append(opening)
        for index, item in enumerate(items.items() if mapping else items):
            parts.append(", " if index else "")
            if mapping:
                parts.append(quote(_key_text(item[0])) + ": ")
                emit(item[1])
            else:
                emit(item)
        parts.append(closing)
        active.discard(id(items))

    def emit(item: object) -> None:
        if isinstance(item, str):
            parts.append(quote(item))
        elif item is None or item is True or item is False:
            parts.append(json.dumps(item))
        elif isinstance(item, int):
            parts.append(int.__repr__(item))
        elif isinstance(item, float):
            parts.append(_float_text(item))
        elif isinstance(item, bytes):
            parts.append(quote(item.decode("utf-8")))
        elif isinstance(item, list):
            emit_items(item, "[", "]", mapping=False)
        elif callable(getattr(item, "_asdict", None)):
            emit_items(item._asdict(), "{", "}", mapping=True)  # type: ignore[attr-defined]
        elif isinstance(item, tuple):
            emit_items(item, "[", "]", mapping=False)
        elif isinstance(item, dict):
            emit_items(item, "{", "}", mapping=True)
        elif decimal_type is not None and isinstance(item, decimal_type):
            parts.append("NaN" if item.is_nan() else str(item))  # type: ignore[attr-defined]
        else:
            raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")

    emit(value)
    return "".join(parts)


def to_json(value: object) -> str:
    """awslambdaric's ``to_json``: the stdlib's C encoder when it is exact, else the slow one."""
    ensure_ascii = _ensure_ascii()
    try:
        return json.dumps(value, ensure_ascii=ensure_ascii, default=_fast_default)
    except (_NeedsExactEncoding, TypeError):
        return _encode_exact(value, ensure_ascii)


def unmarshal_request(body: bytes, content_type: str | None) -> Any:
    if content_type != "application/json":
        return body
    try:
        return json.loads(body)
    except Exception as exc:  # noqa: BLE001 - awslambdaric reports any decoding failure
        raise FaultException(
            FaultException.UNMARSHAL_ERROR, f"Unable to unmarshal input: {exc}"
        ) from None


def marshal_response(response: object) -> tuple[bytes, str]:
    if isinstance(response, bytes):
        return response, "application/unknown"
    try:
        return to_json(response).encode("utf-8"), "application/json"
    except Exception as exc:  # noqa: BLE001 - awslambdaric reports any encoding failure
        raise FaultException(
            FaultException.MARSHAL_ERROR, f"Unable to marshal response: {exc}"
        ) from None
