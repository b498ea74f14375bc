"""The face loader for parity and INT8 calibration: real images in, bad files skipped and reported."""
import logging

import numpy as np
import pytest

from hsst.core.errors import DatasetError, InputError
from hsst.core.metadata import Preprocess
from hsst.export.calibration import CalibrationFeed, FaceImageFolder, calibration_cache_path, fit_crop


@pytest.fixture()
def mixed_dir(tmp_path, lfw_dir, orl_dir):
    good = sorted(lfw_dir.rglob("*.jpg"))[:5] + sorted(orl_dir.rglob("*.pgm"))[:3]
    sub = tmp_path / "person"
    sub.mkdir()
    for i, src in enumerate(good):
        (sub / f"good{i}{src.suffix}").symlink_to(src)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    data = (good[0].read_bytes())
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 8])
    return tmp_path


def test_bad_images_are_skipped_and_reported(mixed_dir, caplog):
    folder = FaceImageFolder(mixed_dir, Preprocess())
    assert len(folder) == 11  # 8 good + corrupt + empty + truncated (txt ignored)
    with caplog.at_level(logging.WARNING, logger="hsst.export.calibration"):
        crops = folder.crops()
    skipped = {s.path.name for s in folder.skipped}
    assert {"corrupt.jpg", "empty.png"} <= skipped and len(crops) + len(skipped) == 11
    assert all(c.shape[:2] == (112, 112) for c in crops)
    assert "skipped" in caplog.text and "corrupt.jpg" in caplog.text
    x = folder.tensor()
    assert x.shape == (len(crops), 1, 112, 112) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_batches_drop_partial_and_fingerprint(mixed_dir):
    folder = FaceImageFolder(mixed_dir, Preprocess.for_size(144, color="rgb"))
    n = len(folder.crops())
    batches = list(folder.batches(3))
    assert len(batches) == n // 3 and all(b.shape == (3, 3, 144, 144) and b.flags.c_contiguous for b in batches)
    assert sum(b.shape[0] for b in folder.batches(3, drop_last=False)) == n
    with pytest.raises(DatasetError, match="fewer than one batch"):
        list(folder.batches(64))
    with pytest.raises(InputError):
        list(folder.batches(0))
    path = calibration_cache_path("/out", "m", "ab" * 32, folder, "8.5.2.2")
    assert path.name == f"m.8502.abababab-{folder.fingerprint()}.calib"
    # A JetPack upgrade (another TensorRT) must not meet the old cache under the same name.
    assert calibration_cache_path("/out", "m", "ab" * 32, folder, "10.3.0") != path


def test_calibration_feed_reads_lazily(mixed_dir, monkeypatch):
    folder = FaceImageFolder(mixed_dir, Preprocess())
    reads = []
    monkeypatch.setattr(folder, "crops", lambda real=folder.crops: reads.append(1) or real())
    feed = CalibrationFeed(folder, 2)
    assert reads == []  # nothing is read while TensorRT may still take the cache
    batches = []
    while (batch := feed.next_batch()) is not None:
        batches.append(batch)
    assert reads and feed.error is None and feed.count == sum(b.shape[0] for b in batches) >= 4
    feed.raise_error()  # nothing kept


def test_calibration_feed_keeps_the_error_for_after_the_build(mixed_dir):
    # TensorRT swallows exceptions raised in get_batch and takes them as the end of data: the feed keeps them.
    feed = CalibrationFeed(FaceImageFolder(mixed_dir, Preprocess()), 64)
    assert feed.next_batch() is None and feed.next_batch() is None
    with pytest.raises(DatasetError, match="fewer than one batch of 64"):
        feed.raise_error()


def test_limit_spreads_over_identities(lfw_dir):
    folder = FaceImageFolder(lfw_dir, Preprocess(), limit=20)
    assert len(folder) == 20 and len({p.parent.name for p in folder.files}) >= 15


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        FaceImageFolder(tmp_path / "nope", Preprocess())
    with pytest.raises(DatasetError, match="no images"):
        FaceImageFolder(tmp_path, Preprocess())
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="none of the 1 images"):
        FaceImageFolder(tmp_path, Preprocess()).crops()


def test_fit_crop():
    img = np.arange(200 * 100, dtype=np.uint8).reshape(200, 100)
    assert fit_crop(img, 112).shape == (112, 112)
    same = np.zeros((112, 112, 3), np.uint8)
    assert fit_crop(same, 112) is same

