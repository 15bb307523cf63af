"""The models ``probnets train`` knows: importing this package registers them."""

from probnets.tasks import air  # noqa: F401
from probnets.tasks import bayes_hypernet  # noqa: F401
from probnets.tasks import gated  # noqa: F401
from probnets.tasks import hypernets  # noqa: F401
from probnets.tasks import sbn  # noqa: F401
from probnets.tasks import vae  # noqa: F401
from probnets.tasks.base import Task, TaskRun, register, tasks

__all__ = ["Task", "TaskRun", "register", "tasks"]
