"""Declared parameters: one declaration read by validation, cache keys, `list --params` and `show`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from zepad_bench import load_registry
from zepad_bench.cli import cli
from zepad_bench.params import check, declaration, resolved
from zepad_bench.registry import KINDS

REGISTRY = load_registry()


def test_list_params_shows_every_built_in_parameter():
    out = CliRunner().invoke(cli, ["list", "--params"]).output
    shown: dict[tuple[str, str], set[str]] = {}
    kind = plugin = ""
    for line in out.splitlines():
        if not line.startswith(" "):
            kind = line.rstrip(":")
        elif not line.startswith("   "):
            plugin = line.split()[0]
            shown[(kind, plugin)] = set()
        elif ": " in line and not line.strip().startswith("methods:"):
            shown[(kind, plugin)].add(line.split(":")[0].strip())
    for kind in KINDS:
        for name, cls in REGISTRY.kind(kind).items():
            assert shown[(kind, name)] == set(declaration(cls).params) | (
                {"**extra"} if declaration(cls).extra else set()
            )


def test_show_prints_types_defaults_choices_and_help():
    result = CliRunner().invoke(cli, ["show", "random-noise"])
    assert result.exit_code == 0
    assert "distribution: str (default 'sign'; one of 'sign', 'uniform') — ±eps signs" in result.output
    assert "method: str (required; one of" in CliRunner().invoke(cli, ["show", "encoders:ssl"]).output


def test_the_declaration_checks_types_choices_and_required_names():
    noise, ssl = REGISTRY.get("attacks", "random-noise"), REGISTRY.get("encoders", "ssl")
    with pytest.raises(ValueError, match="distribution must be one of 'sign', 'uniform', got 'gauss'"):
        check(noise, {"distribution": "gauss"})
    with pytest.raises(TypeError, match="missing required parameter 'method'"):
        check(ssl, {})
    with pytest.raises(ValueError, match=r"epochs must be int \| None, got str '3'"):
        check(ssl, {"method": "simclr", "epochs": "3"})
    check(ssl, {"method": "simclr", "temperature": 0.2})  # its **extra recipe parameters are declared
    with pytest.raises(TypeError, match="unknown parameter 'distrib' \\(did you mean 'distribution'\\?\\)"):
        check(noise, {"distrib": "sign"})


def test_resolved_params_fill_every_default():
    uap = REGISTRY.get("attacks", "uap")
    assert resolved(uap, {}) == resolved(uap, {"clusters": 10})
    assert resolved(uap, {"clusters": 5})["max_passes"] == 10


def test_a_warm_list_reads_its_manifest_without_importing_torch(tmp_path):
    import os
    import subprocess
    import sys

    code = (
        "import sys; from zepad_bench.cli import cli; cli.main(['list', '--params'], standalone_mode=False); "
        "print('torch' in sys.modules)"
    )
    env = {**os.environ, "ZEPAD_BENCH_CACHE": str(tmp_path)}
    cold, warm = (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
        for _ in range(2)
    )
    assert cold.stdout.strip().endswith("True") and warm.stdout.strip().endswith("False")
    assert cold.stdout.rsplit("\n", 2)[0] == warm.stdout.rsplit("\n", 2)[0]  # the same listing


def test_the_manifest_stamp_sees_any_edit_of_a_plugin_source(tmp_path, monkeypatch):
    from zepad_bench.code_version import files_stamp, source_hash

    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "zb_stamped.py"
    module.write_text('"""Doc."""\nfrom zepad_bench.errors import UserError\n')
    before, code = files_stamp("zb_stamped"), source_hash("zb_stamped")
    assert any(path.endswith("zepad_bench/errors.py") for path, _, _ in before)  # imports reached
    module.write_text('"""Reworded doc."""\nfrom zepad_bench.errors import UserError\n')
    assert files_stamp("zb_stamped") != before  # the listing shows docs: a new manifest
    assert source_hash("zb_stamped") == code  # results do not depend on docs: same cache keys
