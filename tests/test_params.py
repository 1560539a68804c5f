"""Plugin options: one declaration read by validation, cache keys, `list --params`/`show` and the docs."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import annotated_types
import pytest
from click.testing import CliRunner
from conftest import SMOKE_SUITE
from hypothesis import example, given, settings
from hypothesis import strategies as st

from zepad_bench import load_registry
from zepad_bench.cli import cli
from zepad_bench.errors import SuiteError
from zepad_bench.params import ParamError, describe, options_model, resolved, validate
from zepad_bench.registry import KINDS
from zepad_bench.stages import StageGraph
from zepad_bench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = load_registry()
BUILT_INS = [
    (kind, name, cls)
    for kind in KINDS
    for name, cls in sorted(REGISTRY.kind(kind).items())
    if REGISTRY.provider(kind, name).name == "zepad-bench"
]
REQUIRED = {
    "attack": "ProjectedGradientDescent",
    "method": "simclr",
    "path": "x.ckpt",
    "model": "m",
    "pretrained": False,
}
"""Values for the built-ins' required parameters (validation alone: nothing is constructed)."""


def test_every_built_in_parameter_has_help():
    missing = [
        f"{name}.{p['name']}" for _, name, cls in BUILT_INS for p in describe(cls) if not p["help"].strip()
    ]
    assert missing == []


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
            shown[(kind, plugin)].add(line.split(":")[0].strip().split(" ")[0])
    for kind, name, cls in BUILT_INS:
        model = options_model(cls)
        extra = {"…"} if model.model_config.get("extra") == "allow" else set()
        assert shown[(kind, name)] == set(model.model_fields) | extra


def test_show_prints_allowed_values_ranges_defaults_presets_and_help():
    def show(name: str) -> str:
        result = CliRunner().invoke(cli, ["show", name])
        assert result.exit_code == 0, result.output
        return result.output

    assert 'distribution: "sign" | "uniform" = "sign" — ±eps at every pixel' in show("random-noise")
    assert "clusters: int ≥ 2 = 10 — k-means pseudo-classes" in show("uap")
    zepad = show("zepad")
    assert 'ensemble: "rfdm" | "average" | "entropy" = "rfdm" — ' in zepad
    assert 'selection: "last" | "val" = "last"' in zepad and 'lf_on: "logits" | "features"' in zepad
    assert 'fuse_on: "logits" | "probabilities" | unset = by protocol (corrected: "probabilities", ' in zepad
    assert 'protocol: "corrected" | "authors" = "corrected"' in zepad
    assert 'eps: float > 0, ≤ 1 = "8/255" — ' in show("pgd-at")  # budgets as a suite writes them
    assert "… (other names): recipe parameters of the method" in show("encoders:ssl")
    assert ":class:" not in zepad and "``" not in zepad  # docstring markup removed


def test_list_descriptions_are_whole_sentences_without_markup():
    out = CliRunner().invoke(cli, ["list"]).output
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert lines["advencoder"].endswith(
        "a universal perturbation from a generator trained against the encoder's features."
    )
    assert lines["mart"].endswith("(mart_loss), β = 6.")  # "see :func:`mart_loss`" was cut and marked up
    assert all("``" not in line and ":func:" not in line for line in lines.values())


def _bounded_fields() -> list[tuple[str, type, str, str, float]]:
    """(plugin, class, field, symbol, bound) for every lower bound of a built-in numeric option."""
    out = []
    for _, name, cls in BUILT_INS:
        for field_name, field in options_model(cls).model_fields.items():
            for item in field.metadata:
                for attr, symbol in (("ge", "≥"), ("gt", ">")):
                    if isinstance(item, getattr(annotated_types, attr.capitalize())):
                        out.append((name, cls, field_name, symbol, getattr(item, attr)))
    return out


BOUNDED = _bounded_fields()


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(BOUNDED), st.integers(min_value=0, max_value=10**6))
def test_an_out_of_range_value_is_one_line_naming_the_rule_it_breaks(case, below):
    plugin, cls, field, symbol, bound = case
    value = bound - 1 - below if symbol == "≥" else bound - below
    params = {k: v for k, v in REQUIRED.items() if k in options_model(cls).model_fields}
    if isinstance(options_model(cls).model_fields[field].default, float):
        value = float(value)
    with pytest.raises(ParamError) as info:
        validate(cls, {**params, field: value})
    message = str(info.value)
    assert (
        "\n" not in message
        and message.startswith(f"{field} must be ")
        and message.endswith(f"(got {value!r})")
    )
    rule = message[len(f"{field} must be ") : -len(f" (got {value!r})")]
    assert rule in (f"{symbol} {bound}", "positive"), message  # the rule broken, not a list of rules


