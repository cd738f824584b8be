"""The foundation every other layer stands on: one error type, files, the TensorFlow runtime.

Owns: `PipelineError` and the CLI wrapper that turns it into one line and exit code 2
(`errors`); atomic writes, run folders and the run lock (`files`); the one place that imports
TensorFlow/Keras, lazily, with its thread settings and seeds (`runtime`).
May import: the standard library, numpy, filelock; TensorFlow only inside `runtime`'s functions.
Never imports another `pipeline` sub-package.
"""
