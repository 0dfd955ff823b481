"""Answers built from stored responses: revalidation requests, 304 updates, the client's
own conditional requests, reuse headers and byte ranges. No I/O (see ``_policy``)."""

from __future__ import annotations

from .._random import rng
from ._fields import byte_range, http_date, matches_any, parse_etag, parse_etag_list
from ._policy import (
    NOT_MODIFIED_FIELDS,
    NOT_UPDATED,
    Entry,
    Headers,
    Policy,
    Request,
    StoredResponse,
    build_entry,
    current_age,
)

__all__ = [
    "conditional_status",
    "merge_304",
    "new_epoch",
    "not_modified_headers",
    "range_response",
    "serve_headers",
    "tags_of",
    "validators",
]


# ---------------------------------------------------------------- validation


def validators(stored: StoredResponse) -> Headers:
    """The conditional headers that revalidate ``stored`` (RFC 9111 4.3.1)."""
    out: Headers = []
    if stored.etag is not None:
        out.append((b"if-none-match", stored.etag.encode("latin-1")))
    if stored.last_modified is not None:
        out.append((b"if-modified-since", stored.last_modified.encode("latin-1")))
    return out


def merge_304(
    stored: StoredResponse,
    headers: Headers,
    *,
    request: Request,
    request_time: float,
    response_time: float,
    policy: Policy,
) -> Entry:
    """The stored response freshened by a ``304`` (RFC 9111 3.2, 4.3.4): its fields
    replace the stored ones (not Content-Length or hop-by-hop ones), then the result
    is judged for storage like a new response."""
    incoming = {name for name, _ in headers if name not in NOT_UPDATED}
    merged = [(n, v) for n, v in stored.headers if n not in incoming]
    merged.extend((n, v) for n, v in headers if n in incoming)
    return build_entry(
        request,
        stored.status,
        merged,
        stored.body,
        request_time=request_time,
        response_time=response_time,
        policy=policy,
    )


def conditional_status(stored: StoredResponse, request: Request) -> int:
    """304 when the client's own If-None-Match / If-Modified-Since is satisfied by
    ``stored`` (If-None-Match takes precedence), else the stored status."""
    if stored.status != 200:
        return stored.status
    inm = request.fields.get("if-none-match")
    if inm is not None:
        tags = parse_etag_list(inm)
        etag = parse_etag(stored.etag)
        if tags is None or (etag is not None and matches_any(etag, tags)):
            return 304
        return stored.status
    ims = http_date(request.first("if-modified-since"))
    if ims is not None:
        modified = http_date(stored.last_modified)
        if modified is None:
            modified = http_date(_header(stored.headers, b"date")) or stored.response_time
        if modified <= ims:
            return 304
    return stored.status


def _header(headers: Headers, name: bytes) -> str | None:
    for n, v in headers:
        if n == name:
            return v.decode("latin-1")
    return None


# ------------------------------------------------------------------- serving


def serve_headers(stored: StoredResponse, now: float | None, *, body_length: int | None) -> Headers:
    """The stored fields plus the ``Age`` this reuse has (none when ``now`` is None: the
    origin's own answer), and a Content-Length if absent."""
    out = list(stored.headers)
    if now is not None:
        out.append((b"age", str(int(current_age(stored, now))).encode()))
    if body_length is not None and not any(n == b"content-length" for n, _ in out):
        out.append((b"content-length", str(body_length).encode()))
    return out


def not_modified_headers(stored: StoredResponse, now: float | None) -> Headers:
    """The fields a ``304`` carries (RFC 9110 15.4.5), with ``Age`` when ``now`` is given."""
    out = [(n, v) for n, v in stored.headers if n in NOT_MODIFIED_FIELDS]
    if now is not None:
        out.append((b"age", str(int(current_age(stored, now))).encode()))
    return out


def range_response(
    stored: StoredResponse, value: str, now: float | None
) -> tuple[int, Headers, bytes] | None:
    """A ``206`` (or ``416``) for one byte range of a stored ``200``; ``None``: serve it whole."""
    if stored.status != 200:
        return None
    length = len(stored.body)
    chosen = byte_range(value, length)
    if chosen is None:
        return None
    base = [(n, v) for n, v in serve_headers(stored, now, body_length=None)
            if n not in (b"content-length", b"content-range")]  # fmt: skip
    if chosen is False:
        base.append((b"content-range", f"bytes */{length}".encode()))
        base.append((b"content-length", b"0"))
        return 416, base, b""
    assert chosen is not True
    first, last = chosen
    base.append((b"content-range", f"bytes {first}-{last}/{length}".encode()))
    base.append((b"content-length", str(last - first + 1).encode()))
    return 206, base, stored.body[first : last + 1]


def tags_of(headers: Headers, policy: Policy) -> list[str]:
    """Tags a response declares in the tag header (space- or comma-separated)."""
    out: list[str] = []
    for name, value in headers:
        if name == policy.tag_header:
            out.extend(value.decode("latin-1").replace(",", " ").split())
    return out


def new_epoch() -> str:
    return f"{rng.getrandbits(48):012x}"
