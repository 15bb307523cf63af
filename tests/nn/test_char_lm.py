import math

import pyro
import pytest
import torch

from probnets.data.chars import (
    TBPTTBatches,
    batchify,
    load_corpus,
    load_docstring_corpus,
    load_pydoc_corpus,
)
from probnets.nn import CharLanguageModel, TBPTTObjective, evaluate_bpc, matched_hidden_size


def test_corpus_is_deterministic_and_splits_cover_the_text():
    a, b = load_pydoc_corpus(), load_pydoc_corpus()
    assert a.vocab == b.vocab and torch.equal(a.test, b.test)
    total = len(a.train) + len(a.valid) + len(a.test)
    assert total > 100_000 and len(a.valid) == int(0.05 * total)
    assert int(torch.cat([a.train, a.valid, a.test]).max()) < len(a.vocab)
    text = "".join(a.vocab[i] for i in a.train[:2000].tolist())
    assert " the " in text


def decode(corpus, ids):
    return "".join(corpus.vocab[i] for i in ids.tolist())


def test_docstring_corpus_reads_module_class_and_function_docstrings_in_path_order(tmp_path):
    (tmp_path / "b.py").write_text(
        '"""Module b."""\n\nclass K:\n    """Class K."""\n\n    def f(self):\n'
        '        """Method f."""\n\ndef g():\n    pass\n'
    )
    (tmp_path / "a.py").write_text('"""Module a, first in path order."""\n')
    for skipped in ("test", "idlelib", "site-packages"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "c.py").write_text(f'"""Skipped {skipped}."""\n')
    (tmp_path / "broken.py").write_text('"""Does not parse."""\ndef (:\n')
    corpus = load_docstring_corpus(0.1, 0.1, stdlib=tmp_path)
    text = decode(corpus, torch.cat([corpus.train, corpus.valid, corpus.test]))
    assert text == "Module a, first in path order.\n\nModule b.\n\nClass K.\n\nMethod f.\n"
    n = len(text)
    assert len(corpus.valid) == len(corpus.test) == int(0.1 * n)
    assert corpus.vocab == "".join(sorted(set(text)))
    assert str(tmp_path) in corpus.source
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no docstrings found"):
        load_docstring_corpus(stdlib=empty)


def test_standard_library_docstring_corpus_is_larger_than_pydoc():
    corpus = load_corpus("docstrings")
    assert corpus.source.startswith("standard-library docstrings (Python 3.")
    assert len(corpus.train) > 3 * len(load_pydoc_corpus().train)
    assert " the " in decode(corpus, corpus.valid[:5000])


def test_tbptt_batches_continue_each_other():
    ids = torch.arange(103)
    batches = TBPTTBatches(ids, seq_len=4, batch_size=3)
    streams = batchify(ids, 3)
    assert streams.shape == (34, 3) and torch.equal(streams[:, 1], torch.arange(34, 68))
    seen = []
    for _ in range(batches.chunks_per_epoch()):
        inputs, targets = next(batches)
        torch.testing.assert_close(targets[:-1], inputs[1:])
        seen.append(inputs)
    assert torch.equal(torch.cat(seen), streams[:-1])
    assert not batches.new_epoch
    next(batches)
    assert batches.new_epoch and batches.epoch == 1


def test_char_lm_objective_carries_state_and_bpc_is_uniform_at_zero_logits():
    pyro.set_rng_seed(0)
    ids = torch.randint(0, 11, (200,))
    for rnn in ("hyperlstm", "layernorm_lstm", "lstm"):
        kw = dict(hyper_size=6, hyper_embedding_size=2) if rnn == "hyperlstm" else {}
        model = CharLanguageModel(11, rnn, 4, 8, **kw).double()
        batches = TBPTTBatches(ids, 10, 4)
        objective = TBPTTObjective(model, batches)
        loss = objective(*next(batches))
        assert loss.dtype == torch.float64 and objective.state is not None
        assert not objective.state[0].requires_grad
        loss.backward()
        with torch.no_grad():
            model.decoder.weight.zero_()
            model.decoder.bias.zero_()
        assert evaluate_bpc(model, ids, 10, 4) == pytest.approx(math.log2(11))


def _parameters(hidden, rnn, **kwargs):
    return sum(p.numel() for p in CharLanguageModel(50, rnn, 8, hidden, **kwargs).parameters())


@pytest.mark.parametrize(
    "rnn, kwargs",
    [
        ("layernorm_lstm", {}),
        ("lstm", {}),
        ("hyperlstm", {"hyper_size": 8, "hyper_embedding_size": 4}),
    ],
)
@pytest.mark.parametrize("target", [20_000, 60_000])
def test_matched_hidden_size_is_the_closest_in_parameters(rnn, kwargs, target):
    hidden = matched_hidden_size(rnn, 50, target, embedding_size=8, max_hidden_size=256, **kwargs)
    below, at, above = (_parameters(h, rnn, **kwargs) for h in (hidden - 1, hidden, hidden + 1))
    # the count grows with the size, so the neighbours bracket the target and are no closer
    assert below < target < above
    assert abs(at - target) <= min(target - below, above - target)


def test_matched_hidden_size_passes_recurrent_arguments_and_layers():
    target = _parameters(24, "hyperlstm", hyper_size=8, hyper_embedding_size=4)
    assert (
        matched_hidden_size("hyperlstm", 50, target, 8, hyper_size=8, hyper_embedding_size=4) == 24
    )
    two_layers = matched_hidden_size("lstm", 50, target, 8, num_layers=2)
    assert two_layers < matched_hidden_size("lstm", 50, target, 8)
    with pytest.raises(ValueError, match="raise max_hidden_size"):
        matched_hidden_size("lstm", 50, 10**9, 8, max_hidden_size=64)


def test_errors():
    with pytest.raises(ValueError, match="rnn must be one of"):
        CharLanguageModel(5, "gru")
    with pytest.raises(ValueError, match="valid_fraction and test_fraction"):
        load_pydoc_corpus(valid_fraction=0.7)
    with pytest.raises(ValueError, match="unknown corpus 'wiki'"):
        load_corpus("wiki")
    with pytest.raises(ValueError, match="inputs must be int64 ids"):
        CharLanguageModel(5, "lstm", 4, 8)(torch.zeros(3, 2))
