"""The paper's encoders manifest, verified downloads (``file://`` sources), and solo-learn presets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from conftest import SMOKE_SUITE

from zepad_bench import load_registry
from zepad_bench.cli import cli
from zepad_bench.download import fetch_all
from zepad_bench.errors import UserError
from zepad_bench.nn.checkpoints import save_solo_learn
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.ssl import METHODS
from zepad_bench.nn.ssl.presets import SOLO_LEARN_SETTINGS
from zepad_bench.paper_encoders import download_verified, paper_encoders
from zepad_bench.runner import Runner
from zepad_bench.suite import load_suite
from zepad_bench_plugins.encoders.solo_learn import SoloLearnEncoder
from zepad_bench_plugins.encoders.ssl import SSLEncoder

SUITES = Path(__file__).parent.parent / "suites"
ISSUE_LFS = {  # the authors' Git LFS pointers: size and sha256
    "simclr-cifar10": (102_089_025, "1b34deb6533ad05a1cd7224e283fb59e1aa7fc477f06121d1ce870343a89d3ec"),
    "wmse-cifar10": (141_328_619, "b83fa070c603790b347ca36d352c1db1700c103e5c5de1c29859d2c1714911f4"),
    "byol-imagenet100": (206_493_459, "25d668314067c88e4084c91a450db9341bc46506fd23d8f1cdd4b7da97823755"),
}


def test_manifest_lists_the_papers_twenty_encoders_and_says_which_are_reachable():
    entries = paper_encoders()
    assert len(entries) == 20 and {e["pretrain"] for e in entries.values()} == {"cifar10", "imagenet100"}
    zoo = json.loads((Path(__file__).parent.parent / "zepad_bench/reference/zoo_accuracies.json").read_text())
    for id_, entry in entries.items():
        assert entry["method"] in METHODS and id_ == f"{entry['method']}-{entry['pretrain']}"
        fetchable = [s for s in entry["sources"] if s["status"].startswith("fetchable")]
        if id_ in ISSUE_LFS:
            assert (entry["size"], entry["sha256"]) == ISSUE_LFS[id_] and len(fetchable) == 1
            assert fetchable[0]["url"].endswith(entry["file"].replace("=", "%3D"))
        else:
            assert not fetchable and all(s["status"].startswith("unreachable") for s in entry["sources"])
        if entry["pretrain"] == "cifar10":
            assert entry["acc1"] == zoo["methods"][entry["method"]]["acc1"]


def served_file(tmp_path: Path, data: bytes) -> tuple[str, str]:
    source = tmp_path / "served.ckpt"
    source.write_bytes(data)
    return source.as_uri(), hashlib.sha256(data).hexdigest()


def test_download_keeps_only_a_verified_file(tmp_path):
    url, digest = served_file(tmp_path, b"weights" * 1000)
    dest = tmp_path / "zoo" / "a.ckpt"
    download_verified(url, dest, digest, size=7000)
    assert dest.read_bytes() == b"weights" * 1000
    for sha, size, why in (("0" * 64, 7000, "sha256"), (digest, 7001, "bytes")):
        other = tmp_path / "zoo" / "b.ckpt"
        with pytest.raises(UserError, match=f"rejected .*{why}") as info:
            download_verified(url, other, sha, size=size)
        assert "\n" not in str(info.value) and not other.exists()
        assert not other.with_name("b.ckpt.partial").exists()
    with pytest.raises(UserError, match="failed"):
        download_verified((tmp_path / "absent").as_uri(), tmp_path / "c.ckpt", digest)


@pytest.fixture
def manifest(tmp_path, monkeypatch):
    """A manifest with one fetchable entry (a real small-cnn solo-learn checkpoint behind file://) and
    one whose only source is unreachable."""
    import zepad_bench.paper_encoders as module

    torch.manual_seed(0)
    weights = Encoder("small-cnn", {"width": 4}).backbone.state_dict()
    checkpoint = tmp_path / "upstream" / "simclr-cifar10-x-ep=999.ckpt"
    digest = save_solo_learn(
        checkpoint, {f"backbone.{k}": v for k, v in weights.items()}, {"method": "simclr"}
    )
    common = {"method": "simclr", "arch": "small-cnn", "normalisation": "cifar", "epochs": 1000, "acc1": 0.0}
    drive = {"url": "https://drive.google.com/drive/folders/x", "status": "unreachable: a Drive folder"}
    entries = {
        "simclr-cifar10": {
            **common,
            "pretrain": "cifar10",
            "file": checkpoint.name,
            "size": checkpoint.stat().st_size,
            "sha256": digest,
            "sources": [{"url": checkpoint.as_uri(), "status": "fetchable: test file"}, drive],
        },
        "simclr-imagenet100": {**common, "pretrain": "imagenet100", "sha256": None, "sources": [drive]},
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"encoders": entries}))
    monkeypatch.setattr(module, "MANIFEST_PATH", path)
    return weights


def test_paper_encoder_is_fetched_verified_and_loaded(tmp_path, manifest):
    dest = tmp_path / "zoo" / "simclr.ckpt"
    source = SoloLearnEncoder(
        path=str(dest), arch="small-cnn", arch_params={"width": 4}, paper="simclr-cifar10"
    )
    with pytest.raises(UserError, match="--download"):
        source.check()
    source.fetch()
    source.check()
    encoder = source.build(None)
    assert all(torch.equal(encoder.backbone.state_dict()[k], v) for k, v in manifest.items())
    with pytest.raises(ValueError, match="arch 'small-cnn'"):
        SoloLearnEncoder(path=str(dest), paper="simclr-cifar10")  # default arch resnet18 ≠ the entry's
    with pytest.raises(ValueError, match="unknown paper encoder"):
        SoloLearnEncoder(path=str(dest), arch="small-cnn", paper="nope-cifar10")


def test_unreachable_paper_encoder_says_so_and_how_to_rebuild(tmp_path, manifest):
    source = SoloLearnEncoder(path=str(tmp_path / "x.ckpt"), arch="small-cnn", paper="simclr-imagenet100")
    with pytest.raises(UserError, match='no source zepad-bench can fetch.*recipe = "solo-learn"'):
        source.fetch()
    own = tmp_path / "own.ckpt"  # a file already there (e.g. built by `zepad-bench pretrain`) is kept
    own.write_bytes(b"x")
    SoloLearnEncoder(path=str(own), arch="small-cnn", paper="simclr-imagenet100").fetch()
    assert own.read_bytes() == b"x"


def test_run_download_fetches_a_suites_paper_encoder(tmp_path, manifest):
    dest = tmp_path / "zoo" / "simclr.ckpt"
    table = (
        f'\n[encoders.paper]\nplugin = "solo-learn"\npath = "{dest}"\npaper = "simclr-cifar10"\n'
        'arch = "small-cnn"\narch_params = { width = 4 }\n'
    )
    path = tmp_path / "suite.toml"
    path.write_text(SMOKE_SUITE.replace("[grid]", table + "\n[grid]").replace('"rand"]', '"paper"]'))
    registry = load_registry()
    with pytest.raises(UserError, match="checkpoint not found"):
        load_suite(path, registry)
    suite = load_suite(path, registry, download=True)  # validation alone fetches nothing
    assert "encoders.paper" in suite.download and not dest.exists()
    assert "encoders.paper" in fetch_all(suite) and dest.is_file()
    encoder, _ = Runner(suite, suite.registry, tmp_path / "w", device="cpu").encoder("paper", 0)
    assert encoder.meta["sha256"] == paper_encoders()["simclr-cifar10"]["sha256"]


@pytest.mark.parametrize("dataset", sorted(SOLO_LEARN_SETTINGS))
def test_solo_learn_presets_resolve_for_every_method(dataset):
    for method in METHODS:
        source = SSLEncoder(method=method, recipe="solo-learn", recipe_dataset=dataset)
        expected = SOLO_LEARN_SETTINGS[dataset]
        assert (source.arch, source.epochs, source.normalisation) == (
            expected["arch"],
            expected["epochs"],
            expected["normalisation"],
        )
        assert source.input_size == expected.get("input_size")


def test_preset_values_table_overrides_and_cache_identity():
    byol = SSLEncoder(method="byol", recipe="solo-learn", recipe_dataset="imagenet100")
    assert (byol.batch_size, byol.cfg["lr"], byol.cfg["pred_hidden_dim"], byol.input_size) == (
        256,
        0.5,
        8192,
        224,
    )
    simclr = SSLEncoder(method="simclr", recipe="solo-learn")
    assert (simclr.arch, simclr.epochs, simclr.batch_size, simclr.cfg["lr"]) == ("resnet18", 1000, 256, 0.4)
    short = SSLEncoder(method="simclr", recipe="solo-learn", epochs=2, lr=0.1, arch="small-cnn")
    assert (short.epochs, short.cfg["lr"], short.arch) == (2, 0.1, "small-cnn")
    assert short.fingerprint() != simclr.fingerprint() and SSLEncoder(method="simclr").fingerprint() == ""
    with pytest.raises(ValueError, match="recipe must be one of"):
        SSLEncoder(method="simclr", recipe="lightly")
    with pytest.raises(ValueError, match="recipe_dataset"):
        SSLEncoder(method="simclr", recipe="solo-learn", recipe_dataset="imagenet")


def test_comparison_hub_validates_offline(tmp_path, monkeypatch):
    from click.testing import CliRunner

    monkeypatch.chdir(tmp_path)  # no data, no weights here: validation must not need (or fetch) them
    result = CliRunner().invoke(cli, ["validate", str(SUITES / "comparison_hub.toml")])
    assert result.exit_code == 0, result.output
    assert "ok (72 cells)" in result.output and not (tmp_path / "data").exists()


def test_paper_suites_say_which_encoder_path_they_take():
    import tomllib

    for path in sorted(SUITES.glob("*.toml")):
        text = path.read_text()
        tables = tomllib.loads(text).get("encoders", {}).values()
        solo = [t for t in tables if t["plugin"] == "solo-learn"]
        if not solo or all(t["path"].startswith("encoders/") for t in solo):
            continue  # suites on the encoders shipped in suites/encoders (quickstart, offline suites)
        assert "# Encoders: the paper's solo-learn files" in text and "--download" in text, path.name
        for table in solo:
            assert table.get("paper") in paper_encoders() or "supcon" in table["path"], (path.name, table)
