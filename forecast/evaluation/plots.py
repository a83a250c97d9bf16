"""Figures an analyst reads: forecast against actuals, fan charts, error per horizon step."""

from __future__ import annotations

# No backend is forced here: matplotlib picks Agg without a display, and notebooks keep
# their inline backend.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def forecast_vs_actual(
    times: np.ndarray,
    actual: np.ndarray,
    forecast: np.ndarray,
    *,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    title: str,
    ylabel: str,
    history: tuple[np.ndarray, np.ndarray] | None = None,
    band_label: str = "80% interval",
    xlabel: str = "time",
) -> plt.Figure:
    """One forecast path against what happened, with its interval when given."""
    fig, ax = plt.subplots(figsize=(10, 4))
    if history is not None:
        ax.plot(history[0], history[1], color="0.5", lw=1, label="history")
    ax.plot(times, actual, color="black", lw=1.5, label="actual")
    ax.plot(times, forecast, color="tab:blue", lw=1.5, label="forecast")
    if lower is not None and upper is not None:
        ax.fill_between(times, lower, upper, color="tab:blue", alpha=0.2, label=band_label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def error_by_step(table: pd.DataFrame, *, metric: str, title: str, ylabel: str) -> plt.Figure:
    """A metric per horizon step for the model (and baselines when columns allow)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for col in table.columns:
        ax.plot(table.index, table[col], marker="o", ms=3, label=str(col))
    ax.set_title(title)
    ax.set_xlabel("horizon step")
    ax.set_ylabel(ylabel)
    ax.legend(loc="best")
    fig.tight_layout()
    return fig
