"""What the variance harness reports: per-estimator statistics at fixed parameters
(:class:`EstimatorStats` gathered in a :class:`VarianceReport`) and measurements along
training runs (:class:`TrackingReport`), each with a fixed-width table and a JSON round trip
written atomically (temporary file, then renamed)."""

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import torch

__all__ = ["MAX_JSON_VECTOR", "EstimatorStats", "TrackingReport", "VarianceReport"]

#: Mean gradients with more entries than this are summarised (norm only) in JSON.
MAX_JSON_VECTOR = 4096

_Report = TypeVar("_Report", bound="_JSONReport")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory, so a reader
    never sees a half-written file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _fmt(value: object, width: int, precision: int = 4) -> str:
    """Right-justified, never wider than ``width`` (precision drops to fit)."""
    if value is None:
        return "-".rjust(width)
    if isinstance(value, float) and math.isfinite(value):
        for p in range(precision, 0, -1):
            text = f"{value:.{p}g}"
            if len(text) < width:
                break
        return text.rjust(width)
    return str(value).rjust(width)


@dataclass
class EstimatorStats:
    """Statistics of one estimator at fixed parameters (see :mod:`probnets.experiments.measure`
    for their definitions)."""

    name: str
    num_samples: int
    num_params: int
    loss: float
    mean_grad_norm: float
    variance: float
    log_variance: float
    snr: float
    evals_per_estimate: float
    guide_evals_per_estimate: float
    seconds_per_estimate: float
    work_variance_seconds: float
    work_variance_evals: float
    time_ratio: float = float("nan")
    cv_tune_steps: int = 0
    bias_norm: float | None = None
    bias_z: float | None = None
    bias_p_value: float | None = None
    cosine: float | None = None
    variance_by_param: dict[str, float] = field(default_factory=dict)
    mean_grad: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (``mean_grad`` as nested lists, or ``None`` beyond
        :data:`MAX_JSON_VECTOR` entries)."""
        out = asdict(self)
        if self.num_params <= MAX_JSON_VECTOR:
            out["mean_grad"] = {
                k: v.detach().cpu().double().tolist() for k, v in self.mean_grad.items()
            }
        else:
            out["mean_grad"] = None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EstimatorStats":
        """The inverse of :meth:`to_dict`."""
        data = dict(data)
        mean_grad = data.pop("mean_grad") or {}
        return cls(
            **data,
            mean_grad={k: torch.tensor(v, dtype=torch.float64) for k, v in mean_grad.items()},
        )


class _JSONReport:
    """JSON persistence shared by the reports: ``save_json`` writes atomically."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[_Report], data: Mapping[str, Any]) -> _Report:
        raise NotImplementedError

    def table(self) -> str:
        raise NotImplementedError

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write the report as JSON (to a temporary file, then renamed)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load_json(cls: type[_Report], path: str | os.PathLike[str]) -> _Report:
        """Read a report written by :meth:`save_json`."""
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def __str__(self) -> str:
        return self.table()


@dataclass
class VarianceReport(_JSONReport):
    """Per-estimator :class:`EstimatorStats` at one parameter setting, plus metadata."""

    estimators: dict[str, EstimatorStats]
    params: list[str]
    num_samples: int
    exact_norm: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    # (header, width, EstimatorStats attribute); the first two columns are formatted apart.
    _COLUMNS = (
        ("estimator", 22, None),
        ("log_var", 9, "log_variance"),
        ("variance", 10, "variance"),
        ("snr", 8, "snr"),
        ("bias_norm", 10, "bias_norm"),
        ("bias_z", 8, "bias_z"),
        ("cosine", 8, "cosine"),
        ("evals", 6, "evals_per_estimate"),
        ("ms/est", 8, None),
        ("t_ratio", 8, "time_ratio"),
        ("var*s", 10, "work_variance_seconds"),
    )

    @classmethod
    def _cell(cls, stats: EstimatorStats, name: str, width: int, attr: str | None) -> str:
        if name == "estimator":
            return stats.name[:width].ljust(width)
        if name == "ms/est":
            return _fmt(1e3 * stats.seconds_per_estimate, width, 3)
        assert attr is not None  # every other column names its attribute
        return _fmt(getattr(stats, attr), width)

    def _notes(self) -> list[str]:
        num_params = next(iter(self.estimators.values())).num_params if self.estimators else 0
        notes = [
            (
                f"{self.num_samples} gradient samples per estimator over {num_params} "
                f"parameters ({', '.join(self.params)}); log = natural log of the "
                f"per-parameter variance averaged over parameters."
            ),
            (
                "t_ratio: seconds per estimate relative to "
                f"'{self.meta.get('reference', '?')}' in the same run (absolute times are noisy "
                "on a shared CPU)."
            ),
        ]
        if self.exact_norm is not None:
            notes.append(
                f"bias against the exact gradient (norm {self.exact_norm:.4g}); bias_z = "
                "max |z| over parameters (~N(0,1) per parameter if unbiased)."
            )
        return notes

    def table(self) -> str:
        """A fixed-width table, one row per estimator (log is natural)."""
        header = " ".join(
            name.ljust(width) if name == "estimator" else name.rjust(width)
            for name, width, _ in self._COLUMNS
        )
        lines = [header, "-" * len(header)]
        for stats in self.estimators.values():
            lines.append(" ".join(self._cell(stats, *column) for column in self._COLUMNS))
        return "\n".join(lines + self._notes())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (each estimator's :meth:`EstimatorStats.to_dict`)."""
        return {
            "estimators": {k: v.to_dict() for k, v in self.estimators.items()},
            "params": list(self.params),
            "num_samples": self.num_samples,
            "exact_norm": self.exact_norm,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VarianceReport":
        """The inverse of :meth:`to_dict`."""
        return cls(
            estimators={k: EstimatorStats.from_dict(v) for k, v in data["estimators"].items()},
            params=list(data["params"]),
            num_samples=data["num_samples"],
            exact_norm=data["exact_norm"],
            meta=data.get("meta", {}),
        )


@dataclass
class TrackingReport(_JSONReport):
    """Variance measurements along each estimator's own training run.

    ``runs[name]`` is a list of records ``{"step", "train_loss", <metrics>, <EstimatorStats
    scalar fields>}``; ``train_loss`` averages the training losses since the previous
    record.
    """

    runs: dict[str, list[dict[str, Any]]]
    meta: dict[str, Any] = field(default_factory=dict)

    def metric_keys(self) -> list[str]:
        """The ``metric.*`` keys of the final records, sorted."""
        return sorted(
            {k for recs in self.runs.values() for k in recs[-1] if k.startswith("metric.")}
        )

    def table(self, keys: Sequence[str] = ("train_loss", "log_variance", "snr")) -> str:
        """Final record of each run, fixed width."""
        columns = list(keys) + self.metric_keys()
        header = (
            "estimator".ljust(22)
            + " "
            + "step".rjust(6)
            + " "
            + " ".join(c.replace("metric.", "")[:14].rjust(14) for c in columns)
        )
        lines = [header, "-" * len(header)]
        for name, records in self.runs.items():
            last = records[-1]
            lines.append(
                name[:22].ljust(22)
                + " "
                + str(last["step"]).rjust(6)
                + " "
                + " ".join(_fmt(last.get(c), 14) for c in columns)
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {"runs": self.runs, "meta": self.meta}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrackingReport":
        """The inverse of :meth:`to_dict`."""
        return cls(runs=data["runs"], meta=data.get("meta", {}))
