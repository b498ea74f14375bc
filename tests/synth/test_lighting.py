"""Simulated hard light (hsst.synth.lighting): format kept, deterministic, and the effect each one claims."""
from __future__ import annotations

import numpy as np
import pytest

from hsst.core.errors import ConfigError, InputError
from hsst.synth.lighting import (LIGHT_CONDITIONS, apply_light, directional_light, exposure, from_linear,
                                 hot_spot, to_linear)


def _frame(shape=(200, 240), seed=0) -> np.ndarray:
    """A mid-gray textured frame (uint8, gray or BGR), no shared data needed."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(120, 25, shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(LIGHT_CONDITIONS))
@pytest.mark.parametrize("shape", [(200, 240), (200, 240, 3)])
def test_every_condition_keeps_shape_and_dtype_and_is_deterministic(name, shape):
    image = _frame(shape)
    a = apply_light(image, name, rng=7)
    b = apply_light(image, name, rng=np.random.default_rng(7))
    assert a.shape == image.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, image)
    assert np.array_equal(image, _frame(shape)), "the input frame must not be modified"


def test_none_and_unknown_condition():
    image = _frame()
    assert np.array_equal(apply_light(image, "none", 0), image)
    with pytest.raises(ConfigError, match="unknown light condition"):
        apply_light(image, "moonlight", 0)
    assert {"side-45", "side-90", "under-2ev", "over-2ev", "hotspot"} <= set(LIGHT_CONDITIONS)


def test_exposure_follows_the_linear_model():
    image = _frame()
    under, over = exposure(image, -2.0), exposure(image, 2.0)
    assert under.mean() < 0.65 * image.mean()
    assert over.mean() > 1.4 * image.mean()
    assert (over == 255).mean() > 0.2 > (image == 255).mean()  # levels above ~137 burn out at +2 EV
    value = np.array([[128]], np.uint8)
    expected = 255.0 * ((128 / 255.0) ** 2.2 * 0.25) ** (1 / 2.2)
    assert abs(int(exposure(value, -2.0)[0, 0]) - expected) <= 1
    assert np.array_equal(exposure(image, 0.0), image)  # decode/encode round trip is exact on uint8
    assert np.array_equal(from_linear(to_linear(image)), image)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("angle", [45.0, 90.0])
def test_side_light_darkens_the_far_side(side, angle):
    image = np.full((200, 240), 150, np.uint8)
    lit = directional_light(image, angle, side=side, rng=0).astype(float)
    left, right = lit[:, :60].mean(), lit[:, -60:].mean()
    near, far = (left, right) if side == "left" else (right, left)
    assert far < 0.45 * 150, "the far side falls to a small ambient level"
    assert near > 0.75 * 150 if angle == 45.0 else near > 0.55 * 150
    columns = lit.mean(0)
    assert np.abs(np.diff(columns)).max() < 12, "a smooth ramp, no hard edge"
    assert lit.max() > 150, "specular highlight on the lit side"


def test_side_is_drawn_from_the_seed():
    image = np.full((100, 120), 150, np.uint8)
    sides = set()
    for seed in range(12):
        lit = directional_light(image, 90.0, rng=seed).astype(float)
        sides.add("left" if lit[:, :30].mean() > lit[:, -30:].mean() else "right")
    assert sides == {"left", "right"}


def test_hot_spot_saturates_part_of_the_face():
    image = np.full((250, 250), 110, np.uint8)
    spot = hot_spot(image, rng=3)
    burned = spot == 255
    assert 0.01 < burned.mean() < 0.3, "a region burns out, not the whole frame"
    ys, xs = np.nonzero(burned)
    assert abs(xs.mean() - 125) < 40 and abs(ys.mean() - 125) < 40, "on the face (frame centre)"
    assert abs(int(spot[0, 0]) - 110) <= 2, "the corners keep their level"
    assert hot_spot(image, rng=3, center=(60, 60), radius=30)[60, 60] == 255


def test_bad_input_is_a_clear_error():
    image = _frame()
    with pytest.raises(InputError, match="uint8"):
        exposure(image.astype(np.float32), 1.0)
    with pytest.raises(InputError, match="shape"):
        hot_spot(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(ConfigError, match="angle_deg"):
        directional_light(image, 120.0)
    with pytest.raises(ConfigError, match="side"):
        directional_light(image, 45.0, side="top")
    with pytest.raises(ConfigError, match="stops"):
        exposure(image, 20.0)
