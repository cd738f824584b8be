"""Plots and report.md / report.html from a run's files alone (`python -m pipeline.report RUN_DIR`).

Reads results.csv, history.csv, confusion_matrix.csv, run.json and config.yaml; trains
nothing and imports no TensorFlow, so a report can be rebuilt anywhere, any time. The
report is assembled once as a list of blocks and rendered twice: Markdown (PNG files next
to it) and self-contained HTML (PNGs embedded as base64).
"""

from __future__ import annotations

import base64
import html
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import pandas as pd
import yaml

from ..core.errors import PipelineError
from ..core.files import run_is_locked, save_figure_atomic, write_text_atomic
from . import plots
from .significance import comparison_sentences, split_scores
from .tables import param_columns, population_sentence, population_tables, pruning_sentence

TOP = 10
PLOTS = "plots"


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str


@dataclass
class Table:
    frame: pd.DataFrame


@dataclass
class Image:
    path: Path
    caption: str


Block = Union[Heading, Text, Table, Image]


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """(Re)draw the plots and write report.md and report.html into the run folder."""
    run_dir = Path(run_dir)
    run = RunFiles(run_dir)
    (run_dir / PLOTS).mkdir(exist_ok=True)
    blocks = report_blocks(run)
    markdown, page = render_markdown(blocks, run_dir), render_html(blocks, run.run["experiment"])
    write_text_atomic(run_dir / "report.md", markdown)
    write_text_atomic(run_dir / "report.html", page)
    return run_dir / "report.md", run_dir / "report.html"


class RunFiles:
    """The files of one finished search run, read once."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        if not run_dir.is_dir():
            raise PipelineError(f"run folder {run_dir} not found: give outputs/<run> of a search")
        missing = [n for n in ("results.csv", "run.json", "config.yaml") if not (run_dir / n).is_file()]
        if missing:
            raise PipelineError(f"{run_dir}: {', '.join(missing)} missing; is it a finished search run? "
                                f"(an interrupted one can be finished with --resume)")
        self.results = pd.read_csv(run_dir / "results.csv")
        self.results["error"] = self.results["error"].astype("string").fillna("")  # empty cells read as NaN
        self.run = json.loads((run_dir / "run.json").read_text())
        self.config = yaml.safe_load((run_dir / "config.yaml").read_text())
        self.history = _optional_csv(run_dir / "history.csv")
        # fold keys are hex digests: read as text, or "1234e567..." would become a number
        self.fit_histories = _optional_csv(run_dir / "fit_histories.csv", dtype={"fold": str})
        self.fits = _optional_csv(run_dir / "fits.csv", dtype={"fold_key": str, "fold": "Int64", "error": str})
        confusion = _optional_csv(run_dir / "confusion_matrix.csv")
        self.confusion = confusion.set_index("true") if confusion is not None else None

    @property
    def params(self) -> list[str]:
        return param_columns(self.results)

    @property
    def status(self) -> str:
        """run.json's status, except that a "running" run no process holds has stopped."""
        status = self.run.get("status", "?")
        if status == "running" and not run_is_locked(self.dir):
            return (f"stopped (its process ended without finishing; continue with "
                    f"python -m pipeline.search --resume {self.dir})")
        return status + (f" ({self.run['reason']})" if self.run.get("reason") else "")


