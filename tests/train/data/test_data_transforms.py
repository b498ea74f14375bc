"""Training transforms and the NIR transform registry, on real LFW / ORL crops."""
from __future__ import annotations

import numpy as np
import pytest

from hsst.core.errors import ConfigError
from hsst.train.data import (Compose, FaceLoader, GrayscaleNir, Identity, RandomHorizontalFlip,
                             available_nir_transforms, register_nir_transform, resolve_nir_transform)
from hsst.train.data import transforms as transforms_module


@pytest.fixture
def lfw_crop(lfw_dir):
    return FaceLoader(112).load(sorted(lfw_dir.glob("A*/*.jpg"))[0])


def test_grayscale_nir_and_identity(lfw_crop):
    rng = np.random.default_rng(0)
    gray = GrayscaleNir()(lfw_crop, rng)
    assert gray.shape == (112, 112) and gray.dtype == np.uint8
    assert GrayscaleNir()(gray, rng) is gray
    assert Identity()(lfw_crop, rng) is lfw_crop


def test_flip_probability_and_determinism(lfw_crop):
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(lfw_crop, np.random.default_rng(0)), lfw_crop[:, ::-1])
    assert RandomHorizontalFlip(0.0)(lfw_crop, np.random.default_rng(0)) is lfw_crop
    flips = [RandomHorizontalFlip()(lfw_crop, np.random.default_rng(s)) is not lfw_crop for s in range(200)]
    assert 60 < sum(flips) < 140
    again = [RandomHorizontalFlip()(lfw_crop, np.random.default_rng(s)) is not lfw_crop for s in range(200)]
    assert flips == again
    with pytest.raises(ConfigError):
        RandomHorizontalFlip(1.5)


def test_compose_applies_in_order(lfw_crop):
    out = Compose([GrayscaleNir(), RandomHorizontalFlip(1.0)])(lfw_crop, np.random.default_rng(0))
    np.testing.assert_array_equal(out, GrayscaleNir()(lfw_crop, None)[:, ::-1])


def test_registry_resolves_and_extends():
    assert isinstance(resolve_nir_transform("gray"), GrayscaleNir)
    assert {"gray", "identity"} <= set(available_nir_transforms())
    with pytest.raises(ConfigError, match="unknown NIR transform 'nir-imaginary'.*gray"):
        resolve_nir_transform("nir-imaginary")

    @register_nir_transform("test-invert")
    class Invert:
        def __init__(self, scale=1):
            self.scale = scale

        def __call__(self, image, rng):
            return 255 - image

    try:
        made = resolve_nir_transform("test-invert", scale=2)
        assert isinstance(made, Invert) and made.scale == 2
        register_nir_transform("test-invert")(Invert)  # same factory again: fine
        with pytest.raises(ConfigError, match="already registered"):
            register_nir_transform("test-invert")(GrayscaleNir)
    finally:
        transforms_module.NIR_TRANSFORMS.unregister("test-invert")
