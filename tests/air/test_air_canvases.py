"""Canvases composed afresh (CanvasStream), the validation split of the training digits, and
the Wilson interval of the reported accuracy."""

import math

import pytest
import torch

from probnets.data.mnist import load_mnist
from probnets.data.multi_mnist import (
    CanvasStream,
    _shrink,
    compose_batch,
    digit_pool,
    multi_mnist,
    resampling_matrices,
    split_digits,
)
from probnets.experiments.air import binomial_interval


@pytest.mark.parametrize("width", [4, 16, 21, 25, 28, 33])
def test_resampling_matrices_are_the_antialiased_shrink(width):
    digits = torch.rand(5, 28, 28)
    weights = resampling_matrices(40)[width]
    assert not weights[width:].any()
    batched = weights[:width] @ digits @ weights[:width].T
    for digit, glyph in zip(digits, batched.clamp(0, 1)):
        reference = _shrink(digit, 28 / (width + 0.5), canvas_size=40)
        assert reference.shape == (width, width)
        torch.testing.assert_close(glyph, reference, atol=1e-6, rtol=0)


def test_compose_batch_places_whole_non_overlapping_digits_inside_the_canvas():
    # one all-ones digit: every glyph is a full square of its width
    digits = torch.ones(1, 28, 28)
    images, counts = compose_batch(digits, 300, 2, 50, torch.Generator().manual_seed(0))
    assert images.shape == (300, 50, 50) and counts.shape == (300,)
    assert set(counts.tolist()) == {0, 1, 2}
    assert images.max() <= 1 and images.min() >= 0
    assert not images[counts == 0].any()
    for image in images[counts == 1]:
        rows, cols = image.nonzero(as_tuple=True)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert height == width and len(rows) == height * width  # one whole square, unwrapped
        assert 14 <= width <= 28
    two = images[counts == 2]
    mass = two.sum((1, 2))
    assert (two > 0).sum((1, 2)).eq(mass.round()).all()  # two squares, no pixel shared


def test_compose_batch_has_the_distribution_of_compose():
    mnist = load_mnist("train")
    images, counts = compose_batch(mnist.images, 1500, 2, 50, torch.Generator().manual_seed(1))
    fixed = multi_mnist(1500, split="train", seed=1, cache=False)
    for k in (1, 2):
        ours, theirs = images[counts == k].sum((1, 2)), fixed.images[fixed.counts == k].sum((1, 2))
        # mean ink per canvas agrees within a few standard errors
        error = math.sqrt(ours.var() / len(ours) + theirs.var() / len(theirs))
        assert abs(ours.mean() - theirs.mean()) < 4 * error
    assert abs((counts == 0).float().mean() - 1 / 3) < 0.05


def test_canvas_stream_is_fresh_seeded_and_resumable():
    digits = load_mnist("train").images[:200]
    stream = CanvasStream(digits, 8, seed=3)
    first, second = next(stream)[0], next(stream)[0]
    assert first.shape == (8, 50, 50) and not torch.equal(first, second)
    again = CanvasStream(digits, 8, seed=3)
    assert torch.equal(next(again)[0], first)
    state = again.state_dict()
    expected = [next(again)[0] for _ in range(3)]
    resumed = CanvasStream(digits, 8, seed=99)
    resumed.load_state_dict(state)
    for batch in expected:
        assert torch.equal(next(resumed)[0], batch)
    assert resumed.batches == 4
    assert not torch.equal(next(CanvasStream(digits, 8, seed=4))[0], first)


def test_canvas_stream_shards_split_the_global_batch():
    digits = load_mnist("train").images[:100]
    (whole,) = next(CanvasStream(digits, 6, seed=2, shard=(0, 1)))
    shares = [next(CanvasStream(digits, 6, seed=2, shard=(rank, 3)))[0] for rank in range(3)]
    assert torch.equal(torch.cat(shares), whole)
    with pytest.raises(ValueError, match="batch_size 6 must be divisible by the number of ranks"):
        CanvasStream(digits, 6, shard=(0, 4))


