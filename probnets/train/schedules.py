"""Schedules: values that follow the training step.

Every schedule is a pure function of the step, ``value = schedule(step)``, so a resumed run
recomputes exactly the values an uninterrupted run would have seen; the checkpoint needs only
the step. :class:`Anneal` applies a schedule to an attribute of an object each step (an ELBO's
``temperature``, AIR's ``z_pres_prior``), and learning-rate schedules are factors that
multiply each parameter group's base learning rate.

Example::

    Anneal(elbo, "temperature", Exponential(1.0, 0.1, steps=10_000))
    Anneal(air, "z_pres_prior", Exponential(0.99, 1e-5, steps=100_000))
"""

import math
from collections.abc import Callable


class Schedule:
    """Base class: a value as a function of the (0-based) step."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """The same ``value`` at every step."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, step: int) -> float:
        return self.value


def _check_span(start: float, end: float, steps: int, geometric: bool = False) -> None:
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"schedule steps must be a positive integer, got {steps!r}")
    if geometric and (start <= 0 or end <= 0):
        raise ValueError(
            f"an exponential schedule needs positive start and end, got start={start}, end={end}"
        )


class Linear(Schedule):
    """Linear interpolation from ``start`` to ``end`` over ``steps``, then constant."""

    def __init__(self, start: float, end: float, steps: int, delay: int = 0) -> None:
        _check_span(start, end, steps)
        self.start, self.end, self.steps, self.delay = start, end, steps, delay

    def __call__(self, step: int) -> float:
        t = min(max(step - self.delay, 0) / self.steps, 1.0)
        return self.start + t * (self.end - self.start)


class Exponential(Schedule):
    """Geometric interpolation ``start * (end / start) ** t``, ``t = step / steps`` clipped to 1.

    The shape of the AIR paper's z_pres prior annealing (from about 1 down to 1e-5 over 100k
    steps) and of temperature annealing for relaxed estimators.
    """

    def __init__(self, start: float, end: float, steps: int, delay: int = 0) -> None:
        _check_span(start, end, steps, geometric=True)
        self.start, self.end, self.steps, self.delay = start, end, steps, delay

    def __call__(self, step: int) -> float:
        t = min(max(step - self.delay, 0) / self.steps, 1.0)
        return self.start * (self.end / self.start) ** t


class Cosine(Schedule):
    """Half-cosine from ``start`` to ``end`` over ``steps`` (Loshchilov & Hutter, 2017)."""

    def __init__(self, start: float, end: float, steps: int, delay: int = 0) -> None:
        _check_span(start, end, steps)
        self.start, self.end, self.steps, self.delay = start, end, steps, delay

    def __call__(self, step: int) -> float:
        t = min(max(step - self.delay, 0) / self.steps, 1.0)
        return self.end + 0.5 * (self.start - self.end) * (1 + math.cos(math.pi * t))


class Warmup(Schedule):
    """Linear warm-up from 0 over ``warmup_steps``, then ``schedule(step)``."""

    def __init__(self, schedule: Callable[[int], float], warmup_steps: int) -> None:
        self.schedule, self.warmup_steps = schedule, warmup_steps

    def __call__(self, step: int) -> float:
        value = self.schedule(step)
        if step < self.warmup_steps:
            value *= (step + 1) / self.warmup_steps
        return value


class Anneal:
    """Set ``obj.<attribute> = schedule(step)`` before each training step."""

    def __init__(self, obj: object, attribute: str, schedule: Callable[[int], float]) -> None:
        if not hasattr(obj, attribute):
            raise ValueError(
                f"cannot anneal {attribute!r}: {type(obj).__name__} has no such attribute"
            )
        if not callable(schedule):
            raise TypeError(f"schedule must be callable step -> value, got {schedule!r}")
        self.obj, self.attribute, self.schedule = obj, attribute, schedule

    @property
    def name(self) -> str:
        """The annealed attribute's name (its column in the metrics)."""
        return self.attribute

    def apply(self, step: int) -> float:
        """Set the attribute to its value at ``step``; returns that value."""
        value = self.schedule(step)
        setattr(self.obj, self.attribute, value)
        return value


def parse_schedule(spec: str, steps: int) -> Schedule:
    """Parse a schedule specification string into a :class:`Schedule` factor.

    ``"constant"``, ``"cosine"`` (to 0 over ``steps``), ``"cosine:0.1"`` (to 10%),
    ``"exp:0.01"`` (to 1% over ``steps``), ``"warmup:500"`` or ``"warmup:500,cosine"``.
    """
    spec = spec.strip()
    if spec.startswith("warmup:"):
        head, _, rest = spec.partition(",")
        try:
            warmup = int(head.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad warm-up length in schedule {spec!r}") from None
        return Warmup(parse_schedule(rest or "constant", steps), warmup)
    if spec == "constant":
        return Constant(1.0)
    if spec == "cosine":
        return Cosine(1.0, 0.0, steps)
    if spec.startswith(("cosine:", "exp:")):
        try:
            final = float(spec.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad final factor in schedule {spec!r}") from None
        return (Cosine if spec.startswith("cosine:") else Exponential)(1.0, final, steps)
    raise ValueError(
        f"unknown schedule {spec!r}; expected constant, cosine[:FACTOR], exp:FACTOR, "
        "warmup:N[,SCHEDULE]"
    )
