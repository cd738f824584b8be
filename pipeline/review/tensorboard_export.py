"""A run's fits in TensorBoard's HParams dashboard: `tensorboard --logdir RUN/tensorboard`.

One session per (candidate, fold) fit, named `candidate_NNN/fold_K`, and one for the refitted
best model, `refit`: the searched hyperparameters (plus `fold`), the fit's final scores and
its per-epoch curves as scalars. Fused towers are sessions like solo fits: their records are
alike. Written from the run's files after training (results.csv, fits.csv,
fit_histories.csv, history.csv, run.json, config.yaml), so it costs no training time, covers
resumed runs, and `python -m pipeline.report RUN --tensorboard` rewrites it for a finished run.
Only the `tensorboard` package's protocol buffers and event-file writer are used: they load
without TensorFlow, like the rest of the review layer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import PipelineError
from ..core.files import replacing_folder
from .report import RunFiles
from .tables import best_row

FOLDER = "tensorboard"
REFIT = "refit"
FOLD = "fold"
# Final values of a fit, written once at its last epoch; the HParams table's metric columns.
FINAL_SCORES = {
    "test_score": "held-out score: the CV fold's test part (refit: the test split)",
    "mean_test_score": "the candidate's mean CV test score",
    "train_score": "score on the data the fit trained on",
}


@dataclass
class Session:
    """One fit as TensorBoard shows it: a run folder with its hyperparameters and scalars."""

    name: str
    hparams: dict[str, Any]
    curves: pd.DataFrame  # epoch, loss, accuracy, val_loss, ...
    finals: dict[str, float] = field(default_factory=dict)


def write_tensorboard(run_dir: str | Path) -> Path:
    """Write (or replace) RUN/tensorboard from the run's files; returns the folder."""
    run = RunFiles(Path(run_dir))
    if run.fits is None:
        raise PipelineError(f"{run.dir}: fits.csv missing, so its fits cannot be exported to TensorBoard; "
                            "it was written by an older pipeline: run the search again")
    sessions = [*_fit_sessions(run), *_refit_session(run)]
    hparams = _hparam_domains(run, sessions)
    curves = dict.fromkeys(c for s in sessions for c in s.curves.columns if c != "epoch")
    tags = [*FINAL_SCORES, *(f"epoch_{c}" for c in sorted(curves, key=lambda c: not c.startswith("val_")))]
    from tensorboard.plugins.hparams import summary_v2 as hp

    metrics = [hp.Metric(tag, display_name=tag, description=_describe(tag, run)) for tag in tags
               if any(tag in s.finals or tag[len("epoch_"):] in s.curves for s in sessions)]
    now = _run_time(run.run)
    with replacing_folder(run.dir / FOLDER) as folder:
        _write_events(folder, [_summary_event(hp.hparams_config_pb(list(hparams.values()), metrics, now), now)])
        for session in sessions:
            values = {hparams[name]: value for name, value in session.hparams.items()}
            events = [_summary_event(hp.hparams_pb(values, trial_id=session.name, start_time_secs=now), now)]
            events += _scalar_events(session, now)
            _write_events(folder / session.name, events)
    return run.dir / FOLDER


def _run_time(info: dict[str, Any]) -> float:
    """When the run finished (or started), as the events' time: a rewritten folder equals the first."""
    stamp = info.get("finished") or info.get("started")
    return datetime.fromisoformat(stamp).timestamp() if stamp else time.time()


def _fit_sessions(run: RunFiles) -> list[Session]:
    """A session per recorded (candidate, fold) fit, hyperparameters as results.csv lists them."""
    results = run.results.set_index("candidate")
    histories = run.fit_histories if run.fit_histories is not None else pd.DataFrame(columns=["candidate", "fold"])
    scoring = run.run.get("scoring", "score")
    width = max(3, len(str(int(results.index.max()))))
    sessions = []
    for fit in run.fits.itertuples(index=False):
        row = results.loc[fit.candidate]
        fold = str(fit.fold) if not pd.isna(fit.fold) else fit.fold_key
        hparams = {name: value for name in run.params if (value := _hparam_value(row[name])) is not None}
        curves = histories[(histories["candidate"] == fit.candidate) & (histories["fold"] == fit.fold_key)]
        finals = {"test_score": getattr(fit, f"test_{scoring}", np.nan), "mean_test_score": row["mean_test_score"],
                  "train_score": getattr(fit, f"train_{scoring}", np.nan)}
        sessions.append(Session(f"candidate_{int(fit.candidate):0{width}d}/{FOLD}_{fold}", {**hparams, FOLD: fold},
                                curves.drop(columns=["candidate", "fold"]), finals))
    return sessions


