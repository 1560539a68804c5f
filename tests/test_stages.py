"""Stage keys: no stale result (defaults, plugin code, checkpoints), --force targets, bad artifacts."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import SMOKE_SUITE, cell_stages, computed_stages

from zepad_bench import load_registry
from zepad_bench.errors import SuiteError, UserError
from zepad_bench.runner import Runner
from zepad_bench.stages import ForceSpec
from zepad_bench.suite import load_suite

PLUGIN = '''
import torch
from zepad_bench import Attack, hookimpl


class EditSign(Attack):
    """A universal ±scale·eps checkerboard."""

    name = "edit-sign"

    def __init__(self, eps, scale: float = 1.0):
        super().__init__(eps)
        self.scale = scale

    def fit(self, encoders, images):
        super().fit(encoders, images)
        n = next(iter(images)).shape[-1]
        grid = torch.arange(n)
        self.delta = ((grid[:, None] + grid[None, :]) % 2 * 2 - 1).float().expand(1, 3, -1, -1)
        self.delta = self.delta * self.eps * self.scale

    def perturb(self, x):
        return (x + self.delta.to(x.device)).clamp(0, 1)


@hookimpl
def register_attacks(register):
    register(EditSign)
'''


@pytest.fixture
def edit_suite(tmp_path, monkeypatch):
    """The smoke suite (one cell) attacking with ``edit-sign`` from a module written into tmp_path."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "zb_edit_plugin.py").write_text(PLUGIN)
    text = SMOKE_SUITE.replace(
        'plugins = ["zb_outside_plugin"]', 'plugins = ["zb_outside_plugin", "zb_edit_plugin"]'
    )
    text = text.replace('[attacks.sign]\nplugin = "outside-sign"', '[attacks.sign]\nplugin = "edit-sign"')
    path = tmp_path / "edit.toml"
    path.write_text(text)
    yield path
    sys.modules.pop("zb_edit_plugin", None)


def load(path, **axes):
    sys.modules.pop("zb_edit_plugin", None)  # a fresh process re-reads the module
    return load_suite(path, load_registry()).with_axes(**{"defenses": ["none"], "tasks": ["cls"], **axes})


def run(suite, workdir, force=False):
    runner = Runner(suite, suite.registry, workdir, device="cpu", force=force)
    pending = runner.pending(suite.cells())
    for cell in pending:
        runner.run_cell(cell)
    return runner, len(pending)


def computed(runner):
    return {stage: n for stage, n in runner.computed.items() if n}


def reads(runner) -> list:
    """Every stage the suite's (one) cell reads, as the graph derives it after its run."""
    (cell,) = runner.suite.cells()
    (row,) = runner.store.rows(keys=[runner.cell_key(cell)])
    return cell_stages(runner, cell, row)


def keys(stages) -> set[tuple[str, str]]:
    return {(s.kind, s.key) for s in stages}


def test_an_explicit_default_and_the_implicit_one_share_every_key(edit_suite, tmp_path):
    _, done = run(load(edit_suite), tmp_path / "wd")
    edit_suite.write_text(
        edit_suite.read_text().replace('plugin = "edit-sign"', 'plugin = "edit-sign"\nscale = 1.0')
    )
    again, pending = run(load(edit_suite), tmp_path / "wd")
    assert done == 1 and pending == 0 and computed(again) == {}


def test_editing_a_plugin_module_recomputes_exactly_its_stages(edit_suite, tmp_path):
    first, _ = run(load(edit_suite), tmp_path / "wd")
    before = keys(reads(first))
    assert sorted(computed_stages(first)) == sorted(before)  # cold: every stage the cell reads, once
    module = tmp_path / "zb_edit_plugin.py"
    module.write_text(PLUGIN.replace("scale: float = 1.0", "scale: float = 0.5"))  # a changed default
    second, pending = run(load(edit_suite), tmp_path / "wd")
    changed = keys(reads(second)) - before
    # the attack, its attacked images, their features and the cell; not data, encoders, tuning or heads
    assert pending == 1 and sorted(computed_stages(second)) == sorted(changed)
    assert {kind for kind, _ in changed} == {"attack", "adversarial", "features"}
    module.write_text(PLUGIN.replace("self.scale = scale", "self.scale = scale * 0.5"))  # code, not params
    third, pending = run(load(edit_suite), tmp_path / "wd")
    assert pending == 1 and {kind for kind, _ in computed_stages(third)} == {
        "attack",
        "adversarial",
        "features",
    }
    module.write_text(PLUGIN.replace('"""A universal ±scale·eps checkerboard."""', '"""Reworded."""'))
    _, pending = run(load(edit_suite), tmp_path / "wd")
    assert pending == 0  # documentation is not code: the first run's result stands


