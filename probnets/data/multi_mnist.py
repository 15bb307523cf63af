"""Multi-MNIST: canvases with a random number of scattered digits, the data set of AIR.

Each canvas (default 50x50) holds a number of digits drawn uniformly from ``0..max_digits``.
Every digit is shrunk by a factor ``s ~ N(1.3, 0.1)`` (so a 28-pixel digit becomes about 21
pixels) and placed uniformly at random so that it lies inside the canvas; digits are added and
a canvas in which two digits overlap enough to saturate (a pixel above 1) is drawn again. This
follows the generator used by Eslami et al. (2016) and Pyro's AIR example.

Training canvases are built from the training digits and test canvases from the test digits, so
the two splits share no source digit. ``validation_fraction`` holds a stratified share of the
*training* digits out (:func:`split_digits`): ``split="validation"`` canvases are built from
them and ``split="train"`` canvases from the rest, so a model can be selected on digits it never
saw without looking at the test split.

:func:`multi_mnist` returns a fixed set of canvases; :class:`CanvasStream` composes every batch
afresh from a pool of digits (the same distribution), so a long run does not see the same
canvas twice.

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
import torch.distributed as dist
import torch.nn.functional as F

from probnets.data.mnist import (
    MNIST,
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
SPLITS = ("train", "validation", "test")
# The second word of each split's generator seed (train and test kept theirs from before the
# validation split existed, so their cached sets stay valid).
_SPLIT_STREAMS = {"train": 0, "test": 1, "validation": 2}


def _shrink(digit: torch.Tensor, scale: float, canvas_size: int) -> torch.Tensor:
    # a scale drawn below 28 / canvas_size (far in the normal's tail) fills the canvas
    size = min(max(int(28 / scale), 4), canvas_size)
    return F.interpolate(
        digit[None, None], size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )[0, 0].clamp_(0, 1)


def compose(
    digits: torch.Tensor,
    labels: torch.Tensor,
    num_images: int,
    max_digits: int,
    canvas_size: int,
    generator: np.random.Generator | int | Sequence[int],
) -> tuple[torch.Tensor, ...]:
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
                glyph = _shrink(digits[index], 1.3 + 0.1 * rng.standard_normal(), canvas_size)
                width = glyph.shape[0]
                x, y = (int(v) for v in rng.integers(0, canvas_size - width + 1, size=2))
                canvas[y : y + width, x : x + width] += glyph
                placed.append((int(labels[index]), (x, y, x + width, y + width)))
            if canvas.max() <= 1:
                break
        else:
            raise RuntimeError(
                f"could not place {int(counts[n])} digits on a {canvas_size}x{canvas_size} "
                f"canvas without overlap in {MAX_REDRAWS} draws; use a larger canvas"
            )
        images[n] = canvas
        for k, (label, box) in enumerate(placed):
            out_labels[n, k] = label
            boxes[n, k] = torch.tensor(box, dtype=torch.float32)
    return images, counts, out_labels, boxes


def split_digits(labels: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(kept, held_out)`` of a stratified hold-out: the last ``round(fraction * n_c)``
    digits of each class ``c`` (in the order given) are held out, the others kept.

    Deterministic, so every run and every cached set agrees on which digits are held out.
    """
    if not (
        isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 <= fraction < 1
    ):
        raise ValueError(f"validation_fraction must be a number in [0, 1), got {fraction!r}")
    labels = labels.cpu().long()
    rank = torch.empty_like(labels)
    held_out_count = torch.zeros_like(labels)
    for digit in labels.unique():
        members = (labels == digit).nonzero().squeeze(1)
        rank[members] = torch.arange(len(members))
        held_out_count[members] = round(fraction * len(members))
    counts = torch.bincount(labels)[labels]
    held = rank >= counts - held_out_count
    return (~held).nonzero().squeeze(1), held.nonzero().squeeze(1)


