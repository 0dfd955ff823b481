"""Percentages (issue 12): 100,000 subjects within 1 point of the target, the same answers
in another process (another hash seed) and after a restart."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import sqlalchemy as sa

from servers import POSTGRES_URL
from veneer.flags import Condition, Flag, Flags, FlagTables, Rule

SUBJECTS = 100_000

_CHILD = textwrap.dedent(
    """
    import hashlib, json, sys
    import sqlalchemy as sa
    from veneer.flags import Flags, flag_tables
    url, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    engine = sa.create_engine(url)
    flags = Flags(engine, tables=flag_tables(prefix=prefix))
    assert flags.start(), flags.status()
    answers = bytes(
        flags.enabled("rollout", subject=f"user:{i}", attributes={"plan": "free"})
        for i in range(count)
    )
    print(json.dumps({"digest": hashlib.sha256(answers).hexdigest(), "on": sum(answers),
                      "source": flags.status().source, "hash_of_x": hash("x")}))
    flags.close()
    engine.dispose()
    """
)


def answers_digest(flags: Flags) -> tuple[str, int]:
    answers = bytes(
        flags.enabled("rollout", subject=f"user:{i}", attributes={"plan": "free"})
        for i in range(SUBJECTS)
    )
    return hashlib.sha256(answers).hexdigest(), sum(answers)


def test_rollouts_are_on_target_and_identical_across_processes_and_restarts(
    pg: sa.Engine, pg_tables: FlagTables
) -> None:
    """A 25% rollout (behind a rule that does not match) serves 24-26% of 100,000 subjects;
    a second process with another hash seed, and this process's client restarted, give
    the very same answers."""
    writer = Flags(pg, tables=pg_tables)
    writer.set_flag(
        Flag(
            "rollout",
            enabled=True,
            rules=[
                Rule(when=[Condition("plan", "eq", "pro")], serve="on"),
                Rule(percentage=25),
            ],
        )
    )
    first = Flags(pg, tables=pg_tables)
    assert first.start()
    digest, on = answers_digest(first)
    first.close()
    assert abs(on / SUBJECTS - 0.25) <= 0.01
    restarted = Flags(pg, tables=pg_tables)
    assert restarted.start()
    assert answers_digest(restarted) == (digest, on)
    restarted.close()
    env = dict(os.environ, PYTHONHASHSEED="12345")
    prefix = pg_tables.flags.name[:-1]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, POSTGRES_URL, prefix, str(SUBJECTS)],
        capture_output=True, text=True, timeout=120, env=env, cwd=Path(__file__).parent,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["source"] == "database"
    assert child["hash_of_x"] != hash("x")  # really another hash seed
    assert (child["digest"], child["on"]) == (digest, on)
