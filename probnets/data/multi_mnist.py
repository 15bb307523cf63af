"""Multi-MNIST: canvases with a random number of scattered digits, the data set of AIR.

Each canvas (default 50x50) holds a number of digits drawn uniformly from ``0..max_digits``.
Every digit is shrunk by a factor ``s ~ N(1.3, 0.1)`` (so a 28-pixel digit becomes about 21
pixels) and placed uniformly at random so that it lies inside the canvas; digits are added and
a canvas in which two digits overlap enough to saturate (a pixel above 1) is drawn again. This
follows the generator used by Eslami et al. (2016) and Pyro's AIR example.

Training canvases are built from the training digits and test canvases from the test digits, so
the two splits share no source digit.

Generated sets are cached as ``.npz`` files under ``multi_mnist/`` in the data directory. A
cached file that cannot be read, or whose arrays do not have the requested shapes, is treated
like a missing one: a :class:`~probnets.data.mnist.DataCacheWarning` names it and the set is
built again (and the file replaced). When the cache cannot be written the set is returned
uncached, with a warning.
"""

import os
import warnings
import zipfile
import zlib
from collections import namedtuple
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from probnets.data.mnist import (
    DataCacheWarning,
    PathLike,
    data_root,
    load_mnist,
    publish,
    writable_temp_file,
)

MultiMNIST = namedtuple("MultiMNIST", ["images", "counts", "labels", "boxes", "source"])
MultiMNIST.__doc__ = """Multi-object canvases.

images: float32 (N, H, W) in [0, 1]; counts: int64 (N,); labels: int64 (N, max_digits), -1
where there is no digit; boxes: float32 (N, max_digits, 4) as (x_min, y_min, x_max, y_max) in
pixels, 0 where there is no digit; source: the MNIST source used (see :func:`load_mnist`)."""

MAX_REDRAWS = 1000


def _shrink(digit: torch.Tensor, scale: float) -> torch.Tensor:
    size = max(int(28 / scale), 4)
    return F.interpolate(digit[None, None], size=(size, size), mode="bilinear",
                         align_corners=False, antialias=True)[0, 0].clamp_(0, 1)


def compose(digits: torch.Tensor, labels: torch.Tensor, num_images: int, max_digits: int,
            canvas_size: int,
            generator: np.random.Generator | int | Sequence[int]) -> tuple[torch.Tensor, ...]:
    """Draw ``num_images`` canvases from a pool of ``digits`` (M, 28, 28) with ``labels``."""
    rng = np.random.default_rng(generator)
    images = torch.zeros(num_images, canvas_size, canvas_size)
    counts = torch.from_numpy(rng.integers(0, max_digits + 1, size=num_images)).long()
    out_labels = torch.full((num_images, max_digits), -1, dtype=torch.long)
    boxes = torch.zeros(num_images, max_digits, 4)
    for n in range(num_images):
        for _ in range(MAX_REDRAWS):
            canvas = torch.zeros(canvas_size, canvas_size)
            placed = []
            for k in range(int(counts[n])):
                index = int(rng.integers(len(digits)))
                glyph = _shrink(digits[index], 1.3 + 0.1 * rng.standard_normal())
                width = glyph.shape[0]
                if width > canvas_size:
                    raise ValueError(
                        f"canvas_size {canvas_size} is too small for {width}-pixel digits")
                x, y = (int(v) for v in rng.integers(0, canvas_size - width + 1, size=2))
                canvas[y:y + width, x:x + width] += glyph
                placed.append((int(labels[index]), (x, y, x + width, y + width)))
            if canvas.max() <= 1:
                break
        else:
            raise RuntimeError(
                f"could not place {int(counts[n])} digits on a {canvas_size}x{canvas_size} "
                f"canvas without overlap in {MAX_REDRAWS} draws; use a larger canvas")
        images[n] = canvas
        for k, (label, box) in enumerate(placed):
            out_labels[n, k] = label
            boxes[n, k] = torch.tensor(box, dtype=torch.float32)
    return images, counts, out_labels, boxes


