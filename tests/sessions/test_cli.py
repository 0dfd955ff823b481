"""`veneer sessions purge` and `veneer sessions stats`: bounded batches, clear errors."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa
from click.testing import CliRunner

from servers import POSTGRES_URL, free_port
from veneer.cli import main
from veneer.sessions import SessionTables
from veneer.sessions._maintenance import purge_expired


def add_rows(engine: sa.Engine, tables: SessionTables, n: int, expired: bool, user: str | None):
    now = time.time()
    rows = [
        {
            "id": f"{'e' if expired else 'l'}{user or ''}{i:060d}"[:64],
            "user_id": user,
            "generation": 0,
            "data": b"{}",
            "created_at": now - 100,
            "last_seen": now - 100,
            "expires_at": now - 10 if expired else now + 1000,
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(tables.sessions), rows)


def test_purge_deletes_expired_rows_in_bounded_batches(
    engine: sa.Engine, tables: SessionTables
) -> None:
    """25 expired rows go in batches of at most 10, each its own transaction; live rows stay."""
    add_rows(engine, tables, 25, expired=True, user="u")
    add_rows(engine, tables, 5, expired=False, user=None)
    seen: list[int] = []
    assert purge_expired(engine, tables, batch=10, progress=seen.append) == 25
    assert seen == [10, 20, 25]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.sessions)).scalar() == 5


def test_cli_purge_and_stats(engine: sa.Engine, tables: SessionTables) -> None:
    """The CLI counts sessions (text and JSON) and purges the expired ones."""
    add_rows(engine, tables, 4, expired=True, user="u")
    add_rows(engine, tables, 3, expired=False, user="v")
    add_rows(engine, tables, 2, expired=False, user=None)
    runner = CliRunner()
    args = ["--db", POSTGRES_URL, "--table", tables.sessions.name]
    result = runner.invoke(main, ["sessions", "stats", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    assert counts == {
        "rows": 9,
        "live": 5,
        "expired": 4,
        "anonymous": 2,
        "authenticated": 3,
        "users": 1,
        "revoked_users": 0,
    }
    result = runner.invoke(main, ["sessions", "stats", *args])
    assert result.exit_code == 0 and "authenticated" in result.output
    result = runner.invoke(main, ["sessions", "purge", *args, "--batch", "3"])
    assert result.exit_code == 0, result.output
    assert "deleted 4 expired session(s)" in result.output


def test_cli_errors_say_what_to_do(engine: sa.Engine) -> None:
    """A missing table (exit 2), an unreachable database (3) or a bad URL (2) is a one-line
    error, not a traceback."""
    runner = CliRunner()
    result = runner.invoke(main, ["sessions", "stats", "--db", POSTGRES_URL, "--table", "nope_x"])
    assert result.exit_code == 2 and "create_tables" in result.output, result.output
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    result = runner.invoke(main, ["sessions", "purge", "--db", dead])
    assert result.exit_code == 3 and "cannot reach the database" in result.output, result.output
    result = runner.invoke(main, ["sessions", "purge", "--db", "not a url"])
    assert result.exit_code == 2 and "bad database URL" in result.output, result.output
    assert "Traceback" not in result.output
