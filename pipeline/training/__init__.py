"""Training: the Keras side, one fit or many fused into one program.

Owns: the model factory (`factory`), callbacks and learning-rate schedules (`callbacks`,
`schedules`), what one search keeps between fits (`context`: reusable compiled models, the
stop flag), fused towers (`towers`, `tower_layers`, and `fold_batches`: each fold's samples
in its solo fit's order), saving and loading models
(`persistence`), one configured fit (`single`) and the random-weights study (`baselines`).
May import: `pipeline.core`, `pipeline.spec`, `pipeline.data`, `pipeline.review` (history
plots), TensorFlow/Keras through `pipeline.core.runtime`. Never scikeras or scikit-learn's
searches: those are `pipeline.tuning`'s.
"""
