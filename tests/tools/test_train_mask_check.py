"""tools/train_mask_check.py end to end on a few real LFW faces: crops made by the enrolment path's cropper,
3D-synthesized training masks, MaskTheFace templates for the held-out family, a loadable weight file."""
import json

import cv2
import numpy as np
import pytest

from hsst.core.errors import DatasetError
from hsst.core.image import read_image
from hsst.face.cropper import FaceCropper
from hsst.face.mask_check import MaskCheck
from hsst.synth.scene import identity_photos

import train_mask_check


@pytest.fixture
def crops(tmp_path, lfw_dir, finder):
    cropper = FaceCropper(finder)
    names = []
    for name, files in identity_photos(lfw_dir, 3, 10, skip=60):
        folder = tmp_path / "crops" / name
        folder.mkdir(parents=True)
        for path in files[:3]:
            faces = cropper.faces(read_image(path))
            if faces:
                cv2.imwrite(str(folder / f"{path.stem}.png"), max(faces, key=lambda f: f.det_score).aligned)
        names.append(name)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": {"identities": names[:6]}, "test": {"identities": names[6:]}}))
    return tmp_path / "crops", split


def test_trains_and_reports_on_a_held_out_family(crops, masks_dir, tmp_path):
    folder, split = crops
    out = tmp_path / "mask-check.npz"
    assert train_mask_check.main(["--crops", str(folder), "--split", str(split), "--out", str(out),
                                  "--masktheface", str(masks_dir / "masktheface"), "--train-per-identity", "3",
                                  "--val-per-identity", "3"]) == 0
    check = MaskCheck.from_file(out)
    report = check.info["validation"]["report"]
    assert {"clean", "masked", "masktheface"} <= set(report) and any(k.startswith("masktheface:") for k in report)
    assert check.info["data"]["train_crops"] == 18 and check.info["simulated"]
    assert 0.0 < check.threshold < 1.0 and check.weights.shape == (2268,) and np.isfinite(check.weights).all()


def test_missing_crops_are_a_clear_error(tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": {"identities": ["Nobody"]}, "test": {"identities": ["Nobody"]}}))
    with pytest.raises(DatasetError, match="no crops of the split's train identities"):
        train_mask_check.main(["--crops", str(tmp_path), "--split", str(split), "--out", str(tmp_path / "x.npz")])
