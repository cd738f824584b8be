"""Figures from DataFrames: they return matplotlib `Figure`s and the caller saves them.

Built on `matplotlib.figure.Figure` rather than pyplot, so no global backend or figure
registry is touched: safe in scripts, workers and notebooks alike.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .runs import save_figure_atomic

_LABELS = {"loss": "loss", "accuracy": "accuracy", "learning_rate": "learning rate"}


def plot_history(history: pd.DataFrame, metric: str, title: str = "") -> Figure:
    """One metric per epoch: training and, when present, validation curves."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    epochs = history["epoch"] + 1 if "epoch" in history else pd.RangeIndex(1, len(history) + 1)
    axes.plot(epochs, history[metric], marker="o", markersize=3, label="train" if metric != "learning_rate" else "rate")
    if f"val_{metric}" in history:
        axes.plot(epochs, history[f"val_{metric}"], marker="o", markersize=3, label="validation")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(_LABELS.get(metric, metric))
    axes.set_title(title or f"{_LABELS.get(metric, metric)} per epoch")
    axes.grid(alpha=0.3)
    if metric == "learning_rate":
        axes.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    else:
        axes.legend()
    return figure


def save_history_plots(history: pd.DataFrame, folder: str | Path) -> list[Path]:
    """history_<metric>.png for loss, accuracy and learning rate, as far as the history has them."""
    written = []
    for metric in ("loss", "accuracy", "learning_rate"):
        if metric in history:
            written.append(save_figure_atomic(plot_history(history, metric), Path(folder) / f"history_{metric}.png"))
    return written