def test_a_replaced_unpinned_checkpoint_recomputes_its_dependents_only(tmp_path):
    from zepad_bench.nn.checkpoints import save_solo_learn
    from zepad_bench.nn.encoder import Encoder

    ckpt = tmp_path / "enc.ckpt"
    text = SMOKE_SUITE.replace(
        '[encoders.rand2]\nplugin = "outside-random"\nwidth = 4',
        f'[encoders.rand2]\nplugin = "solo-learn"\npath = "{ckpt}"\narch = "small-cnn"\n'
        "arch_params = { width = 4 }",
    )
    (tmp_path / "s.toml").write_text(text)
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        save_solo_learn(ckpt, Encoder("small-cnn", {"width": 4}).state_dict(), {"seed": seed})
        suite = load_suite(tmp_path / "s.toml", load_registry(["zb_outside_plugin"]))
        suite = suite.with_axes(defenses=["none"], tasks=["cls"])
        runs.append(run(suite, tmp_path / "wd"))
    (first, _), (second, pending) = runs
    changed = keys(reads(second)) - keys(reads(first))
    assert pending == 1 and sorted(computed_stages(second)) == sorted(changed)
    # the auxiliary feeds the defense (a branch), not the semi-black-box attack
    assert {kind for kind, _ in changed} == {"encoder", "defense", "features", "head"}


def test_force_names_a_plugin_or_a_stage(edit_suite, tmp_path):
    run(load(edit_suite), tmp_path / "wd")
    for force in (["attack:edit-sign"], "defense", "head", True):
        forced, pending = run(load(edit_suite), tmp_path / "wd", force=force)
        spec = forced.force
        # a forced stage and every stage that reads it, nothing else, and the cell
        downstream = [s for s in reads(forced) if any(spec.matches(t.kind, t.plugin) for t in s.closure())]
        assert pending == 1 and sorted(computed_stages(forced)) == sorted(keys(downstream)), force
    with pytest.raises(UserError, match="unknown stage 'atack'"):
        run(load(edit_suite), tmp_path / "wd", force="atack:edit-sign")


def test_force_targets_must_name_a_stage_or_a_plugin():
    registry = load_registry()
    ForceSpec.parse("attack:uap,defense").check_known(registry)
    with pytest.raises(UserError, match="--force 'uapp': no stage or plugin of that name"):
        ForceSpec.parse(["uapp"]).check_known(registry)
    assert ForceSpec.parse(True).matches("head", None) and not ForceSpec.parse(()).matches("attack", "uap")


def test_an_undecodable_cached_attack_is_recomputed(edit_suite, tmp_path):
    suite = load(edit_suite)
    first, _ = run(suite, tmp_path / "wd")
    _, key = first.attack(suite.cells()[0])
    first.cache.path("attack", key).write_bytes(b"not a torch file")
    again = Runner(suite, suite.registry, tmp_path / "wd", device="cpu")
    again.attack(suite.cells()[0])
    assert again.computed["attack"] == 1


def test_a_state_that_does_not_survive_the_cache_is_one_line_naming_state_dict(edit_suite, tmp_path):
    module = tmp_path / "zb_edit_plugin.py"
    module.write_text(
        PLUGIN.replace(
            "        self.delta = self.delta * self.eps * self.scale",
            "        self.delta_list = [self.delta * self.eps * self.scale]\n        del self.delta",
        ).replace("x + self.delta.to(x.device)", "x + self.delta_list[0].to(x.device)")
    )
    with pytest.raises(UserError, match=r"attack plugin 'edit-sign'.*state_dict\(\).*AttributeError"):
        run(load(edit_suite), tmp_path / "wd")


def test_an_outside_attack_without_super_init_still_rejects_a_misspelled_parameter(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "zb_nosuper_plugin.py").write_text(
        PLUGIN.replace("EditSign", "NoSuper")
        .replace('"edit-sign"', '"no-super"')
        .replace(
            "    def __init__(self, eps, scale: float = 1.0):\n        super().__init__(eps)\n",
            "    def __init__(self, eps, steps: int = 1, **params):\n        self.eps = eps\n",
        )
    )
    text = SMOKE_SUITE.replace(
        'plugins = ["zb_outside_plugin"]', 'plugins = ["zb_outside_plugin", "zb_nosuper_plugin"]'
    )
    text = text.replace(
        '[attacks.sign]\nplugin = "outside-sign"', '[attacks.sign]\nplugin = "no-super"\nstepz = 2'
    )
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(
        SuiteError, match=r"attacks\.sign: .*unknown parameter 'stepz' \(did you mean 'steps'\?\)"
    ):
        load_suite(tmp_path / "s.toml", load_registry())


def test_zepad_tunings_depend_on_the_code_of_their_generator_attack(edit_suite, tmp_path):
    text = edit_suite.read_text().replace(
        '[defenses.none2]\nplugin = "none"',
        '[defenses.none2]\nplugin = "zepad"\nadversary = "generator"\ngenerator = "edit-sign"',
    )
    edit_suite.write_text(text)
    cell = load(edit_suite, defenses=["none2"]).cells()[0]
    keys = []
    for source in (PLUGIN, PLUGIN.replace("self.scale = scale", "self.scale = 2 * scale")):
        (tmp_path / "zb_edit_plugin.py").write_text(source)
        suite = load(edit_suite, defenses=["none2"])
        keys.append(Runner(suite, suite.registry, tmp_path / "wd").graph.defense(cell).key)
    assert keys[0] != keys[1]
