"""``[suite] protocol``: one training-protocol preset for every defense that takes one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zepad_bench.errors import SuiteError
from zepad_bench.registry import Registry
from zepad_bench.suite.model import PluginSpec
from zepad_bench.suite.plugin_tables import takes_param

PROTOCOLS = ("authors", "corrected")


def apply_protocol(path: Path, protocol: Any, defenses: dict[str, PluginSpec], registry: Registry) -> None:
    """``protocol`` ("authors" | "corrected", or ``None``: not set) becomes the default ``protocol``
    param of every defense that takes one; a defense table's own ``protocol`` wins."""
    if protocol is None:
        return
    if protocol not in PROTOCOLS:
        raise SuiteError(path, "suite.protocol", f"expected 'authors' or 'corrected', got {protocol!r}")
    for spec in defenses.values():
        if takes_param(registry.get("defenses", spec.plugin), "protocol"):
            spec.params.setdefault("protocol", protocol)
