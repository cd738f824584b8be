"""The per-fit callback list: LR schedule, LR logging, EarlyStopping, ModelCheckpoint, TerminateOnNaN, CSV log.

`make_callbacks` returns *new* callback objects on every call: a Keras callback keeps state
(best score, wait counter, file path), so every fit -- every candidate and every CV fold --
must get its own.
"""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..core.runtime import keras as _keras
from ..spec.vocabulary import CheckpointSpec, EarlyStoppingSpec, ScheduleSpec
from .context import StopFlag
from .factory import current_learning_rate
from .schedules import schedule_function

keras = _keras()


class EpochSchedule(keras.callbacks.LearningRateScheduler):
    """A named per-epoch schedule from `pipeline.training.schedules`, starting at the optimizer's own rate."""

    def __init__(self, name: str, **params: float):
        super().__init__(self._rate)
        self.name, self.schedule_params, self.initial_lr = name, params, None

    def on_train_begin(self, logs=None):
        if isinstance(self.model.optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            raise ValueError(
                f"learning-rate schedule {self.name!r} cannot be combined with optimizer decay; set one of them"
            )
        self.initial_lr = current_learning_rate(self.model.optimizer)
        self._function = schedule_function(self.name, self.initial_lr, **self.schedule_params)

    def _rate(self, epoch: int) -> float:
        return float(self._function(epoch))


@contextmanager
def graceful_interrupt(stop: StopFlag) -> Iterator[None]:
    """Turn the first Ctrl-C into a stop at the next training batch (`stop` is set, `StopOnRequest`
    raises); a second one interrupts at once.

    A bare SIGINT raises KeyboardInterrupt wherever Python happens to be, and during Keras'
    garbage collection that can be a weakref callback, where the exception is printed and
    swallowed: the search would just go on. Raising it from `StopOnRequest` is reliable.
    """
    def request_stop(signum, frame):
        stop.request()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        stop.clear()


class StopOnRequest(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at the end of the batch during which Ctrl-C was pressed."""

    def __init__(self, stop: StopFlag):
        super().__init__()
        self.stop = stop

    def on_train_batch_end(self, batch, logs=None):
        self.stop.raise_if_requested()


class TerminateOnNaN(keras.callbacks.Callback):
    """Keras' TerminateOnNaN without its "Invalid loss, terminating training" line per diverging
    fit: a diverged fit is reported once, as the candidate's failure (or the training run's)."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


class LearningRateLogger(keras.callbacks.Callback):
    """Adds `learning_rate` to each epoch's logs: the rate in force when the epoch began.

    Works for per-epoch schedules and for per-update time decay alike, so history.csv
    always has the learning-rate column the plots need.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._rate = current_learning_rate(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self._rate


def make_callbacks(
    *,
    schedule: ScheduleSpec = ScheduleSpec(),
    early_stopping: EarlyStoppingSpec | None = None,
    checkpoint: CheckpointSpec | None = None,
    checkpoint_path: str | Path | None = None,
    terminate_on_nan: bool = True,
    history_csv: str | Path | None = None,
    stop: StopFlag | None = None,
) -> list:
    """Fresh callbacks for one fit. Early stopping and checkpoints are on when given and enabled.

    Order matters: the schedule sets the rate before the logger reads it, and the CSV logger
    comes last so each row already holds the learning rate.
    """
    callbacks: list = [StopOnRequest(stop)] if stop is not None else []
    if schedule.name != "none":
        callbacks.append(EpochSchedule(schedule.name, **schedule.kwargs()))
    callbacks.append(LearningRateLogger())
    if early_stopping is not None and early_stopping.enabled:
        callbacks.append(keras.callbacks.EarlyStopping(**early_stopping.kwargs()))
    if checkpoint is not None and checkpoint.enabled:
        path = str(checkpoint_path or "")
        if not path.endswith((".keras", ".weights.h5")):
            raise ValueError(f"checkpoint path {path!r} must end in .keras or .weights.h5 (Keras 3)")
        callbacks.append(keras.callbacks.ModelCheckpoint(
            path, save_best_only=True, save_weights_only=path.endswith(".weights.h5"), **checkpoint.kwargs()
        ))
    if terminate_on_nan:
        callbacks.append(TerminateOnNaN())
    if history_csv is not None:
        callbacks.append(keras.callbacks.CSVLogger(str(history_csv)))
    return callbacks
