"""Enrolment from real LFW VIS photos: good photos enrol, bad ones are rejected with the reason."""
import cv2
import numpy as np
import pytest

from hsst.core.errors import DatasetError
from hsst.core.image import read_image
from hsst.runtime.enroll import Enroller
from hsst.runtime.gallery import InMemoryGallery

from hsst.synth.scene import identity_photos as lfw_people


@pytest.fixture(scope="module")
def enroller(finder, embedder):
    return Enroller(finder, embedder)


def test_enroll_dir_and_rejections(enroller, lfw_dir, tmp_path):
    (a_name, a_files), (b_name, b_files) = lfw_people(lfw_dir, 3, 2)
    (tmp_path / a_name).mkdir()
    for f in a_files[:2]:
        (tmp_path / a_name / f.name).write_bytes(f.read_bytes())
    (tmp_path / f"{b_name}.jpg").write_bytes(b_files[0].read_bytes())
    a, b = read_image(a_files[0]), read_image(b_files[0])
    cv2.imwrite(str(tmp_path / "two_people.png"), np.hstack([a, b]))
    cv2.imwrite(str(tmp_path / "nobody.png"), np.full((250, 250, 3), 120, np.uint8))
    cv2.imwrite(str(tmp_path / "blurred.png"), cv2.GaussianBlur(a, (0, 0), 4.0))
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 broken")
    gallery = InMemoryGallery()
    results = {r.path.split("/")[-1]: r for r in enroller.enroll_dir(gallery, tmp_path)}
    assert results[a_files[0].name].accepted and results[f"{b_name}.jpg"].accepted
    assert "2 faces found" in results["two_people.png"].reason
    assert results["nobody.png"].reason == "no face found"
    assert "low quality" in results["blurred.png"].reason and "blurred" in results["blurred.png"].reason
    assert "cannot decode" in results["corrupt.jpg"].reason
    assert set(gallery.identities) == {a_name, b_name}
    assert gallery.num_templates(a_name) == 2 and len(gallery.metadata(a_name)["photos"]) == 2


def test_empty_or_missing_folder(enroller, tmp_path):
    with pytest.raises(DatasetError, match="no photos"):
        enroller.enroll_dir(InMemoryGallery(), tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        enroller.enroll_dir(InMemoryGallery(), tmp_path / "missing")


def test_masked_photos_are_refused_with_the_reason(enroller, lfw_dir):
    """A synthesized mask on a real photo, in colour or in simulated NIR, is refused by the mask check; the same
    photo without it enrols."""
    from hsst.synth.mask.synthesizer import MaskSynthesizer
    from hsst.synth.nir import simulate_nir

    (name, files), = lfw_people(lfw_dir, 3, 1, skip=5)
    photo = read_image(files[0])
    masked = MaskSynthesizer(seed=1).synthesize(photo).image
    gallery = InMemoryGallery()
    report = enroller.enroll(gallery, name, [photo, masked, simulate_nir(masked, 1)])
    verdicts = [p.reason for p in report.photos]
    assert report.photos[0].accepted and report.templates == 1
    assert all("the lower face looks covered" in r and "without a mask" in r for r in verdicts[1:]), verdicts
