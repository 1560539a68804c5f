"""``--download``: torchvision's own download code fetches a real-format archive from a loopback server.

(torchvision's downloader needs an HTTP response's ``length``, which ``file://`` responses lack, so the
archive is served by ``http.server`` on 127.0.0.1: no network, the real download path.)"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMOKE_SUITE

from zepad_bench import load_registry
from zepad_bench.cli import cli
from zepad_bench.download import fetch_all
from zepad_bench.errors import UserError
from zepad_bench.suite import load_suite
from zepad_bench_plugins.datasets.folders import Animals10
from zepad_bench_plugins.datasets.torchvision_sets import CIFAR10

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def cifar_archive(served, monkeypatch) -> dict[str, np.ndarray]:
    """A CIFAR-10 ``.tar.gz`` in the real layout (4 images per batch), served over loopback HTTP.

    torchvision's CIFAR10 class is pointed at it, with the archive's and every batch's md5, so its
    download, verification and extraction run unchanged. Returns batch name → images.
    """
    import torchvision.datasets

    images, files = {}, {}
    for k, name in enumerate(BATCHES):
        pixels = np.random.default_rng(k).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
        entry = {"labels": [(k + j) % 10 for j in range(4)], "data": pixels.reshape(4, -1)}
        images[name], files[name] = pixels, pickle.dumps(entry, protocol=2)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    files["batches.meta"] = pickle.dumps({"label_names": names}, protocol=2)
    archive = served[0] / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    source = torchvision.datasets.CIFAR10
    monkeypatch.setattr(source, "url", f"{served[1]}/{archive.name}")
    monkeypatch.setattr(source, "tgz_md5", md5(archive.read_bytes()))
    monkeypatch.setattr(source, "train_list", [[n, md5(files[n])] for n in BATCHES[:5]])
    monkeypatch.setattr(source, "test_list", [["test_batch", md5(files["test_batch"])]])
    monkeypatch.setattr(source, "meta", {**source.meta, "md5": md5(files["batches.meta"])})
    return images


def test_fetch_downloads_verifies_and_loads(tmp_path, cifar_archive):
    root = tmp_path / "data"
    plugin = CIFAR10(root=str(root))
    with pytest.raises(UserError, match="--download"):
        plugin.check()
    plugin.fetch()
    assert (root / "cifar-10-python.tar.gz").is_file()
    train = plugin.load("train", 32, 0)
    expected = np.concatenate([cifar_archive[n] for n in BATCHES[:5]])
    assert torch.equal(train.images, torch.from_numpy(expected))
    assert torch.equal(plugin.load("test", 32, 0).images, torch.from_numpy(cifar_archive["test_batch"]))
    plugin.fetch()  # already verified: nothing to do, no error


def test_a_checksum_mismatch_is_a_one_line_error(tmp_path, cifar_archive, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "tgz_md5", "0" * 32)
    with pytest.raises(UserError, match="CIFAR10: download into .* failed") as info:
        CIFAR10(root=str(tmp_path / "data")).fetch()
    assert "\n" not in str(info.value)


def test_unreachable_source_is_a_user_error(tmp_path, served, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", f"{served[1]}/absent.tar.gz")
    with pytest.raises(UserError, match="failed"):
        CIFAR10(root=str(tmp_path / "data")).fetch()


def test_sets_torchvision_cannot_fetch_keep_their_instructions(tmp_path):
    assert not hasattr(Animals10, "fetch")
    with pytest.raises(UserError, match="Kaggle"):
        Animals10(root=str(tmp_path / "raw-img")).check()


def suite_with_cifar(tmp_path: Path, download_line: str = "") -> Path:
    text = (
        SMOKE_SUITE.replace('attacker_data = "stripes"', 'attacker_data = "c10"')
        + f'\n[datasets.c10]\nplugin = "cifar10"\nroot = "{tmp_path / "data"}"\n{download_line}\n'
    )
    path = tmp_path / ("marked.toml" if download_line else "suite.toml")
    path.write_text(text)
    return path


def test_validation_never_downloads_and_names_the_flag(tmp_path, cifar_archive):
    registry = load_registry()
    path = suite_with_cifar(tmp_path)
    with pytest.raises(UserError, match="--download"):
        load_suite(path, registry)
    suite = load_suite(path, registry, download=True)
    assert "datasets.c10" in suite.download and not (tmp_path / "data").exists()
    marked = load_suite(suite_with_cifar(tmp_path, "download = true"), registry)
    assert marked.download == {"datasets.c10"} and not (tmp_path / "data").exists()
    # the flag is no part of the table, so cached stages and results are shared with later runs
    assert marked.spec("datasets", "c10") == suite.spec("datasets", "c10")
    assert fetch_all(marked) == ["datasets.c10"]
    assert load_suite(path, registry).download == frozenset()  # now valid without the flag


def test_run_with_download_goes_from_nothing_to_results(tmp_path, cifar_archive):
    from click.testing import CliRunner

    path = suite_with_cifar(tmp_path)
    args = ["run", str(path), "--workdir", str(tmp_path / "w"), "--out", str(tmp_path / "lb"), "--quiet"]
    narrow = ["--defenses", "none", "--tasks", "cls"]
    result = CliRunner().invoke(cli, [*args, *narrow, "--download"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").is_file()
    assert (tmp_path / "lb" / "smoke.md").is_file()
