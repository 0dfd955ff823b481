"""Statements and row conversions shared by the asyncio and the sync store (no I/O here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ._evaluate import DOCUMENT_FORMAT
from ._tables import STATE_ID, FlagTables

__all__ = [
    "FlagChange",
    "Head",
    "audit_insert",
    "bump_statement",
    "change_of",
    "delete_statements",
    "epoch",
    "flag_documents",
    "head_select",
    "history_select",
    "insert_statements",
    "snapshot_document",
]


@dataclass(frozen=True, slots=True)
class Head:
    """The committed snapshot version and the token naming it."""

    version: int
    token: str
    changed_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "token": self.token, "changed_at": self.changed_at}

    @classmethod
    def from_dict(cls, value: Any) -> Head:
        if (
            not isinstance(value, Mapping)
            or not isinstance(value.get("version"), int)
            or not isinstance(value.get("token"), str)
        ):
            raise ValueError(f"not a flags head: {value!r}")
        changed = value.get("changed_at")
        return cls(value["version"], value["token"], None if changed is None else float(changed))


@dataclass(frozen=True, slots=True)
class FlagChange:
    """One change of one flag: an audit row (``id`` is None until read back from the audit
    table). ``old`` / ``new`` are the definitions before and after (None: absent)."""

    flag: str
    version: int
    token: str
    action: str
    changed_at: float
    actor: str | None
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    id: int | None = None


def epoch(value: datetime | None) -> float | None:
    """Seconds since the epoch; naive datetimes (SQLite) are UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def head_select(tables: FlagTables) -> sa.Select[Any]:
    state = tables.state
    return sa.select(state.c.version, state.c.token, state.c.changed_at).where(
        state.c.id == STATE_ID
    )


def bump_statement(tables: FlagTables, token: str, now: datetime) -> sa.Update:
    """The version bump: it also takes the state row's lock, so changes commit in version
    order on PostgreSQL (a second writer waits here until the first commits)."""
    state = tables.state
    return (
        sa.update(state)
        .where(state.c.id == STATE_ID)
        .values(version=state.c.version + 1, token=token, changed_at=now)
    )


def flag_documents(
    flag_rows: Iterable[Any], variant_rows: Iterable[Any], rule_rows: Iterable[Any]
) -> list[dict[str, Any]]:
    """Flag documents from the rows of the three definition tables (any order)."""
    variants: dict[str, list[Any]] = {}
    for row in variant_rows:
        variants.setdefault(row.flag, []).append(row)
    rules: dict[str, list[Any]] = {}
    for row in rule_rows:
        rules.setdefault(row.flag, []).append(row)
    documents = []
    for row in sorted(flag_rows, key=lambda r: r.name):
        documents.append(
            {
                "name": row.name,
                "enabled": bool(row.enabled),
                "variants": {
                    v.key: v.value for v in sorted(variants.get(row.name, ()), key=_position)
                },
                "on_variant": row.on_variant,
                "off_variant": row.off_variant,
                "allow": list(row.allow or ()),
                "deny": list(row.deny or ()),
                "rules": [
                    _rule_document(r) for r in sorted(rules.get(row.name, ()), key=_position)
                ],
                "fallthrough": row.fallthrough,
                "salt": row.salt,
                "description": row.description or "",
            }
        )
    return documents


def _position(row: Any) -> int:
    return int(row.position)


def _rule_document(row: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"when": list(row.conditions or ())}
    if row.serve is not None:
        rule["serve"] = row.serve
    else:
        rule["rollout"] = row.rollout
    return rule


def snapshot_document(head: Head, flags: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": DOCUMENT_FORMAT,
        "version": head.version,
        "token": head.token,
        "changed_at": head.changed_at,
        "flags": list(flags),
    }


def delete_statements(tables: FlagTables, name: str) -> list[sa.Delete]:
    return [
        sa.delete(table).where(column == name)
        for table, column in (
            (tables.rules, tables.rules.c.flag),
            (tables.variants, tables.variants.c.flag),
            (tables.flags, tables.flags.c.name),
        )
    ]


def insert_statements(
    tables: FlagTables, document: dict[str, Any], now: datetime, actor: str | None
) -> list[tuple[sa.Insert, list[dict[str, Any]]]]:
    """Inserts for a checked flag document (after :func:`delete_statements`)."""
    name = document["name"]
    flag_row = {
        "name": name,
        "enabled": document["enabled"],
        "on_variant": document["on_variant"],
        "off_variant": document["off_variant"],
        "allow": document["allow"],
        "deny": document["deny"],
        "fallthrough": document["fallthrough"],
        "salt": document["salt"],
        "description": document["description"],
        "updated_at": now,
        "updated_by": actor,
    }
    variant_rows = [
        {"flag": name, "key": key, "position": i, "value": value}
        for i, (key, value) in enumerate(document["variants"].items())
    ]
    rule_rows = [
        {
            "flag": name,
            "position": i,
            "conditions": rule["when"],
            "serve": rule.get("serve"),
            "rollout": rule.get("rollout"),
        }
        for i, rule in enumerate(document["rules"])
    ]
    out: list[tuple[sa.Insert, list[dict[str, Any]]]] = [(sa.insert(tables.flags), [flag_row])]
    out.append((sa.insert(tables.variants), variant_rows))
    if rule_rows:
        out.append((sa.insert(tables.rules), rule_rows))
    return out


def audit_insert(tables: FlagTables, change: FlagChange, now: datetime) -> sa.Insert:
    return sa.insert(tables.audit).values(
        flag=change.flag,
        version=change.version,
        changed_at=now,
        actor=change.actor,
        action=change.action,
        old=change.old,
        new=change.new,
    )


def history_select(tables: FlagTables, name: str | None, limit: int) -> sa.Select[Any]:
    audit = tables.audit
    query = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
    if name is not None:
        query = query.where(audit.c.flag == name)
    return query


def change_of(row: Any) -> FlagChange:
    return FlagChange(
        flag=row.flag,
        version=int(row.version),
        token="",
        action=row.action,
        changed_at=epoch(row.changed_at) or 0.0,
        actor=row.actor,
        old=row.old,
        new=row.new,
        id=int(row.id),
    )
