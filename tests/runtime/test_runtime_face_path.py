"""One face path (hsst.face.FaceCropper) for the gate's tracked faces, identify, enrolment and FaceAnalysis, aligned
on the model's own template from its metadata; identify decides with the gate's policy. Real LFW photos, the
packaged detector, an untrained MobileFaceNet (the crops and the policy matter here, not accuracy)."""
import dataclasses

import numpy as np
import pytest

from hsst.core.alignment import align_face, reference_points
from hsst.core.image import read_image
from hsst.core.metadata import Preprocess
from hsst.face import FaceAnalysis
from hsst.runtime.config import GateConfig
from hsst.runtime.embedder import Embedder
from hsst.runtime.gallery import InMemoryGallery
from hsst.runtime.pipeline import GatePipeline

#: a model trained on faces framed 4 px lower than the standard template
TEMPLATE = (reference_points(112) + [0.0, 4.0]).tolist()


@pytest.fixture(scope="module")
def model(embedder):
    """The test network whose sidecar names its own alignment template."""
    return Embedder(embedder.backend, dataclasses.replace(embedder.meta, preprocess=Preprocess(template=TEMPLATE)))


@pytest.fixture(scope="module")
def photo(lfw_dir):
    return read_image(sorted((lfw_dir / "Aaron_Peirsol").glob("*.jpg"))[0])


def _gate(model, finder, threshold: float = 0.5) -> GatePipeline:
    cfg = GateConfig()
    cfg.decision.threshold = threshold          # the untrained test model has no FAR table
    return GatePipeline(cfg, embedder=model, finder=finder)


def test_gate_identify_enrolment_and_face_analysis_crop_alike(model, finder, photo):
    gate = _gate(model, finder)
    (still,) = gate.cropper.faces(photo)
    frame = gate.cropper.frame(photo)
    boxes, scores, aux = finder.boxes(frame)
    tracked = gate.cropper.track_face(frame, boxes[0], scores[0], aux[0])          # the gate's detect stage
    (enrolled,) = gate.enroller().cropper.faces(photo)
    (analysed,) = FaceAnalysis(detector=finder.detector, recognizer=model).prepare().get(photo)
    for face in (tracked, enrolled, analysed):
        np.testing.assert_array_equal(face.aligned, still.aligned)
    # framed by the model's template, not the standard one
    np.testing.assert_array_equal(still.aligned, align_face(frame, still.kps, 112, np.array(TEMPLATE)))
    assert not np.array_equal(still.aligned, align_face(frame, still.kps, 112))
    assert still.quality.passed and tracked.quality.to_dict() == still.quality.to_dict()


def test_enrolment_takes_single_channel_photos(model, finder, photo):
    gray = photo.mean(axis=2).astype(np.uint8)
    enroller, gallery = _gate(model, finder).enroller(), InMemoryGallery()
    flat, _, _ = enroller.embed_photo(gray)
    column, _, _ = enroller.embed_photo(gray[:, :, None])                          # HxWx1, as mono cameras give
    np.testing.assert_array_equal(flat, column)
    assert enroller.enroll_image(gallery, "a", gray[:, :, None]).accepted


def test_identify_decides_with_the_gates_policy(model, finder, photo):
    for threshold, accepted in ((0.5, True), (1.01, False)):   # same photo enrolled: cosine 1.0
        gate = _gate(model, finder, threshold)
        assert gate.enroller().enroll_image(gate.gallery, "Aaron_Peirsol", photo).accepted
        (face,) = gate.identify(photo)
        assert face["accepted"] is accepted and face["threshold"] == round(gate.decider.threshold, 4)
        assert face["identity"] == gate.decider.decide_once([("Aaron_Peirsol", face["score"])])
        assert face["candidates"][0][0] == "Aaron_Peirsol"
