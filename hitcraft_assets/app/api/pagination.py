"""Cursor pagination that stays right while the pipeline publishes a new snapshot between two pages.

A cursor is opaque to clients: URL-safe base64 of a small JSON document holding
- the list it belongs to (`r`) and the snapshot it was read from (`s`);
- the query, resolved (`f`, `o`): date defaults are pinned to actual days when the first page is read, so
  "the latest as-of day" stays the day it was on page 1 even after a newer day is published;
- a fingerprint of the filters as the client gave them (`q`): a request that sends a cursor together with
  *other* filters is refused (400 INVALID_CURSOR) instead of silently mixing two queries;
- the keyset position: the sort values of the last row returned (`k`); the next page is the rows strictly
  after it in the list's total order (the last sort columns are the row's identity, so ties cannot repeat
  or skip a row);
- a digest of the rows at or before that position (`d`): their count and an order-free hash of their ids.

On a later page, when the current snapshot is not the cursor's, the digest is computed again on the new
snapshot. Equal: the rows behind the cursor are exactly the ones already returned, so continuing by keyset
in the new snapshot returns every other row of the new snapshot once: no duplicate, no gap; the page says
`snapshot_changed: true`. Different (a day behind the cursor was recomputed, a row moved across the cursor):
continuing would repeat or skip rows, so the answer is 409 SNAPSHOT_CHANGED and the client starts again.
The usual publish (a new day appended; earlier days rebuilt identical) never causes a 409.

The cursor is not signed: everything in it is validated again and reaches SQL only as parameters, so a
forged cursor can at most ask for another page of data the same key may read anyway.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from hitcraft_assets.app.errors import ApiError
from hitcraft_assets.app.snapshot import Snapshot

MAX_CURSOR_CHARS = 4096
F = TypeVar("F")


class CursorState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    v: Literal[1]
    r: str
    s: str
    f: dict[str, Any]
    o: str | None
    q: str
    k: list[Any]
    d: str


def _bad(message: str) -> ApiError:
    return ApiError(400, "INVALID_CURSOR", message)


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if isinstance(value, date):
        return {"d": value.isoformat()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot put {type(value).__name__} in a cursor")


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (tag, text), = value.items()
        if isinstance(text, str):
            try:
                if tag == "d":
                    return date.fromisoformat(text)
                if tag == "t":
                    return datetime.fromisoformat(text)
            except ValueError:
                pass
        raise _bad("the cursor is damaged (a position value)")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise _bad("the cursor is damaged (a position value)")


def encode(state: CursorState) -> str:
    raw = json.dumps(state.model_dump(), separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> CursorState:
    if len(cursor) > MAX_CURSOR_CHARS:
        raise _bad("the cursor is too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return CursorState.model_validate(json.loads(raw))
    except (binascii.Error, ValueError, UnicodeDecodeError, ValidationError):
        raise _bad("the cursor is not one this API made: pass next_cursor exactly as returned") from None


def fingerprint(given: dict[str, Any]) -> str:
    """The filters as the client sent them (None and empty values left out), hashed."""
    clean = {k: v for k, v in given.items() if v not in (None, [], (), "")}
    text = json.dumps(clean, sort_keys=True, default=lambda v: v.isoformat() if isinstance(v, date) else str(v))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def _adapter(filters: type) -> TypeAdapter:
    return TypeAdapter(filters)   # building one takes milliseconds: once per filter type


@dataclass(frozen=True)
class PagedList(Generic[F]):
    """One paginated list: its name, filter type, sort key names, and the two reads of queries.py."""

    resource: str
    filters: type
    key_names: Callable[[str | None], Sequence[str]]
    read: Callable[[Snapshot, F, str | None, Sequence[Any] | None, int], tuple[list[dict], bool]]
    digest: Callable[[Snapshot, F, str | None, Sequence[Any]], str]

    def run(self, snap: Snapshot, *, given: dict[str, Any], resolve: Callable[[], tuple[F, str | None]],
            cursor: str | None, limit: int) -> dict:
        """A page: `{"items", "next_cursor", "snapshot_id", "snapshot_changed"}`. `given` holds the filters as
        sent; `resolve()` turns them into the query (filters with pinned dates, sort) for a first page."""
        adapter = _adapter(self.filters)
        changed = False
        if cursor:
            state = decode(cursor)
            if state.r != self.resource:
                raise _bad(f"this cursor belongs to another list ({state.r}), not {self.resource}")
            wanted = fingerprint(given)
            if wanted != fingerprint({}) and wanted != state.q:
                raise _bad("the cursor was made for other filters or another sort: send the cursor alone, or "
                           "with the same filters as the first page")
            try:
                filters = adapter.validate_python(state.f)
            except ValidationError:
                raise _bad("the cursor is damaged (its filters)") from None
            sort = state.o
            after = [_decode_value(v) for v in state.k]
            if len(after) != len(self.key_names(sort)):
                raise _bad("the cursor is damaged (its position)")
            if state.s != snap.snapshot_id:
                if self.digest(snap, filters, sort, after) != state.d:
                    raise ApiError(409, "SNAPSHOT_CHANGED",
                                   "a new snapshot was published and it changed rows this listing had already "
                                   "returned; start again without a cursor")
                changed = True
            q = state.q
        else:
            filters, sort = resolve()
            after, q = None, fingerprint(given)
        rows, more = self.read(snap, filters, sort, after, limit)
        next_cursor = None
        if more and rows:
            last = [rows[-1][n] for n in self.key_names(sort)]
            next_cursor = encode(CursorState(
                v=1, r=self.resource, s=snap.snapshot_id, f=adapter.dump_python(filters, mode="json"), o=sort, q=q,
                k=[_encode_value(v) for v in last], d=self.digest(snap, filters, sort, last)))
        return {"items": rows, "next_cursor": next_cursor, "snapshot_id": snap.snapshot_id,
                "snapshot_changed": changed}
