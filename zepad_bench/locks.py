"""A lock per stage key on the (shared) work directory, so concurrent jobs never compute a stage twice."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def stage_lock(workdir: Path, stage: str, key: str) -> Iterator[None]:
    """Hold ``<workdir>/locks/<stage>/<key>.lock`` exclusively (POSIX ``flock``; blocks until free).

    The runner re-checks the cache once it holds the lock: whoever waited finds the artifact the
    holder wrote (atomically) and loads it instead of computing it again.
    """
    path = Path(workdir) / "locks" / stage / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
