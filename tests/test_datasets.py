"""Dataset plugins: offline sets, and the paper's sets read from real on-disk formats written here."""

from __future__ import annotations

import csv
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zepad_bench import load_registry
from zepad_bench.data.transforms import resize_to_uint8
from zepad_bench.errors import UserError
from zepad_bench_plugins.datasets.folders import ANIMALS10_ENGLISH, Animals10, ImageNet20
from zepad_bench_plugins.datasets.offline import PHOTOS, Digits, LFWSubset, Photos, load_photo
from zepad_bench_plugins.datasets.torchvision_sets import CIFAR10, GTSRB, STL10, SVHN

NAMES = {"digits", "lfw", "photos", "cifar10", "stl10", "svhn", "gtsrb", "animals10", "imagenet20"}


def rng_images(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """Random uint8 N×3×H×W images with distinct channel statistics (so a channel mix-up shows)."""
    images = np.random.default_rng(seed).integers(0, 256, (n, 3, h, w), dtype=np.uint8)
    images[:, 1] //= 2
    images[:, 2] = 255 - images[:, 2] // 4
    return images


def as_hwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))


def assert_well_formed(data, size: int, num_classes: int) -> None:
    assert data.images.dtype == torch.uint8 and data.images.shape[1:] == (3, size, size)
    assert data.labels.dtype == torch.int64 and len(data.labels) == len(data.images) == len(data.indices)
    assert data.num_classes == num_classes and data.name == ""
    assert 0 <= int(data.labels.min()) and int(data.labels.max()) < num_classes


@pytest.fixture
def no_md5(monkeypatch):
    """The files written here cannot match torchvision's published checksums: skip only that check."""
    import torchvision.datasets.cifar
    import torchvision.datasets.stl10
    import torchvision.datasets.svhn

    for module in (torchvision.datasets.cifar, torchvision.datasets.stl10, torchvision.datasets.svhn):
        monkeypatch.setattr(module, "check_integrity", lambda *args, **kwargs: True)


# ----------------------------------------------------------------------------------------- helpers


def test_all_datasets_are_registered():
    assert NAMES <= set(load_registry().datasets)


def test_resize_is_antialiased_and_keeps_range():
    noise = torch.from_numpy(rng_images(4, 64, 64, 0))
    small = resize_to_uint8(noise, 8)
    assert small.dtype == torch.uint8 and small.shape == (4, 3, 8, 8)
    # an antialiased 8× reduction averages ~64 pixels per output (std ÷ ≥ 4); plain bilinear only 4 (÷ 2)
    assert (small.float().std(dim=(2, 3)) < noise.float().std(dim=(2, 3)) / 4).all()
    assert torch.equal(resize_to_uint8(noise, 64), noise)
    flat = torch.full((1, 3, 5, 7), 200.4)
    assert torch.equal(resize_to_uint8(flat, 16), torch.full((1, 3, 16, 16), 200, dtype=torch.uint8))


# ------------------------------------------------------------------------------------ offline sets


def test_digits_pixels_splits_and_determinism():
    from sklearn.datasets import load_digits

    source = load_digits()
    train, test = Digits().load("train", 8, seed=3), Digits().load("test", 8, seed=3)
    for data in (train, test):
        assert_well_formed(data, 8, 10)
        expected = torch.from_numpy(np.round(source.images[data.indices.numpy()] * 255 / 16)).to(torch.uint8)
        assert torch.equal(data.images, expected[:, None].expand(-1, 3, -1, -1))
        assert torch.equal(data.labels, torch.from_numpy(source.target[data.indices.numpy()]).long())
    both = torch.cat([train.indices, test.indices])
    assert len(set(both.tolist())) == len(both) == 1797  # disjoint and covering
    assert abs(len(test) / 1797 - 0.3) < 0.01
    per_class = train.labels.bincount() + test.labels.bincount()
    assert (test.labels.bincount() - 0.3 * per_class).abs().max() <= 1  # stratified
    up = Digits().load("test", 32, seed=3)
    assert up.images.shape == (len(test), 3, 32, 32) and int(up.images.max()) == 255
    assert torch.equal(Digits().load("test", 32, seed=3).images, up.images)
    assert not torch.equal(Digits().load("test", 8, seed=4).indices, test.indices)


