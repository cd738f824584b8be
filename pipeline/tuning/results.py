"""Fit records -> the per-candidate columns of results.csv and the per-epoch fit_histories.csv."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .records import FitRecord


def record_columns(records: Sequence[FitRecord], keys: Sequence[str]) -> dict[str, dict[int, Any]]:
    """Per cv_results row (candidate `keys[row]`): the failure reason, the mean fit time as
    measured when it trained (replays take ~0 s) and how many towers its fits trained with (0 = alone)."""
    by_key: dict[str, list[FitRecord]] = {}
    for record in records:
        by_key.setdefault(record.key, []).append(record)
    errors, fit_times, fused = {}, {}, {}
    for row, key in enumerate(keys):
        found = by_key.get(key, [])
        reasons = [r.reason for r in found if r.failed]
        if reasons:
            errors[row] = reasons[0]
        if found:
            fit_times[row] = float(np.mean([r.fit_time for r in found]))
            fused[row] = max((r.trainer.get("fused") or {}).get("towers", 0) for r in found)
    return {"errors": errors, "fit_times": fit_times, "fused": fused}


def fit_histories(records: Sequence[FitRecord], keys: Sequence[str]) -> pd.DataFrame:
    """Per-epoch training curves of every recorded fit: candidate, fold, epoch, loss, ..."""
    rows_of = {key: row for row, key in enumerate(keys)}
    frames = []
    for record in records:
        if record.key in rows_of and record.history:
            frame = pd.DataFrame(record.history)
            frame.insert(0, "epoch", range(len(frame)))
            frame.insert(0, "fold", record.fold)
            frame.insert(0, "candidate", rows_of[record.key])
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["candidate", "fold", "epoch"])


def fit_table(records: Sequence[FitRecord], keys: Sequence[str], fold_keys: Sequence[str],
              metrics: Sequence[str]) -> pd.DataFrame:
    """One row per recorded fit of a listed candidate (fits.csv): its candidate and fold number
    (the fold's place in the CV splits, `fold_keys`; empty for data that is none of them, such as a
    halving round's subsample), its test and train scores by metric, epochs trained, fit time,
    towers and failure. results.csv has the per-fold scores by candidate; this table is the
    same fits one by one, keyed so that a fit's curves in fit_histories.csv can be found."""
    rows_of = {key: row for row, key in enumerate(keys)}
    folds = {key: number for number, key in enumerate(fold_keys)}
    rows = []
    for record in records:
        if record.key not in rows_of:
            continue
        row = {"candidate": rows_of[record.key], "fold": folds.get(record.fold), "fold_key": record.fold}
        for part in ("test", "train"):
            scores = record.scores(part, metrics)
            row.update({f"{part}_{name}": scores.get(name, np.nan) for name in metrics})
        row.update(epochs_trained=len(next(iter(record.history.values()), [])), fit_time=record.fit_time,
                   fused_towers=(record.trainer.get("fused") or {}).get("towers", 0), error=record.reason)
        rows.append(row)
    columns = ["candidate", "fold", "fold_key", *(f"{part}_{name}" for part in ("test", "train") for name in metrics),
               "epochs_trained", "fit_time", "fused_towers", "error"]
    table = pd.DataFrame(rows, columns=columns).astype({"fold": "Int64"})
    return table.sort_values(["candidate", "fold"], kind="stable", ignore_index=True)
