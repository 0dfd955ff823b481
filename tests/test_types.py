"""docs/types.md's table of what each codec round-trips is what the codecs do."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import re
import typing
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from veneer._codec import JsonCodec, MsgpackCodec

DOC = Path(__file__).resolve().parent.parent / "docs" / "types.md"


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass
class Point:
    x: int


class Row(msgspec.Struct):
    x: int


class Pair(typing.NamedTuple):
    x: int


UTC = datetime.UTC
# row name -> (sample value, the type= that keeps it)
SAMPLES: dict[str, tuple[Any, Any]] = {
    "None": (None, None),
    "bool": (True, bool),
    "int": (7, int),
    "float": (1.5, float),
    "str": ("text", str),
    "bytes": (b"\x00\x01", bytes),
    "bytearray": (bytearray(b"ab"), bytearray),
    "list": ([1], list[int]),
    "tuple": ((1,), tuple[int]),
    "set": ({1}, set[int]),
    "frozenset": (frozenset({1}), frozenset[int]),
    "dict (str keys)": ({"a": 1}, dict[str, int]),
    "dict (int keys)": ({1: "a"}, dict[int, str]),
    "datetime (aware)": (datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), datetime.datetime),
    "datetime (naive)": (datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.datetime),
    "date": (datetime.date(2024, 1, 2), datetime.date),
    "time": (datetime.time(3, 4), datetime.time),
    "timedelta": (datetime.timedelta(seconds=5), datetime.timedelta),
    "uuid.UUID": (uuid.UUID(int=1), uuid.UUID),
    "decimal.Decimal": (decimal.Decimal("1.5"), decimal.Decimal),
    "Enum": (Color.RED, Color),
    "IntEnum": (Level.LOW, Level),
    "dataclass": (Point(1), Point),
    "msgspec.Struct": (Row(1), Row),
    "NamedTuple": (Pair(1), Pair),
}


def _table() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in {"Python value", "---"}:
            rows[cells[0]] = cells[1:]
    return rows


def test_the_table_covers_every_sample() -> None:
    """Every documented row has a sample here, and every sample a row."""
    assert sorted(_table()) == sorted(SAMPLES)


@pytest.mark.parametrize("row", sorted(SAMPLES))
def test_each_row_is_what_the_codecs_do(row: str) -> None:
    """Each codec returns the documented type without type=, and the value's own type
    with it."""
    value, keep = SAMPLES[row]
    msgpack_doc, json_doc, typed_doc = _table()[row]
    for codec, documented in ((MsgpackCodec(), msgpack_doc), (JsonCodec(), json_doc)):
        back = codec.decode(codec.encode(value))
        kind = type(back).__name__
        match = re.fullmatch(r"(\w+) \((\w+) keys\)", documented)
        if match:
            assert kind == match[1] and {type(k).__name__ for k in back} == {match[2]}
        else:
            assert kind == documented, (row, codec.name)
        assert typed_doc == "kept"
        typed = codec.decode(codec.encode(value), type=keep)
        assert type(typed) is type(value) and typed == value, (row, codec.name)
