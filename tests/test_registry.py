"""Plugin host: entry points, ad-hoc modules, duplicate names, providers, allow-list."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli as cli

from zepad_bench import load_registry
from zepad_bench.errors import UserError

OUTSIDE = Path(__file__).parent / "outside" / "zb_outside_plugin.py"


def make_distribution(root: Path) -> None:
    """Lay out an installed outside distribution: module + dist-info with a `zepad_bench` entry point."""
    (root / "zb_outside_plugin.py").write_text(OUTSIDE.read_text())
    info = root / "zb_outside_plugin-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zb-outside-plugin\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[zepad_bench]\noutside = zb_outside_plugin\n")


def test_builtins_are_registered_through_entry_points():
    registry = load_registry()
    assert registry.defenses["none"].__module__ == "zepad_bench_plugins.defenses.none"
    assert registry.provider("defenses", "none").name == "zepad-bench"
    assert registry.provider("tasks", "classification").version


def test_adhoc_module_is_registered_with_its_provider():
    registry = load_registry(["zb_outside_plugin"])
    assert "outside-sign" in registry.attacks
    assert str(registry.provider("attacks", "outside-sign")) == "zb_outside_plugin"


def test_duplicate_names_are_rejected_naming_both(tmp_path, monkeypatch):
    (tmp_path / "zb_dup_plugin.py").write_text(
        "from zepad_bench import hookimpl\nfrom zepad_bench_plugins.defenses.none import NoDefense\n"
        "@hookimpl\ndef register_defenses(register):\n    register(NoDefense)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match=r"duplicate defense plugin name 'none'.*zepad-bench.*zb_dup_plugin"):
        load_registry(["zb_dup_plugin"])


def test_unknown_module_is_a_user_error():
    with pytest.raises(UserError, match="no_such_plugin_module"):
        load_registry(["no_such_plugin_module"])


def test_outside_distribution_shows_in_list_and_runs_in_a_suite(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site)
    env = {"PYTHONPATH": str(site)}
    listing = cli(["list", "attacks"], tmp_path, env)
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if "outside-sign" in line)
    assert "zb-outside-plugin 0.3" in line

    from conftest import SMOKE_SUITE

    suite = tmp_path / "s.toml"
    suite.write_text(
        SMOKE_SUITE.replace('plugins = ["zb_outside_plugin"]', "")
        .replace('tasks = ["cls", "cls2"]', 'tasks = ["cls"]')
        .replace('"none", "none2"', '"none"')
    )
    run = cli(
        ["run", str(suite), "--workdir", str(tmp_path / "wd"), "--out", str(tmp_path / "lb"), "--quiet"],
        tmp_path,
        env,
    )
    assert run.returncode == 0, run.stderr
    assert "| sign " in (tmp_path / "lb" / "smoke.md").read_text()

    hidden = cli(["list", "attacks"], tmp_path, {**env, "ZEPAD_BENCH_PLUGINS": ""})
    assert "outside-sign" not in hidden.stdout
