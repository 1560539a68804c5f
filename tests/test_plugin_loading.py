"""A plugin that cannot load is a one-line problem: named by every command, skipped, never fatal to the rest.

The broken plugins are real installed distributions (a package plus a dist-info with a `zepad_bench`
entry point, found by importlib.metadata on PYTHONPATH), loaded by the real registry.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import OUTSIDE, SMOKE_SUITE, run_cli

from zepad_bench.errors import SuiteError, UserError

GOOD = '''"""An outside plugin whose loading breaks in the tests."""

import torch

from zepad_bench import Attack, hookimpl


class BrokenSign(Attack):
    """A fixed +eps shift."""

    name = "broken-sign"

    def perturb(self, x):
        return (x + self.eps).clamp(0, 1)


@hookimpl
def register_attacks(register):
    register(BrokenSign)
'''
# each breakage: (the line that breaks it, inserted before this line of GOOD, the error's first line)
BREAKAGES = {
    "syntax": ("def oops(:", "class BrokenSign(Attack):", "SyntaxError: "),
    "import": ("import zb_missing_dependency", "class BrokenSign(Attack):", "ModuleNotFoundError: No module"),
    "hook": (
        '    raise RuntimeError("registry exploded\\nsecond line of the message")',
        "    register(BrokenSign)",
        "RuntimeError: registry exploded",
    ),
}


def broken_source(kind: str) -> tuple[str, int]:
    """The plugin's source with ``kind`` of breakage, and the 1-based line that breaks it."""
    bad, before, _ = BREAKAGES[kind]
    lines = GOOD.splitlines()
    at = lines.index(before)
    lines.insert(at, bad)
    return "\n".join(lines) + "\n", at + 1


def install_broken(site: Path, kind: str, package: str = "zb_broken") -> tuple[Path, int]:
    """Lay out an installed distribution ``zb-broken 0.1`` whose entry point is ``package.plugin``."""
    source, line = broken_source(kind)
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text("")
    plugin = site / package / "plugin.py"
    plugin.write_text(source)
    info = site / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zb-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[zepad_bench]\nbroken = {package}.plugin\n")
    return plugin, line


def cli(args: list[str], cwd: Path, site: Path, cache: Path) -> subprocess.CompletedProcess:
    """``zepad-bench ARGS`` in a new process that sees the distributions installed under ``site``."""
    return run_cli(
        args, cwd, {"PYTHONPATH": os.pathsep.join([str(site), str(OUTSIDE)]), "ZEPAD_BENCH_CACHE": str(cache)}
    )


def named_once(stderr: str, plugin: Path, line: int, error: str) -> None:
    """The broken plugin is told in exactly one stderr line: distribution, entry point, file:line, error."""
    lines = [text for text in stderr.splitlines() if "zb-broken" in text]
    assert len(lines) == 1, stderr
    assert "zb-broken 0.1" in lines[0] and "entry point broken = zb_broken.plugin" in lines[0]
    assert f"{plugin}:{line}: {error}" in lines[0], lines[0]
    assert "Traceback" not in stderr and "<plugin>" not in stderr and "second line" not in stderr


