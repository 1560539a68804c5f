"""What ``zepad-bench list`` and ``show`` print, cached so that listing does not import the plugins
(and torch): a JSON manifest per set of installed plugin sources.

The manifest's name hashes every allowed ``zepad_bench`` entry point (distribution, version,
module) and the path, size and mtime of every source file those modules reach (their package and
``zepad_bench``), so installing, upgrading or editing a plugin — its docstrings included — builds
a new manifest (by loading the registry once); otherwise ``list`` reads JSON only.
"""

from __future__ import annotations

import inspect
import json
import os
import re
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
                    "description": description(cls),
                    "doc": plain_text(cls.__doc__ or ""),
                    "params": describe(cls),
                    "methods": list(getattr(cls, "methods", None) or []),
                }
                for name, cls in sorted(registry.kind(kind).items())
            }
            for kind in KINDS
        },
    }


ABBREVIATIONS = ("al", "e.g", "i.e", "cf", "vs", "etc", "Eq", "Eqs", "Alg", "Sec", "Fig", "Tab", "approx")


def plain_text(doc: str) -> str:
    """A docstring without reST markup: ``x`` → x, :class:`~a.B` → B, *x* → x; paragraphs kept."""
    text = inspect.cleandoc(doc)
    text = re.sub(
        r":[a-z]+:`~?([^`]*?)`",
        lambda m: m.group(1).rsplit(".", 1)[-1] if "~" in m.group(0) else m.group(1),
        text,
    )
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    return re.sub(r"(?<![\w*])\*{1,2}([^*\s][^*]*?)\*{1,2}(?![\w*])", r"\1", text)


def description(cls: type) -> str:
    """The one-line description of a plugin class: its own ``description`` attribute, else the first
    sentence of its docstring (reST markup removed; a sentence ends at a full stop outside brackets
    that is not an abbreviation such as "et al.")."""
    own = vars(cls).get("description")
    if own:
        return " ".join(str(own).split())
    paragraph = " ".join(plain_text(cls.__doc__ or "").split("\n\n")[0].split())
    depth = 0
    for i, char in enumerate(paragraph):
        depth += (char in "([") - (char in ")]")
        if char == "." and depth == 0 and (i + 1 == len(paragraph) or paragraph[i + 1] == " "):
            word = re.findall(r"[\w.]+$", paragraph[:i])
            if not word or word[0] not in ABBREVIATIONS:
                return paragraph[: i + 1]
    return paragraph


def plugin_manifest() -> dict[str, Any]:
    """kind → name → provider, description, doc, params (display strings), methods — from the cache
    when current —
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


def parameter_reference(manifest: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The parameter reference (docs/parameters.md) of the plugins in ``manifest``, as markdown."""
    from zepad_bench.params import type_and_range

    lines = [
        "# Plugin parameters",
        "",
        "Generated from each plugin's options declaration by",
        "`ZEPAD_BENCH_PLUGINS= zepad-bench list --params --markdown > docs/parameters.md`",
        "(tests/test_params.py fails when it is out of date). Values are written as in a suite;",
        '`"8/255"`-style fractions are accepted wherever a budget or step is.',
    ]
    for kind, plugins in manifest.items():
        lines += ["", f"## {kind}"]
        for name, entry in plugins.items():
            lines += ["", f"### `{name}`", "", entry["description"], ""]
            if not entry["params"]:
                lines.append("No parameters.")
                continue
            lines += ["| parameter | type | default | description |", "|---|---|---|---|"]
            for p in entry["params"]:
                cells = [f"`{p['name']}`", type_and_range(p), p["default"], p["help"]]
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
