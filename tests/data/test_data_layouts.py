"""Dataset indexing on the real shared images and on CASIA / generic trees built from real ORL faces."""
from __future__ import annotations

import logging
import os
import shutil

import pytest

from hsst.core.errors import ConfigError, DatasetError
from hsst.core.image import IMAGE_SUFFIXES
from hsst.data import detect_layout, index_casia, index_dataset, index_generic, index_vis_folders


# ------------------------------------------------------------------------------------------- shared datasets
def test_orl_is_detected_as_vis_folders_with_40_identities(orl_dir):
    index = index_dataset(orl_dir)
    assert index.layout == "vis-folders" and index.synthetic_nir
    assert index.num_identities == 40 and index.num_identities() == 40 and len(index) == 40
    assert index.identities == sorted(index.identities)
    assert all(len(index.vis[i]) == 10 for i in index.identities)
    assert all(index.nir[i] == index.vis[i] for i in index.identities)  # simulated NIR from the same files
    assert index.label_of(index.identities[7]) == 7
    assert index.report.skipped == [] and index.report.num_images == 400
    with pytest.raises(DatasetError, match="not in the vis-folders dataset"):
        index.label_of("nobody")
    assert index_dataset(orl_dir, max_identities=5).identities == index.identities[:5]


def _count_lfw_identities(root, min_images):
    """Independent count: identity folders with at least min_images image files."""
    count = 0
    for entry in os.scandir(root):
        if entry.is_dir():
            n = sum(1 for f in os.listdir(entry.path) if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES)
            count += n >= min_images
    return count


def test_lfw_min5_identities(lfw_dir):
    index = index_vis_folders(lfw_dir, min_images=5)
    expected = _count_lfw_identities(lfw_dir, 5)
    print(f"LFW identities with >= 5 images: {index.num_identities}, images: {index.num_images}")
    assert index.num_identities == expected > 100
    assert all(len(index.vis[i]) >= 5 for i in index.identities)
    folders = sum(1 for entry in os.scandir(lfw_dir) if entry.is_dir())
    assert index.report.counts["too_few_images"] == folders - expected
    first10 = index_vis_folders(lfw_dir, min_images=5, max_identities=10)
    assert first10.identities == index.identities[:10]
    chosen = index.identities[3:6]
    assert index_vis_folders(lfw_dir, min_images=5, identities=chosen).identities == chosen
    with pytest.raises(DatasetError, match="no folder"):
        index_vis_folders(lfw_dir, identities=["Not_A_Person_Here"])


def test_fingerprint_stable_and_location_independent(vis_tree, tmp_path):
    first = index_vis_folders(vis_tree)
    assert first.fingerprint() == first.fingerprint() == index_vis_folders(vis_tree).fingerprint()
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(vis_tree, moved)
    assert index_vis_folders(moved).fingerprint() == first.fingerprint()
    (moved / "id2" / "1.png").write_bytes((moved / "id2" / "1.png").read_bytes() + b"\0")
    assert index_vis_folders(moved).fingerprint() != first.fingerprint()
    assert first.subset(["id1", "id3"]).fingerprint() != first.fingerprint()


def test_vis_folders_min_images_and_subset(vis_tree):
    index = index_vis_folders(vis_tree, min_images=2)
    assert index.identities == ["id1", "id2", "id3", "id4", "id5"]
    assert [item.reason for item in index.report.skipped] == ["too_few_images"]
    assert index_vis_folders(vis_tree, min_images=1).num_identities == 6
    sub = index.subset(["id4", "id2"])
    assert sub.identities == ["id2", "id4"] and sub.label_of("id4") == 1 and sub.vis["id2"] == index.vis["id2"]
    with pytest.raises(DatasetError, match="not in the"):
        index.subset(["id9"])
    with pytest.raises(ConfigError):
        index_vis_folders(vis_tree, min_images=0)


# ---------------------------------------------------------------------------------------------------- casia
def test_casia_train_resolves_windows_paths_and_extensions(casia_tree):
    root = casia_tree["root"]
    assert detect_layout(root)[0] == "casia"
    index = index_casia(root, fold=1)
    assert index.layout == "casia" and not index.synthetic_nir
    assert index.identities == casia_tree["train_ids"]
    for ident in index.identities:
        assert [p.suffix for p in index.nir[ident]] == [".bmp"] * 3  # listed as .jpg, found as .bmp
        assert len(index.vis[ident]) == 2 and all(p.is_file() for p in index.vis[ident])
    assert index.nir["10005"][0].parent.name == "10005" and index.nir["10005"][0].parent.parent.name == "nir"
    counts = index.report.counts
    assert counts == {"missing_file": 1, "one_modality": 1}
    missing = index.report.items("missing_file")[0]
    assert missing.path == "s1\\NIR\\10001\\099.bmp" and "nir_train_1.txt line" in missing.detail
    assert index.report.items("one_modality")[0].path == "10006"


