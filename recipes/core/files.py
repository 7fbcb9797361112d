"""State files that survive a kill in the middle of a write: whole files are replaced in one
rename (temporary file, flush, fsync, rename), appends are flushed to disk, and a JSON-lines
reader drops a torn last line instead of failing the next start."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str) -> None:
    """The file holds either its old text or the new one, never a part."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with partial.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def append_line(path: Path, text: str) -> None:
    """One line added and flushed to disk; a kill can at worst leave that line torn."""
    with Path(path).open("a") as handle:
        handle.write(text.rstrip("\n") + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every whole record of a JSON-lines file; a torn line (a kill mid-append) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
