"""The progress bar: a tqdm bar with the smoothed loss, the model's metrics and the last
evaluation."""

import math
from collections.abc import Mapping
from typing import Any

_HIDDEN = ("step", "lr", "seconds_per_step", "loss")


class ProgressBar:
    """A tqdm bar over the steps of a run (nothing at all when disabled).

    :param int total: the run's last step.
    :param int initial: the step it starts from (a resumed run's checkpoint).
    :param str description: label of the bar.
    :param bool enabled: ``False``: no bar, and tqdm is not imported.
    """

    def __init__(
        self, total: int | None, initial: int = 0, description: str = "train", enabled: bool = True
    ) -> None:
        self.bar: Any = None  # a tqdm bar
        if enabled:
            # Imported here so that importing probnets does not import tqdm.
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=description, dynamic_ncols=True)
        self.running: float | None = None  # exponential moving average of the finite losses
        self.shown: dict[str, Any] = {}
        self.evaluation: dict[str, Any] = {}

    def update(
        self,
        loss: float,
        row: Mapping[str, Any] | None = None,
        evaluation: Mapping[str, Any] | None = None,
    ) -> None:
        """Advance one step; ``row``: the step's logged metrics, ``evaluation``: the last
        evaluation."""
        if math.isfinite(loss):
            self.running = loss if self.running is None else 0.95 * self.running + 0.05 * loss
        if row is not None:
            self.shown = {
                k: v for k, v in row.items() if k not in _HIDDEN and not k.startswith("grad_norm")
            }
        if evaluation:
            self.evaluation = {f"eval:{k}": v for k, v in evaluation.items() if k != "step"}
        if self.bar is None:
            return
        postfix = {
            "loss": self.running if self.running is not None else "nan",
            **self.shown,
            **self.evaluation,
        }
        self.bar.set_postfix(
            {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()},
            refresh=False,
        )
        self.bar.update(1)

    def write(self, message: str) -> None:
        """Print ``message`` above the bar (nothing when disabled)."""
        if self.bar is not None:
            self.bar.write(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["ProgressBar"]
