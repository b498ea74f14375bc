"""hsst-enroll fills the encrypted gallery store; hsst-identify reads it (no enrolment folder) and accepts a
masked simulated-NIR probe of an enrolled person; refusals and a missing gallery.path are clear errors."""
from __future__ import annotations

import json

import cv2
import numpy as np
from click.testing import CliRunner

from hsst.core.image import read_image
from hsst.gallery import generate_keys
from hsst.runtime.cli import enroll, identify


def _config(tmp_path, with_path: bool = True):
    generate_keys(tmp_path / "keys", signing=False)
    path = tmp_path / "gate.yaml"
    gallery = f"  path: {tmp_path / 'gallery.db'}\n" if with_path else ""
    path.write_text(f"gallery:\n{gallery}  keys_dir: {tmp_path / 'keys'}\n")
    return path


def test_enroll_then_identify_from_the_store(tmp_path, lfw_dir):
    from hsst.synth import MaskedNirTransform

    config = _config(tmp_path)
    runner = CliRunner()
    for who in ("Colin_Powell", "George_W_Bush"):
        photos = [str(lfw_dir / who / f"{who}_{n:04d}.jpg") for n in (2, 3)]
        result = runner.invoke(enroll, ["--config", str(config), "--id", who, "--name", who, "--attr", "badge=1",
                                        "--json", *photos])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["templates"] == 2 and report["accepted"]
    transform = MaskedNirTransform(types=("surgical",), aligned=False)
    probe = tmp_path / "probe.png"
    cv2.imwrite(str(probe), transform(read_image(lfw_dir / "Colin_Powell" / "Colin_Powell_0005.jpg"),
                                      np.random.default_rng(0)))
    result = runner.invoke(identify, ["--config", str(config), str(probe)])
    assert result.exit_code == 0, result.output
    faces = json.loads(result.output.strip().splitlines()[-1])["faces"]
    assert [f["identity"] for f in faces if f["accepted"]] == ["Colin_Powell"]


def test_enroll_refusals_and_missing_gallery_path(tmp_path, lfw_dir):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 120, 3), 128, np.uint8))
    result = CliRunner().invoke(enroll, ["--config", str(_config(tmp_path)), "--id", "X", str(blank)])
    assert result.exit_code == 1 and "refused" in result.output and "nothing enrolled for X" in result.output
    (tmp_path / "keys" / "data.key").unlink()
    (tmp_path / "keys").rmdir()
    result = CliRunner().invoke(enroll, ["--config", str(_config(tmp_path, with_path=False)), "--id", "X", str(blank)])
    assert result.exit_code == 1 and "gallery.path is not set" in result.output
