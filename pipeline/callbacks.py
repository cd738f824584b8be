"""The per-fit callback list: LR schedule, LR logging, EarlyStopping, ModelCheckpoint, TerminateOnNaN, CSV log.

`make_callbacks` returns *new* callback objects on every call: a Keras callback keeps state
(best score, wait counter, file path), so every fit -- every candidate and every CV fold --
must get its own.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from ._tf import keras as _keras
from .models import current_learning_rate
from .schedules import schedule_function

keras = _keras()


class EpochSchedule(keras.callbacks.LearningRateScheduler):
    """A named per-epoch schedule from `pipeline.schedules`, starting at the optimizer's own rate."""

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


_stop_requested = threading.Event()


@contextmanager
def graceful_interrupt() -> Iterator[None]:
    """Turn the first Ctrl-C into a stop at the next training batch; a second one interrupts at once.

    A bare SIGINT raises KeyboardInterrupt wherever Python happens to be, and during Keras'
    garbage collection that can be a weakref callback, where the exception is printed and
    swallowed: the search would just go on. Raising it from `StopOnRequest` is reliable.
    """
    def request_stop(signum, frame):
        _stop_requested.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _stop_requested.clear()


def raise_if_stop_requested() -> None:
    if _stop_requested.is_set():
        raise KeyboardInterrupt


class StopOnRequest(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at the end of the batch during which Ctrl-C was pressed."""

    def on_train_batch_end(self, batch, logs=None):
        raise_if_stop_requested()


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
    lr_schedule: str = "none",
    schedule_params: Mapping[str, Any] | None = None,
    early_stopping: Mapping[str, Any] | None = None,
    checkpoint: Mapping[str, Any] | None = None,
    checkpoint_path: str | Path | None = None,
    terminate_on_nan: bool = True,
    history_csv: str | Path | None = None,
) -> list:
    """Fresh callbacks for one fit. `early_stopping`/`checkpoint` are kwargs dicts, None = off.

    Order matters: the schedule sets the rate before the logger reads it, and the CSV logger
    comes last so each row already holds the learning rate.
    """
    callbacks: list = [StopOnRequest()]
    if lr_schedule != "none":
        callbacks.append(EpochSchedule(lr_schedule, **dict(schedule_params or {})))
    callbacks.append(LearningRateLogger())
    if early_stopping is not None:
        callbacks.append(keras.callbacks.EarlyStopping(**early_stopping))
    if checkpoint is not None:
        path = str(checkpoint_path or "")
        if not path.endswith((".keras", ".weights.h5")):
            raise ValueError(f"checkpoint path {path!r} must end in .keras or .weights.h5 (Keras 3)")
        callbacks.append(keras.callbacks.ModelCheckpoint(
            path, save_best_only=True, save_weights_only=path.endswith(".weights.h5"), **checkpoint
        ))
    if terminate_on_nan:
        callbacks.append(keras.callbacks.TerminateOnNaN())
    if history_csv is not None:
        callbacks.append(keras.callbacks.CSVLogger(str(history_csv)))
    return callbacks
