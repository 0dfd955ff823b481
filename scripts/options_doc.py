"""Write docs/options.md from ``CacheOptions`` (its fields, defaults and docstrings).

``--check`` fails when the file is stale; ``tests/test_options_doc.py`` runs the same
check, so an option added without regenerating the page fails the suite. Run
``python scripts/options_doc.py`` after adding or changing an option.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "options.md"

HEADER = """# Cache options

Every option of `Cache.from_url(url, namespace=..., **options)`, `Cache(client,
namespace=..., **options)` and their `AsyncCache` twins, with its default. Options
are checked when the cache is built: a bad value or an unknown name raises
`ConfigurationError` saying what to change. Durations are in seconds, sizes in bytes.

Generated from `veneer._options.CacheOptions` by `scripts/options_doc.py`; the
test suite fails when this page is stale.

| option | default | what it does |
| --- | --- | --- |
"""

URL_FORMS = """
## URLs

`from_url` accepts:

- `redis://[user:password@]host:port[/db]` and `rediss://...` (TLS, certificates
  verified; `?ssl_ca_certs=/path/ca.pem`, `ssl_certfile`, `ssl_keyfile`,
  `ssl_cert_reqs`)
- `unix://[user:password@]/path/to/socket[?db=0]`
- `redis+cluster://[user:password@]host:port[,host:port...]` and `rediss+cluster://...`
- `redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]` and
  `rediss+sentinel://...` (`?sentinel_password=` and `sentinel_username=` for the
  sentinels themselves)

Characters such as `#`, `/`, `?` and `@` in a password must be percent-encoded.
Error messages never show a password.
"""


def _docstrings(cls: type) -> dict[str, str]:
    """Attribute docstrings: the string literal right after each field."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    return f"`{value!r}`"


def generate() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from veneer._options import CacheOptions

    docs = _docstrings(CacheOptions)
    rows = []
    for field in dataclasses.fields(CacheOptions):
        text = docs.get(field.name, "(no description yet: add a docstring under the field)")
        rows.append(f"| `{field.name}` | {_default(field)} | {text.replace('|', '/')} |")
    return HEADER + "\n".join(rows) + "\n" + URL_FORMS


def main(check: bool) -> int:
    text = generate()
    if check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print("docs/options.md is stale: run python scripts/options_doc.py")
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv[1:]))
