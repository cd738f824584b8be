"""The seed's "random weights as a naive optimizer" study, on a small Keras model (2-3-3 on the
2-D point clouds): (a) draw fresh random weights every iteration and keep the best,
(b) perturb the best weights and keep a change only when the loss improves, (c) train the
same model with Adam (or SGD) for as many gradient steps as (a) and (b) have loss
evaluations. The loss is evaluated with NumPy on the model's own weight arrays (no per-call
Keras overhead), so 10,000 iterations take about a second. The command is `pipeline.cli.baselines`.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd

Weights = list  # [kernel 1, bias 1, kernel 2, bias 2] as NumPy arrays, Keras' own order


def run_study(x, y, iterations: int, scale: float, optimizer: str, learning_rate: float, hidden: int,
              seed: int) -> dict[str, pd.DataFrame]:
    """The three methods' improvement logs (iteration, loss, accuracy, seconds)."""
    from ..core.runtime import set_seed
    from ..spec.vocabulary import OptimizerSpec
    from .factory import build_model

    set_seed(seed)
    # Biases start at 0.1: with 3 ReLU units a zero-bias start can leave every unit dead on these
    # inputs, and then no gradient step can revive them (random search does not care).
    model = build_model(n_features=x.shape[1], n_outputs=int(y.max()) + 1, hidden_layers=(hidden,),
                        bias_init="constant(0.1)", optimizer=OptimizerSpec(name=optimizer, learning_rate=learning_rate),
                        steps_per_execution=50)
    shapes = [w.shape for w in model.get_weights()]
    rng = np.random.default_rng(seed)
    return {
        "random search": random_search(shapes, x, y, iterations, scale, rng),
        "hill climbing": hill_climbing(shapes, x, y, iterations, scale, rng),
        f"{optimizer} (gradient)": gradient_training(model, x, y, iterations),
    }


def loss_and_accuracy(weights: Weights, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Cross-entropy and accuracy of Dense-ReLU-Dense-softmax with these weights, in NumPy."""
    kernel1, bias1, kernel2, bias2 = weights
    logits = np.maximum(x @ kernel1 + bias1, 0.0) @ kernel2 + bias2
    logits -= logits.max(axis=1, keepdims=True)
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = -log_probabilities[np.arange(len(y)), y].mean()
    return float(loss), float(np.mean(logits.argmax(axis=1) == y))


def random_search(shapes, x, y, iterations: int, scale: float, rng: np.random.Generator) -> pd.DataFrame:
    """(a) Fresh weights ~ scale * N(0, 1) every iteration; keep the best."""
    return _search(lambda best: [scale * rng.standard_normal(s) for s in shapes], shapes, x, y, iterations)


def hill_climbing(shapes, x, y, iterations: int, scale: float, rng: np.random.Generator) -> pd.DataFrame:
    """(b) Best weights + scale * N(0, 1); revert unless the loss improves."""
    return _search(lambda best: [w + scale * rng.standard_normal(w.shape) for w in best], shapes, x, y, iterations,
                   start=[scale * rng.standard_normal(s) for s in shapes])


def _search(propose: Callable[[Weights], Weights], shapes, x, y, iterations: int, start: Weights | None = None):
    started = time.perf_counter()
    best = start if start is not None else [np.zeros(s) for s in shapes]
    best_loss = loss_and_accuracy(best, x, y)[0] if start is not None else np.inf
    rows = []
    for iteration in range(1, iterations + 1):
        candidate = propose(best)
        loss, accuracy = loss_and_accuracy(candidate, x, y)
        if loss < best_loss:
            best, best_loss = candidate, loss
            rows.append((iteration, loss, accuracy))
    return _log(rows, started)


def gradient_training(model, x, y, iterations: int, evaluations: int = 40) -> pd.DataFrame:
    """(c) Full-batch gradient steps, one per loss evaluation of the other methods; the loss is
    re-evaluated (with the same NumPy function) `evaluations` times along the way."""
    import tensorflow as tf

    started = time.perf_counter()
    steps = max(1, iterations // evaluations)
    batches = tf.data.Dataset.from_tensors((x, y)).repeat()
    rows, best_loss, done = [], np.inf, 0
    while done < iterations:
        chunk = min(steps, iterations - done)
        model.fit(batches, steps_per_epoch=chunk, epochs=1, verbose=0, shuffle=False)
        done += chunk
        loss, accuracy = loss_and_accuracy(model.get_weights(), x, y)
        if loss < best_loss:
            best_loss = loss
            rows.append((done, loss, accuracy))
    return _log(rows, started)


def _log(rows, started: float) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["iteration", "loss", "accuracy"])
    frame["seconds"] = round(time.perf_counter() - started, 3)
    return frame



