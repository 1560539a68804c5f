"""A benchmark script's record: what it measured, with the command, machine, date and commit, written
as JSON under ``benchmarks/results/`` so that benchmarks/README.md is generated from it
(:mod:`zepad_bench.reports.bench_docs`), never typed.

``provenance`` is ``"measured"`` for a record a script wrote; a record made by hand from the printed
output of a past run (one that cannot be re-run here) says ``"transcribed"`` and is shown as such.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from zepad_bench.machine import cpu_count, machine_info, now

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
"""Where a clone's benchmark records live (the scripts' default)."""


def commit(root: Path) -> str | None:
    """The checkout's commit (``+dirty`` when tracked files differ from it), or ``None`` outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def machine(device: str) -> dict[str, Any]:
    """:func:`~zepad_bench.machine.machine_info` plus torch's version and threads where torch is loaded,
    and the load average when the measurement ended (a shared machine's figures carry its noise)."""
    info = {**machine_info(device), "cpus": cpu_count()}
    torch = sys.modules.get("torch")
    if torch is not None:
        info.update(torch=torch.__version__, threads=torch.get_num_threads())
    if hasattr(os, "getloadavg"):
        info["load"] = [round(x, 2) for x in os.getloadavg()]
    return info


def write_record(
    name: str, figures: dict[str, Any], device: str = "cpu", out: str | Path | None = None, note: str = ""
) -> Path:
    """Write ``benchmarks/results/<name>.json`` (or into ``out``) and return its path."""
    folder = Path(out) if out else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    script = Path(sys.argv[0])
    try:
        script_name = str(script.resolve().relative_to(RESULTS.parent.parent))
    except ValueError:
        script_name = script.name
    record = {
        "script": script_name,
        "command": shlex.join(["python", script_name, *sys.argv[1:]]),
        "date": now(),
        "commit": commit(RESULTS.parent.parent),
        "machine": machine(device),
        "provenance": "measured",
        "note": note,
        "figures": figures,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"record: {path}")
    return path
