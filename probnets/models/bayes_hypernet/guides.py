r"""Variational families over the hypernetwork's latent embeddings.

``"mean_field"`` is :class:`~pyro.infer.autoguide.AutoNormal` (independent Normals),
``"full_rank"`` :class:`~pyro.infer.autoguide.AutoMultivariateNormal`, ``"flow"``
:class:`AutoAffineIAFNormal` below, and ``"delta"`` :class:`~pyro.infer.autoguide.AutoDelta`,
a point estimate (MAP) of the embeddings: with it the model is a deterministic hypernetwork
whose embeddings are regularised by the prior, the baseline the Bayesian variants are compared
with. Every family starts at a draw from the prior (``init_to_sample``): starting all
per-unit embeddings at the prior median would make every unit of a layer identical, a
symmetry gradient descent cannot break.
"""

from collections.abc import Callable, Sequence
from typing import Any, Literal

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.distributions.transforms import ComposeTransform, affine_autoregressive
from pyro.infer.autoguide import (
    AutoContinuous,
    AutoDelta,
    AutoGuide,
    AutoMultivariateNormal,
    AutoNormal,
)
from pyro.infer.autoguide.initialization import init_to_sample
from pyro.nn import PyroParam
from torch import nn

GUIDES = ("mean_field", "full_rank", "flow", "delta")
#: The variational families of :data:`GUIDES`.
GuideKind = Literal["mean_field", "full_rank", "flow", "delta"]


class AutoAffineIAFNormal(AutoContinuous):
    r"""A normalizing-flow guide that starts as a narrow Normal around its initial point.

    .. math::

        \epsilon \sim \mathcal N(0, I), \qquad
        z = \mu + \sigma \odot (f_K \circ \dots \circ f_1)(\epsilon),

    with :math:`f_k` inverse autoregressive flows (Kingma et al. 2016; Pyro's
    :class:`~pyro.distributions.transforms.AffineAutoregressive`) and a learned elementwise
    affine map last. Pyro's :class:`~pyro.infer.autoguide.AutoIAFNormal` has no such affine
    map, so it starts at the standard Normal whatever ``init_loc_fn`` says; here
    :math:`\mu` starts at ``init_loc_fn``'s point and :math:`\sigma` at ``init_scale``,
    like the Gaussian guides, so all families start from the same place.

    :param callable model: the Pyro model.
    :param int num_transforms: number of IAF layers :math:`K`.
    :param list hidden_dims: hidden widths of each IAF's MADE network (each at least the
        latent dimension; default ``[2 * latent_dim]``).
    :param callable init_loc_fn: per-site initialisation.
    :param float init_scale: initial :math:`\sigma`.
    """

    # PyroModule turns the PyroParam assigned in _setup_prototype into a tensor attribute
    scale: torch.Tensor

    def __init__(
        self,
        model: Callable[..., Any],
        num_transforms: int = 2,
        hidden_dims: Sequence[int] | None = None,
        init_loc_fn: Callable[..., torch.Tensor] = init_to_sample,
        init_scale: float = 0.1,
    ) -> None:
        if not isinstance(num_transforms, int) or num_transforms < 1:
            raise ValueError(f"num_transforms must be a positive int, got {num_transforms!r}")
        self.num_transforms, self.hidden_dims = num_transforms, hidden_dims
        self._init_scale = init_scale
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        if self.latent_dim < 2:
            raise ValueError(
                f"the flow guide needs at least 2 latent dimensions, the model has "
                f"{self.latent_dim}; use guide='full_rank'"
            )
        self.loc = nn.Parameter(self._init_loc())
        self.scale = PyroParam(  # type: ignore[assignment]
            torch.full_like(self.loc, self._init_scale), constraints.softplus_positive
        )
        hidden = self.hidden_dims or [2 * self.latent_dim]
        self.flows = nn.ModuleList(
            affine_autoregressive(self.latent_dim, hidden_dims=hidden)
            for _ in range(self.num_transforms)
        ).to(self.loc)

    def get_base_dist(self) -> dist.TorchDistribution:
        """The standard Normal the flow transforms."""
        return dist.Normal(torch.zeros_like(self.loc), torch.ones_like(self.loc)).to_event(1)

    def get_transform(self, *args: Any, **kwargs: Any) -> ComposeTransform:
        """The IAFs then the affine map ``z = loc + scale * u``."""
        shift = dist.transforms.AffineTransform(self.loc, self.scale, event_dim=1)
        # Cached, so the guide's log-density of its own sample reuses the forward pass instead
        # of the D-step autoregressive inversion.
        return ComposeTransform([*self.flows, shift], cache_size=1)


def make_guide(
    kind: GuideKind,
    model: Callable[..., Any],
    init_scale: float = 0.1,
    flow_transforms: int = 2,
    flow_hidden: Sequence[int] | None = None,
) -> AutoGuide:
    """The autoguide of family ``kind`` (one of :data:`GUIDES`) for ``model``."""
    if kind == "mean_field":
        return AutoNormal(model, init_loc_fn=init_to_sample, init_scale=init_scale)
    if kind == "full_rank":
        return AutoMultivariateNormal(model, init_loc_fn=init_to_sample, init_scale=init_scale)
    if kind == "flow":
        return AutoAffineIAFNormal(
            model, num_transforms=flow_transforms, hidden_dims=flow_hidden, init_scale=init_scale
        )
    if kind == "delta":
        return AutoDelta(model, init_loc_fn=init_to_sample)
    raise ValueError(f"guide must be one of {GUIDES}, got {kind!r}")
