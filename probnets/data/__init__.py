"""Data: MNIST (download, checksum, cache, offline fallback), multi-MNIST, input checks."""

from probnets.data.mnist import (
    MNIST,
    CacheNotWritableError,
    ChecksumError,
    DataCacheWarning,
    data_root,
    load_mnist,
    read_idx,
)
from probnets.data.multi_mnist import MultiMNIST, multi_mnist
from probnets.data.validation import check_images, check_labels

__all__ = [
    "CacheNotWritableError",
    "ChecksumError",
    "DataCacheWarning",
    "MNIST",
    "MultiMNIST",
    "check_images",
    "check_labels",
    "data_root",
    "load_mnist",
    "multi_mnist",
    "read_idx",
]
