"""Runner: stage cache (fit once, reuse), resume, determinism, the rows it stores."""

from __future__ import annotations

import pytest
from conftest import SMOKE_SUITE, cell_stages, computed_stages, recomputed_classification

from zepad_bench import load_registry
from zepad_bench.runner import Runner
from zepad_bench.suite import load_suite


def run_all(suite, workdir, force=False):
    runner = Runner(suite, suite.registry, workdir, device="cpu", force=force)
    rows = [runner.run_cell(c) for c in runner.pending(suite.cells())]
    return runner, rows


def load(path):
    return load_suite(path, load_registry(["zb_outside_plugin"]))


def test_each_stage_is_computed_once_and_reused(smoke_suite, tmp_path):
    suite = load(smoke_suite)
    runner, rows = run_all(suite, tmp_path / "wd")
    cells, graph = suite.cells(), runner.graph
    assert len(rows) == len(cells)
    log = computed_stages(runner)
    reads = {(s.kind, s.key) for cell, row in zip(cells, rows) for s in cell_stages(runner, cell, row)}
    assert sorted(log) == sorted(reads)  # a cold run computes every stage its cells read, each once
    # one surrogate → one attack fit, shared by every defense and task; none and none2 resolve alike,
    # so content addressing gives them one tuning, reused by both tasks (persistent robustness)
    assert len({graph.attack(c).key for c in cells}) == len({graph.defense(c).key for c in cells}) == 1

    again, rows_again = run_all(suite, tmp_path / "wd")
    assert rows_again == [] and sum(again.computed.values()) == 0
    assert {r["key"] for r in again.store.rows(suite="smoke")} == {r["key"] for r in rows}


def test_interrupted_run_resumes_from_cached_stages(smoke_suite, tmp_path):
    suite = load(smoke_suite)
    first = Runner(suite, suite.registry, tmp_path / "wd", device="cpu")
    first.run_cell(suite.cells()[0])  # then the process "dies"
    resumed, rows = run_all(suite, tmp_path / "wd")
    assert len(rows) == 3
    assert resumed.computed["attack"] == 0 and resumed.reused["attack"] == 1
    assert resumed.computed["defense"] == 0 and resumed.reused["defense"] == 1


def test_white_box_fits_on_victim_and_auxiliaries(smoke_suite, tmp_path):
    suite = load(smoke_suite).with_axes(scenarios=["white-box"], defenses=["none"], tasks=["cls"])
    runner, rows = run_all(suite, tmp_path / "wd")
    attack, _ = runner.attack(suite.cells()[0])
    assert [e.arch_params["width"] for e in attack.encoders] == [8, 4]
    assert rows[0]["scenario"] == "white-box"


def test_same_suite_and_seed_give_identical_numbers(smoke_suite, tmp_path):
    suite = load(smoke_suite)
    _, a = run_all(suite, tmp_path / "a")
    _, b = run_all(suite, tmp_path / "b")
    assert [r["metrics"] for r in a] == [r["metrics"] for r in b]
    _, forced = run_all(suite, tmp_path / "a", force=True)
    assert [r["metrics"] for r in forced] == [r["metrics"] for r in a]


def test_rows_record_config_versions_code_timings_and_metric_descriptions(smoke_suite, tmp_path):
    smoke_suite.write_text(smoke_suite.read_text().replace('eps = "16/255"', 'eps = "48/255"'))  # RA < BA
    suite = load(smoke_suite)
    runner, rows = run_all(suite, tmp_path / "wd")
    row = rows[0]
    assert row["status"] == "ok" and row["versions"]["defense:none"].startswith("zepad-bench")
    assert row["versions"]["attack:outside-sign"] == "zb_outside_plugin"
    assert row["code"]["attack:outside-sign"].startswith("zb_outside_plugin src:")
    assert {
        "dataset:outside-stripes",
        "encoder:outside-random",
        "defense:none",
        "task:classification",
    } <= set(row["code"])
    assert set(row["timings"]) >= {"attack_fit", "defense_fit", "task", "cell"}
    cells = {runner.cell_key(c): c for c in suite.cells()}
    for r in rows:  # each metric is what the stored features and heads give, counted again
        again = recomputed_classification(runner, cells[r["key"]], r)
        assert {m: r["metrics"][m] for m in again} == pytest.approx(again, rel=1e-6)  # float32 means
    described = {m["name"] for m in row["config"]["metric_info"]}
    assert {"BA", "RA", "ASR", "head", "BA:<branch>"} <= described
    assert row["config"]["test_size"] == 64 and row["config"]["attack_role"] == "attack"
    assert row["config"]["surrogates"] == ["rand"]
    assert runner_store_row(tmp_path / "wd", row["key"]) == {**row, "reason": None, "stage": None}