def report_blocks(run: RunFiles) -> list[Block]:
    """The report's content, in order; draws the plots it refers to."""
    info, data, results = run.run, run.run.get("dataset", {}), run.results
    search = run.config.get("search", {})
    blocks: list[Block] = [Heading(f"Search report: {info['experiment']}", 1)]
    blocks.append(Text(
        f"Run `{run.dir.name}`: {search.get('strategy', '?')} search, {_candidates(info, results)} "
        f"x {info.get('n_folds', '?')} folds{_repeats(info)}, seed {info.get('seed', '?')}, status {run.status}, "
        f"wall time {info.get('wall_time_s', '?')} s."
    ))
    requested = f" (requested: {data.get('requested')})" if data.get("requested") != data.get("name") else ""
    blocks.append(Text(
        f"Dataset used: **{data.get('name', '?')}**{requested}: {data.get('n_train', '?')} training / "
        f"{data.get('n_test', '?')} test samples, {data.get('n_features', '?')} features."
    ))
    blocks += [Text(note) for note in data.get("notes", [])]
    if info.get("pruning"):
        blocks.append(Text(pruning_sentence(info["pruning"])))
    if info.get("pbt"):
        schedule, lineage = population_tables(info["pbt"])
        blocks += [Heading("Population-based training"), Text(population_sentence(info["pbt"])),
                   Text("The winner's schedule:"), Table(schedule),
                   Text("Every member's mean CV score per interval (<- mN: it took over member N before it):"),
                   Table(lineage), _plot(run, "pbt_population", "The population over the epochs",
                                         plots.plot_population(info["pbt"]))]
    budget = info.get("budget") or {}
    if budget.get("exhausted"):
        blocks.append(Text(
            f"The CPU budget (search.budget_minutes {search.get('budget_minutes')}) ended the search after "
            f"{budget['batches']} batch(es): {budget['cpu_s'] / 60:.1f} CPU minutes spent, and a batch took "
            f"{budget.get('per_batch_cpu_s', 0) / 60:.1f} on average."))

    blocks.append(Heading(f"Leaderboard (top {min(TOP, len(results))} of {len(results)})"))
    blocks.append(Table(leaderboard(results, run.params).head(TOP)))
    failed = results[results["error"] != ""]
    blocks.append(Heading("Failed candidates"))
    blocks.append(Table(failed[["rank", *run.params, "error"]]) if len(failed) else Text("None."))

    blocks += _comparison(results, info)
    blocks.append(Heading("Best model"))
    if "best_params" not in info:
        blocks.append(Text(f"None: the run's status is {run.status}."))
    else:
        blocks += _best_model(info)
    if run.confusion is not None:
        blocks.append(Table(run.confusion.rename_axis("true \\ predicted").reset_index()))
        blocks.append(_plot(run, "confusion", "Confusion matrix of the test split", plots.plot_confusion(run.confusion)))

    blocks.append(Heading("Plots"))
    scored = results.dropna(subset=["mean_test_score"])
    plotted = [param for param in run.params if param != "member"]  # a pbt member's lineage tag: no axis
    for param in plotted:
        if scored[param].nunique() > 1:
            blocks.append(_plot(run, f"score_{param}", f"Mean CV score by {param}", plots.plot_param_scores(scored, param)))
    if search.get("strategy") == "grid":
        for row, column in itertools.combinations(run.params, 2):
            both = scored.dropna(subset=[row, column])  # sub-grids: only pairs searched together
            if both[row].nunique() > 1 and both[column].nunique() > 1:
                blocks.append(_plot(run, f"heatmap_{row}__{column}", f"Best mean CV score by {row} and {column}",
                                    plots.plot_param_heatmap(both, row, column)))
    if run.fit_histories is not None and len(run.fit_histories):
        groupings = [[p] for p in plotted if 2 <= scored[p].nunique() <= 10]
        curves_by = [p for p in run.config.get("report", {}).get("curves_by", []) if p in run.params]
        if curves_by:
            groupings.insert(0, curves_by)
        for params in groupings:
            name = "__".join(params)
            blocks.append(_plot(run, f"loss_curves_{name}", f"Training loss per epoch by {' / '.join(params)}",
                                plots.plot_loss_curves(run.fit_histories, scored, params)))
    if "iter" in results and search.get("pruning"):
        blocks.append(_plot(run, "pruning_rungs", "Score per pruning rung",
                            plots.plot_halving_rounds(scored, "epochs", pruned=True)))
    elif "iter" in results and not info.get("pbt"):
        blocks.append(_plot(run, "halving_rounds", "Score per successive-halving round",
                            plots.plot_halving_rounds(scored, search.get("resource", "epochs"))))
    if run.history is not None:
        for metric in ("loss", "accuracy", "learning_rate"):
            if metric in run.history:
                blocks.append(_plot(run, f"history_{metric}", f"Best model, refitted: {metric} per epoch",
                                    plots.plot_history(run.history, metric)))
    return blocks