def multi_mnist(num_images: int, max_digits: int = 2, canvas_size: int = 50, split: str = "train",
                seed: int = 0, root: Optional[PathLike] = None, cache: bool = True) -> MultiMNIST:
    """Generate (or load from the cache) a multi-MNIST split.

    :param int num_images: number of canvases.
    :param int max_digits: the largest number of digits on a canvas (counts are uniform on
        ``0..max_digits``).
    :param int canvas_size: canvas side in pixels.
    :param str split: ``"train"`` or ``"test"``: which MNIST digits the canvases are built from.
    :param int seed: seed of the generator (placement, scales and digit choice).
    :param root: cache directory (see :func:`~probnets.data.load_mnist`).
    :param bool cache: keep generated sets as ``.npz`` files in the cache directory.
    :returns: :class:`MultiMNIST`.
    """
    if not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer, got {num_images!r}")
    if not isinstance(max_digits, int) or max_digits < 0:
        raise ValueError(f"max_digits must be a non-negative integer, got {max_digits!r}")
    if not isinstance(canvas_size, int) or canvas_size < 28:
        raise ValueError(f"canvas_size must be an integer of at least 28, got {canvas_size!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    mnist = load_mnist(split, root=root)
    path = os.path.join(
        data_root(root), "multi_mnist",
        f"{mnist.source}-{split}-n{num_images}-k{max_digits}-c{canvas_size}-s{seed}.npz")
    if cache and os.path.exists(path):
        stored = _read_cache(path, num_images, max_digits, canvas_size)
        if stored is not None:
            images, counts, labels, boxes = stored
            return MultiMNIST(images, counts, labels, boxes, mnist.source)
    images, counts, labels, boxes = compose(
        mnist.images, mnist.labels, num_images, max_digits, canvas_size,
        generator=[seed, 0 if split == "train" else 1])
    if cache:
        _write_cache(path, images=images, counts=counts, labels=labels, boxes=boxes)
    return MultiMNIST(images, counts, labels, boxes, mnist.source)


def _read_cache(path: str, num_images: int, max_digits: int,
                canvas_size: int) -> Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                    torch.Tensor]]:
    """The arrays of a cached set as tensors, or None (with a warning) when it is unusable."""
    expected = {
        "images": ((num_images, canvas_size, canvas_size), "f"),
        "counts": ((num_images,), "i"),
        "labels": ((num_images, max_digits), "i"),
        "boxes": ((num_images, max_digits, 4), "f"),
    }
    try:
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in expected}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        problem = f"cannot be read ({type(error).__name__}: {error})"
    else:
        wrong = [f"{name} {arrays[name].shape} {arrays[name].dtype}"
                 for name, (shape, kind) in expected.items()
                 if arrays[name].shape != shape or arrays[name].dtype.kind != kind]
        if not wrong:
            images, counts, labels, boxes = (torch.from_numpy(arrays[n]) for n in expected)
            return images, counts, labels, boxes
        problem = "holds arrays of the wrong shape or dtype: " + ", ".join(wrong)
    warnings.warn(f"multi-MNIST cache {path} {problem}; building the set again",
                  DataCacheWarning, stacklevel=3)
    return None


def _write_cache(path: str, **tensors: torch.Tensor) -> None:
    """Write ``tensors`` to ``path`` atomically; warn (and keep going) when that fails."""
    tmp = None
    try:
        fd, tmp = writable_temp_file(os.path.dirname(path), suffix=".npz")
        arrays: dict[str, Any] = {name: t.numpy() for name, t in tensors.items()}
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        publish(tmp, path)
    except OSError as error:
        warnings.warn(f"could not write the multi-MNIST cache {path} ({error}); the set is "
                      "used without caching", DataCacheWarning, stacklevel=3)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
