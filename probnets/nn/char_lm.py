"""Character-level language model around any of the LSTMs here, its truncated-BPTT
objective and its bits-per-character evaluation (the HyperLSTM experiments of Ha et al.
2016, section 4.2, at a scale a CPU can train)."""

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from probnets.data.validation import check_size
from probnets.loading import Loadable

from .hyperlstm import HyperLSTM, HyperLSTMState
from .layer_norm_lstm import LayerNormLSTM

if TYPE_CHECKING:
    from probnets.data.chars import TBPTTBatches

__all__ = [
    "CharLanguageModel",
    "TBPTTObjective",
    "evaluate_bpc",
    "matched_hidden_size",
    "state_tensors",
    "RNN_TYPES",
    "RNNType",
]

RNN_TYPES = ("hyperlstm", "layernorm_lstm", "lstm")
# The same set as a type, for annotations.
RNNType = Literal["hyperlstm", "layernorm_lstm", "lstm"]


class CharLanguageModel(Loadable, nn.Module):
    """Embedding -> recurrent network -> linear softmax over the next character.

    :param int vocab_size: number of characters.
    :param str rnn: ``"hyperlstm"``, ``"layernorm_lstm"`` or ``"lstm"`` (``nn.LSTM``).
    :param int embedding_size: character embedding width.
    :param int hidden_size: recurrent width.
    :param int num_layers: stacked recurrent layers.
    :param float dropout: dropout on the embeddings and the recurrent output (training only).
    :param rnn_kwargs: extra arguments of the recurrent module (e.g. ``hyper_size``,
        ``hyper_embedding_size``, ``recurrent_dropout``).
    """

    def __init__(
        self,
        vocab_size: int,
        rnn: RNNType = "hyperlstm",
        embedding_size: int = 64,
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.0,
        **rnn_kwargs: Any,
    ) -> None:
        super().__init__()
        if rnn not in RNN_TYPES:
            raise ValueError(f"rnn must be one of {RNN_TYPES}, got {rnn!r}")
        for name, value in (
            ("vocab_size", vocab_size),
            ("embedding_size", embedding_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            check_size(name, value)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self._config = dict(
            vocab_size=vocab_size,
            rnn=rnn,
            embedding_size=embedding_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dropout=dropout,
            **rnn_kwargs,
        )
        self.rnn_type = rnn
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        cls = {"hyperlstm": HyperLSTM, "layernorm_lstm": LayerNormLSTM, "lstm": nn.LSTM}[rnn]
        self.rnn = cls(embedding_size, hidden_size, num_layers, **rnn_kwargs)
        self.dropout = dropout
        self.decoder = nn.Linear(hidden_size, vocab_size)

    def model_config(self) -> dict[str, Any]:
        return dict(self._config)

    def forward(
        self, inputs: Tensor, state: Sequence[Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Logits ``(T, B, vocab)`` for ids ``(T, B)``, and the final recurrent state."""
        if inputs.dtype != torch.long or inputs.dim() != 2:
            raise ValueError(
                f"inputs must be int64 ids of shape (T, B), got {inputs.dtype} "
                f"{tuple(inputs.shape)}"
            )
        x = F.dropout(self.embedding(inputs), self.dropout, self.training)
        out, final = self.rnn(x, state)
        return self.decoder(F.dropout(out, self.dropout, self.training)), final

    def loss(
        self, inputs: Tensor, targets: Tensor, state: Sequence[Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Mean next-character negative log-likelihood (nats) and the final state."""
        logits, final = self(inputs, state)
        nll = F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1))
        return nll, final


def matched_hidden_size(
    rnn: RNNType,
    vocab_size: int,
    target_parameters: int,
    embedding_size: int = 64,
    num_layers: int = 1,
    max_hidden_size: int = 2048,
    **rnn_kwargs: Any,
) -> int:
    """The hidden size at which ``CharLanguageModel(vocab_size, rnn, embedding_size, hidden,
    num_layers, **rnn_kwargs)`` has the parameter count closest to ``target_parameters``, so
    that recurrent networks are compared at equal size.

    The count grows with the hidden size, so bisection over ``[1, max_hidden_size]`` finds the
    last size at or below the target, and it or the next is the closest. The candidates are
    built like any model, drawing their initial weights from torch's global generator, so a
    seeded script that calls this gets the same models on every run.
    """

    def count(hidden: int) -> int:
        model = CharLanguageModel(vocab_size, rnn, embedding_size, hidden, num_layers, **rnn_kwargs)
        return sum(p.numel() for p in model.parameters())

    low, high = 1, max_hidden_size
    while low < high:
        middle = (low + high + 1) // 2
        if count(middle) <= target_parameters:
            low = middle
        else:
            high = middle - 1
    if low == max_hidden_size:
        raise ValueError(
            f"a {rnn} model of hidden size max_hidden_size={max_hidden_size} has "
            f"at most {target_parameters} parameters; raise max_hidden_size"
        )
    return min((low, low + 1), key=lambda hidden: abs(count(hidden) - target_parameters))


def state_tensors(state: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Every tensor of a recurrent state as a plain tuple, for a checkpoint that must load
    with ``weights_only=True``: ``(h, c)``, or ``(h, c, hyper_h, hyper_c)`` for a
    :class:`~probnets.nn.HyperLSTMState`. Each recurrent network here takes that tuple back
    as its state."""
    return state.astuple() if isinstance(state, HyperLSTMState) else tuple(state)


def _detach(state: Sequence[Tensor]) -> tuple[Tensor, ...]:
    if isinstance(state, HyperLSTMState):
        return state.detach()
    return tuple(s.detach() for s in state)


class TBPTTObjective:
    """``objective(inputs, targets) -> loss`` for truncated back-propagation through time.

    Carries the model's recurrent state (detached) from one call to the next, so
    consecutive batches must continue each other, as :class:`probnets.data.chars.TBPTTBatches`
    yields them; the state restarts at zero when ``batches.new_epoch`` is set or the batch
    size changes. Pass it to ``Trainer(LossObjective(objective, model), batches, config)``.
    """

    def __init__(self, model: CharLanguageModel, batches: "TBPTTBatches | None" = None) -> None:
        self.model = model
        self.batches = batches
        self.state: tuple[Tensor, ...] | None = None

    def reset(self) -> None:
        self.state = None

    def __call__(self, inputs: Tensor, targets: Tensor) -> Tensor:
        new_epoch = self.batches is not None and self.batches.new_epoch
        if self.state is None or new_epoch or self.state[0].shape[-2] != inputs.shape[1]:
            self.state = None
        loss, state = self.model.loss(inputs, targets, self.state)
        self.state = _detach(state)
        return loss


@torch.no_grad()
def evaluate_bpc(
    model: CharLanguageModel, ids: Tensor, seq_len: int = 100, batch_size: int = 16
) -> float:
    """Bits per character of ``model`` on the 1-d id sequence ``ids``, with the state carried
    across chunks of ``batch_size`` parallel streams (the last ``len % batch_size`` ids
    are dropped)."""
    if ids.dim() != 1 or ids.numel() < 2 * batch_size:
        raise ValueError(
            f"ids must be 1-d with at least {2 * batch_size} entries, got shape {tuple(ids.shape)}"
        )
    n = ids.numel() // batch_size
    streams = ids[: n * batch_size].view(batch_size, n).t()
    was_training = model.training
    model.eval()
    state, total, count = None, 0.0, 0
    for start in range(0, streams.shape[0] - 1, seq_len):
        end = min(start + seq_len, streams.shape[0] - 1)
        logits, state = model(streams[start:end], state)
        targets = streams[start + 1 : end + 1]
        total += F.cross_entropy(
            logits.reshape(-1, model.vocab_size), targets.reshape(-1), reduction="sum"
        ).item()
        count += targets.numel()
    model.train(was_training)
    return total / (count * math.log(2.0))
