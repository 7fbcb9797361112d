"""One writer per folder: a second `recipes train`, `sweep` or `tune` on a folder that a live
process is writing is refused at once, naming that process. The lock is an OS file lock
(flock) on a hidden file beside the folder, so a killed process never holds it."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recipes.core.errors import RecipeError
from recipes.core.runs import check_writable


def lock_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


@contextmanager
def folder_lock(folder: Path, what: str = "run folder") -> Iterator[None]:
    """Hold the folder's lock while the block runs; refuse when another process holds it."""
    check_writable(Path(folder))
    path = lock_path(Path(folder))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RecipeError(
                f"{what} {folder} is being written by {holder}; wait for it to finish, or "
                "choose another --output_dir"
            ) from None
        handle.truncate(0)
        handle.write(f"process {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
