"""Shared fixtures: a tiny suite built on the test-only outside plugin (tests/outside)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tiny models: one thread is as fast and far steadier on a shared 2-core box

OUTSIDE = Path(__file__).parent / "outside"
sys.path.insert(0, str(OUTSIDE))

SMOKE_SUITE = """
[suite]
name = "smoke"
seed = 0
image_size = 16
eps = "16/255"
attacker_data = "stripes"
plugins = ["zb_outside_plugin"]

[datasets.stripes]
plugin = "outside-stripes"

[datasets.stripes2]
plugin = "outside-stripes"
n = 48

[encoders.rand]
plugin = "outside-random"
auxiliaries = ["rand2"]

[encoders.rand2]
plugin = "outside-random"
width = 4

[attacks.sign]
plugin = "outside-sign"

[defenses.none]
plugin = "none"

[defenses.none2]
plugin = "none"

[tasks.cls]
plugin = "classification"
data = "stripes"
epochs = 2

[tasks.cls2]
plugin = "classification"
data = "stripes2"
epochs = 2

[grid]
victims = ["rand"]
defenses = ["none", "none2"]
tuning = ["stripes"]
tasks = ["cls", "cls2"]
"""


@pytest.fixture(autouse=True, scope="session")
def _plugin_manifest_cache(tmp_path_factory):
    """`zepad-bench list` caches plugin manifests: keep the tests' out of the user's home."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ZEPAD_BENCH_CACHE", str(tmp_path_factory.mktemp("zepad-bench-cache")))
    yield
    mp.undo()


@pytest.fixture
def smoke_suite(tmp_path: Path) -> Path:
    path = tmp_path / "smoke.toml"
    path.write_text(SMOKE_SUITE)
    return path


def run_cli(args: list[str], cwd: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    """``zepad-bench ARGS`` in a new process (a fresh plugin registry), in ``cwd``, with ``env_extra``."""
    return subprocess.run(
        [sys.executable, "-m", "zepad_bench.cli", *args],
        cwd=cwd,
        env={**os.environ, **env_extra},
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_main(args: list[str], monkeypatch) -> int:
    """Run ``main`` (the console script's entry) in this process and return its exit status."""
    monkeypatch.setattr(sys, "argv", ["zepad-bench", *args])
    try:
        from zepad_bench.cli import main

        main()
    except SystemExit as exc:
        return exc.code
    return 0
