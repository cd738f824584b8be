"""Figures from DataFrames: they return matplotlib `Figure`s and the caller saves them.

Built on `matplotlib.figure.Figure` rather than pyplot, so no global backend or figure
registry is touched: safe in scripts, workers and notebooks alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..core.files import save_figure_atomic
from .tables import param_columns

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


def plot_param_scores(results: pd.DataFrame, param: str, score_label: str = "mean CV score") -> Figure:
    """Mean CV score per value of one hyperparameter, with the std over folds as error bars.

    With several candidates per value (other parameters varying, or halving rounds), each value
    shows its best candidate, the one a user would pick.
    """
    scored = results.dropna(subset=["mean_test_score"])
    best = scored.sort_values("mean_test_score", ascending=False).drop_duplicates(param)
    best = best.sort_values(param, key=_sort_key)
    figure = Figure(figsize=(6.5, 4), layout="constrained")
    axes = figure.add_subplot()
    labels = [str(v) for v in best[param]]
    axes.errorbar(range(len(best)), best["mean_test_score"], yerr=best["std_test_score"], fmt="o", capsize=4)
    axes.set_xticks(range(len(best)), labels, rotation=30 if max(map(len, labels), default=0) > 6 else 0, ha="right"
                    if max(map(len, labels), default=0) > 6 else "center")
    axes.set_xlabel(param)
    axes.set_ylabel(score_label)
    axes.set_title(f"{param}: best candidate per value, ±1 std over folds", fontsize=10)
    axes.margins(x=0.15)
    axes.grid(alpha=0.3)
    return figure


def plot_param_heatmap(results: pd.DataFrame, row: str, column: str) -> Figure:
    """Best mean CV score for each pair of values of two hyperparameters."""
    table = results.pivot_table(index=row, columns=column, values="mean_test_score", aggfunc="max")
    table = table.sort_index(key=_sort_key).sort_index(axis=1, key=_sort_key)
    figure = Figure(figsize=(1.2 * len(table.columns) + 3, 0.5 * len(table) + 2.5), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(table.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    axes.set_xticks(range(len(table.columns)), [str(c) for c in table.columns], rotation=30, ha="right")
    axes.set_yticks(range(len(table.index)), [str(i) for i in table.index])
    for (i, j), value in np.ndenumerate(table.to_numpy(dtype=float)):
        if not np.isnan(value):
            axes.text(j, i, f"{value:.3f}", ha="center", va="center", color="white" if value < np.nanmean(table) else "black")
    axes.set_xlabel(column)
    axes.set_ylabel(row)
    axes.set_title("best mean CV score")
    figure.colorbar(image, ax=axes, label="mean CV score")
    return figure


def plot_confusion(matrix: pd.DataFrame) -> Figure:
    """Confusion matrix of the test split: rows true class, columns predicted class."""
    counts = matrix.to_numpy()
    figure = Figure(figsize=(6, 5.2), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues")
    axes.set_xticks(range(counts.shape[1]), [str(c) for c in matrix.columns])
    axes.set_yticks(range(counts.shape[0]), [str(i) for i in matrix.index])
    for (i, j), value in np.ndenumerate(counts):
        axes.text(j, i, str(value), ha="center", va="center", fontsize=8,
                  color="white" if value > counts.max() / 2 else "black")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("confusion matrix (test split)")
    figure.colorbar(image, ax=axes, label="test samples")
    return figure


def plot_halving_rounds(results: pd.DataFrame, resource: str, pruned: bool = False) -> Figure:
    """Successive halving: every candidate's mean CV score per round (`resource` grows per round);
    `pruned`: the rungs of a pruned search (`search.pruning`), where a line ends where it was pruned."""
    figure = Figure(figsize=(8.5, 4), layout="constrained")
    axes = figure.add_subplot()
    params = [c for c in param_columns(results) if c != resource]
    rounds = sorted(results["iter"].unique())
    groups = list(results.groupby(params, dropna=False, sort=False))
    for values, group in groups:
        group = group.sort_values("iter")
        values = values if isinstance(values, tuple) else (values,)
        label = ", ".join(f"{p.split('__')[-1]}={v}" for p, v in zip(params, values))
        axes.plot(group["iter"], group["mean_test_score"], marker="o", alpha=0.7, label=label)
    if len(groups) <= 15:
        axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    resources = results.groupby("iter")["n_resources"].first()
    stage = "rung" if pruned else "round"
    axes.set_xticks(rounds, [f"{stage} {r}\n({resource} = {resources[r]})" for r in rounds])
    axes.set_xlabel("pruning rung" if pruned else "halving round")
    axes.set_ylabel("mean CV score")
    axes.set_title("pruning: one line per candidate, ending where it was pruned" if pruned
                   else "successive halving: one line per candidate")
    axes.grid(alpha=0.3)
    return figure


def _sort_key(values: pd.Index | pd.Series) -> pd.Index | pd.Series:
    """Numbers in numeric order, anything else as text."""
    numeric = pd.to_numeric(values, errors="coerce")
    return numeric if not numeric.isna().any() else values.astype(str)


def plot_loss_curves(histories: pd.DataFrame, results: pd.DataFrame, params: str | list[str],
                     metric: str = "loss") -> Figure:
    """Training `metric` per epoch of the best candidate for each value (or combination of values)
    of `params`, averaged over folds: e.g. one line per learning rate, or per optimizer variant."""
    params = [params] if isinstance(params, str) else list(params)
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    axes = figure.add_subplot()
    scored = results.dropna(subset=["mean_test_score"])
    settings = scored[params].astype(object).where(scored[params].notna(), "-")
    best = scored.assign(_setting=settings.apply(tuple, axis=1)).sort_values("mean_test_score", ascending=False)
    for setting, row in best.drop_duplicates("_setting").set_index("_setting").iterrows():
        curves = histories[histories["candidate"] == row["candidate"]]
        if curves.empty or metric not in curves:
            continue
        mean = curves.groupby("epoch")[metric].mean()
        label = ", ".join(f"{p.split('__')[-1]}={v}" for p, v in zip(params, setting) if v != "-")
        axes.plot(mean.index + 1, mean.to_numpy(), marker="o", markersize=3, label=label)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(f"training {metric} (mean over folds)")
    if metric == "loss" and (histories[metric] > 0).all():
        axes.set_yscale("log")
    short = " / ".join(p.split("__")[-1] for p in params)
    figure.suptitle(f"training {metric} per epoch, best candidate per {short}", fontsize=11)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return figure


def plot_loss_vs_iteration(improvements: pd.DataFrame, iterations: int, dataset: str) -> Figure:
    """The random-weight baselines: best loss so far per loss evaluation, one step line per method."""
    figure = Figure(figsize=(7, 4.2), layout="constrained")
    axes = figure.add_subplot()
    for method, log in improvements.groupby("method", sort=False):
        steps = np.append(log["iteration"].to_numpy(), iterations)
        losses = np.append(log["loss"].to_numpy(), log["loss"].iloc[-1])
        axes.step(steps, losses, where="post", label=method)
    axes.set_xscale("log")
    axes.set_xlabel("loss evaluations (gradient steps)")
    axes.set_ylabel("best cross-entropy loss so far")
    axes.set_title(f"{dataset}: random weights vs. hill climbing vs. gradient training")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def plot_population(summary: dict) -> Figure:
    """Population-based training: each member's perturbed hyperparameters over the epochs (a
    step per interval; a dot where it took over another member) and its mean CV score at each
    interval's end."""
    names = summary["perturbed"]
    figure = Figure(figsize=(8.5, 2.4 * (len(names) + 1)), layout="constrained")
    axes = figure.subplots(len(names) + 1, 1, sharex=True, squeeze=False)[:, 0]
    for member in summary["members"]:
        steps = member["steps"]
        starts = [0, *[step["epochs"] for step in steps[:-1]]]
        took = [start for start, step in zip(starts, steps) if step["from"] is not None]
        label = f"member {member['member']}"
        for ax, name in zip(axes, names):
            values = [step["params"].get(name, np.nan) for step in steps]
            line, = ax.plot([*starts, steps[-1]["epochs"]], [*values, values[-1]], drawstyle="steps-post", label=label)
            ax.plot(took, [values[starts.index(start)] for start in took], "o", color=line.get_color())
        axes[-1].plot([step["epochs"] for step in steps], [step["score"] for step in steps], marker="o", label=label)
    for ax, name in zip(axes, names):
        ax.set_ylabel(name.split("__")[-1])
        if name.endswith(("learning_rate", "epsilon")):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_title("population-based training: each member's values (a dot where it took over another)")
    axes[-1].set_ylabel("mean CV score")
    axes[-1].set_xlabel("epoch")
    axes[-1].grid(alpha=0.3)
    if len(summary["members"]) <= 16:
        axes[0].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return figure