def _candidates(info: dict, results: pd.DataFrame) -> str:
    """How many candidates: a pruned search's rows are (candidate, rung) evaluations."""
    rows = info.get("n_candidates", len(results))
    if info.get("pruning"):
        return f"{info['pruning']['reached'][0]} candidates ({rows} evaluations at the rungs)"
    if info.get("pbt"):
        return f"{info['pbt']['population']} population members ({rows} evaluations at the intervals)"
    return f"{rows} candidates"


def _repeats(info: dict) -> str:
    return f" x {info['cv_repeats']} repeats" if info.get("cv_repeats", 1) > 1 else ""


def _comparison(results: pd.DataFrame, info: dict) -> list[Block]:
    """The best candidate against the next ones: the corrected resampled t-test, in sentences."""
    sentences = comparison_sentences(results, TOP)
    if not sentences:
        return []
    splits = split_scores(results).shape[1]
    return [Heading("Is the best really better?"), Text(
        f"Each candidate against the best on the same {splits} splits ({info.get('n_folds', '?')} folds"
        f"{_repeats(info)}): the mean difference of their scores ± its standard error, and the one-sided p-value "
        "of Nadeau and Bengio's corrected resampled t-test, whose variance allows for the splits' overlapping "
        "training sets (columns diff_vs_best, diff_vs_best_se and p_vs_best of results.csv). More splits "
        "(cv.repeats) tell closer candidates apart."
    ), *(Text(sentence + ".") for sentence in sentences)]


def _best_model(info: dict) -> list[Block]:
    tests = info.get("test_scores", {}) or {"accuracy": info.get("test_accuracy", float("nan"))}
    return [Text(
        f"Best parameters: `{info['best_params']}`; mean CV {info.get('scoring', 'score')} "
        f"{info.get('best_cv_score', float('nan')):.4f}. On the test split, refitted on the whole training split: "
        + ", ".join(f"{name} **{value:.4f}**" for name, value in tests.items()) + "."
    )]


def leaderboard(results: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """rank, the hyperparameters, 'mean ± std' per candidate (and of any further metric), and the
    gap between training and validation (CV) score that shows overfitting; best first."""
    table = results[["rank", *[c for c in ("iter", "n_resources") if c in results], *params]].copy()
    table["mean ± std"] = _mean_std(results["mean_test_score"], results["std_test_score"])
    for column in results.columns:
        if column.startswith("mean_test_") and column != "mean_test_score":
            metric = column.removeprefix("mean_test_")
            table[f"{metric} mean ± std"] = _mean_std(results[column], results[f"std_test_{metric}"])
    if "train_test_gap" in results:
        table["train − validation gap"] = [f"{g:+.4f}" if pd.notna(g) else "" for g in results["train_test_gap"]]
    return table


def _mean_std(means: pd.Series, stds: pd.Series) -> list[str]:
    return [f"{m:.4f} ± {s:.4f}" if pd.notna(m) else "failed" for m, s in zip(means, stds)]


def render_markdown(blocks: list[Block], run_dir: Path) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Text):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines += [_markdown_table(block.frame), ""]
        else:
            lines += [f"![{block.caption}]({block.path.relative_to(run_dir).as_posix()})", ""]
    return "\n".join(lines)


def render_html(blocks: list[Block], title: str) -> str:
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            body.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Table):
            body.append(block.frame.to_html(index=False, border=0, classes="table", na_rep=""))
        else:
            data = base64.b64encode(block.path.read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}">'
                        f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{padding:.25em .6em;border-bottom:1px solid #ddd;"
             "text-align:left}figure{margin:1.5em 0}img{max-width:100%}code{background:#f4f4f4}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _plot(run: RunFiles, name: str, caption: str, figure) -> Image:
    return Image(save_figure_atomic(figure, run.dir / PLOTS / f"{name}.png"), caption)


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        return "" if pd.isna(value) else str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _inline_html(text: str) -> str:
    """The little Markdown the report uses in text: **bold** and `code`."""
    escaped = html.escape(text)
    for mark, tag in (("**", "strong"), ("`", "code")):
        parts = escaped.split(mark)
        escaped = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(parts))
    return escaped


def _optional_csv(path: Path, **kwargs) -> pd.DataFrame | None:
    return pd.read_csv(path, **kwargs) if path.is_file() else None

