import pytest

from hsst.core.errors import DatasetError
from hsst.eval.protocols import (casia_protocol, first_image_protocol, folders_protocol, pairs_protocol,
                                 parse_pairs, read_identity_list)


def test_parse_pairs_reads_same_and_different_lines_and_skips_header(tiny_pairs):
    pairs = parse_pairs(tiny_pairs)
    assert len(pairs) == 20
    assert sum(p[4] for p in pairs) == 10
    name, i, name2, j, same = pairs[0]
    assert same and name == name2 and i != j


def test_parse_pairs_rejects_malformed_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("Abel_Pacheco\t1\t4\nAbel_Pacheco one 4\n")
    with pytest.raises(DatasetError, match="line 2"):
        parse_pairs(bad)


def test_pairs_protocol_resolves_lfw_names(tiny_pairs, lfw_dir):
    data = pairs_protocol(tiny_pairs, lfw_dir)
    assert data.kind == "verification" and len(data.trials[0].pairs) == 20
    a, b, same = data.trials[0].pairs[0]
    assert a.path.name.startswith(a.identity + "_") and a.path.suffix == ".jpg" and same
    assert a.key == f"{a.identity}/{a.path.name}"
    assert len(data.fingerprint()) == 64


def test_pairs_protocol_reports_missing_images(tmp_path, lfw_dir):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("Abel_Pacheco\t1\t99\n")
    with pytest.raises(DatasetError, match="1 images named"):
        pairs_protocol(pairs, lfw_dir)


def test_first_image_protocol_on_orl(orl_dir):
    data = first_image_protocol(orl_dir)
    trial = data.trials[0]
    assert len(trial.gallery) == 40 and len(trial.probes) == 360
    assert all(item.path.name == "1.pgm" for item in trial.gallery)  # file name order: 1, 10, 2, ...
    capped = first_image_protocol(orl_dir, identities=["s1", "s2", "s3"], max_probes=2)
    assert len(capped.trials[0].gallery) == 3 and len(capped.trials[0].probes) == 6
    assert capped.fingerprint() != data.fingerprint()


def test_folders_protocol_matches_first_image_split(orl_folders):
    data = folders_protocol(orl_folders["gallery"], orl_folders["probes"])
    trial = data.trials[0]
    assert len(trial.gallery) == 40 and len(trial.probes) == 360
    assert {x.identity for x in trial.probes} == {x.identity for x in trial.gallery}


def test_folders_protocol_needs_enrolled_probe_identities(orl_folders):
    (orl_folders["gallery"] / "s1" / "1.pgm").unlink()
    (orl_folders["gallery"] / "s1").rmdir()
    with pytest.raises(DatasetError, match="no gallery folder"):
        folders_protocol(orl_folders["gallery"], orl_folders["probes"])


def test_casia_protocol_folds(casia_eval_tree):
    data = casia_protocol(casia_eval_tree, [1, 2])
    assert [t.name for t in data.trials] == ["fold1", "fold2"]
    for trial in data.trials:
        assert len(trial.gallery) == 6 and len(trial.probes) == 12
        assert all(p.path.suffix == ".bmp" for p in trial.probes)  # listed as .jpg, resolved on disk
    assert data.trials[0].probes[0].path != data.trials[1].probes[0].path
    assert len(data.items()) == 6 + 6 * 3


def test_read_identity_list_json_split(tmp_path):
    split = tmp_path / "split.json"
    split.write_text('{"test": {"identities": ["a", "b"]}, "train": {"identities": ["c"]}}')
    assert read_identity_list(split, "test") == ["a", "b"]
    txt = tmp_path / "ids.txt"
    txt.write_text("# comment\na\n\nb  # trailing\n")
    assert read_identity_list(txt) == ["a", "b"]
    with pytest.raises(DatasetError, match="choose one of"):
        read_identity_list(split)


def test_all_vis_protocol_on_generic_tree(tmp_path, orl_dir):
    import shutil

    from hsst.eval.protocols import all_vis_protocol

    for k in range(1, 4):
        for modality, numbers in (("nir", (1, 2)), ("VIS", (3, 4, 5))):
            folder = tmp_path / f"p{k}" / modality
            folder.mkdir(parents=True)
            for n in numbers:
                shutil.copy(orl_dir / f"s{k}" / f"{n}.pgm", folder / f"{n}.pgm")
    data = all_vis_protocol(tmp_path)
    trial = data.trials[0]
    assert len(trial.gallery) == 9 and len(trial.probes) == 6
    assert {p.path.parent.name for p in trial.probes} == {"nir"}
    assert {g.identity for g in trial.gallery} == {"p1", "p2", "p3"}


def test_all_vis_protocol_names_the_protocol_of_other_layouts(orl_dir, casia_eval_tree):
    from hsst.eval.protocols import all_vis_protocol

    with pytest.raises(DatasetError, match="plain identity folders.*--protocol first-image"):
        all_vis_protocol(orl_dir)
    with pytest.raises(DatasetError, match="CASIA NIR-VIS 2.0 root.*--casia ROOT"):
        all_vis_protocol(casia_eval_tree)
