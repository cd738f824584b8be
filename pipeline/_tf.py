"""The one place that imports TensorFlow/Keras: lazily, once, without its start-up log noise.

TensorFlow prints C++ log lines (oneDNN notices, absl warnings) straight to file
descriptor 2 while it loads, before any Python logging setting can reach it. We silence
fd 2 for the import only; errors still surface as Python exceptions.
"""

from __future__ import annotations

import os
from types import ModuleType

_keras: ModuleType | None = None

# Set by the process that starts worker processes: TensorFlow threads per worker (intra- and
# inter-op), applied when TensorFlow loads, so that workers x threads do not exceed the cores.
THREADS_VARIABLE = "PIPELINE_TF_THREADS"


def keras() -> ModuleType:
    """The `keras` module, imported quietly on first use."""
    global _keras
    if _keras is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ INFO..ERROR noise (e.g. tf.data NodeDef notices)
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            import tensorflow  # noqa: F401  (loads the backend under the muted stderr)
            import keras as keras_module

            threads = int(os.environ.get(THREADS_VARIABLE) or 0)
            if threads:
                tensorflow.config.threading.set_intra_op_parallelism_threads(threads)
                tensorflow.config.threading.set_inter_op_parallelism_threads(threads)
            tensorflow.get_logger().setLevel("ERROR")  # e.g. retracing notices: ours to handle, not the user's
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
        _keras = keras_module
    return _keras


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow/Keras at once (`keras.utils.set_random_seed`)."""
    keras().utils.set_random_seed(seed)