def test_casia_test_split_gallery_and_probes(casia_tree):
    index = index_dataset(casia=casia_tree["root"], fold=1, split="test")
    assert index.identities == casia_tree["train_ids"]
    assert all(len(index.vis[i]) == 1 and index.vis[i][0].name == "001.jpg" for i in index.identities)
    assert all(len(index.nir[i]) == 1 and index.nir[i][0].name == "002.bmp" for i in index.identities)


@pytest.mark.parametrize("verify", [False, True])
def test_casia_skips_corrupt_images(casia_tree, verify):
    broken = casia_tree["root"] / "s1" / "NIR" / "10002" / "003.bmp"
    broken.write_bytes(b"BM not really a bitmap")
    index = index_casia(casia_tree["root"], fold=1, verify=verify)
    assert broken not in index.nir["10002"] and len(index.nir["10002"]) == 2
    assert [item.path for item in index.report.items("unreadable")] == [str(broken)]


def test_casia_invalid_fold_split_and_missing_protocol(casia_tree):
    root = casia_tree["root"]
    for fold in (0, 11, "1", 1.0):
        with pytest.raises(ConfigError, match="fold must be an integer 1..10"):
            index_casia(root, fold=fold)
    with pytest.raises(ConfigError, match="split"):
        index_casia(root, fold=1, split="val")
    with pytest.raises(DatasetError, match="vis_train_2.txt not found"):
        index_casia(root, fold=2)
    with pytest.raises(ConfigError, match="choose a protocol fold"):
        index_dataset(root)
    with pytest.raises(ConfigError, match="do not apply"):
        index_dataset(root, fold=1, max_identities=3)


# -------------------------------------------------------------------------------------------------- generic
def test_generic_tree_reports_each_problem(generic_tree, caplog):
    root = generic_tree["root"]
    assert detect_layout(root)[0] == "generic"
    with caplog.at_level(logging.INFO, logger="hsst.train.data"):
        index = index_dataset(root)
    assert index.layout == "generic" and not index.synthetic_nir
    assert index.identities == generic_tree["good_ids"]
    # A corrupt file is never counted as an image, with or without verify (it would be a batch-size error later).
    assert generic_tree["corrupt"] not in index.nir["person01"] and len(index.nir["person01"]) == 3
    report = index.report
    assert report.counts == {"unreadable": 2, "empty_identity": 1, "one_modality": 1, "not_an_image": 1}
    unreadable = {item.path: item.detail for item in report.items("unreadable")}
    assert unreadable[str(generic_tree["empty_file"])] == "empty file (0 bytes)"
    assert "cannot decode" in unreadable[str(generic_tree["corrupt"])]
    assert "person05" in report.items("empty_identity")[0].path
    assert "person06" in report.items("one_modality")[0].path
    summary = report.summary()
    assert "4 identities" in summary and "identity with images of only one modality" in summary
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"skipped {generic_tree['empty_file']}: unreadable or corrupt image (empty file (0 bytes))" in warnings
    assert len(warnings) == 2 and any(str(generic_tree["corrupt"]) in w for w in warnings)
    report.log()  # logged once: a second call adds nothing
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == warnings


def test_generic_verify_decodes_and_skips_corrupt(generic_tree):
    index = index_generic(generic_tree["root"], verify=True)
    assert generic_tree["corrupt"] not in index.nir["person01"] and len(index.nir["person01"]) == 3
    unreadable = {item.path: item.detail for item in index.report.items("unreadable")}
    assert str(generic_tree["corrupt"]) in unreadable and "cannot decode" in unreadable[str(generic_tree["corrupt"])]
    assert index_generic(generic_tree["root"], min_images=3).num_identities == 4
    with pytest.raises(DatasetError, match="identity with fewer images than required: 4"):
        index_generic(generic_tree["root"], min_images=4)


# ------------------------------------------------------------------------------------------------- errors
def test_empty_dataset_error_names_root_and_expected_tree(tmp_path):
    root = tmp_path / "empty"
    (root / "alice").mkdir(parents=True)
    (root / "bob").mkdir()
    (root / "bob" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError) as err:
        index_dataset(root)
    message = str(err.value)
    assert str(root) in message and "no usable identity" in message
    assert "<root>/<identity>/nir/<image>" in message and "<root>/s1..s4/NIR/<identity>" in message
    assert "<root>/<identity>/<image>" in message


def test_nonexistent_root_and_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        index_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="does not exist"):
        index_casia(tmp_path / "missing", fold=1)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        index_generic(tmp_path / "file.txt")
    with pytest.raises(ConfigError, match="no dataset given"):
        index_dataset()
    with pytest.raises(ConfigError, match="unknown dataset layout"):
        index_dataset(tmp_path, layout="imagenet")
