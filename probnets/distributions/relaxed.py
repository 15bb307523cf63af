"""
Noise-keeping reparameterizations of Bernoulli and one-hot categorical variables.

Pyro's :class:`~pyro.distributions.RelaxedBernoulli` and
:class:`~pyro.distributions.RelaxedOneHotCategorical` draw their uniform noise
internally, so the same noise cannot be reused to build the hard sample ``b``, its
relaxation ``σ_λ(z)`` and the conditional relaxation ``σ_λ(z̃)`` that REBAR and RELAX
need. The functions here make the noise an explicit argument.

For a Bernoulli with logits ``ℓ = logit θ`` and ``u ~ U(0, 1)`` (Maddison et al. 2017)::

    z = logit(u) + ℓ,       b = H(z) = 1[z > 0] ~ Bernoulli(θ),       σ_λ(z) = sigmoid(z / λ).

For a categorical with normalized logits ``ℓ_k = log π_k`` and ``u_k ~ U(0, 1)``
(Gumbel-max; Jang et al. 2017, Maddison et al. 2017)::

    z_k = ℓ_k − log(−log u_k),   b = onehot(argmax_k z_k),   σ_λ(z) = softmax(z / λ).

The conditional ``z̃ ~ p(z | b)`` is drawn with fresh noise ``v`` and keeps its
dependence on the logits, so gradients flow through it (Tucker et al. 2017, appendix
"Conditional samples"). Dropping that dependence biases REBAR and RELAX.

**References**

[1] *The Concrete Distribution*, C. Maddison, A. Mnih, Y. W. Teh (ICLR 2017)

[2] *Categorical Reparameterization with Gumbel-Softmax*, E. Jang, S. Gu, B. Poole (ICLR 2017)

[3] *REBAR: Low-variance, unbiased gradient estimates for discrete latent variable models*,
    G. Tucker, A. Mnih, C. Maddison, D. Lawson, J. Sohl-Dickstein (NeurIPS 2017)
"""

import torch
import torch.nn.functional as F


def _clamp_uniform(u: torch.Tensor) -> torch.Tensor:
    # keep logit(u) and log(-log u) finite in the dtype of u
    tiny = torch.finfo(u.dtype).tiny
    eps = torch.finfo(u.dtype).eps
    return u.clamp(min=tiny, max=1 - eps)


def bernoulli_logistic(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """
    Logistic reparameterization ``z = logit(u) + ℓ``, so that ``1[z > 0] ~ Bernoulli(sigmoid(ℓ))``.

    :param torch.Tensor logits: Bernoulli logits ``ℓ``.
    :param torch.Tensor u: uniform noise broadcastable with ``logits``.
    """
    u = _clamp_uniform(u)
    return torch.log(u) - torch.log1p(-u) + logits


def bernoulli_conditional_logistic(
    logits: torch.Tensor, b: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """
    Sample ``z̃ ~ p(z | H(z) = b)`` for ``z = logit(u) + ℓ``, as a differentiable function of ``ℓ``.

    Given ``b = 1``, ``u = 1 − θ + vθ`` and ``z̃ = log(1 + v / ((1 − v)(1 − θ)))``;
    given ``b = 0``, ``u = v(1 − θ)`` and ``z̃ = −log(1 + (1 − v) / (vθ))``. Both are computed in
    log space with ``log θ = logsigmoid(ℓ)`` and ``log(1 − θ) = logsigmoid(−ℓ)``.

    :param torch.Tensor logits: Bernoulli logits ``ℓ``.
    :param torch.Tensor b: the hard sample, 0. or 1.
    :param torch.Tensor v: fresh uniform noise.
    """
    v = _clamp_uniform(v)
    log_v, log_1mv = torch.log(v), torch.log1p(-v)
    z1 = F.softplus(log_v - log_1mv - F.logsigmoid(-logits))
    z0 = -F.softplus(log_1mv - log_v - F.logsigmoid(logits))
    return torch.where(b > 0.5, z1, z0)


def categorical_gumbel(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """
    Gumbel reparameterization ``z_k = log π_k − log(−log u_k)``; ``argmax_k z_k ~ Categorical(π)``.

    :param torch.Tensor logits: logits over the rightmost dimension (normalized here).
    :param torch.Tensor u: uniform noise of the same shape.
    """
    u = _clamp_uniform(u)
    return logits.log_softmax(-1) - torch.log(-torch.log(u))


def categorical_conditional_gumbel(
    logits: torch.Tensor, b: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """
    Sample ``z̃ ~ p(z | argmax z = b)`` for the Gumbel reparameterization,
    differentiably in the logits.

    With normalized logits ``ℓ`` and ``k* = argmax b`` (REBAR, appendix):
    ``z̃_{k*} = −log(−log v_{k*})`` and, for ``k ≠ k*``,
    ``z̃_k = −log(−log(v_k) / π_k − log v_{k*})``, a Gumbel with location ``ℓ_k`` truncated
    below ``z̃_{k*}``.

    :param torch.Tensor logits: logits over the rightmost dimension.
    :param torch.Tensor b: one-hot hard sample.
    :param torch.Tensor v: fresh uniform noise of the same shape.
    """
    v = _clamp_uniform(v)
    log_pi = logits.log_softmax(-1)
    neg_log_v = -torch.log(v)
    neg_log_v_top = (neg_log_v * b).sum(-1, keepdim=True)
    z_top = -torch.log(neg_log_v_top)
    z_other = -torch.log(neg_log_v * torch.exp(-log_pi) + neg_log_v_top)
    return torch.where(b > 0.5, z_top, z_other)


def bernoulli_hard(z: torch.Tensor) -> torch.Tensor:
    """``H(z) = 1[z > 0]`` in the dtype of ``z``."""
    return (z > 0).to(z.dtype)


def categorical_hard(z: torch.Tensor) -> torch.Tensor:
    """One-hot argmax over the rightmost dimension, in the dtype of ``z``."""
    return F.one_hot(z.argmax(-1), z.size(-1)).to(z.dtype)


def relax_bernoulli(z: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """Concrete relaxation ``σ_λ(z) = sigmoid(z / λ)``."""
    return torch.sigmoid(z / temperature)


def relax_categorical(z: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """Gumbel-softmax relaxation ``softmax(z / λ)`` over the rightmost dimension."""
    return (z / temperature).softmax(-1)
