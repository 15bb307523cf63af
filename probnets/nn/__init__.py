"""Deterministic building blocks: per-example (dynamic) layers, static hypernetworks,
the HyperLSTM and the layer-norm LSTM, the reactive query network, and the small
objectives used to train them (with :class:`~probnets.train.LossObjective`)."""

from .char_lm import (
    CharLanguageModel,
    TBPTTObjective,
    evaluate_bpc,
    matched_hidden_size,
    state_tensors,
)
from .classify import accuracy, cross_entropy_objective
from .functional import dynamic_conv2d, dynamic_linear
from .hyperlstm import HyperLSTM, HyperLSTMCell, HyperLSTMState
from .hypernet import HyperCNN, HyperConv2d, StaticHyperNetwork
from .layer_norm_lstm import LayerNormLSTM, LayerNormLSTMCell
from .reactive import ReactiveQueryNet, StaticQueryCNN
from .weight_decay import decayed_parameters, weight_decay_groups

__all__ = [
    "CharLanguageModel",
    "HyperCNN",
    "HyperConv2d",
    "HyperLSTM",
    "HyperLSTMCell",
    "HyperLSTMState",
    "LayerNormLSTM",
    "LayerNormLSTMCell",
    "ReactiveQueryNet",
    "StaticHyperNetwork",
    "StaticQueryCNN",
    "TBPTTObjective",
    "accuracy",
    "cross_entropy_objective",
    "decayed_parameters",
    "dynamic_conv2d",
    "dynamic_linear",
    "evaluate_bpc",
    "matched_hidden_size",
    "state_tensors",
    "weight_decay_groups",
]
