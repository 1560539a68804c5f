"""Path resolution: a suite's relative paths mean the same from any working directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def resolve_paths(cls: type, params: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths among ``cls.path_params`` resolve against ``base`` (the suite file's folder)."""
    out = dict(params)
    for key in getattr(cls, "path_params", ()):
        value = out.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            out[key] = os.path.normpath(base / value)
    return out
