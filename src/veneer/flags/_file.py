"""The last-known-good snapshot file: what a process starts from when Redis and the
database are both out of reach.

Written (JSON, atomically: a temporary file then ``os.replace``) after every
snapshot loaded from the cache or the database; read once by ``start()``.
Reading a missing, unreadable or malformed file gives None, never an error.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ._evaluate import Snapshot, compile_snapshot

__all__ = ["read_snapshot_file", "write_snapshot_file"]

log = logging.getLogger("veneer")


def write_snapshot_file(path: Path, snapshot: Snapshot) -> bool:
    """Write ``snapshot``'s document to ``path``; False (logged) if it could not."""
    try:
        text = json.dumps(snapshot.document(), separators=(",", ":"), sort_keys=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except (OSError, TypeError, ValueError) as exc:
        log.warning("veneer.flags: could not write the snapshot file %s: %s", path, exc)
        return False
    return True


def read_snapshot_file(path: Path) -> Snapshot | None:
    """The snapshot in ``path`` (source ``file``), or None if there is no usable one."""
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
        return compile_snapshot(document, source="file", loaded_at=time.time())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("veneer.flags: ignoring the snapshot file %s: %s", path, exc)
        return None
