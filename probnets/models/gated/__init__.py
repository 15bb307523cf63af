"""
Stochastic gated connectivity: networks whose wiring is a latent variable.

Every candidate connection carries a gate with a sparsity prior; the guide learns each gate's
posterior inclusion probability. :class:`NeuronDAG` gates individual neuron-to-neuron edges
(seed 002); :class:`LayerDAG` gates connections between layer blocks (seed 001).
"""

from probnets.models.gated.base import GatedNetwork, MaskedNetwork
from probnets.models.gated.layer_dag import LayerDAG
from probnets.models.gated.neuron_dag import NeuronDAG
from probnets.models.gated.priors import BernoulliPrior, BetaBernoulliPrior, CostPenalty

__all__ = [
    "BernoulliPrior",
    "BetaBernoulliPrior",
    "CostPenalty",
    "GatedNetwork",
    "LayerDAG",
    "MaskedNetwork",
    "NeuronDAG",
]