def digit_pool(
    split: str = "train", validation_fraction: float = 0.0, root: Optional[PathLike] = None
) -> MNIST:
    """The MNIST digits canvases of ``split`` are built from: the test digits for ``"test"``;
    for ``"train"`` and ``"validation"`` the training digits kept and held out by
    :func:`split_digits` with ``validation_fraction``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "test":
        return load_mnist("test", root=root)
    if split == "validation" and not validation_fraction:
        raise ValueError(
            "split 'validation' needs validation_fraction > 0 (the share of the "
            "training digits held out for it), got 0"
        )
    mnist = load_mnist("train", root=root)
    kept, held_out = split_digits(mnist.labels, validation_fraction)
    if not validation_fraction:
        return mnist
    index = kept if split == "train" else held_out
    return MNIST(mnist.images[index], mnist.labels[index], mnist.source)


def resampling_matrices(max_width: int) -> torch.Tensor:
    """``A`` of shape ``(max_width + 1, max_width, 28)``: ``A[w, :w] @ digit @ A[w, :w].T`` is
    :func:`_shrink`'s antialiased bilinear resampling of a 28x28 ``digit`` to ``w x w`` (rows
    from ``w`` on are zero), so digits of any mix of sizes are resampled by one batched product.

    The resampling is separable with rows of weights that sum to one, so the response to the
    image whose row ``i`` is all ones is column ``i`` of the one-dimensional operator.
    """
    bank = torch.zeros(max_width + 1, max_width, 28)
    rows = torch.eye(28)[:, :, None].expand(28, 28, 28)[:, None]
    for width in range(1, max_width + 1):
        response = F.interpolate(
            rows, size=(width, width), mode="bilinear", align_corners=False, antialias=True
        )
        bank[width, :width] = response[:, 0, :, 0].T
    return bank


def compose_batch(
    digits: torch.Tensor,
    num_images: int,
    max_digits: int,
    canvas_size: int,
    generator: torch.Generator,
    resampling: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, C, C), counts (N,))``: canvases of the distribution :func:`compose` draws
    (uniform count, scale ``N(1.3, 0.1)``, uniform position, redrawn when saturated), composed
    for a whole batch at once with ``generator``'s random numbers: every digit is resampled by
    one batched product (:func:`resampling_matrices`, passed as ``resampling`` to reuse it) and
    pasted by one scatter-add.
    """
    if resampling is None:
        resampling = resampling_matrices(canvas_size)
    counts = torch.randint(0, max_digits + 1, (num_images,), generator=generator)
    images = digits.new_zeros(num_images, canvas_size, canvas_size)
    pending = (counts > 0).nonzero().squeeze(1)
    for _ in range(MAX_REDRAWS):
        if not len(pending):
            return images, counts
        n = len(pending)
        index = torch.randint(len(digits), (n, max_digits), generator=generator)
        scale = 1.3 + 0.1 * torch.randn(n, max_digits, generator=generator)
        # int() truncates, and a tail draw fills the canvas, as compose's
        width = (28 / scale).to(torch.int64).clamp_(min=4, max=canvas_size)
        corner = (
            torch.rand(n, max_digits, 2, generator=generator)
            * (canvas_size - width + 1).clamp(min=1)[..., None]
        ).to(torch.int64)
        row, k = (torch.arange(max_digits) < counts[pending, None]).nonzero(as_tuple=True)
        width, corner = width[row, k], corner[row, k]
        tile = int(width.max())
        weights = resampling[width, :tile]
        glyphs = (weights @ digits[index[row, k]] @ weights.transpose(1, 2)).clamp_(0, 1)
        # Paste each tile at its corner with one scatter-add into the flat canvases. A tile's
        # zero rows and columns beyond its digit may land past its canvas's right or bottom
        # edge (on the next row or canvas, or in a short tail): adding zeros there is harmless.
        pixels = canvas_size * canvas_size
        offsets = (torch.arange(tile)[:, None] * canvas_size + torch.arange(tile)).reshape(-1)
        target = (row * pixels + corner[:, 1] * canvas_size + corner[:, 0])[:, None] + offsets
        flat = images.new_zeros(n * pixels + tile * canvas_size)
        flat.index_add_(0, target.reshape(-1), glyphs.reshape(-1))
        canvases = flat[: n * pixels].view(n, canvas_size, canvas_size)
        good = canvases.amax((1, 2)) <= 1
        images[pending[good]] = canvases[good]
        pending = pending[~good]
    raise RuntimeError(
        f"could not place the digits of {len(pending)} canvases on a "
        f"{canvas_size}x{canvas_size} canvas without overlap in {MAX_REDRAWS} "
        "draws; use a larger canvas"
    )


class CanvasStream:
    """An endless stream of batches ``(images,)`` of multi-MNIST canvases composed afresh
    from a pool of digits at every step (:func:`compose_batch`), so a run never trains twice
    on the same canvas and the number of distinct scenes is not fixed in advance.

    The random numbers come from the stream's own :class:`torch.Generator`, seeded by
    ``seed``; its state is :meth:`state_dict`, so a resumed run sees exactly the batches an
    uninterrupted one would.

    :param torch.Tensor digits: the pool, (M, 28, 28) in [0, 1].
    :param int batch_size: canvases per batch.
    :param int max_digits: digits per canvas are uniform on ``0..max_digits``.
    :param int canvas_size: canvas side in pixels.
    :param int seed: seed of the stream's generator.
    :param device: where batches are sent (default: the pool's device).
    :param dtype: dtype of the batches (default: the pool's).
    :param shard: ``(rank, world_size)`` to yield only this rank's share of each batch
        (``batch_size`` is then the global batch, split evenly, as in
        :class:`~probnets.train.BatchSampler`); ``"auto"`` (default) reads them from an
        initialized :mod:`torch.distributed` process group.
    """

    def __init__(
        self,
        digits: torch.Tensor,
        batch_size: int,
        max_digits: int = 2,
        canvas_size: int = 50,
        seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        shard: str | tuple[int, int] = "auto",
    ) -> None:
        if not (
            torch.is_tensor(digits)
            and digits.dim() == 3
            and digits.shape[1:] == (28, 28)
            and len(digits) > 0
        ):
            raise ValueError(
                "digits must be a non-empty (M, 28, 28) tensor, got "
                f"{tuple(digits.shape) if torch.is_tensor(digits) else digits!r}"
            )
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("max_digits", max_digits, 0),
            ("canvas_size", canvas_size, 28),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer of at least {low}, got {value!r}")
        self.rank, self.world_size = _shard(shard, batch_size)
        self.digits = digits.detach().float().cpu()
        self.batch_size, self.max_digits, self.canvas_size = batch_size, max_digits, canvas_size
        self.device = device if device is not None else digits.device
        self.dtype = dtype if dtype is not None else digits.dtype
        self.generator = torch.Generator().manual_seed(seed)
        self.batches = 0
        self._resampling = resampling_matrices(canvas_size)

    def __iter__(self) -> "CanvasStream":
        return self

    def __next__(self) -> tuple[torch.Tensor]:
        images, _ = compose_batch(
            self.digits,
            self.batch_size,
            self.max_digits,
            self.canvas_size,
            self.generator,
            self._resampling,
        )
        self.batches += 1
        if self.world_size > 1:  # every rank draws the global batch, then keeps its share
            images = images.chunk(self.world_size)[self.rank]
        return (images.to(device=self.device, dtype=self.dtype),)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "batches": self.batches}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.batches = int(state["batches"])


