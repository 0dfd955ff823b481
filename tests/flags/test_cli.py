"""``veneer flags list | show | set | history`` (issue 12, CLI), with --format json, clear
errors and the shared exit codes."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa
from click.testing import CliRunner, Result

from servers import POSTGRES_URL, RedisServer, free_port
from veneer import Cache
from veneer.cli import main
from veneer.flags import Flags, FlagTables


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["flags", *args], input=stdin, catch_exceptions=False)


def common(tables: FlagTables) -> list[str]:
    return ["--db", POSTGRES_URL, "--prefix", tables.flags.name[:-1]]


def test_set_show_list_and_history_in_json(pg_tables: FlagTables) -> None:
    """Flags created and changed from the command line are in the database, shown whole,
    listed, and audited with the actor, in JSON for machines."""
    db = common(pg_tables)
    created = run("set", "checkout", *db, "--enable", "--percentage", "25", "--actor", "ops",
                  "--format", "json")  # fmt: skip
    assert created.exit_code == 0, created.output
    change = json.loads(created.output)
    assert (change["action"], change["version"], change["published"]) == ("create", 1, False)
    assert run("set", "checkout", *db, "--allow", "user:1", "--allow", "user:2").exit_code == 0
    definition = {"enabled": True, "variants": {"v2": {"t": 1}, "v1": {"t": 2}},
                  "on_variant": "v2", "off_variant": "v1"}  # fmt: skip
    replaced = run("set", "search", *db, "--definition", "-", stdin=json.dumps(definition))
    assert replaced.exit_code == 0 and "created flag 'search': version 3" in replaced.output
    shown = json.loads(run("show", "checkout", *db, "--format", "json").output)
    assert shown["allow"] == ["user:1", "user:2"]
    assert shown["rules"] == [{"when": [], "rollout": {"on": 25.0, "off": 75.0}}]
    listed = json.loads(run("list", *db, "--format", "json").output)
    assert listed["version"] == 3 and [f["name"] for f in listed["flags"]] == [
        "checkout",
        "search",
    ]
    history = json.loads(run("history", "checkout", *db, "--format", "json").output)
    assert [(c["version"], c["action"]) for c in history] == [(2, "update"), (1, "create")]
    assert history[1]["actor"] == "ops" and "@" in history[0]["actor"]
    assert history[0]["old"]["allow"] == [] and history[0]["new"]["allow"] == ["user:1", "user:2"]
    text = run("history", *db)
    assert text.exit_code == 0 and "search" in text.output and "allow" in text.output
    assert "checkout" in run("list", *db).output


def test_set_with_redis_publishes_to_running_processes(
    pg: sa.Engine, pg_tables: FlagTables, redis_server: RedisServer, namespace: str
) -> None:
    """With --redis and --namespace, the change is published after its commit: a running
    process with a 30 s check_interval sees it at once."""
    cache = Cache.from_url(redis_server.url, namespace=namespace, ttl=60)
    reader = Flags(pg, cache, tables=pg_tables, check_interval=30)
    try:
        assert reader.start()
        deadline = time.monotonic() + 10
        while reader.status().mode != "push" and time.monotonic() < deadline:
            time.sleep(0.01)
        result = run("set", "live", *common(pg_tables), "--enable", "--redis", redis_server.url,
                     "--namespace", namespace, "--format", "json")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["published"] is True
        while not reader.enabled("live") and time.monotonic() < deadline:
            time.sleep(0.005)
        assert reader.enabled("live") and reader.status().mode == "push"
    finally:
        reader.close()
        cache.close()


def test_bad_input_is_one_clear_line_with_an_exit_code(pg_tables: FlagTables) -> None:
    """A malformed definition, an unknown flag, missing tables, nothing to set, an
    unreachable database: one line each, exit 2 (usage) or 3 (unreachable), nothing
    written."""
    db = common(pg_tables)
    bad = run("set", "f", *db, "--percentage", "150")
    assert bad.exit_code == 2 and "rules[0].percentage: 150.0 is outside 0 to 100" in bad.output
    assert "Traceback" not in bad.output
    not_json = run("set", "f", *db, "--definition", "-", stdin="{nope")
    assert not_json.exit_code == 2 and "not JSON" in not_json.output
    other = run("set", "f", *db, "--definition", "-", stdin='{"name": "g"}')
    assert other.exit_code == 2 and "names flag 'g'" in other.output
    missing = run("show", "nope", *db)
    assert missing.exit_code == 2 and "no flag named 'nope'" in missing.output
    assert run("set", "f", *db).exit_code == 2
    assert run("set", "f", *db, "--enable", "--redis", "redis://127.0.0.1:1/0").exit_code == 2
    no_tables = run("list", "--db", POSTGRES_URL, "--prefix", "vf_never_created")
    assert no_tables.exit_code == 2 and "create the flags tables" in no_tables.output
    down = run("list", "--db", f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/test")
    assert down.exit_code == 3 and "s3cret" not in down.output
    assert json.loads(run("list", *db, "--format", "json").output)["version"] == 0
