"""hsst.samples: the sample face photo is found through the installed package's metadata."""
import pytest

from hsst.core.errors import ConfigError
from hsst.core.image import read_image
from hsst.samples import SAMPLE_FACES, sample_face_path


def test_sample_face_is_a_readable_photo():
    pytest.importorskip("skimage", reason="the sample photo ships in scikit-image: pip install 'hsst[examples]'")
    image = read_image(sample_face_path("Eileen_Collins"))
    assert image.ndim == 3 and min(image.shape[:2]) >= 256


def test_unknown_sample_names_the_known_ones():
    with pytest.raises(ConfigError, match=", ".join(SAMPLE_FACES)):
        sample_face_path("nobody")


def test_shared_dir_is_one_place(monkeypatch, tmp_path):
    from pathlib import Path

    from hsst.samples import shared_dir

    monkeypatch.setenv("HSST_SHARED", str(tmp_path))
    assert shared_dir() == tmp_path
    monkeypatch.delenv("HSST_SHARED")
    assert shared_dir() == Path(__file__).resolve().parents[1].parent / "shared"  # beside this repository