@settings(max_examples=40, deadline=None)
@example(("art", REGISTRY.get("attacks", "art"), "attack"))  # a required name misspelled: not "missing"
@given(
    st.sampled_from(
        [
            (name, cls, f)
            for _, name, cls in BUILT_INS
            if options_model(cls).model_config.get("extra") != "allow"  # ssl: other names are its recipe's
            for f in options_model(cls).model_fields
            if len(f) > 3
        ]
    )
)
def test_a_misspelled_name_says_which_was_meant(case):
    _, cls, field = case
    params = {k: v for k, v in REQUIRED.items() if k in options_model(cls).model_fields and k != field}
    typo = field[:-1] + ("x" if field[-1] != "x" else "y")
    with pytest.raises(ParamError, match=f"^unknown parameter {typo!r} \\(did you mean {field!r}\\?\\)$"):
        validate(cls, {**params, typo: 1})


def test_a_suite_names_the_table_and_the_one_rule_broken(tmp_path):
    text = SMOKE_SUITE.replace(
        '[defenses.none2]\nplugin = "none"', '[defenses.none2]\nplugin = "zepad"\neps = -0.1'
    )
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(SuiteError) as info:
        load_suite(tmp_path / "s.toml", REGISTRY)
    assert str(info.value).endswith("defenses.none2: (plugin 'zepad') eps must be positive (got -0.1)")
    (tmp_path / "s.toml").write_text(text.replace("eps = -0.1", 'ensemble = "mean"'))
    with pytest.raises(
        SuiteError, match=r"ensemble must be one of \"rfdm\", \"average\", \"entropy\" \(got 'mean'\)$"
    ):
        load_suite(tmp_path / "s.toml", REGISTRY)
    (tmp_path / "s.toml").write_text(
        SMOKE_SUITE.replace('plugin = "none"\n\n[defenses.none2]', 'plugin = "zepda"\n\n[defenses.none2]')
    )
    with pytest.raises(
        SuiteError, match=r"defenses\.none\.plugin: unknown defense plugin 'zepda' \(did you mean 'zepad'\?\)"
    ):
        load_suite(tmp_path / "s.toml", REGISTRY)


