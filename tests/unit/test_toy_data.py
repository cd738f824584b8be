"""Generated datasets (vertical, spiral, quadratic) and parameterised initializers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import load_dataset
from pipeline.data.toy import quadratic_data, spiral_data, vertical_data
from pipeline.spec.config import DataConfig
from pipeline.spec.vocabulary import NetworkSpec, parse_initializer


@pytest.mark.parametrize("generate", [vertical_data, spiral_data])
def test_point_clouds_shapes_balance_and_determinism(generate):
    points, labels = generate(100, 3, np.random.default_rng(4))
    again, _ = generate(100, 3, np.random.default_rng(4))
    other, _ = generate(100, 3, np.random.default_rng(5))
    assert points.shape == (300, 2) and points.dtype == np.float32
    assert np.bincount(labels).tolist() == [100, 100, 100]
    assert np.array_equal(points, again) and not np.array_equal(points, other)


def test_vertical_classes_sit_side_by_side_and_spiral_arms_interleave():
    points, labels = vertical_data(200, 3, np.random.default_rng(0))
    centres = [points[labels == k].mean(axis=0) for k in range(3)]
    assert [round(c[0], 1) for c in centres] == [0.0, 0.3, 0.7] and all(abs(c[1] - 0.5) < 0.02 for c in centres)
    points, labels = spiral_data(200, 3, np.random.default_rng(0))
    radius = np.linalg.norm(points, axis=1)
    assert radius.max() <= 1.0 + 1e-6 and all(abs(points[labels == k].mean(axis=0)).max() < 0.3 for k in range(3))


def test_quadratic_target_and_scaled_inputs():
    inputs, target = quadratic_data(2000, np.random.default_rng(0), (-5, 5), (-10, 10), noise=0.0)
    assert np.allclose(target, inputs[:, 0] ** 2 + inputs[:, 1], atol=1e-4)
    assert inputs[:, 0].min() >= -5 and inputs[:, 1].max() <= 10
    data = load_dataset(DataConfig(name="quadratic", samples=500, x1_range=(-50, 50), x2_range=(-100, 100)), 1)
    assert data.task == "regression" and data.classes == [] and len(data.y_train) == 400
    assert np.abs(data.x_train).max() <= 1.0 and data.preprocessing["scale"] == [50.0, 100.0]


def test_toy_datasets_split_stratified():
    data = load_dataset(DataConfig(name="spiral", samples=50, test_size=0.2), 0)
    assert np.bincount(data.y_test).tolist() == [10, 10, 10] and data.x_train.shape == (120, 2)


def test_parameterised_initializers():
    assert parse_initializer("uniform(-10, 10)") == ("uniform", {"minval": -10.0, "maxval": 10.0})
    assert parse_initializer("constant(2)") == ("constant", {"value": 2.0})
    assert parse_initializer("he_normal") == ("he_normal", {})
    for bad, message in (("uniform(3, 1)", "low must be below high"), ("uniform(1)", "not understood"),
                         ("gamma(1, 2)", "not understood"), ("he_nromal", "unknown initializer")):
        with pytest.raises(ValueError, match=message):
            parse_initializer(bad)
    assert NetworkSpec(init_mode="uniform(-10, 10)", bias_init="constant(2)").bias_init == "constant(2)"
