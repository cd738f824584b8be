"""Tuning: searches over many candidates, trained, recorded, resumable, on this machine or Dask.

Owns: the scikeras wrappers, the one module importing scikeras (`estimator`); the fit record
and its keys (`records`) and the append-only fit store (`store`); scikit-learn's strategies,
scoring and fit counts (`strategies`); Optuna's TPE (`tpe`), pruning and the CPU budget
(`pruning`), population-based training (`pbt`); grouping pending fits into fused jobs (`engine`);
where jobs train (`runners`, `cluster` for Dask); one search's state and the mixin that trains
before scikit-learn's loop replays (`session`); the run folder's life and identity
(`lifecycle`); `run_search` (`run`); worker-process recycling (`supervisor`); records to
result tables (`results`).
May import: every layer below it (`training`, `data`, `spec`, `review`, `core`). Named
`tuning`, not `search`, because `pipeline.search` is the command.
"""
