"""
Stochastic gated connectivity: networks whose wiring is a latent variable.

Every candidate connection carries a gate with a sparsity prior; the guide learns each gate's
posterior inclusion probability. :class:`NeuronDAG` gates individual neuron-to-neuron edges
(the Dynamic Neural Manifold's wiring); :class:`LayerDAG` gates connections between layer
blocks (a Keras ``Connection`` layer's graph of every earlier layer into every later one).
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
