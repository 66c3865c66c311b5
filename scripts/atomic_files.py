"""Locks and atomic writes for the scripts that fill caches test processes share
(make_test_gguf.py, registry_models.py): a writer holds a lock file beside the outputs and
writes under a temporary name in the same folder, then renames, so a reader never sees a
half-written file and concurrent writers do the work once."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Holds an exclusive lock on `path` (a lock file beside the output)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def temp_beside(path: Path) -> Path:
    """A unique temporary name in `path`'s folder (same filesystem, so rename is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)
