"""What the AIR experiments share: the estimator chosen for the ``z_pres`` sites and count
evaluation (accuracy and confusion of the MAP object counts, and a confidence interval for an
accuracy)."""

import math
from statistics import NormalDist
from typing import Any

import torch
from pyro.infer import ELBO

from probnets.infer import DiscreteELBO, standard_estimators
from probnets.models.air import count_accuracy, count_confusion

__all__ = ["BASELINES", "ESTIMATORS", "binomial_interval", "evaluate_counts", "make_elbo"]

#: Estimators AIR trains under (``tracegraph`` is Pyro's ``TraceGraph_ELBO``).
ESTIMATORS = ("score", "relaxed", "rebar", "relax", "disarm", "vimco", "tracegraph")
#: Baselines of the ``score`` estimator: the model's LSTM, NVIL, a decaying average, none.
BASELINES = ("lstm", "nvil", "avg", "none")

# The registry name of the score-function estimator with each baseline; the LSTM baseline
# lives in the model (``AIR(use_baseline=True)``), so the estimator itself is plain.
_SCORE_WITH_BASELINE = {"lstm": "score", "none": "score", "nvil": "nvil", "avg": "score+avg"}


def make_elbo(
    estimator: Any, baseline: str = "lstm", temperature: float = 0.5, num_particles: int = 5
) -> ELBO:
    """The ELBO named ``estimator`` from the shared registry
    (:func:`probnets.infer.standard_estimators`); for ``score``, ``baseline`` picks the
    model's LSTM baseline (``lstm``), none, NVIL or a decaying average.

    AIR runs a fixed number of steps and handles presence by masking, so its dependency
    structure never changes: the probnets estimators reuse it (``cache_dependencies``)
    instead of tracking provenance at every step.

    :param str estimator: one of :data:`ESTIMATORS`.
    :param str baseline: one of :data:`BASELINES` (used by ``score`` only).
    :param float temperature: (initial) temperature of ``relaxed``, ``rebar``, ``relax``.
    :param int num_particles: particles of ``vimco``.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if estimator == "score":
        estimator = _SCORE_WITH_BASELINE[baseline]
    elbo = standard_estimators([estimator], temperature=temperature, num_particles=num_particles)[
        estimator
    ]()
    if isinstance(elbo, DiscreteELBO):
        elbo.cache_dependencies = True
    return elbo


def evaluate_counts(
    air: Any, images: torch.Tensor, counts: torch.Tensor, batch_size: int = 500
) -> tuple[float, torch.Tensor]:
    """Count accuracy and confusion (rows: true 0..max, columns: inferred 0..T) of ``air``'s
    MAP counts on ``images``, inferred ``batch_size`` canvases at a time.

    :returns: ``(accuracy, confusion)``, a float and a ``(max true + 1, T + 1)`` tensor.
    """
    pred = torch.cat(
        [air.infer(images[i : i + batch_size]).counts for i in range(0, len(images), batch_size)]
    ).cpu()
    counts = counts.cpu().long()
    num_true = max(int(counts.max()) + 1, 1)
    confusion = count_confusion(pred, counts, num_true=num_true, num_pred=air.num_steps + 1)
    return count_accuracy(pred, counts), confusion


def binomial_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    r"""Wilson score interval (Wilson 1927) for a binomial proportion, e.g. an accuracy of
    ``successes`` right out of ``trials``: with ``p̂ = successes / trials`` and ``z`` the
    ``(1 + confidence) / 2`` quantile of the standard normal,

    .. math::

        \frac{\hat p + z^2 / 2n \pm z \sqrt{\hat p (1 - \hat p) / n + z^2 / 4n^2}}
             {1 + z^2 / n}.

    Unlike the normal (Wald) interval it stays inside [0, 1] and keeps close to its nominal
    coverage near 0 and 1, where accuracies of counting models live (Brown, Cai & DasGupta
    2001, *Interval estimation for a binomial proportion*).

    :param int successes: number right, ``0 <= successes <= trials``.
    :param int trials: number of trials (scenes), positive.
    :param float confidence: coverage in (0, 1).
    :returns: ``(low, high)``.
    """
    for name, value in (("successes", successes), ("trials", trials)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(
            f"need 0 <= successes <= trials and trials >= 1, got successes "
            f"{successes} and trials {trials}"
        )
    if not (isinstance(confidence, float) and 0 < confidence < 1):
        raise ValueError(f"confidence must be a float in (0, 1), got {confidence!r}")
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    p, n = successes / trials, trials
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)
