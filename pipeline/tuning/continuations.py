"""Where halving's fits stopped, so that the next round continues its survivors instead of
retraining them.

Successive halving with epochs as the resource trains every candidate for r epochs, then the
best for r * factor epochs, and so on; scikit-learn retrains the survivors from scratch. A
fused tower's state after r epochs (`pipeline.training.towers.TowerState`) holds all that its
solo fit would carry into more epochs, so a survivor continues from it and gives the very
result of the longer fit trained from the start (tested). States are kept per (candidate
without its epochs, fold) in `continuations/` of the run folder, written by the process that
holds the run (they come back from workers with the records), so a resumed run continues too;
the folder is removed when the search ends. A state that cannot be read is ignored: the fit
then trains from scratch, with the same result.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..core.files import write_bytes_atomic
from .records import hyperparameters, params_key

FOLDER = "continuations"


def continuation_key(params: dict[str, Any]) -> str:
    """A candidate's key without its epoch count: what its rounds of halving have in common."""
    return params_key({k: v for k, v in hyperparameters(params).items() if k != "epochs"})


class TowerStates:
    """The states of a run's fits by (continuation key, fold key) and epochs, as files."""

    def __init__(self, run_dir: str | Path):
        self.folder = Path(run_dir) / FOLDER

    def _path(self, key: str, fold: str, epochs: int) -> Path:
        return self.folder / f"{key}-{fold}-{epochs:05d}.npz"

    def add(self, key: str, fold: str, state) -> None:
        self.folder.mkdir(exist_ok=True)
        arrays = {f"weights_{i}": w for i, w in enumerate(state.weights)}
        arrays.update({f"slot_{slot}_{i}": v for slot, values in state.slots.items() for i, v in enumerate(values)})
        arrays.update({f"dropout_{i}": seeds for i, seeds in enumerate(state.dropout_seeds)})
        meta = {"epochs": state.epochs, "iterations": state.iterations, "history": state.history,
                "weights": len(state.weights), "slots": {slot: len(v) for slot, v in state.slots.items()},
                "dropout": len(state.dropout_seeds)}
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
        write_bytes_atomic(self._path(key, fold, state.epochs), buffer.getvalue())

    def latest(self, key: str, fold: str, before: int):
        """The state with the most epochs below `before`, or None."""
        found = sorted(self.folder.glob(f"{key}-{fold}-*.npz")) if self.folder.is_dir() else []
        for path in reversed(found):
            epochs = int(path.stem.rsplit("-", 1)[1])
            if epochs < before:
                return _read(path)
        return None

    def kept(self, key: str, epochs: int) -> list[Path]:
        """The files of this candidate's states after `epochs`, one per fold."""
        return sorted(self.folder.glob(f"{key}-*-{epochs:05d}.npz")) if self.folder.is_dir() else []

    def copy(self, source: str, target: str, epochs: int) -> int:
        """Give candidate `target` the states of candidate `source` after `epochs`, fold by fold
        (population-based training's exploit step); returns how many folds were copied."""
        found = self.kept(source, epochs)
        for path in found:
            write_bytes_atomic(self.folder / path.name.replace(source, target, 1), path.read_bytes())
        return len(found)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _read(path: Path):
    from ..training.towers import TowerState

    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return TowerState(
                epochs=meta["epochs"], iterations=meta["iterations"], history=meta["history"],
                weights=[data[f"weights_{i}"] for i in range(meta["weights"])],
                slots={slot: [data[f"slot_{slot}_{i}"] for i in range(n)] for slot, n in meta["slots"].items()},
                dropout_seeds=[data[f"dropout_{i}"] for i in range(meta["dropout"])])
    except (OSError, ValueError, KeyError):
        return None