def runner_store_row(workdir, key):
    from zepad_bench.store import ResultStore

    (stored,) = ResultStore(workdir).rows(keys=[key])
    return stored


def test_inference_only_params_share_one_tuning(smoke_suite, tmp_path, monkeypatch):
    (tmp_path / "zb_fusing_plugin.py").write_text(
        "from zepad_bench import hookimpl\n"
        "from zepad_bench_plugins.defenses.none import NoDefense\n\n"
        "class FusingNone(NoDefense):\n"
        "    name = 'fusing-none'\n"
        "    inference_params = ('fuse',)\n\n"
        "    def __init__(self, fuse='mean'):\n"
        "        super().__init__()\n"
        "        self.fuse_name = fuse\n\n"
        "@hookimpl\n"
        "def register_defenses(register):\n"
        "    register(FusingNone)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    text = smoke_suite.read_text().replace('"zb_outside_plugin"]', '"zb_outside_plugin", "zb_fusing_plugin"]')
    text = text.replace('[defenses.none]\nplugin = "none"', '[defenses.none]\nplugin = "fusing-none"')
    text = text.replace(
        '[defenses.none2]\nplugin = "none"', '[defenses.none2]\nplugin = "fusing-none"\nfuse = "x"'
    )
    smoke_suite.write_text(text)
    suite = load_suite(smoke_suite, load_registry()).with_axes(tasks=["cls"])
    runner, rows = run_all(suite, tmp_path / "wd")
    assert runner.computed["defense"] == 1 and len(rows) == 2  # one tuning serves both tables
    model, _ = runner.defense(suite.with_axes(defenses=["none2"]).cells()[0])
    assert model.defense.fuse_name == "x"  # … each fused with its own settings


def test_a_replaced_checkpoint_file_is_not_served_from_the_cache(tmp_path):
    import torch

    from zepad_bench.nn.checkpoints import save_solo_learn
    from zepad_bench.nn.encoder import Encoder

    ckpt = tmp_path / "enc.ckpt"
    text = SMOKE_SUITE.replace(
        '[encoders.rand]\nplugin = "outside-random"',
        f'[encoders.rand]\nplugin = "solo-learn"\npath = "{ckpt}"\narch = "small-cnn"\n'
        "arch_params = { width = 8 }",
    )
    (tmp_path / "s.toml").write_text(text)
    weights = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        save_solo_learn(ckpt, Encoder("small-cnn", {"width": 8}).state_dict(), {"seed": seed})  # backbone.*
        suite = load(tmp_path / "s.toml")
        encoder, _ = Runner(suite, suite.registry, tmp_path / "wd").encoder("rand", 0)
        weights.append(next(iter(encoder.parameters())).detach().clone())
    assert not torch.equal(weights[0], weights[1])


def test_one_zepad_tuning_serves_tasks_on_two_datasets(smoke_suite, tmp_path):
    text = smoke_suite.read_text().replace(
        '[defenses.none2]\nplugin = "none"',
        '[defenses.none2]\nplugin = "zepad"\nepochs = 1\nsteps = 1\nbatch_size = 32\nbmp_epochs = 1\n'
        "bmp_batch_size = 32\nbmp_recipe = { proj_hidden_dim = 32, proj_output_dim = 16 }",
    )
    smoke_suite.write_text(text)
    suite = load(smoke_suite).with_axes(defenses=["none2"])
    runner, rows = run_all(suite, tmp_path / "wd")
    assert sorted(r["task_data"] for r in rows) == ["stripes", "stripes2"]
    assert runner.computed["defense"] == 1  # tuned once (persistent robustness) …
    assert [s["stage"] for s in runner.store.stage_runs("smoke")].count("defense") == 1
    assert {b["role"] for b in rows[0]["config"]["branches"]} == {"mpae", "bmp"}  # … a real ZePAD model


def test_tasks_on_one_dataset_share_features_and_heads(smoke_suite, tmp_path):
    smoke_suite.write_text(
        smoke_suite.read_text() + '\n[tasks.det]\nplugin = "detection"\ndata = "stripes"\nepochs = 2\n'
    )
    suite = load(smoke_suite).with_axes(defenses=["none"], tasks=["cls", "det"])
    runner, rows = run_all(suite, tmp_path / "wd")
    (cls, cls_row), (det, det_row) = zip(suite.cells(), rows)
    shared = {s.key for s in cell_stages(runner, cls, cls_row) if s.kind in ("features", "head")}
    assert shared == {s.key for s in cell_stages(runner, det, det_row) if s.kind in ("features", "head")}
    log = computed_stages(runner)
    assert len(log) == len(set(log))  # computed once, used by both tasks
    assert rows[0]["metrics"]["BA"] == rows[1]["metrics"]["BA"]
