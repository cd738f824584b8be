"""The one place that imports TensorFlow/Keras: lazily, without its start-up log noise.

TensorFlow prints C++ log lines (oneDNN notices, absl warnings) straight to file
descriptor 2 while it loads, before any Python logging setting can reach it. We silence
fd 2 for the import only; errors still surface as Python exceptions. Nothing is cached
here: Python's own module table (`sys.modules`) remembers the import.

The import also keeps Python's cyclic garbage collector off TensorFlow's objects: several
hundred thousand module-lifetime objects that every full collection would walk again (ad-hoc
measurements during a fused search here, per process: ~0.6 s of collections during the import,
~0.7 s more during the fits, and ~1 s of collection at interpreter exit).
"""

from __future__ import annotations

import gc
import os
import sys
import warnings
from types import ModuleType


def keras() -> ModuleType:
    """The `keras` module, imported quietly on first use."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ INFO..ERROR noise (e.g. tf.data NodeDef notices)
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    collecting = gc.isenabled()
    gc.disable()  # an import makes almost no garbage, but many objects that trigger full collections
    try:
        import tensorflow
        import keras as keras_module

        tensorflow.get_logger().setLevel("ERROR")  # e.g. retracing notices: ours to handle, not the user's
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        if collecting:
            gc.enable()
    gc.freeze()  # every object so far lives as long as the process: later collections skip them
    return keras_module


def configure_threads(threads: int) -> None:
    """Let TensorFlow use `threads` threads (intra- and inter-op) in this process.

    Worker processes call it before their first fit, so that workers x threads do not exceed the
    cores. TensorFlow fixes its thread pools when it first runs an op; a process that already
    runs with other settings keeps them (with a warning), since nothing can change them then.
    """
    keras()
    import tensorflow

    threading = tensorflow.config.threading
    if (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()) == (threads,) * 2:
        return
    try:
        threading.set_intra_op_parallelism_threads(threads)
        threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        warnings.warn(f"TensorFlow already runs in this process; it keeps its thread settings instead of {threads}",
                      RuntimeWarning, stacklevel=2)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow/Keras at once (`keras.utils.set_random_seed`)."""
    keras().utils.set_random_seed(seed)
