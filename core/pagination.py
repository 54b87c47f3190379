"""Page cursors: opaque URL-safe tokens that carry where the next page starts, checked when they come back.

Keyset cursors carry the sort key and id of a page's last row, so inserts never shift a walk; offset
cursors carry a position in a ranking that is recomputed per request.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from core.errors import InvalidInput


class Cursor(msgspec.Struct, array_like=True):
    """A keyset position: the order and filters it belongs to, and the last row's sort key and id."""

    sort: str
    filters: str
    key: int | str
    id: str


def _encoded(value: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


def _decoded(raw: str) -> bytes:
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


def _not_issued() -> InvalidInput:
    return InvalidInput("cursor", "is not a cursor this API issued", source="query")


def encode_cursor(cursor: Cursor) -> str:
    return _encoded(cursor)


def is_time_key(key: int | str) -> bool:
    """Whether a cursor's key is what a time column's sort carries: an ISO time with its zone."""
    try:
        return isinstance(key, str) and datetime.fromisoformat(key).tzinfo is not None
    except ValueError:
        return False


def is_count_key(bits: int) -> Callable[[int | str], bool]:
    """A check that a cursor's key fits a non-negative count column of this many bits."""
    return lambda key: isinstance(key, int) and 0 <= key < 2 ** (bits - 1)


def sort_key(value: Any) -> int | str:
    """What a cursor carries of a row's sort value (times as ISO text)."""
    return value.isoformat() if isinstance(value, datetime) else int(value)


def decode_cursor(raw: str, sort: str, filters: str, key_is_valid: Callable[[int | str], bool]) -> Cursor:
    """The cursor, if this API issued it for this sort and these filters; a 400 naming `cursor` if not.

    `key_is_valid` checks the sort key's type: a forged key of another type would otherwise reach the
    query (a 500, or a silently wrong page on SQLite).
    """
    try:
        cursor = msgspec.json.decode(_decoded(raw), type=Cursor)
        uuid.UUID(cursor.id)
    except (ValueError, msgspec.DecodeError):
        raise _not_issued() from None
    if cursor.sort != sort or cursor.filters != filters:
        raise InvalidInput(
            "cursor", "belongs to a different sort or filter; start again without it", source="query"
        )
    if not key_is_valid(cursor.key):
        raise _not_issued()
    return cursor


def rows_after(column: Any, id_column: Any, descending: bool, cursor: Cursor) -> Any:
    """The Piccolo condition for rows strictly after the cursor in (column, id) order."""
    return rows_after_key(column, id_column, descending, *cursor_position(cursor))


def cursor_position(cursor: Cursor) -> tuple[Any, uuid.UUID]:
    """The last row's sort key (a datetime or a count) and id, as the database compares them."""
    value: Any = datetime.fromisoformat(cursor.key) if isinstance(cursor.key, str) else cursor.key
    return value, uuid.UUID(cursor.id)


def rows_after_key(column: Any, id_column: Any, descending: bool, value: Any, last_id: Any) -> Any:
    """rows_after for a sort key and id given apart (a prepared query passes stand-ins for them)."""
    if descending:
        return (column < value) | ((column == value) & (id_column < last_id))
    return (column > value) | ((column == value) & (id_column > last_id))


def offset_cursor(offset: int) -> str:
    return _encoded({"offset": offset})


def cursor_offset(cursor: str | None, limit: int) -> int:
    """The offset an offset cursor carries (0 without one); a 400 naming `cursor` unless it is below `limit`."""
    if not cursor:
        return 0
    try:
        offset = msgspec.json.decode(_decoded(cursor))["offset"]
        if not isinstance(offset, int) or not 0 <= offset < limit:
            raise ValueError
    except (ValueError, KeyError, TypeError, msgspec.DecodeError):
        raise _not_issued() from None
    return offset
