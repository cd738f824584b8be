"""What an experiment is, in words and numbers: the config schema and the one vocabulary.

Owns: the vocabulary of model, optimizer, schedule, callback and fit arguments as frozen
pydantic sections (`vocabulary`), from which config validation, the estimator's routing, the
model factory and the fused engine all read; the experiment file schema with its split into
*identity* (what results depend on, checked on resume) and *execution* (how a run executes,
free to change on resume) (`config`); search spaces, checked and turned into scikit-learn's
form (`space`). No TensorFlow: validating a config takes milliseconds.
May import: `pipeline.core`, yaml, pydantic, scipy.
"""
