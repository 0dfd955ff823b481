"""docs/options.md lists every CacheOptions field with its default: it cannot drift."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

from veneer._options import CacheOptions

ROOT = Path(__file__).resolve().parent.parent


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("options_doc", ROOT / "scripts/options_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_options_page_is_generated_from_cache_options() -> None:
    """The page is what scripts/options_doc.py generates (run it after adding an option),
    and names every option once, with its default."""
    script = _script()
    page = (ROOT / "docs/options.md").read_text()
    assert page == script.generate(), "docs/options.md is stale: run python scripts/options_doc.py"
    for field in dataclasses.fields(CacheOptions):
        assert page.count(f"| `{field.name}` |") == 1, field.name
