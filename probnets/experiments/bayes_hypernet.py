"""What the Bayesian-hypernetwork experiments share: the MNIST arrays and out-of-distribution
inputs they evaluate on, classification and gap-regression metrics, and the default
embedding size of each parameterization."""

from collections.abc import Mapping
from typing import Any

import torch

from probnets.data import load_mnist
from probnets.models.bayes_hypernet import auroc, expected_calibration_error
from probnets.models.bayes_hypernet.model import ClassificationPrediction
from probnets.models.bayes_hypernet.toy import gap_function, gap_regions

__all__ = [
    "classification_metrics",
    "default_embedding_dim",
    "gap_metrics",
    "mnist_arrays",
    "out_of_distribution",
]


def mnist_arrays(
    split: str, num: int, dtype: torch.dtype, device: torch.device | str | None
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Flattened MNIST images ``(N, 784)`` and labels: ``num`` digits of the split, a fixed
    random subset (the offline subset is sorted by class, so a prefix would be one class).

    :returns: ``(images, labels, source)``, ``source`` naming where the digits came from.
    """
    mnist = load_mnist(split)
    keep = torch.randperm(len(mnist.labels), generator=torch.Generator().manual_seed(0))[:num]
    images = mnist.images[keep].reshape(-1, 784).to(device=device, dtype=dtype)
    return images, mnist.labels[keep].to(device), mnist.source


def out_of_distribution(images: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Uniform-noise images and pixel-scrambled digits (one fixed permutation per image),
    with the dtype and device of ``images``: ``{"noise": ..., "scrambled": ...}``."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(images.shape, generator=g).to(images)
    order = torch.argsort(torch.rand(images.shape, generator=g), dim=-1).to(images.device)
    return {"noise": noise, "scrambled": images.gather(-1, order)}


def classification_metrics(
    prediction: ClassificationPrediction,
    labels: torch.Tensor,
    ood_predictions: Mapping[str, ClassificationPrediction],
) -> dict[str, float]:
    """Accuracy, NLL, ECE and AUROC (in- vs out-of-distribution) from predictions.

    :param prediction: a classifier's prediction (``probs``, ``entropy``,
        ``mutual_information``) on the test inputs.
    :param labels: the test labels.
    :param dict ood_predictions: ``{name: prediction}`` on out-of-distribution inputs; each
        adds ``auroc_<name>_entropy`` and ``auroc_<name>_mi`` (the predictive entropy and the
        mutual information as scores separating test from out-of-distribution inputs).
    """
    probs = prediction.probs
    ece, _ = expected_calibration_error(probs, labels)
    nll = -probs.gather(-1, labels[:, None]).clamp_min(1e-12).log().mean()
    row = {
        "accuracy": float((probs.argmax(-1) == labels).double().mean()),
        "nll": float(nll),
        "ece": float(ece),
    }
    for name, ood in ood_predictions.items():
        row[f"auroc_{name}_entropy"] = auroc(prediction.entropy, ood.entropy)
        row[f"auroc_{name}_mi"] = auroc(prediction.mutual_information, ood.mutual_information)
    return row


def default_embedding_dim(
    embedding_dim: int | None, parameterization: str, generator: str | None
) -> int | None:
    """The default embedding size: 2 per unit, 8 per layer or input unit, none for the
    identity generator (whose embeddings are the weights); a given value is kept."""
    if embedding_dim is not None or generator == "identity":
        return embedding_dim
    return 2 if parameterization == "unit" else 8


def gap_metrics(model: Any, num_samples: int) -> dict[str, float]:
    """Mean predictive and epistemic std on the data, in the gap and outside, and ratios.

    ``model`` is any regressor with ``predict(x, num_samples)`` returning ``mean``, ``std``
    and ``epistemic_std`` and a ``noise_scale`` tensor fixing dtype and device (a
    :class:`~probnets.models.bayes_hypernet.BayesianHypernet` or the GP reference)."""
    regions = gap_regions(dtype=model.noise_scale.dtype, device=model.noise_scale.device)
    row = {}
    for name, x in regions.items():
        prediction = model.predict(x, num_samples)
        row[f"std_{name}"] = float(prediction.std.mean())
        row[f"epistemic_{name}"] = float(prediction.epistemic_std.mean())
        if name == "data":
            row["rmse_data"] = float((prediction.mean - gap_function(x[:, 0])).pow(2).mean().sqrt())
    for name in ("gap", "outside"):
        row[f"std_ratio_{name}"] = row[f"std_{name}"] / row["std_data"]
    return row
