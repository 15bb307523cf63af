"""An offline character corpus for language-model experiments, and truncated-BPTT batches.

The corpus is the English text of CPython's ``pydoc_data.topics`` (the help topics of the
language reference, about 465k characters in Python 3.11), which ships with every CPython
install, so character-level models can be trained and compared without a download.
"""

from collections import namedtuple

import torch

__all__ = ["CharCorpus", "load_pydoc_corpus", "TBPTTBatches", "batchify"]

CharCorpus = namedtuple("CharCorpus", ["train", "valid", "test", "vocab", "source"])
CharCorpus.__doc__ = """Character ids (int64 tensors) of three contiguous splits, the
vocabulary (a string; id ``i`` is ``vocab[i]``), and the source name."""


def load_pydoc_corpus(valid_fraction=0.05, test_fraction=0.05):
    """Load the ``pydoc_data.topics`` text as a :class:`CharCorpus`.

    The topics are joined in sorted-key order; the first ``1 - valid - test`` of the text is
    the training split, then validation, then test (contiguous, so held-out text is unseen
    prose, not interleaved sentences). The vocabulary covers the whole text, so no split has
    unknown characters.
    """
    if not (0 < valid_fraction < 0.5 and 0 < test_fraction < 0.5):
        raise ValueError(
            f"valid_fraction and test_fraction must be in (0, 0.5), got "
            f"{valid_fraction!r} and {test_fraction!r}"
        )
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    text = "".join(topics[key] for key in sorted(topics))
    vocab = "".join(sorted(set(text)))
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = torch.tensor([index[ch] for ch in text], dtype=torch.long)
    n_valid, n_test = int(len(ids) * valid_fraction), int(len(ids) * test_fraction)
    n_train = len(ids) - n_valid - n_test
    train, valid, test = ids.split([n_train, n_valid, n_test])
    return CharCorpus(train, valid, test, vocab, "pydoc_data.topics")


def batchify(ids, batch_size):
    """Cut a 1-d id sequence into ``batch_size`` contiguous streams: ``(N // B, B)``."""
    if ids.dim() != 1:
        raise ValueError(f"ids must be 1-d, got shape {tuple(ids.shape)}")
    n = ids.numel() // batch_size
    if n < 2:
        raise ValueError(f"{ids.numel()} ids are too few for batch_size={batch_size}")
    return ids[: n * batch_size].view(batch_size, n).t().contiguous()


class TBPTTBatches:
    """Endless ``(inputs, targets)`` chunks of shape ``(seq_len, batch_size)`` for truncated
    back-propagation through time.

    Stream ``b`` of consecutive chunks continues where the previous chunk stopped, so a
    model may carry its (detached) recurrent state from one batch to the next; after the
    last chunk the epoch restarts from the beginning (``new_epoch`` is set, so the caller can
    reset its state). ``targets`` are ``inputs`` shifted by one character.

    :param torch.Tensor ids: 1-d character ids.
    :param int seq_len: chunk length ``T``.
    :param int batch_size: number of streams ``B``.
    """

    def __init__(self, ids, seq_len, batch_size):
        if seq_len < 1:
            raise ValueError(f"seq_len must be positive, got {seq_len}")
        self.streams = batchify(ids, batch_size)
        self.seq_len = seq_len
        self.position = 0
        self.epoch = 0
        self.new_epoch = True

    def __iter__(self):
        return self

    def __next__(self):
        if self.position + 1 >= self.streams.shape[0]:
            self.position, self.epoch, self.new_epoch = 0, self.epoch + 1, True
        else:
            self.new_epoch = self.position == 0
        end = min(self.position + self.seq_len, self.streams.shape[0] - 1)
        inputs = self.streams[self.position:end]
        targets = self.streams[self.position + 1:end + 1]
        self.position = end
        return inputs, targets

    def chunks_per_epoch(self):
        return -(-(self.streams.shape[0] - 1) // self.seq_len)

    def state_dict(self):
        return {"position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state):
        self.position, self.epoch = state["position"], state["epoch"]
