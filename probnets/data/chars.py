"""Offline character corpora for language-model experiments, and truncated-BPTT batches.

Both corpora ship with every CPython install, so character-level models can be trained and
compared without a download:

- ``pydoc_data.topics``, the help topics of the language reference (about 465k characters
  in Python 3.11);
- the docstrings of the standard library's modules, classes and functions (about 1.7M
  characters in Python 3.11), for models that overfit the first.

Their text depends on the Python version, which each corpus's ``source`` names.
"""

import ast
import pathlib
import sys
import sysconfig
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch

from probnets.data.mnist import PathLike

__all__ = [
    "CharCorpus",
    "CORPORA",
    "load_pydoc_corpus",
    "load_docstring_corpus",
    "load_corpus",
    "TBPTTBatches",
    "batchify",
]


class CharCorpus(NamedTuple):
    """Character ids (int64 tensors) of three contiguous splits, the vocabulary (a string;
    id ``i`` is ``vocab[i]``), and the source name."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: str
    source: str


def _split(text: str, valid_fraction: float, test_fraction: float, source: str) -> CharCorpus:
    """The :class:`CharCorpus` of ``text``: the first ``1 - valid - test`` of it is the
    training split, then validation, then test (contiguous, so held-out text is unseen prose,
    not interleaved sentences). The vocabulary covers the whole text, so no split has
    unknown characters."""
    if not (0 < valid_fraction < 0.5 and 0 < test_fraction < 0.5):
        raise ValueError(
            f"valid_fraction and test_fraction must be in (0, 0.5), got "
            f"{valid_fraction!r} and {test_fraction!r}"
        )
    vocab = "".join(sorted(set(text)))
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = torch.tensor([index[ch] for ch in text], dtype=torch.long)
    n_valid, n_test = int(len(ids) * valid_fraction), int(len(ids) * test_fraction)
    n_train = len(ids) - n_valid - n_test
    train, valid, test = ids.split([n_train, n_valid, n_test])
    return CharCorpus(train, valid, test, vocab, source)


def _python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def load_pydoc_corpus(valid_fraction: float = 0.05, test_fraction: float = 0.05) -> CharCorpus:
    """Load the ``pydoc_data.topics`` text as a :class:`CharCorpus`: the topics joined in
    sorted-key order, split contiguously (see :func:`load_docstring_corpus` for the split)."""
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    text = "".join(topics[key] for key in sorted(topics))
    return _split(
        text, valid_fraction, test_fraction, f"pydoc_data.topics (Python {_python_version()})"
    )


def load_docstring_corpus(
    valid_fraction: float = 0.05, test_fraction: float = 0.05, stdlib: PathLike | None = None
) -> CharCorpus:
    """Load the standard library's docstrings as a :class:`CharCorpus`.

    Every ``.py`` file under ``stdlib`` (default: this interpreter's standard library), in
    sorted path order, skipping test suites, ``idlelib`` and ``site-packages``; in each file
    the docstrings of the module, its classes and its functions in :func:`ast.walk` order,
    separated by blank lines. Files that do not parse are skipped. The text is split
    contiguously: the first ``1 - valid_fraction - test_fraction`` for training, then
    validation, then test, so held-out text comes from modules the training text never saw
    (but for the one module cut at the boundary).
    """
    root = pathlib.Path(sysconfig.get_paths()["stdlib"] if stdlib is None else stdlib)
    skip = {"test", "tests", "idlelib", "site-packages"}
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = []
    for path in sorted(root.rglob("*.py")):
        if skip & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, documented) and (doc := ast.get_docstring(node)):
                docstrings.append(doc)
    if not docstrings:
        raise ValueError(f"no docstrings found under {root}")
    source = (
        f"standard-library docstrings (Python {_python_version()})"
        if stdlib is None
        else f"docstrings under {root}"
    )
    return _split("\n\n".join(docstrings) + "\n", valid_fraction, test_fraction, source)


_LOADERS: Mapping[str, Callable[[float, float], CharCorpus]] = {
    "pydoc": load_pydoc_corpus,
    "docstrings": load_docstring_corpus,
}
CORPORA = tuple(_LOADERS)  # the names load_corpus accepts


def load_corpus(name: str, valid_fraction: float = 0.05, test_fraction: float = 0.05) -> CharCorpus:
    """:func:`load_pydoc_corpus` (``name="pydoc"``) or :func:`load_docstring_corpus`
    (``"docstrings"``)."""
    if name not in _LOADERS:
        raise ValueError(f"unknown corpus {name!r}; choose from {sorted(_LOADERS)}")
    return _LOADERS[name](valid_fraction, test_fraction)


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
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

    def __init__(self, ids: torch.Tensor, seq_len: int, batch_size: int) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be positive, got {seq_len}")
        self.streams = batchify(ids, batch_size)
        self.seq_len = seq_len
        self.position = 0
        self.epoch = 0
        self.new_epoch = True

    def __iter__(self) -> "TBPTTBatches":
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position + 1 >= self.streams.shape[0]:
            self.position, self.epoch, self.new_epoch = 0, self.epoch + 1, True
        else:
            self.new_epoch = self.position == 0
        end = min(self.position + self.seq_len, self.streams.shape[0] - 1)
        inputs = self.streams[self.position : end]
        targets = self.streams[self.position + 1 : end + 1]
        self.position = end
        return inputs, targets

    def chunks_per_epoch(self) -> int:
        """Chunks in one pass over the streams (the last one may be shorter)."""
        return -(-(self.streams.shape[0] - 1) // self.seq_len)

    def state_dict(self) -> dict[str, int]:
        """The position in the streams and the epoch, for resuming."""
        return {"position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resumes at :meth:`state_dict`'s position."""
        self.position, self.epoch = state["position"], state["epoch"]
