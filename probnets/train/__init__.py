"""The training loop: :class:`Trainer`, its :class:`TrainConfig`, objectives, callbacks,
loggers, mini-batches, schedules and checkpoints.

::

    from probnets.train import BatchSampler, Evaluation, SVIObjective, TrainConfig, Trainer

    config = TrainConfig(steps=1000, lr=1e-3, out_dir="runs/vae", checkpoint_every=100)
    trainer = Trainer(SVIObjective(vae.model, vae.guide, pyro.infer.Trace_ELBO()),
                      BatchSampler(images, batch_size=64), config,
                      callbacks=[Evaluation(lambda t: {"test_elbo": ...}, every=100)])
    result = trainer.run()

Importing this package registers the Trainer as the default trainer of models' ``fit``
methods (:mod:`probnets.models.fitting`).
"""

from probnets.train import distributed
from probnets.train.callbacks import Callback, Evaluation, StepMetrics
from probnets.train.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointWriteError,
    Checkpointer,
    load_checkpoint,
    save_checkpoint,
)
from probnets.train.config import TrainConfig
from probnets.train.devices import resolve_device
from probnets.train.fitting import DefaultTrainerFactory
from probnets.train.guard import NonFiniteLossError
from probnets.train.loggers import CsvLogger, Logger, TensorBoardLogger
from probnets.train.objectives import LossObjective, Objective, SVIObjective
from probnets.train.sampler import BatchSampler, LoaderBatches, repeat_epochs
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
from probnets.train.trainer import Trainer, TrainResult

__all__ = [
    "CHECKPOINT_NAME",
    "Anneal",
    "BatchSampler",
    "Callback",
    "CheckpointWriteError",
    "Checkpointer",
    "Constant",
    "Cosine",
    "CsvLogger",
    "DefaultTrainerFactory",
    "Evaluation",
    "Exponential",
    "Linear",
    "LoaderBatches",
    "Logger",
    "LossObjective",
    "NonFiniteLossError",
    "Objective",
    "SVIObjective",
    "Schedule",
    "StepMetrics",
    "TensorBoardLogger",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "Warmup",
    "distributed",
    "load_checkpoint",
    "parse_schedule",
    "repeat_epochs",
    "resolve_device",
    "save_checkpoint",
]
