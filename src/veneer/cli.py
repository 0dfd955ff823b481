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
    "verify": "veneer._verify_cli:verify_command",
    "relay": "veneer.integrations.cli:relay",
    "listen": "veneer.integrations.cli:listen",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_SUBCOMMANDS))

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
