"""Calibration and out-of-distribution metrics for probabilistic classifiers."""

import torch


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, num_bins: int = 15
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Expected calibration error (Guo et al. 2017, eq. 3) with equal-width confidence bins.

    .. math::

        \mathrm{ECE} = \sum_b \frac{|B_b|}{N} \,\bigl|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)\bigr|,

    where :math:`B_b` holds the examples whose top-class probability falls in bin :math:`b`.

    :param probs: predictive probabilities ``(N, C)``.
    :param labels: integer labels ``(N,)``.
    :returns: ``(ece, bins)`` with ``bins`` a dict of per-bin ``confidence``, ``accuracy`` and
        ``count`` tensors (empty bins have count 0 and NaN confidence/accuracy).
    """
    if probs.dim() != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(
            f"probs must be (N, C) and labels (N,), got {tuple(probs.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
    confidence, predicted = probs.max(-1)
    correct = (predicted == labels).to(probs.dtype)
    index = (confidence * num_bins).long().clamp(max=num_bins - 1)
    count = torch.zeros(num_bins, dtype=probs.dtype, device=probs.device).index_add_(
        0, index, torch.ones_like(confidence)
    )
    conf_sum = torch.zeros_like(count).index_add_(0, index, confidence)
    acc_sum = torch.zeros_like(count).index_add_(0, index, correct)
    ece = (conf_sum - acc_sum).abs().sum() / probs.shape[0]
    return ece, {"confidence": conf_sum / count, "accuracy": acc_sum / count, "count": count}


def auroc(scores_negative: torch.Tensor, scores_positive: torch.Tensor) -> float:
    """Area under the ROC curve for telling positives (e.g. out-of-distribution inputs, which
    should score higher) from negatives: the Mann-Whitney probability
    ``P(s_pos > s_neg) + P(s_pos == s_neg) / 2``, computed from ranks with ties averaged."""
    neg, pos = scores_negative.reshape(-1), scores_positive.reshape(-1)
    if neg.numel() == 0 or pos.numel() == 0:
        raise ValueError("auroc needs at least one score in each group")
    scores = torch.cat([neg, pos]).double()
    order = scores.argsort()
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=scores.dtype, device=scores.device)
    # Average the ranks of tied scores.
    unique, inverse = torch.unique(sorted_scores, return_inverse=True)
    rank_sum = torch.zeros_like(unique).index_add_(0, inverse, ranks[order])
    rank_count = torch.zeros_like(unique).index_add_(0, inverse, torch.ones_like(scores))
    ranks[order] = (rank_sum / rank_count)[inverse]
    n_pos, n_neg = pos.numel(), neg.numel()
    return float((ranks[neg.numel() :].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
