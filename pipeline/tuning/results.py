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
