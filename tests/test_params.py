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
    with pytest.raises(ValueError, match="epochs must be int, got str '3'"):
        check(ssl, {"method": "simclr", "epochs": "3"})
    check(ssl, {"method": "simclr", "temperature": 0.2})  # its **extra recipe parameters are declared
    with pytest.raises(TypeError, match="unknown parameter 'distrib' \\(did you mean 'distribution'\\?\\)"):
        check(noise, {"distrib": "sign"})


def test_resolved_params_fill_every_default():
    uap = REGISTRY.get("attacks", "uap")
    assert resolved(uap, {}) == resolved(uap, {"clusters": 10})
    assert resolved(uap, {"clusters": 5})["max_passes"] == 10
