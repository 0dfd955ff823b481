"""What importing veneer costs: the import graph, not timing (benchmarks/import_cost.py
measures the time)."""

from __future__ import annotations

import json
import subprocess
import sys

import click

from veneer import cli

_PROBE = r"""
import json, sys
def loaded(*prefixes):
    return sorted(m for m in sys.modules if m.split(".")[0] in prefixes or m.startswith(prefixes))
steps = {}
import veneer
heavy = ("redis", "hiredis", "msgspec", "zstandard", "asyncio", "veneer._sync", "veneer._async")
steps["import veneer"] = loaded(*heavy)
from veneer import cli
try:
    cli.main(["--help"])
except SystemExit:
    pass
steps["veneer --help"] = loaded(*heavy, "sqlalchemy", "rich")
from veneer import Cache
steps["from veneer import Cache"] = loaded("veneer._async")
from veneer import AsyncCache
steps["names"] = [Cache.__name__, AsyncCache.__name__, "AsyncCache" in dir(veneer)]
print(json.dumps(steps))
"""


def test_import_graph_stays_lean() -> None:
    """`import veneer` loads no Redis client, msgspec or asyncio; `veneer --help` loads no
    Redis client and no subcommand; the sync front never loads the asyncio front."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    steps = json.loads(done.stdout.strip().splitlines()[-1])
    assert steps["import veneer"] == []
    assert steps["veneer --help"] == []
    assert steps["from veneer import Cache"] == []
    assert steps["names"] == ["Cache", "AsyncCache", True]


def test_the_help_listing_matches_each_command() -> None:
    """The short help `veneer --help` shows without importing a subcommand is each
    command's own."""
    group = cli.main
    ctx = click.Context(group)
    assert set(cli._SHORT_HELP) == set(cli._SUBCOMMANDS)
    for name, text in cli._SHORT_HELP.items():
        command = group.get_command(ctx, name)
        assert command is not None
        assert command.get_short_help_str(200) == text, name
