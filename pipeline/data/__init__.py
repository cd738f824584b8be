"""Data: what a model learns from and predicts on.

Owns: the dataset registry with its loud offline fallback, the tutorial's preprocessing and
seeded stratified splits (`datasets`), the IDX format (`idx`), the seeds' generated sets
(`toy`) and reading files to predict on (`inputs`: .npz, IDX, PNG/JPEG).
May import: `pipeline.core`, `pipeline.spec`, numpy, scikit-learn, Pillow; Keras only through
`pipeline.core.runtime`, to fetch the full MNIST.
"""

from .datasets import Dataset, load_dataset

__all__ = ["Dataset", "load_dataset"]