def _shard(shard: str | tuple[int, int], batch_size: int) -> tuple[int, int]:
    """``(rank, world_size)`` of ``shard``, read from torch.distributed for ``"auto"``."""
    if shard == "auto":
        initialized = dist.is_available() and dist.is_initialized()
        shard = (dist.get_rank(), dist.get_world_size()) if initialized else (0, 1)
    if isinstance(shard, str):
        raise ValueError(f"shard must be 'auto' or a pair (rank, world_size), got {shard!r}")
    rank, world_size = shard
    if batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} must be divisible by the number of ranks "
            f"({world_size}): it is the global batch, split evenly between ranks"
        )
    return rank, world_size


def multi_mnist(
    num_images: int,
    max_digits: int = 2,
    canvas_size: int = 50,
    split: str = "train",
    seed: int = 0,
    root: Optional[PathLike] = None,
    cache: bool = True,
    validation_fraction: float = 0.0,
) -> MultiMNIST:
    """Generate (or load from the cache) a multi-MNIST split.

    :param int num_images: number of canvases.
    :param int max_digits: the largest number of digits on a canvas (counts are uniform on
        ``0..max_digits``).
    :param int canvas_size: canvas side in pixels.
    :param str split: ``"train"``, ``"validation"`` or ``"test"``: which digits the canvases
        are built from (see :func:`digit_pool`).
    :param int seed: seed of the generator (placement, scales and digit choice).
    :param root: cache directory (see :func:`~probnets.data.load_mnist`).
    :param bool cache: keep generated sets as ``.npz`` files in the cache directory.
    :param float validation_fraction: share of the training digits held out for the
        ``"validation"`` split (and so left out of ``"train"``); ``0`` uses them all for
        ``"train"``.
    :returns: :class:`MultiMNIST`.
    """
    if not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer, got {num_images!r}")
    if not isinstance(max_digits, int) or max_digits < 0:
        raise ValueError(f"max_digits must be a non-negative integer, got {max_digits!r}")
    if not isinstance(canvas_size, int) or canvas_size < 28:
        raise ValueError(f"canvas_size must be an integer of at least 28, got {canvas_size!r}")
    mnist = digit_pool(split, validation_fraction, root=root)
    held_out = f"-v{validation_fraction:g}" if split != "test" and validation_fraction else ""
    path = os.path.join(
        data_root(root),
        "multi_mnist",
        f"{mnist.source}-{split}{held_out}-n{num_images}-k{max_digits}-c{canvas_size}-s{seed}.npz",
    )
    if cache and os.path.exists(path):
        stored = _read_cache(path, num_images, max_digits, canvas_size)
        if stored is not None:
            images, counts, labels, boxes = stored
            return MultiMNIST(images, counts, labels, boxes, mnist.source)
    images, counts, labels, boxes = compose(
        mnist.images,
        mnist.labels,
        num_images,
        max_digits,
        canvas_size,
        generator=[seed, _SPLIT_STREAMS[split]],
    )
    if cache:
        _write_cache(path, images=images, counts=counts, labels=labels, boxes=boxes)
    return MultiMNIST(images, counts, labels, boxes, mnist.source)


def _read_cache(
    path: str, num_images: int, max_digits: int, canvas_size: int
) -> Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
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
        wrong = [
            f"{name} {arrays[name].shape} {arrays[name].dtype}"
            for name, (shape, kind) in expected.items()
            if arrays[name].shape != shape or arrays[name].dtype.kind != kind
        ]
        if not wrong:
            images, counts, labels, boxes = (torch.from_numpy(arrays[n]) for n in expected)
            return images, counts, labels, boxes
        problem = "holds arrays of the wrong shape or dtype: " + ", ".join(wrong)
    warnings.warn(
        f"multi-MNIST cache {path} {problem}; building the set again",
        DataCacheWarning,
        stacklevel=3,
    )
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
        warnings.warn(
            f"could not write the multi-MNIST cache {path} ({error}); the set is "
            "used without caching",
            DataCacheWarning,
            stacklevel=3,
        )
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
