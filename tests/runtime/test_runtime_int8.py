"""The gate runs the INT8 copy of the shipped model when ``embedder.model`` names it: exported by the real
exporter (mixed precision, calibrated on LFW photos of other people), then enrolment and identification of a
masked simulated-NIR probe through hsst.Gate."""
from __future__ import annotations

import json

import numpy as np
import pytest

import hsst
from hsst.core.image import read_image
from hsst.core.metadata import sidecar_path

PROBE_PERSON = "Colin_Powell"


@pytest.mark.slow
def test_gate_identifies_with_the_int8_model(tmp_path, lfw_dir, default_model):
    pytest.importorskip("torch")
    from hsst.export.exporter import Exporter
    from hsst.export.options import ExportOptions
    from hsst.synth import MaskedNirTransform

    faces = tmp_path / "calibration"
    faces.mkdir()
    people = [p for p in sorted(lfw_dir.iterdir()) if p.is_dir() and p.name != PROBE_PERSON][:400:8]
    for person in people:  # 50 photos of 50 other people
        photo = sorted(person.glob("*.jpg"))[0]
        (faces / photo.name).symlink_to(photo)
    Exporter(ExportOptions(weights=default_model.with_suffix(".pt"), data=faces, output=tmp_path / "out",
                           formats=("onnx", "onnx-int8"), simplify=True, parity_images=16)).run()
    int8 = tmp_path / "out" / f"{default_model.stem}.int8.onnx"
    meta = json.loads(sidecar_path(int8).read_text())
    assert meta["extra"]["precision"] == "int8" and meta["extra"]["status"] == "ok"
    assert meta["extra"]["quantization"]["float_layers"]  # the MS1M network needs mixed precision

    probe = MaskedNirTransform(types=("surgical",), aligned=False)(
        read_image(lfw_dir / PROBE_PERSON / f"{PROBE_PERSON}_0005.jpg"), np.random.default_rng(0))
    gate = hsst.Gate.from_config(None, {"embedder.model": str(int8), "pipeline.metrics_every_s": 0})
    try:
        for who in (PROBE_PERSON, "Tony_Blair", "George_W_Bush"):
            assert gate.enroll(who, [lfw_dir / who / f"{who}_{n:04d}.jpg" for n in (2, 3)]).accepted
        assert [m.identity for m in gate.identify(probe) if m.accepted] == [PROBE_PERSON]
    finally:
        gate.close()