def test_lfw_has_balanced_faces_and_non_faces():
    train, test = LFWSubset().load("train", 16, 0), LFWSubset().load("test", 16, 0)
    for data in (train, test):
        assert_well_formed(data, 16, 2)
        assert torch.equal(data.labels, (data.indices >= 100).long())  # the first 100 are the faces
        assert torch.equal(data.images[:, 0], data.images[:, 2])  # grey → 3 equal channels
    assert train.labels.bincount().tolist() == [70, 70] and test.labels.bincount().tolist() == [30, 30]
    assert set(train.indices.tolist()).isdisjoint(test.indices.tolist())


def test_limit_per_class_is_a_seeded_nested_subset():
    full = Digits().load("train", 8, 1)
    five = Digits(limit_per_class=5).load("train", 8, 1)
    three = Digits(limit_per_class=3).load("train", 8, 1)
    assert five.labels.bincount().tolist() == [5] * 10 and three.labels.bincount().tolist() == [3] * 10
    assert set(three.indices.tolist()) <= set(five.indices.tolist()) <= set(full.indices.tolist())
    rows = torch.searchsorted(full.indices, five.indices)
    assert torch.equal(full.images[rows], five.images) and torch.equal(full.labels[rows], five.labels)
    first_five = torch.cat([full.indices[full.labels == c][:5] for c in range(10)]).sort().values
    assert not torch.equal(five.indices, first_five)  # a random choice, not the first rows
    assert torch.equal(Digits(limit_per_class=5).load("train", 8, 1).indices, five.indices)
    assert not torch.equal(Digits(limit_per_class=5).load("train", 8, 2).indices, five.indices)
    assert LFWSubset(limit_per_class=500).load("test", 8, 0).labels.bincount().tolist() == [30, 30]


def find_crop(photo: torch.Tensor, patch: torch.Tensor) -> list[tuple[int, int]]:
    """Top-left corners where ``patch`` (3×s×s) occurs exactly in ``photo`` (3×H×W)."""
    s = patch.shape[-1]
    area = photo[:, : photo.shape[1] - s + 1, : photo.shape[2] - s + 1]
    h, w = area.shape[1:]
    hits = torch.ones(h, w, dtype=torch.bool)
    for dy, dx in ((0, 0), (s - 1, s - 1), (0, s - 1), (s // 2, s // 3)):  # cheap filter, then full check
        hits &= (photo[:, dy : dy + h, dx : dx + w] == patch[:, dy : dy + 1, dx : dx + 1]).all(0)
    corners = torch.nonzero(hits).tolist()
    return [(y, x) for y, x in corners if torch.equal(photo[:, y : y + s, x : x + s], patch)]


def test_photo_patches_are_crops_of_their_labelled_photo_in_their_split_region():
    """Each patch is an exact crop of its label's photo, train left of the cut and test right of it."""
    plugin = Photos(
        patches_per_image=40, patch_size=(12, 12), scales=1, test_fraction=0.25, limit_per_class=3
    )
    photos = [load_photo(name) for name in PHOTOS]
    for split in ("train", "test"):
        data = plugin.load(split, 12, seed=5)
        assert_well_formed(data, 12, len(PHOTOS))
        assert data.labels.bincount().tolist() == [3] * len(PHOTOS)
        for patch, label in zip(data.images, data.labels.tolist()):
            photo = photos[label]
            cut = int(photo.shape[2] * 0.75)
            corners = find_crop(photo, patch)
            inside = [x + 12 <= cut if split == "train" else x >= cut for _, x in corners]
            assert inside and any(inside), (split, PHOTOS[label])


def test_photos_counts_scales_and_seeds():
    plugin = Photos(patches_per_image=20, patch_size=(16, 64), scales=3, test_fraction=0.3)
    train, test = plugin.load("train", 16, 0), plugin.load("test", 16, 0)
    assert_well_formed(train, 16, len(PHOTOS))
    assert train.labels.bincount().tolist() == [14] * len(PHOTOS) and len(test) == 6 * len(PHOTOS)
    assert torch.equal(plugin.load("train", 16, 0).images, train.images)
    assert not torch.equal(plugin.load("train", 16, 1).images, train.images)
    assert not torch.equal(train.images[:6], test.images[:6])
    big = Photos(patches_per_image=10, patch_size=(400, 400), scales=1).load("test", 8, 0)  # > some parts
    assert big.labels.bincount().tolist() == [3] * len(PHOTOS)
    with pytest.raises(ValueError):
        Photos(patch_size=(64, 16))
    with pytest.raises(ValueError):
        Photos(patches_per_image=2, test_fraction=0.1)


@pytest.mark.parametrize("bad", [{"limit_per_class": 0}, {"limit_per_class": 2.5}, {"test_fraction": 1.0}])
def test_bad_params_are_rejected(bad):
    with pytest.raises(ValueError):
        Digits(**bad)


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="split"):
        LFWSubset().load("val", 16, 0)


# --------------------------------------------------------------------- paper sets, on-disk formats


def test_cifar10_python_batches(tmp_path, no_md5):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    batches = {}
    for k, file in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        images, labels = rng_images(4, 32, 32, k), [(3 * k + j) % 10 for j in range(4)]
        batches[file] = (images, labels)
        entry = {"batch_label": file, "labels": labels, "data": images.reshape(4, -1), "filenames": [""] * 4}
        (folder / file).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"num_cases_per_batch": 4, "label_names": names, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))

    train = CIFAR10(root=str(tmp_path)).load("train", 32, 0)
    assert_well_formed(train, 32, 10)
    assert train.classes == names
    expected = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert torch.equal(train.images, torch.from_numpy(expected))
    assert train.labels.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    test = CIFAR10(root=str(tmp_path)).load("test", 16, 0)
    assert torch.equal(test.images, resize_to_uint8(torch.from_numpy(batches["test_batch"][0]), 16))
    assert test.indices.tolist() == [0, 1, 2, 3]