@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_list_names_a_broken_plugin_in_one_line_and_lists_the_rest(tmp_path, kind):
    plugin, line = install_broken(tmp_path / "site", kind)
    done = cli(["list", "attacks"], tmp_path, tmp_path / "site", tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    named_once(done.stderr, plugin, line, BREAKAGES[kind][2])
    assert done.stderr.count("\n") == 1
    assert "uapgd" in done.stdout and "broken-sign" not in done.stdout


def test_every_command_works_around_a_broken_plugin_and_a_suite_using_it_is_invalid(tmp_path):
    site, cache = tmp_path / "site", tmp_path / "cache"
    plugin, line = install_broken(site, "syntax")
    suite = tmp_path / "smoke.toml"
    suite.write_text(
        SMOKE_SUITE.replace('tasks = ["cls", "cls2"]', 'tasks = ["cls"]').replace('"none", "none2"', '"none"')
    )
    error = BREAKAGES["syntax"][2]

    for args in (
        ["show", "uapgd"],
        ["validate", str(suite)],
        ["check-plugin", "outside-sign", "--suite", str(suite)],
    ):
        done = cli(args, tmp_path, site, cache)
        assert done.returncode == 0, (args, done.stderr)
        named_once(done.stderr, plugin, line, error)

    wd, out = tmp_path / "wd", tmp_path / "lb"
    done = cli(["run", str(suite), "--workdir", str(wd), "--out", str(out), "--quiet"], tmp_path, site, cache)
    assert done.returncode == 0, done.stderr
    named_once(done.stderr, plugin, line, error)
    assert "| sign " in (out / "smoke.md").read_text()

    uses_it = tmp_path / "uses_it.toml"
    uses_it.write_text(suite.read_text().replace('plugin = "outside-sign"', 'plugin = "broken-sign"'))
    done = cli(["validate", str(uses_it)], tmp_path, site, cache)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    invalid = next(text for text in done.stderr.splitlines() if "attacks.sign.plugin" in text)
    assert "unknown attack plugin 'broken-sign'" in invalid
    assert (
        f"zb-broken 0.1 (entry point broken = zb_broken.plugin) cannot load: {plugin}:{line}: {error}"
        in invalid
    )


def test_installing_what_a_broken_plugin_lacks_is_seen_at_once(tmp_path):
    """A manifest with a broken plugin is not cached: `list` notices the fix without any file of the
    plugin changing."""
    site, cache = tmp_path / "site", tmp_path / "cache"
    install_broken(site, "import")
    first = cli(["list", "attacks"], tmp_path, site, cache)
    assert "zb-broken" in first.stderr and "broken-sign" not in first.stdout
    (site / "zb_missing_dependency.py").write_text("")
    second = cli(["list", "attacks"], tmp_path, site, cache)
    assert second.returncode == 0 and second.stderr == ""
    assert "broken-sign" in second.stdout and "zb-broken 0.1" in second.stdout


def test_the_registry_skips_a_broken_distribution_and_names_it_when_asked_for_its_plugin(
    tmp_path, monkeypatch
):
    plugin, line = install_broken(tmp_path / "site", "hook", package="zb_broken_hook")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    from zepad_bench.registry import load_registry

    registry = load_registry()
    assert "uapgd" in registry.attacks and "broken-sign" not in registry.attacks
    (failure,) = registry.broken
    assert (failure.provider, failure.location) == ("zb-broken 0.1", f"{plugin}:{line}")
    assert failure.error == "RuntimeError: registry exploded"
    with pytest.raises(
        UserError, match=r"unknown attack plugin 'broken-sign'.*zb-broken 0\.1.*registry exploded"
    ):
        registry.get("attacks", "broken-sign")


@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_a_broken_suite_plugin_module_makes_that_suite_invalid_naming_file_and_line(tmp_path, kind):
    module = f"zb_adhoc_{kind}"
    source, line = broken_source(kind)
    (tmp_path / f"{module}.py").write_text(source)
    suite = tmp_path / "s.toml"
    suite.write_text(
        SMOKE_SUITE.replace('plugins = ["zb_outside_plugin"]', f'plugins = ["zb_outside_plugin", "{module}"]')
    )
    from zepad_bench.registry import load_registry
    from zepad_bench.suite import load_suite

    with pytest.raises(SuiteError) as info:
        load_suite(suite, load_registry())
    assert info.value.key == "suite.plugins"
    message = str(info.value)
    assert f"{tmp_path / module}.py:{line}: {BREAKAGES[kind][2]}" in message and "\n" not in message
    sys.modules.pop(module, None)


def test_code_versions_name_the_real_file_of_a_module_that_does_not_compile(tmp_path, monkeypatch):
    """A plugin's lazily imported helper with a syntax error: its code version (the cache key) names the
    real file and line, not "<plugin>"."""
    package = tmp_path / "zb_lazy_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text("def run():\n    from zb_lazy_pkg import helper\n    return helper\n")
    (package / "helper.py").write_text("x = 1\ny = (\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from zepad_bench.code_version import files_stamp, source_hash

    assert "helper.py" in {
        Path(p).name for p, _, _ in files_stamp("zb_lazy_pkg.plugin")
    }  # found, not compiled
    with pytest.raises(UserError, match=rf"^{package / 'helper.py'}:2: SyntaxError: "):
        source_hash("zb_lazy_pkg.plugin")
