import pytest
import torch
from torch import nn

from probnets.nn import (
    CharLanguageModel,
    HyperLSTM,
    LayerNormLSTM,
    decayed_parameters,
    weight_decay_groups,
)


def decayed_names(module):
    decayed = {id(p) for p in decayed_parameters(module)}
    return {name for name, p in module.named_parameters() if id(p) in decayed}


def test_layer_norm_gains_stored_as_matrices_are_not_decayed():
    assert decayed_names(LayerNormLSTM(3, 5, num_layers=2)) == {
        f"cells.{layer}.{name}" for layer in (0, 1) for name in ("weight_ih", "weight_hh")
    }
    hyper = decayed_names(HyperLSTM(3, 5, hyper_size=4, hyper_embedding_size=2))
    assert hyper == {
        "cells.0.weight_ih",
        "cells.0.weight_hh",
        "cells.0.embedding_weight",
        "cells.0.scale_weight",
        "cells.0.hyper_cell.weight_ih",
        "cells.0.hyper_cell.weight_hh",
    }
    model = CharLanguageModel(11, "layernorm_lstm", 4, 6, 1)
    assert decayed_names(model) == {
        "embedding.weight",
        "rnn.cells.0.weight_ih",
        "rnn.cells.0.weight_hh",
        "decoder.weight",
    }


def test_a_module_names_its_own_exempt_matrices_and_shared_parameters_count_once():
    class Gained(nn.Module):
        no_weight_decay = ("gain",)

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(2, 2))
            self.gain = nn.Parameter(torch.ones(2, 2))

    shared = nn.Linear(2, 2)
    model = nn.Sequential(Gained(), shared, shared)
    assert [p for p in decayed_parameters(model)] == [model[0].weight, shared.weight]


def test_weight_decay_groups_partition_the_parameters():
    model = HyperLSTM(3, 5, hyper_size=4, hyper_embedding_size=2)
    decayed, kept = weight_decay_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and kept["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} | {id(p) for p in kept["params"]} == {
        id(p) for p in model.parameters()
    }
    assert not {id(p) for p in decayed["params"]} & {id(p) for p in kept["params"]}
    assert len(weight_decay_groups(nn.LayerNorm(3), 0.1)) == 1  # no empty group
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        weight_decay_groups(model, -1.0)