def test_canvas_stream_dtype_and_bad_arguments():
    digits = torch.rand(10, 28, 28)
    (batch,) = next(CanvasStream(digits, 4, max_digits=1, canvas_size=32, dtype=torch.float64))
    assert batch.dtype == torch.float64 and batch.shape == (4, 32, 32)
    with pytest.raises(ValueError, match=r"digits must be a non-empty \(M, 28, 28\) tensor"):
        CanvasStream(torch.rand(10, 20, 20), 4)
    with pytest.raises(ValueError, match="batch_size must be an integer of at least 1, got 0"):
        CanvasStream(digits, 0)
    with pytest.raises(ValueError, match="canvas_size must be an integer of at least 28"):
        CanvasStream(digits, 4, canvas_size=20)


def test_validation_digits_are_a_stratified_held_out_share_of_the_training_digits():
    labels = load_mnist("train").labels
    kept, held_out = split_digits(labels, 0.1)
    assert len(set(kept.tolist()) | set(held_out.tolist())) == len(labels)
    assert not set(kept.tolist()) & set(held_out.tolist())
    per_class = torch.bincount(labels)
    torch.testing.assert_close(torch.bincount(labels[held_out]).float(), (per_class * 0.1).round())
    train, validation = digit_pool("train", 0.1), digit_pool("validation", 0.1)
    assert len(train.images) == len(kept) and len(validation.images) == len(held_out)
    every = load_mnist("train").images
    assert torch.equal(validation.images, every[held_out])
    assert len(digit_pool("train", 0.0).images) == len(labels)
    with pytest.raises(ValueError, match="validation_fraction must be a number in"):
        split_digits(labels, 1.0)
    with pytest.raises(ValueError, match="split 'validation' needs validation_fraction > 0"):
        digit_pool("validation", 0.0)


def test_validation_canvases_are_built_from_the_held_out_digits(tmp_path):
    validation = multi_mnist(6, split="validation", validation_fraction=0.1, root=tmp_path)
    train = multi_mnist(6, split="train", validation_fraction=0.1, root=tmp_path)
    assert validation.images.shape == (6, 50, 50)
    assert not torch.equal(validation.images, train.images)
    names = sorted(p.name for p in (tmp_path / "multi_mnist").iterdir())
    assert any("-validation-v0.1-" in n for n in names) and any("-train-v0.1-" in n for n in names)


@pytest.mark.parametrize(
    "successes, trials, low, high",
    [
        # Wilson 95% intervals as published (e.g. Newcombe 1998, Table I; R's prop.test without
        # continuity correction)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (5, 10, 0.2366, 0.7634),
    ],
)
def test_binomial_interval_matches_published_wilson_intervals(successes, trials, low, high):
    got = binomial_interval(successes, trials)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_binomial_interval_agrees_with_scipy_and_checks_its_arguments():
    stats = pytest.importorskip("scipy.stats")
    for k, n in ((1970, 2000), (985, 1000), (2000, 2000)):
        ci = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert binomial_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)
    low, high = binomial_interval(1970, 2000, confidence=0.99)
    assert low < binomial_interval(1970, 2000)[0] and high <= 1
    with pytest.raises(ValueError, match="successes <= trials"):
        binomial_interval(3, 2)
    with pytest.raises(TypeError, match="trials must be an int"):
        binomial_interval(1, 2.0)
    with pytest.raises(ValueError, match="confidence must be a float in"):
        binomial_interval(1, 2, confidence=95)


def test_a_scale_from_the_normal_tail_fills_a_small_canvas_instead_of_failing():
    """A drawn scale below 28 / canvas_size would make a digit wider than the canvas: both
    the fixed sets and the stream shrink it to the canvas instead (28-pixel canvases are
    allowed)."""
    digit = torch.ones(28, 28)
    assert _shrink(digit, 0.5, canvas_size=28).shape == (28, 28)
    # 20,000 canvases hold several draws more than 3.3 standard deviations below the mean
    images, _ = compose_batch(
        torch.rand(3, 28, 28),
        20000,
        1,
        28,
        torch.Generator().manual_seed(0),
        resampling_matrices(28),
    )
    assert images.shape == (20000, 28, 28)
