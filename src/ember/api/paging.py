"""Marker/MaxItems pagination of the List* operations. Pure.

A marker is the base64 of the last item's id on the page; the next page starts after
every item that sorts at or before it, so a marker stays valid when items come and go.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ember.api.http import parse_count
from ember.errors import InvalidParameterValueException

T = TypeVar("T")
MAX_ITEMS = 10000
DEFAULT_ITEMS = 50


def page(
    items: Sequence[T],
    ident: Callable[[T], str],
    order: Callable[[str], Any],
    query: Mapping[str, str],
) -> tuple[list[T], str | None]:
    """One page of ``items`` (sorted by ``order(ident(item))``) and the next marker."""
    marker = query.get("Marker")
    start = 0
    if marker:
        after = _decode_with(marker, order)
        start = sum(1 for item in items if order(ident(item)) <= after)
    limit = max_items(query.get("MaxItems"))
    chunk = list(items[start : start + limit])
    more = start + limit < len(items)
    return chunk, _encode(ident(chunk[-1])) if more and chunk else None


def _encode(ident: str) -> str:
    return base64.urlsafe_b64encode(ident.encode()).decode()


def _decode_with(marker: str, order: Callable[[str], Any]) -> Any:
    try:
        return order(base64.urlsafe_b64decode(marker.encode()).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidParameterValueException(f"Invalid marker: {marker}") from exc


def max_items(value: str | None) -> int:
    if value is None:
        return DEFAULT_ITEMS
    count = parse_count(value)
    if count is None or not 1 <= count <= MAX_ITEMS:
        raise InvalidParameterValueException(
            f"1 validation error detected: Value '{value}' at 'maxItems' failed to satisfy "
            f"constraint: Member must have value between 1 and {MAX_ITEMS}"
        )
    return count
