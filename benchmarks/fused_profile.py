"""Where a fused search's time goes on this machine: import, first program, tracing, per-step
overhead, per-tower compute, and the default grid's compute floor.

Measures in one process (after a separate `import tensorflow` timing):
- float32 matmul throughput at 2048x2048 and at a fused first layer's shape;
- `fit_towers` on 5,333 random 784-feature samples per fold (a fold of the default grid),
  784-64-64-10 towers with Dropout 0.1, RMSprop, batch 128, validation split 0.1, on one
  TensorFlow thread (as each of the search's two trainers here): the first program (TensorFlow
  warm-up and tracing), another shape's first fit (tracing only), and the steady cost per step
  (6 epochs minus 1 epoch on a traced program) for 1, 8 and 24 towers on one fold and 12 and
  24 towers on 3 folds (the default grid's program in two processes, or in one);
- the default grid's 24 towers on 3 folds with 2 threads and with 1, and 12 towers in each of
  two processes at once (1 thread each), in fresh processes;
- the default grid's training arithmetic (8 candidates x 3 folds + refit, 10 epochs) divided by
  the measured matmul throughput.

    python benchmarks/fused_profile.py
"""

from __future__ import annotations

import subprocess
import sys
import time

SAMPLES, FEATURES, HIDDEN, CLASSES, BATCH, VALIDATION = 5333, 784, 64, 10, 128, 0.1


def matmul_gflops(m: int, k: int, n: int, repeats: int = 50) -> float:
    import tensorflow as tf

    a, b = tf.random.uniform((m, k)), tf.random.uniform((k, n))
    product = tf.function(lambda: tf.matmul(a, b))
    product()
    started = time.perf_counter()
    for _ in range(repeats):
        product().numpy()
    return 2 * m * k * n * repeats / (time.perf_counter() - started) / 1e9


def timed_fit(cache, towers: int, epochs: int, folds: int = 1) -> float:
    import numpy as np

    from pipeline.spec.vocabulary import NetworkSpec, OptimizerSpec
    from pipeline.training.towers import fit_towers

    rng = np.random.default_rng(0)
    X, y = rng.random((SAMPLES * folds, FEATURES), dtype=np.float32), rng.integers(0, CLASSES, SAMPLES * folds)
    specs = [NetworkSpec(hidden_layers=[HIDDEN, HIDDEN], dropout=0.1, init_mode="he_uniform")] * towers
    started = time.perf_counter()
    fit_towers(specs, X, y, folds=np.arange(SAMPLES * folds).reshape(folds, SAMPLES), task="classification",
               optimizers=[OptimizerSpec(name="rmsprop")] * towers, epochs=epochs,
               batch_size=BATCH, validation_split=VALIDATION, steps_per_execution=32, seed=7, cache=cache)
    return time.perf_counter() - started


def first_and_steady(towers: int, folds: int, epochs: int = 6) -> tuple[float, float]:
    """A new shape's first one-epoch fit (s, tracing included) and the steady cost of one step
    (ms): an epochs-long fit minus a one-epoch fit on the traced program."""
    from pipeline.training.context import ModelCache

    cache = ModelCache()
    first = timed_fit(cache, towers, 1, folds)
    one, many = timed_fit(cache, towers, 1, folds), timed_fit(cache, towers, epochs, folds)
    steps = int(SAMPLES * (1 - VALIDATION) + BATCH - 1) // BATCH
    return first, (many - one) / (epochs - 1) / steps * 1e3


def steady_in_processes(towers: int, folds: int, threads: int, processes: int) -> list[float]:
    """`first_and_steady`'s steady cost in `processes` fresh processes running at once, each with `threads`
    TensorFlow threads: what the search's trainers do side by side."""
    command = [sys.executable, __file__, "--steady", str(towers), str(folds), str(threads)]
    running = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    return [float(process.communicate()[0].split()[-1]) for process in running]


def training_flops(samples_epochs: float) -> float:
    """Forward (2 flops per weight per sample) plus backward (gradients of weights and of the
    hidden activations: about twice the forward, less the first layer's input gradient)."""
    first, rest = FEATURES * HIDDEN, HIDDEN * HIDDEN + HIDDEN * CLASSES
    return samples_epochs * (2 * (first + rest) + 2 * first + 4 * rest)


def main() -> int:
    if sys.argv[1:2] == ["--steady"]:
        towers, folds, threads = map(int, sys.argv[2:5])
        from pipeline.core.runtime import configure_threads

        configure_threads(threads)
        print(f"{first_and_steady(towers, folds)[1]:.2f}")
        return 0
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, capture_output=True)
    print(f"import tensorflow in a fresh process: {time.perf_counter() - started:.1f} s")
    from pipeline.core.runtime import configure_threads
    from pipeline.training.context import ModelCache

    configure_threads(1)  # as the search's trainers on 2 cores (one per core); compared with 2 below
    big, fused = matmul_gflops(2048, 2048, 2048), matmul_gflops(BATCH, FEATURES, 8 * HIDDEN, repeats=2000)
    print(f"matmul float32: {big:.0f} GFLOP/s at 2048x2048, {fused:.0f} GFLOP/s at {BATCH}x{FEATURES} @ "
          f"{FEATURES}x{8 * HIDDEN} (8 towers' first layer)")
    cache = ModelCache()
    print(f"first program (8 towers, 1 epoch; Keras warm-up and tracing, TensorFlow already loaded): {timed_fit(cache, 8, 1):.2f} s")
    print("\n| towers | folds | first fit of this shape, 1 epoch (s) | steady ms per step | steady ms per tower-step |\n"
          "|---|---|---|---|---|")
    for towers, folds in ((1, 1), (8, 1), (12, 3), (24, 1), (24, 3)):  # 24 on 3 folds: the default grid's folds
        first, per_step = first_and_steady(towers, folds)  # a new shape: traced again
        print(f"| {towers} | {folds} | {first:.2f} | {per_step:.1f} | {per_step / towers:.2f} |")
    print("\nthe default grid's 24 towers on 3 folds, steady ms per step, in fresh processes:")
    for label, (towers, threads, processes) in (("one process, 2 threads", (24, 2, 1)),
                                                  ("one process, 1 thread", (24, 1, 1)),
                                                  ("two processes at once, 12 towers and 1 thread each", (12, 1, 2))):
        times = steady_in_processes(towers, 3, threads, processes)
        print(f"- {label}: {' and '.join(f'{t:.1f}' for t in times)} ms per step of {towers} towers")
    fits = 8 * 3 * SAMPLES * (1 - VALIDATION) * 10 + 8000 * (1 - VALIDATION) * 10  # sample-epochs of the grid
    flops = training_flops(fits)
    print(f"\ndefault grid's training arithmetic: {flops / 1e12:.2f} TFLOP; at {fused:.0f} GFLOP/s: "
          f"{flops / fused / 1e9:.1f} s, at {big:.0f} GFLOP/s: {flops / big / 1e9:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
