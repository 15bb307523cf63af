"""Figures the commands write: scenes with boxes, image grids and curves, gate heat maps,
predictive bands and reliability diagrams, estimator-variance plots, recurrent weight change.

Every function saves a file (atomically, through :func:`save_figure`) or draws into the axes it
is given. The names are re-exported here but imported on first use, so ``import probnets.viz``
does not import matplotlib; ``from probnets.viz import curves`` does.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Each public name and the submodule that defines it.
_SOURCES = {
    "STEP_COLOURS": "air",
    "calibration_summary": "uncertainty",
    "confusion_figure": "air",
    "scenes_with_boxes": "air",
    "plot_accuracy_vs_connections": "gates",
    "plot_adjacency": "gates",
    "plot_gate_trajectories": "gates",
    "curves": "images",
    "image_rows": "images",
    "save_figure": "images",
    "predictive_bands": "uncertainty",
    "reliability_diagram": "uncertainty",
    "plot_log_variance": "variance",
    "plot_tracking": "variance",
    "plot_weight_change": "recurrent",
}

__all__ = [
    "STEP_COLOURS",
    "calibration_summary",
    "confusion_figure",
    "curves",
    "image_rows",
    "plot_accuracy_vs_connections",
    "plot_adjacency",
    "plot_gate_trajectories",
    "plot_log_variance",
    "plot_tracking",
    "plot_weight_change",
    "predictive_bands",
    "reliability_diagram",
    "save_figure",
    "scenes_with_boxes",
]

if TYPE_CHECKING:
    from probnets.viz.air import STEP_COLOURS, confusion_figure, scenes_with_boxes
    from probnets.viz.gates import (
        plot_accuracy_vs_connections,
        plot_adjacency,
        plot_gate_trajectories,
    )
    from probnets.viz.images import curves, image_rows, save_figure
    from probnets.viz.recurrent import plot_weight_change
    from probnets.viz.uncertainty import (
        calibration_summary,
        predictive_bands,
        reliability_diagram,
    )
    from probnets.viz.variance import plot_log_variance, plot_tracking


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'probnets.viz' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"probnets.viz.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
