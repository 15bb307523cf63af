"""Training tasks: one typed config and one call per ``probnets train`` command.

    from probnets.tasks import VAEConfig, run_task
    summary = run_task(VAEConfig(steps=300, out="runs/vae", hidden_dim=32))

Each task has a config dataclass (a :class:`RunConfig` with the task's own options and
defaults); :func:`run_task` trains the task its config's type names, exactly as
``probnets train NAME`` does, and :func:`evaluate_task` evaluates a checkpoint from an
:class:`EvalConfig`. Importing this package registers the tasks with the command line.
"""

from probnets.tasks.air import AIRConfig, AIREvalConfig
from probnets.tasks.base import Task, TaskRun, model_record, register, task_for, tasks
from probnets.tasks.bayes_hypernet import BayesHypernetConfig, BayesHypernetEvalConfig
from probnets.tasks.config import (
    ConfigError,
    EvalConfig,
    RunConfig,
    UnsupportedSettingError,
)
from probnets.tasks.gated import GatedConfig
from probnets.tasks.hypernets import HyperCNNConfig, HyperLSTMConfig, ReactiveConfig
from probnets.tasks.run import evaluate_task, load_config, run_task
from probnets.tasks.sbn import SBNConfig
from probnets.tasks.vae import VAEConfig

__all__ = [
    "AIRConfig",
    "AIREvalConfig",
    "BayesHypernetConfig",
    "BayesHypernetEvalConfig",
    "ConfigError",
    "EvalConfig",
    "GatedConfig",
    "HyperCNNConfig",
    "HyperLSTMConfig",
    "ReactiveConfig",
    "RunConfig",
    "SBNConfig",
    "Task",
    "TaskRun",
    "UnsupportedSettingError",
    "VAEConfig",
    "evaluate_task",
    "load_config",
    "model_record",
    "register",
    "run_task",
    "task_for",
    "tasks",
]
