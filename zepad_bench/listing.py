"""What ``zepad-bench list`` and ``show`` print, cached so that listing does not import the plugins
(and torch): a JSON manifest per set of installed plugin sources.

The manifest's name hashes every allowed ``zepad_bench`` entry point (distribution, version,
module) and the path, size and mtime of every source file those modules reach (their package and
``zepad_bench``), so installing, upgrading or editing a plugin — its docstrings included — builds
a new manifest (by loading the registry once); otherwise ``list`` reads JSON only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from zepad_bench.cache import atomic_write_bytes, content_key

CACHE_ENV = "ZEPAD_BENCH_CACHE"
"""Directory of the manifests (default ``$XDG_CACHE_HOME/zepad-bench`` or ``~/.cache/zepad-bench``)."""


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zepad-bench"


def _stamp() -> str:
    from zepad_bench.code_version import files_stamp
    from zepad_bench.registry import ENV_ALLOWLIST, entry_points

    points = sorted({(str(provider), ep.value) for provider, ep in entry_points()})
    files = sorted({f for _, module in points for f in files_stamp(module)})
    return content_key({"entry_points": points, "files": files, "allow": os.environ.get(ENV_ALLOWLIST)})


def _build() -> dict[str, Any]:
    from zepad_bench.params import describe
    from zepad_bench.registry import KINDS, load_registry

    registry = load_registry()
    return {
        "broken": [str(b) for b in registry.broken],
        **{
            kind: {
                name: {
                    "provider": str(registry.provider(kind, name)),
                    "doc": (cls.__doc__ or "").strip(),
                    "params": describe(cls),
                    "methods": list(getattr(cls, "methods", None) or []),
                }
                for name, cls in sorted(registry.kind(kind).items())
            }
            for kind in KINDS
        },
    }


def plugin_manifest() -> dict[str, Any]:
    """kind → name → provider, doc, params (one line each), methods — from the cache when current —
    and ``"broken"``: the installed plugins that could not load (one line each; such a manifest is not
    cached, so installing what a plugin lacks is seen at once)."""
    path = cache_dir() / f"plugins-{_stamp()[:24]}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    manifest = _build()
    if manifest["broken"]:
        return manifest
    try:
        atomic_write_bytes(path, json.dumps(manifest, indent=1).encode())
        for old in path.parent.glob("plugins-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:  # a read-only home: list anyway, uncached
        pass
    return manifest