def _refit_session(run: RunFiles) -> list[Session]:
    """The refitted best model's session, if the run got that far; its hyperparameters are
    those of results.csv's best row (the refit's), written as that table writes them."""
    info = run.run
    if "best_params" not in info or run.history is None:
        return []
    best = best_row(run.results)
    hparams = {name: value for name in run.params if (value := _hparam_value(best[name])) is not None}
    finals = {"test_score": info.get("test_scores", {}).get(info.get("scoring"), np.nan),
              "mean_test_score": info.get("best_cv_score", np.nan)}
    return [Session(REFIT, {**hparams, FOLD: REFIT}, run.history, finals)]


def _hparam_value(value: Any) -> bool | float | str | None:
    """A results.csv value as TensorBoard takes it (booleans, numbers as floats, the rest as text); None if missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return str(value)


def _hparam_domains(run: RunFiles, sessions: list[Session]):
    """name -> HParam with its domain: the config's interval for a sampled number
    (`uniform`/`loguniform`/`randint`), else the values the sessions took (a column of mixed
    types, numbers and text, becomes text, in the domain and in the sessions alike)."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    specs = _distributions(run.config)
    domains = {}
    for name in [*run.params, FOLD]:
        values = sorted({s.hparams[name] for s in sessions if name in s.hparams}, key=lambda v: (str(type(v)), v))
        if not values:
            continue
        spec = specs.get(name)
        numbers = all(isinstance(v, float) for v in values)
        if spec and numbers and all(spec["low"] <= v <= spec["high"] for v in values):
            interval = hp.IntInterval if spec["distribution"] == "randint" else hp.RealInterval
            kind = int if interval is hp.IntInterval else float
            domains[name] = hp.HParam(name, interval(kind(spec["low"]), kind(spec["high"])))
        else:
            if len({type(v) for v in values}) > 1:  # e.g. numbers and text in one column: all as text
                values = sorted({str(v) for v in values})
                for session in sessions:
                    if name in session.hparams:
                        session.hparams[name] = str(session.hparams[name])
            domains[name] = hp.HParam(name, hp.Discrete(values))
    return domains


def _distributions(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """search.params' numeric distributions by name, when every (sub-)grid that names the
    parameter samples it from the same one."""
    params = config.get("search", {}).get("params") or {}
    grids = params if isinstance(params, list) else [params]
    found: dict[str, list[Any]] = {}
    for grid in grids:
        for name, spec in grid.items():
            found.setdefault(name, []).append(spec)
    distributions = {}
    for name, (first, *others) in found.items():
        if (isinstance(first, dict) and all(spec == first for spec in others)
                and first.get("distribution") in ("uniform", "loguniform", "randint")):
            try:  # YAML reads 1e-3 (no dot) as text
                distributions[name] = {**first, "low": float(first["low"]), "high": float(first["high"])}
            except (KeyError, TypeError, ValueError):
                continue
    return distributions


def _describe(tag: str, run: RunFiles) -> str:
    if tag in FINAL_SCORES:
        return f"{FINAL_SCORES[tag]} ({run.run.get('scoring', '?')})"
    return f"{tag[len('epoch_'):]} after each epoch (the last epoch's value in the table)"


def _scalar_events(session: Session, wall_time: float) -> list:
    """The per-epoch curves (`epoch_loss`, `epoch_val_accuracy`, ...) and the final scores (at the last epoch)."""
    events = []
    for record in session.curves.to_dict("records"):
        step = int(record.pop("epoch"))
        events += [_scalar_event(f"epoch_{name}", value, step, wall_time) for name, value in record.items()
                   if not pd.isna(value)]
    last = int(session.curves["epoch"].max()) if len(session.curves) else 0
    events += [_scalar_event(tag, value, last, wall_time) for tag, value in session.finals.items()
               if not pd.isna(value)]
    return events


def _scalar_event(tag: str, value: float, step: int, wall_time: float):
    """A scalar as float32, as Keras writes them: TensorBoard's default (Rust) data server
    skips float64 scalars, so the dashboards would show no value."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.scalar import metadata
    from tensorboard.util import tensor_util

    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor_util.make_tensor_proto(np.float32(value)),
                                      metadata=metadata.create_summary_metadata(display_name=tag, description=""))
    return event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=[value]))


def _summary_event(summary, wall_time: float):
    from tensorboard.compat.proto import event_pb2

    return event_pb2.Event(wall_time=wall_time, step=0, summary=summary)


def _write_events(folder: Path, events: list) -> None:
    """One event file in `folder`, in TensorBoard's record format. Written with tensorboard's
    RecordWriter on a plain file: its EventFileWriter goes through `tensorboard.compat.tf`,
    which imports the whole of TensorFlow when it is installed (3-5 s)."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    folder.mkdir(parents=True, exist_ok=True)
    version = event_pb2.Event(wall_time=events[0].wall_time, file_version="brain.Event:2")
    with open(folder / f"events.out.tfevents.{int(version.wall_time)}.pipeline", "wb") as stream:
        writer = RecordWriter(stream)
        for event in [version, *events]:
            writer.write(event.SerializeToString())