def test_plugin_name_typos_get_a_suggestion_from_show_and_check_plugin():
    for command in (["show", "zepda"], ["check-plugin", "advencodr"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code != 0
        assert "did you mean" in str(result.exception), command


def test_protocol_presets_resolve_through_the_options():
    zepad = REGISTRY.get("defenses", "zepad")
    authors = {"freeze_bn": False, "pgd_ce_term": True, "pgd_input": "raw", "fuse_on": "logits"}
    assert resolved(zepad, {"protocol": "authors"}) == resolved(zepad, {"protocol": "authors", **authors})
    assert {k: resolved(zepad, {"protocol": "authors"})[k] for k in authors} == authors
    assert resolved(zepad, {"protocol": "authors", "freeze_bn": True})["freeze_bn"] is True  # explicit wins
    assert resolved(zepad, {})["fuse_on"] == "probabilities"
    gen_af = REGISTRY.get("defenses", "gen-af")
    assert validate(gen_af, {"protocol": "authors"}).finetune_count == "int"
    assert REGISTRY.get("defenses", "gen-af")(protocol="authors").config.freeze_bn is False


NEW_FORM = '''
import torch
from pydantic import Field
from zepad_bench import Attack, hookimpl


class Scaled(Attack):
    """A universal ±scale·eps checkerboard."""

    name = "scaled"

    class Options(Attack.Options):
        scale: float = Field(1.0, gt=0, le=1, description="share of the budget used")

    def fit(self, encoders, images):
        super().fit(encoders, images)
        n = next(iter(images)).shape[-1]
        grid = torch.arange(n)
        self.delta = ((grid[:, None] + grid[None, :]) % 2 * 2 - 1).float().expand(1, 3, -1, -1)
        self.delta = self.delta * self.eps * self.options.scale

    def perturb(self, x):
        return (x + self.delta.to(x.device)).clamp(0, 1)


@hookimpl
def register_attacks(register):
    register(Scaled)
'''


@pytest.mark.parametrize("declaration", ["new", "old"])
def test_a_changed_default_changes_the_attack_key_and_an_explicit_default_does_not(
    declaration, tmp_path, monkeypatch
):
    monkeypatch.syspath_prepend(str(tmp_path))
    old_form = NEW_FORM.replace(
        """    class Options(Attack.Options):
        scale: float = Field(1.0, gt=0, le=1, description="share of the budget used")
""",
        """    param_help = {"scale": "share of the budget used"}

    def __init__(self, eps, scale: float = 1.0):
        super().__init__(eps)
        self.scale = scale
""",
    ).replace("self.options.scale", "self.scale")
    source = NEW_FORM if declaration == "new" else old_form

    modules: dict[str, str] = {}

    def key(module_text: str, table: str) -> tuple[dict, str]:
        name = modules.setdefault(module_text, f"zb_scaled_{declaration}_{len(modules)}")
        (tmp_path / f"{name}.py").write_text(module_text)
        suite = SMOKE_SUITE.replace(
            'plugins = ["zb_outside_plugin"]', f'plugins = ["zb_outside_plugin", "{name}"]'
        )
        suite = suite.replace(
            '[attacks.sign]\nplugin = "outside-sign"', f'[attacks.sign]\nplugin = "scaled"{table}'
        )
        (tmp_path / "s.toml").write_text(suite)
        loaded = load_suite(tmp_path / "s.toml", load_registry())
        stage = StageGraph(loaded, loaded.registry).attack(loaded.cells()[0])
        return stage.material["params"], stage.key

    params, implicit = key(source, "")
    assert params == {"scale": 1.0}
    assert key(source, "\nscale = 1.0")[1] == implicit  # the default written out: the same key
    changed = source.replace("1.0, gt=0", "0.5, gt=0").replace("scale: float = 1.0", "scale: float = 0.5")
    assert key(changed, "")[0] == {"scale": 0.5} and key(changed, "")[1] != implicit


def test_old_form_outside_plugins_still_validate_key_and_list():
    outside = load_registry(["zb_outside_plugin"])
    random_init, stripes = (
        outside.get("encoders", "outside-random"),
        outside.get("datasets", "outside-stripes"),
    )
    assert [p["name"] for p in describe(random_init)] == ["width", "arch"]
    assert describe(random_init)[0]["help"] == "channel width of the backbone"  # from param_help
    assert (
        resolved(random_init, {}) == {"arch": "small-cnn", "width": 8} == resolved(random_init, {"width": 8})
    )
    with pytest.raises(ParamError, match=r"^width must be an integer \(got str '8'\)$"):
        validate(random_init, {"width": "8"})
    with pytest.raises(
        ParamError,
        match=r"^unknown parameter 'm' \(did you mean 'n'\?\)$|^unknown parameter 'm'; accepted: n$",
    ):
        validate(stripes, {"m": 3})
    assert random_init(width=4).width == 4  # the plugin's own __init__ runs unchanged


def test_no_plugin_constructor_is_wrapped_and_params_does_not_import_the_contract():
    for _, _, cls in BUILT_INS:
        assert not hasattr(cls.__init__, "__wrapped__"), cls
    tree = ast.parse((ROOT / "zepad_bench" / "params.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {
        m for m in imported if m and m.startswith("zepad_bench")
    }  # interfaces imports params, not back


def test_the_parameter_reference_in_the_docs_is_generated_from_the_declarations(tmp_path):
    env = {**os.environ, "ZEPAD_BENCH_PLUGINS": "", "ZEPAD_BENCH_CACHE": str(tmp_path)}
    code = "from zepad_bench.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "list", "--params", "--markdown"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / "docs" / "parameters.md").read_text(), (
        "docs/parameters.md is out of date: run "
        "ZEPAD_BENCH_PLUGINS= zepad-bench list --params --markdown > docs/parameters.md"
    )


def test_a_warm_list_reads_its_manifest_without_importing_torch(tmp_path):
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
