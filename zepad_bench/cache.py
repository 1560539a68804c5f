"""Content-addressed artifact cache: each stage's output lives under the hash of what made it."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def content_key(material: Any) -> str:
    """Stable sha256 of JSON-able ``material`` (dict keys sorted; floats by repr)."""
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename, with the permissions a plain write
    would give (``0o666`` less the umask; a temp file alone is owner-only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class ArtifactCache:
    """``<workdir>/artifacts/<stage>/<key[:2]>/<key>.pt`` (torch tensors and plain data only).

    Writes are atomic (temp file + rename), so an interrupted run never leaves a half artifact;
    reads use ``weights_only=True``: nothing pickled is ever executed.
    """

    def __init__(self, root: Path):
        self.root = Path(root) / "artifacts"

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:2] / f"{key}.pt"

    def has(self, stage: str, key: str) -> bool:
        return self.path(stage, key).exists()

    def load(self, stage: str, key: str) -> Any:
        import torch

        return torch.load(self.path(stage, key), map_location="cpu", weights_only=True)

    def save(self, stage: str, key: str, value: Any, material: Any = None) -> None:
        import io

        import torch

        buffer = io.BytesIO()
        torch.save(value, buffer)
        path = self.path(stage, key)
        if material is not None:
            atomic_write_bytes(
                path.with_suffix(".json"),
                json.dumps(material, sort_keys=True, indent=1, default=repr).encode(),
            )
        atomic_write_bytes(path, buffer.getvalue())
