"""The ``veneer`` command. Subcommands live in their own modules and load on first use."""

from __future__ import annotations

import importlib
from typing import Any

import click

# name -> "module:attribute"; loading lazily keeps `veneer --help` fast and lets
# each subcommand own its imports (the audit needs no cache, the demo no audit).
_SUBCOMMANDS: dict[str, str] = {
    "demo": "veneer.demo.cli:demo",
    "audit": "veneer.audit.cli:audit",
    "doctor": "veneer.doctor.cli:doctor",
    "verify": "veneer._verify_cli:verify_command",
    "relay": "veneer.integrations.cli:relay",
    "listen": "veneer.integrations.cli:listen",
    "sessions": "veneer.sessions.cli:sessions",
    "counters": "veneer.counters.cli:counters",
    "flags": "veneer.flags.cli:flags",
}


# What `veneer --help` lists, so that listing imports no subcommand (and so neither
# Redis client): tests/test_imports.py checks each against the command's own help.
_SHORT_HELP: dict[str, str] = {
    "demo": "Replay the incidents of Redis-for-everything on a naive stack and on veneer.",
    "audit": "Show where a live Redis (or cluster) has become a second database.",
    "doctor": "Measure placement and throughput from this host, with plain recommendations.",
    "verify": "Reload a sample of recently cached keys from the source and report divergence.",
    "relay": "Apply the invalidations left in the outbox table, at least once.",
    "listen": "Invalidate the keys that PostgreSQL triggers name (LISTEN/NOTIFY).",
    "sessions": "Maintenance of the session tables (veneer.sessions).",
    "counters": "Counters kept in the database, buffered in Redis (docs/counters.md).",
    "flags": "Feature flags in the database (veneer.flags): list, show, set, history.",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_SUBCOMMANDS))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        limit = formatter.width - 6 - max(map(len, self.list_commands(ctx)))
        for name in self.list_commands(ctx):
            text = _SHORT_HELP.get(name)
            command = (
                click.Command(name, help=text) if text is not None else self.get_command(ctx, name)
            )
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _SUBCOMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup)
@click.version_option(package_name="veneer")
def main() -> None:
    """veneer: Redis as a performance layer over your database, never its source of truth."""


if __name__ == "__main__":
    main()