def test_stl10_binary_files(tmp_path, no_md5):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    splits = {
        "train": (rng_images(5, 96, 96, 1), np.array([1, 2, 10, 4, 1], np.uint8)),
        "test": (rng_images(3, 96, 96, 2), np.array([3, 3, 7], np.uint8)),
    }
    for split, (images, labels) in splits.items():
        (folder / f"{split}_X.bin").write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())
        (folder / f"{split}_y.bin").write_bytes(labels.tobytes())  # 1-based on disk
    (folder / "unlabeled_X.bin").write_bytes(b"")
    for split, (images, labels) in splits.items():
        data = STL10(root=str(tmp_path)).load(split, 48, 0)
        assert_well_formed(data, 48, 10)
        assert torch.equal(data.images, resize_to_uint8(torch.from_numpy(images), 48))
        assert data.labels.tolist() == (labels.astype(int) - 1).tolist()
        assert data.classes[0] == "airplane"


def test_svhn_mat_files(tmp_path, no_md5):
    from scipy.io import savemat

    splits = {
        "train": (rng_images(6, 32, 32, 3), np.array([10, 1, 2, 10, 9, 5])),
        "test": (rng_images(2, 32, 32, 4), np.array([10, 7])),
    }
    for split, (images, labels) in splits.items():
        mat = {"X": images.transpose(2, 3, 1, 0), "y": labels[:, None].astype(np.uint8)}  # H×W×3×N, N×1
        savemat(tmp_path / f"{split}_32x32.mat", mat)
    for split, (images, labels) in splits.items():
        data = SVHN(root=str(tmp_path)).load(split, 32, 0)
        assert_well_formed(data, 32, 10)
        assert torch.equal(data.images, torch.from_numpy(images))
        assert data.labels.tolist() == [0 if y == 10 else int(y) for y in labels]


def write_image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(as_hwc(pixels[None])[0]).save(path)


