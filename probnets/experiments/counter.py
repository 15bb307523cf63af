"""Counting model and guide executions, the cost column of the variance harness."""

from collections.abc import Iterable
from types import TracebackType
from typing import Any

from pyro.poutine.messenger import Messenger

__all__ = ["PARTICLE_PLATE_NAMES", "EvaluationCounter"]

#: Names of plates that ELBOs use to vectorize particles; Pyro's is the first.
PARTICLE_PLATE_NAMES = ("num_particles_vectorized",)


class EvaluationCounter(Messenger):
    """Counts how often the function it wraps is executed.

    ``executions`` counts calls; ``evaluations`` counts function evaluations, where a call
    inside a vectorized particle plate (see :data:`PARTICLE_PLATE_NAMES`) of size ``K``
    counts as ``K``. Use as ``counter = EvaluationCounter(); counted = counter(model)``.
    """

    def __init__(self, particle_plates: Iterable[str] = PARTICLE_PLATE_NAMES) -> None:
        super().__init__()
        self.particle_plates = tuple(particle_plates)
        self.executions = 0
        self.evaluations = 0
        self._particles = 1

    def reset(self) -> None:
        """Sets both counts back to zero."""
        self.executions = 0
        self.evaluations = 0

    def __enter__(self) -> "EvaluationCounter":
        self.executions += 1
        self._particles = 1
        return super().__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.evaluations += self._particles
        return super().__exit__(exc_type, exc_value, traceback)

    def _pyro_post_sample(self, msg: dict[str, Any]) -> None:
        # Post-processing sees the complete plate stack, including plates entered outside
        # the wrapped function (which is where ELBOs put their particle plate).
        for frame in msg["cond_indep_stack"]:
            if frame.name in self.particle_plates and frame.size is not None:
                self._particles = max(self._particles, frame.size)
