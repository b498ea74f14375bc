"""The enrolment mask check (hsst.face.mask_check) with its shipped weights on real LFW photos: clean faces pass,
3D-synthesized masks are caught, in colour and in simulated NIR; HOG features and bad input."""
import numpy as np
import pytest

from hsst.core.errors import InputError, ModelError
from hsst.core.image import read_image
from hsst.face.cropper import FaceCropper
from hsst.face.mask_check import CROP, REGION, HogSpec, MaskCheck, mask_features
from hsst.synth.mask.synthesizer import MaskSynthesizer
from hsst.synth.nir import simulate_nir
from hsst.synth.scene import identity_photos


@pytest.fixture(scope="module")
def check():
    return MaskCheck.from_file()


@pytest.fixture(scope="module")
def crops(lfw_dir, finder):
    """Aligned crops of real LFW photos, clean and with a synthesized mask, each in colour and simulated NIR."""
    cropper = FaceCropper(finder)  # the enrolment path's crops: detect, 5 landmarks, align to 112 px
    synth = MaskSynthesizer(seed=3)
    rng = np.random.default_rng(3)
    out = {"clean": [], "masked": []}
    for _, files in identity_photos(lfw_dir, 2, 30, skip=40):
        photo = read_image(files[0])
        if len(cropper.faces(photo)) != 1:
            continue  # enrolment refuses a photo of several people anyway (and the mask may go on another)
        masked = synth.synthesize(photo, rng=rng)
        assert masked is not None
        for kind, image in (("clean", photo), ("masked", masked.image)):
            for view in (image, simulate_nir(image, rng)):
                faces = cropper.faces(view)
                assert faces, f"{files[0].name} ({kind}): no face"
                out[kind].append(max(faces, key=lambda f: f.det_score).aligned)
        if len(out["clean"]) == 24:
            break
    return out


def test_shipped_check_passes_clean_faces_and_catches_masks(check, crops):
    clean = [check.probability(c) for c in crops["clean"]]
    masked = [check.probability(c) for c in crops["masked"]]
    assert sum(p >= check.threshold for p in clean) <= 1  # 24 crops; about 2% refusals expected (MASKS.md)
    assert sum(p >= check.threshold for p in masked) >= 22
    assert np.median(masked) > 0.9 and np.median(clean) < 0.05
    assert check.info["simulated"] and "tools/train_mask_check.py" in check.info["trained_with"]


def test_gray_and_colour_crops_share_features(crops):
    colour = crops["clean"][0]
    assert colour.ndim == 3
    gray = colour.mean(axis=2).round().astype(np.uint8)  # not the same conversion: close, not equal
    f_colour, f_gray = mask_features(colour), mask_features(gray)
    assert f_colour.shape == f_gray.shape == (2268,) and f_colour.dtype == np.float32
    assert np.corrcoef(f_colour, f_gray)[0, 1] > 0.95


def test_hog_features_follow_the_edges():
    """A horizontal edge votes in the 90-degree bin, a vertical one in the 0-degree bin."""
    spec = HogSpec()
    width, height = REGION[2] - REGION[0], REGION[3] - REGION[1]
    horizontal = np.zeros((height, width), np.uint8)
    horizontal[height // 2:] = 200
    vertical = np.ascontiguousarray(np.zeros((height, width), np.uint8))
    vertical[:, width // 2:] = 200
    for image, strongest in ((horizontal, 4), (vertical, 0)):
        blocks = spec.features(image).reshape(-1, 4, spec.bins)
        busy = blocks.sum(axis=2).max(axis=1) > 0.1
        assert busy.any() and (blocks[busy].sum(axis=(0, 1)).argmax() == strongest)
    assert np.allclose(spec.features(np.zeros((height, width), np.uint8)), 0.0)  # no edge, no vote


def test_bad_input_and_bad_weight_files(check, tmp_path):
    for bad in (np.zeros((112, 100, 3), np.uint8), np.zeros((CROP, CROP), np.float32), [[0] * 112] * 112):
        with pytest.raises(InputError, match="square uint8 aligned crop"):
            check.probability(bad)
    assert 0.0 <= check.probability(np.full((224, 224, 3), 128, np.uint8)) <= 1.0  # other sizes are resized
    with pytest.raises(ModelError, match="not found"):
        MaskCheck.from_file(tmp_path / "missing.npz")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ModelError, match="not a mask check file"):
        MaskCheck.from_file(tmp_path / "broken.npz")
    small = MaskCheck(check.weights[:10], check.bias, check.mean[:10], check.scale[:10], check.threshold)
    with pytest.raises(ModelError, match="expects 10 features"):
        small.probability(np.zeros((CROP, CROP), np.uint8))
    with pytest.raises(ModelError, match="equal 1-D shapes"):
        MaskCheck(check.weights, 0.0, check.mean[:5], check.scale, 0.5)
    again = MaskCheck.from_file(check.save(tmp_path / "copy.npz"))
    assert np.array_equal(again.weights, check.weights) and again.threshold == check.threshold