def test_gtsrb_ppm_folders_and_test_csv(tmp_path):
    base = tmp_path / "gtsrb"
    train_pixels = {}
    for c in range(43):  # torchvision numbers the 43 sorted class folders
        pixels = rng_images(1, 20 + c % 5, 24, c)[0]
        write_image(base / "GTSRB" / "Training" / f"{c:05d}" / f"00000_{c:05d}.ppm", pixels)
        train_pixels[c] = pixels
    test_rows = [("00000.ppm", 12, 30, 25), ("00001.ppm", 0, 40, 40), ("00002.ppm", 42, 26, 31)]
    test_pixels = [rng_images(1, h, w, 100 + k)[0] for k, (_, _, h, w) in enumerate(test_rows)]
    fields = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"]
    with open(base / "GT-final_test.csv", "w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(fields)
        for k, (file, c, h, w) in enumerate(test_rows):
            write_image(base / "GTSRB" / "Final_Test" / "Images" / file, test_pixels[k])
            writer.writerow([file, w, h, 0, 0, w, h, c])

    train = GTSRB(root=str(tmp_path), limit_per_class=1).load("train", 16, 0)
    assert_well_formed(train, 16, 43)
    assert train.labels.tolist() == list(range(43))
    assert torch.equal(train.images[7], resize_to_uint8(torch.from_numpy(train_pixels[7])[None], 16)[0])
    test = GTSRB(root=str(tmp_path)).load("test", 16, 0)
    assert test.labels.tolist() == [12, 0, 42]
    assert torch.equal(test.images[1], resize_to_uint8(torch.from_numpy(test_pixels[1])[None], 16)[0])


def write_folder(root: Path, classes: list[str], per_class: int, seed: int) -> dict[str, np.ndarray]:
    """An ImageFolder tree of PNGs of varying sizes; returns path → pixels."""
    written = {}
    for c, name in enumerate(classes):
        for j in range(per_class):
            pixels = rng_images(1, 18 + 3 * j, 30 - 2 * j, seed + 50 * c + j)[0]
            path = root / name / f"img{j}.png"
            write_image(path, pixels)
            written[str(path)] = pixels
    return written


def test_animals10_image_folder_with_seeded_split(tmp_path):
    root = tmp_path / "raw-img"
    written = write_folder(root, ["gatto", "cane", "ragno"], per_class=10, seed=0)
    plugin = Animals10(root=str(root), test_fraction=0.3)
    train, test = plugin.load("train", 16, 7), plugin.load("test", 16, 7)
    for data in (train, test):
        assert_well_formed(data, 16, 3)
        assert data.classes == ["dog", "cat", "spider"]  # sorted Italian folders cane, gatto, ragno
    assert train.labels.bincount().tolist() == [7, 7, 7] and test.labels.bincount().tolist() == [3, 3, 3]
    assert sorted(train.indices.tolist() + test.indices.tolist()) == list(range(30))
    files = sorted(written)  # ImageFolder order: class folder, then file name
    for data in (train, test):
        for k in (0, len(data) - 1):
            pixels = torch.from_numpy(written[files[int(data.indices[k])]])[None]
            assert torch.equal(data.images[k], resize_to_uint8(pixels, 16)[0])
            folder = Path(files[int(data.indices[k])]).parent.name
            assert data.classes[int(data.labels[k])] == ANIMALS10_ENGLISH[folder]
    assert torch.equal(plugin.load("test", 16, 7).indices, test.indices)
    assert not torch.equal(plugin.load("test", 16, 8).indices, test.indices)


def test_imagenet20_train_and_val_folders(tmp_path):
    write_folder(tmp_path / "train", ["n01440764", "n02102040"], per_class=3, seed=1)
    val = write_folder(tmp_path / "val", ["n01440764", "n02102040"], per_class=2, seed=2)
    data = ImageNet20(root=str(tmp_path)).load("test", 24, 0)
    assert_well_formed(data, 24, 2)
    assert data.labels.tolist() == [0, 0, 1, 1] and data.classes == ["n01440764", "n02102040"]
    assert torch.equal(data.images[3], resize_to_uint8(torch.from_numpy(val[sorted(val)[3]])[None], 24)[0])
    assert len(ImageNet20(root=str(tmp_path)).load("train", 24, 0)) == 6
    write_folder(tmp_path / "val", ["n03000134"], per_class=1, seed=3)
    with pytest.raises(UserError, match="different class folders"):
        ImageNet20(root=str(tmp_path)).load("test", 24, 0)


@pytest.mark.parametrize("cls", [CIFAR10, STL10, SVHN, GTSRB, Animals10, ImageNet20])
def test_missing_root_is_a_user_error_naming_the_path(cls, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match=re.escape(str(missing))) as info:
        cls(root=str(missing)).check()
    assert cls.title in str(info.value) and ("download" in str(info.value) or "ImageNet" in str(info.value))
    with pytest.raises(UserError, match=re.escape(str(missing))):
        cls(root=str(missing)).load("train", 16, 0)


def test_incomplete_root_names_the_missing_part(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(UserError, match="missing val"):
        ImageNet20(root=str(tmp_path)).check()
    with pytest.raises(UserError, match="corrupted"):  # torchvision's own checksum check, not bypassed here
        (tmp_path / "cifar-10-batches-py").mkdir()
        CIFAR10(root=str(tmp_path)).load("train", 16, 0)
