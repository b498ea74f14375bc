"""VIS -> simulated NIR on real LFW faces: format, determinism, and the physical effects it claims."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from hsst.core.errors import ConfigError, InputError
from hsst.core.image import read_image
from hsst.synth.nir import NirSimConfig, NirSimulator, simulate_nir


@pytest.fixture(scope="module")
def faces(lfw_dir):
    folders = sorted(p for p in lfw_dir.iterdir() if p.is_dir())
    return [read_image(sorted(folders[i * len(folders) // 8].iterdir())[0]) for i in range(8)]


def test_output_is_single_channel_uint8(faces):
    for image in faces[:3]:
        nir = simulate_nir(image, rng=0)
        assert nir.shape == image.shape[:2] and nir.dtype == np.uint8
        assert 20 < nir.mean() < 235 and nir.std() > 10  # an image, not a flat field


def test_deterministic_per_seed_and_seeds_differ(faces):
    image = faces[0]
    sim = NirSimulator()
    a, b = sim(image, rng=7), sim(image, rng=np.random.default_rng(7))
    assert np.array_equal(a, b)
    c = sim(image, rng=8)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0
    params = sim.sample(7)
    assert np.array_equal(sim.apply(image, params), a)
    assert set(params.to_dict()) >= {"red_weight", "gamma", "falloff", "noise_seed"}


def test_parameters_stay_in_their_ranges():
    config = NirSimConfig()
    sim = NirSimulator(config)
    for seed in range(50):
        p = sim.sample(seed)
        assert config.red_weight[0] <= p.red_weight <= config.red_weight[1]
        assert config.gamma[0] <= p.gamma <= config.gamma[1]
        assert config.blur_sigma[0] <= p.blur_sigma <= config.blur_sigma[1]
        assert p.hotspot_gain == 0.0 or config.hotspot_gain[0] <= p.hotspot_gain <= config.hotspot_gain[1]


def test_active_illumination_falls_off_from_the_centre():
    flat = np.full((200, 200, 3), 150, np.uint8)
    config = NirSimConfig(falloff=(0.4, 0.4), center_jitter=(0, 0), hotspot_prob=0.0, read_noise=(0, 0),
                          shot_noise=(0, 0))
    nir = simulate_nir(flat, rng=0, config=config)
    centre, corner = nir[90:110, 90:110].mean(), nir[:20, :20].mean()
    assert centre > corner * 1.3
    off = simulate_nir(flat, rng=0, config=config, center=(30, 30))
    assert off[20:40, 20:40].mean() > off[160:180, 160:180].mean()


def test_pigment_contrast_fades(faces):
    """Freckles / make-up (melanin-like brown spots painted on real cheeks) lose most of their contrast."""
    config = NirSimConfig(falloff=(0, 0), center_jitter=(0, 0), hotspot_prob=0.0, read_noise=(0, 0),
                          shot_noise=(0, 0), gamma=(1, 1), exposure=(1, 1), blur_sigma=(0, 0))
    spots = np.zeros((250, 250), np.uint8)
    for x, y in ((95, 140), (105, 150), (150, 140), (160, 150), (125, 120)):
        cv2.circle(spots, (x, y), 3, 1, -1)
    ring = cv2.dilate(spots, np.ones((9, 9), np.uint8)) - cv2.dilate(spots, np.ones((5, 5), np.uint8))
    # melanin absorbs strongly in blue/green, weakly in red and hardly at 850 nm
    brown = np.array([0.55, 0.65, 0.85], np.float32)
    lum, nir = [], []
    for seed, image in enumerate(faces):
        freckled = image.astype(np.float32)
        freckled[spots > 0] *= brown
        freckled = freckled.astype(np.uint8)
        for out, img in ((lum, cv2.cvtColor(freckled, cv2.COLOR_BGR2GRAY)),
                         (nir, simulate_nir(freckled, rng=seed, config=config))):
            img = img.astype(np.float32)
            out.append(abs(img[spots > 0].mean() - img[ring > 0].mean()) / img[ring > 0].mean())
    assert np.mean(nir) < 0.5 * np.mean(lum), (lum, nir)


def test_gray_and_16bit_inputs(faces):
    gray = cv2.cvtColor(faces[1], cv2.COLOR_BGR2GRAY)
    assert simulate_nir(gray, rng=1).shape == gray.shape
    assert simulate_nir(gray.astype(np.uint16) * 257, rng=1).dtype == np.uint8


def test_bad_input_and_config():
    with pytest.raises(InputError):
        simulate_nir(np.zeros((10, 10, 2), np.uint8), rng=0)
    with pytest.raises(ConfigError, match="gamma"):
        NirSimConfig(gamma=(1.2, 0.8))
    with pytest.raises(ConfigError, match="hotspot_prob"):
        NirSimConfig(hotspot_prob=2.0)


def test_training_transform_factory(faces):
    from hsst.synth.nir import nir_sim_transform

    transform = nir_sim_transform(gamma=(1.0, 1.0))
    crop = cv2.resize(faces[2][60:190, 60:190], (112, 112))
    a = transform(crop, np.random.default_rng(3))
    assert a.shape == (112, 112) and np.array_equal(a, transform(crop, np.random.default_rng(3)))
    with pytest.raises(TypeError):
        nir_sim_transform(not_a_range=(0, 1))
