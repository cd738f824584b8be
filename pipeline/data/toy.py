"""The seeds' generated data sets: 2-D point clouds (vertical, spiral) and a regression problem."""

from __future__ import annotations

import numpy as np


def vertical_data(samples: int, classes: int, rng: np.random.Generator, noise: float = 0.1):
    """Classes side by side: class k centred at x = k / classes, all at y = 0.5, Gaussian spread."""
    labels = np.repeat(np.arange(classes), samples)
    points = np.c_[rng.standard_normal(len(labels)) * noise + labels / classes,
                   rng.standard_normal(len(labels)) * noise + 0.5]
    return points.astype("float32"), labels


def spiral_data(samples: int, classes: int, rng: np.random.Generator, noise: float = 0.2):
    """Interleaved spiral arms, one per class (radius 0..1, angle growing with the radius)."""
    points, labels = [], []
    for k in range(classes):
        radius = np.linspace(0.0, 1, samples)
        angle = np.linspace(k * 4, (k + 1) * 4, samples) + rng.standard_normal(samples) * noise
        points.append(np.c_[radius * np.sin(angle * 2.5), radius * np.cos(angle * 2.5)])
        labels.append(np.full(samples, k))
    return np.concatenate(points).astype("float32"), np.concatenate(labels)


def quadratic_data(samples: int, rng: np.random.Generator, x1_range=(-5.0, 5.0), x2_range=(-10.0, 10.0),
                   noise: float = 0.5):
    """y = x1^2 + x2 + noise, x1 and x2 uniform in their ranges."""
    x1 = rng.uniform(*x1_range, samples)
    x2 = rng.uniform(*x2_range, samples)
    target = x1 ** 2 + x2 + rng.standard_normal(samples) * noise
    return np.c_[x1, x2], target.astype("float32")
