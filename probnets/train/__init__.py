"""The SVI training loop: :class:`Trainer`, mini-batches, schedules and checkpoints."""

from probnets.train.checkpoint import load_checkpoint, save_checkpoint
from probnets.train.devices import resolve_device
from probnets.train.sampler import BatchSampler, repeat_epochs
from probnets.train.schedules import (
    Anneal,
    Constant,
    Cosine,
    Exponential,
    Linear,
    Schedule,
    Warmup,
    parse_schedule,
)
from probnets.train.trainer import CHECKPOINT_NAME, NonFiniteLossError, Trainer, TrainResult

__all__ = [
    "Anneal",
    "BatchSampler",
    "CHECKPOINT_NAME",
    "Constant",
    "Cosine",
    "Exponential",
    "Linear",
    "NonFiniteLossError",
    "Schedule",
    "TrainResult",
    "Trainer",
    "Warmup",
    "load_checkpoint",
    "parse_schedule",
    "repeat_epochs",
    "resolve_device",
    "save_checkpoint",
]
