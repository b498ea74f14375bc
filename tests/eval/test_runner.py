import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from hsst.core.errors import ConfigError
from hsst.eval.embedding import EmbeddingExtractor
from hsst.eval.faces import create_face_source
from hsst.eval.embedders import load_model
from hsst.eval.protocols import first_image_protocol
from hsst.eval.report import write_report
from hsst.eval.runner import EvalConfig, Evaluator, evaluate


def _config(model, tmp_path, **kw):
    base = dict(model=str(model), faces="box", cache=str(tmp_path / "cache.sqlite"), progress=False,
                batch_size=32, device="cpu")
    base.update(kw)
    return EvalConfig(**base)


def test_folders_protocol_counts_report_and_cache(eval_models, orl_folders, tmp_path):
    cfg = _config(eval_models["onnx"], tmp_path, protocol="folders", gallery=str(orl_folders["gallery"]),
                  probes=str(orl_folders["probes"]))
    first = evaluate(cfg)
    fold = first["folds"][0]
    assert (fold["gallery_images"], fold["probe_images"], fold["gallery_identities"]) == (40, 360, 40)
    assert fold["failures"]["failed_probes_total"] == 0
    assert fold["genuine_comparisons"] == 360 and fold["impostor_comparisons"] == 360 * 39
    assert len(fold["cmc"]) == 10 and fold["cmc"][0] == fold["rank1"] and fold["cmc"][-1] >= fold["rank1"]
    assert set(fold["vr"]) == {"0.01", "0.001"} and "0.0001" in fold["threshold_table"]
    assert first["cache"] == {"path": cfg.cache, "hits": 0, "computed": 400}
    assert not first["simulated_nir"] and first["model"]["kind"] == "onnx" and len(first["model"]["sha256"]) == 64

    second = evaluate(cfg)
    assert second["cache"]["hits"] == 400 and second["cache"]["computed"] == 0
    assert second["folds"][0]["rank1"] == fold["rank1"] and second["folds"][0]["vr"] == fold["vr"]

    paths = write_report(second, tmp_path / "report")
    data = json.loads(paths["json"].read_text())
    assert data["protocol"]["fingerprint"] == first["protocol"]["fingerprint"]
    assert data["config"]["protocol"] == "folders" and data["model"]["sha256"] == first["model"]["sha256"]
    assert "| all | 40 | 360 | 0 |" in paths["markdown"].read_text()
    png = cv2.imread(str(paths["roc"]))
    assert png is not None and png.shape[0] > 100 and png.std() > 0


def test_checkpoint_and_onnx_give_the_same_numbers(eval_models, orl_dir, tmp_path):
    data = first_image_protocol(orl_dir, identities=[f"s{k}" for k in range(1, 11)], max_probes=3)
    results = {}
    for kind in ("checkpoint", "onnx"):
        ev = Evaluator(_config(eval_models[kind], tmp_path, protocol="first-image", root=str(orl_dir),
                               use_cache=False))
        results[kind] = ev.run(data)
        ev.close()
    a, b = results["checkpoint"]["folds"][0], results["onnx"]["folds"][0]
    assert results["checkpoint"]["model"]["kind"] == "checkpoint"
    assert a["rank1"] == b["rank1"] and a["cmc"] == b["cmc"]
    for key in a["vr"]:
        assert a["vr"][key] == pytest.approx(b["vr"][key], abs=1 / 30 + 1e-9)
    for key, row in a["threshold_table"].items():
        assert row["threshold"] == pytest.approx(b["threshold_table"][key]["threshold"], abs=1e-4)


def test_checkpoint_and_onnx_embeddings_match(eval_models, orl_dir):
    items = first_image_protocol(orl_dir, identities=["s1", "s2"], max_probes=2).items()
    out = []
    for kind in ("checkpoint", "onnx"):
        model = load_model(eval_models[kind], device="cpu")
        out.append(EmbeddingExtractor(model, create_face_source("box", model.crop_size), progress=False)
                   .embed(items).embeddings)
    assert out[0].shape == (6, 128)
    np.testing.assert_allclose(out[0], out[1], atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(out[0], axis=1), 1.0, atol=1e-5)


def test_casia_folds_mean_and_identity_templates(eval_models, casia_eval_tree, tmp_path):
    result = evaluate(_config(eval_models["onnx"], tmp_path, protocol="casia", root=str(casia_eval_tree),
                              folds=[1, 2], template="identity"))
    folds = result["folds"]
    assert [f["name"] for f in folds] == ["fold1", "fold2"]
    assert all(f["gallery_entries"] == 6 and f["probe_images"] == 12 for f in folds)
    s = result["summary"]
    assert s["folds"] == 2
    assert s["rank1"]["mean"] == pytest.approx(np.mean([f["rank1"] for f in folds]))
    assert s["rank1"]["std"] == pytest.approx(np.std([f["rank1"] for f in folds]))
    assert "0.1" in s["thresholds"]
    # fold 2 reuses 6 gallery and 6 probe embeddings of fold 1 from the cache
    assert result["cache"]["computed"] == 6 + 6 * 3 and result["cache"]["hits"] == 12


def test_pairs_protocol_with_simulated_nir_probes(eval_models, tiny_pairs, lfw_dir, tmp_path):
    cfg = _config(eval_models["onnx"], tmp_path, protocol="pairs", pairs=str(tiny_pairs), images=str(lfw_dir),
                  nir_sim=True, seed=3, threshold=0.5)
    result = evaluate(cfg)
    p = result["pairs"]
    assert (p["pairs"], p["same"], p["different"]) == (20, 10, 10)
    assert len(p["accuracy"]["fold_thresholds"]) == 10
    assert p["fixed_threshold"]["threshold"] == 0.5 and p["fixed_threshold"]["source"] == "--threshold"
    assert 0.0 <= p["fixed_threshold"]["accuracy"] <= 1.0
    assert result["simulated_nir"] and "simulated NIR" in result["title"]
    paths = write_report(result, tmp_path / "report")
    assert "simulated NIR" in paths["markdown"].read_text()
    # same seed: probe pixels (and so embeddings) come from the cache; another seed: new probes
    again = evaluate(cfg)
    assert again["cache"]["computed"] == 0 and again["pairs"]["accuracy"] == p["accuracy"]
    other = evaluate(_config(eval_models["onnx"], tmp_path, protocol="pairs", pairs=str(tiny_pairs),
                             images=str(lfw_dir), nir_sim=True, seed=4))
    assert other["cache"]["computed"] == 20 - _repeats(tiny_pairs)  # each distinct image embedded once


def _repeats(pairs_file: Path) -> int:
    """Second images of a pairs file that repeat an earlier second image (embedded once)."""
    seen, repeats = set(), 0
    for line in pairs_file.read_text().splitlines()[1:]:
        f = line.split()
        key = (f[0], f[2]) if len(f) == 3 else (f[2], f[3])
        repeats += key in seen
        seen.add(key)
    return repeats


def test_masked_simulated_nir_probes_are_seeded(eval_models, orl_dir, tmp_path):
    data = first_image_protocol(orl_dir, identities=["s1", "s2", "s3"], max_probes=2)
    cfg = _config(eval_models["onnx"], tmp_path, protocol="first-image", root=str(orl_dir), nir_sim=True,
                  mask=True, mask_types="surgical")
    ev = Evaluator(cfg)
    first = ev.run(data)
    second = ev.run(data)
    ev.close()
    assert first["probe_transform"]["name"] == "nir-sim+mask" and first["simulated_nir"]
    assert first["cache"]["computed"] == 3 + 6 and second["cache"]["hits"] == 9
    assert first["folds"][0]["rank1"] == second["folds"][0]["rank1"]


def test_no_face_and_unreadable_probes_count_as_failures(eval_models, lfw_dir, tmp_path):
    gallery, probes = tmp_path / "g", tmp_path / "p"
    for name in ("Aaron_Eckhart", "Abel_Pacheco"):
        (gallery / name).mkdir(parents=True)
        (probes / name).mkdir(parents=True)
        shutil.copy(lfw_dir / name / f"{name}_0001.jpg", gallery / name)
    shutil.copy(lfw_dir / "Abel_Pacheco" / "Abel_Pacheco_0002.jpg", probes / "Abel_Pacheco")
    cv2.imwrite(str(probes / "Aaron_Eckhart" / "blank.png"), np.full((160, 160, 3), 128, np.uint8))
    (probes / "Abel_Pacheco" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg" * 8)
    result = evaluate(_config(eval_models["onnx"], tmp_path, protocol="folders", gallery=str(gallery),
                              probes=str(probes), faces="detect"))
    fold = result["folds"][0]
    assert fold["failures"]["probes"] == {"no_face": 1, "unreadable": 1}
    assert fold["failures"]["failed_probes_total"] == 2 and fold["probe_images"] == 3
    assert fold["rank1"] <= 1 / 3 + 1e-9  # failed probes stay in the denominator
    assert fold["genuine_comparisons"] == 3 and fold["impostor_comparisons"] == 1


def _side_lit_probes(lfw_dir, tmp_path):
    """A plain LFW photo, and tight side-lit / dark gray crops of another that BlazeFace scores in 0.35..0.5."""
    from hsst.synth.lighting import directional_light, exposure

    gallery, probes = tmp_path / "gallery", tmp_path / "probes"
    for name in ("Alexander_Losyukov", "Alfonso_Portillo"):
        (gallery / name).mkdir(parents=True)
        shutil.copy(lfw_dir / name / f"{name}_0001.jpg", gallery / name)
    face = cv2.cvtColor(cv2.imread(str(lfw_dir / "Alexander_Losyukov" / "Alexander_Losyukov_0001.jpg")),
                        cv2.COLOR_BGR2GRAY)[70:180, 70:180]
    (probes / "Alexander_Losyukov").mkdir(parents=True)
    shutil.copy(lfw_dir / "Alexander_Losyukov" / "Alexander_Losyukov_0002.jpg", probes / "Alexander_Losyukov")
    cv2.imwrite(str(probes / "Alexander_Losyukov" / "side90.png"), directional_light(face, 90, rng=0))
    cv2.imwrite(str(probes / "Alexander_Losyukov" / "dark.png"), exposure(face, -3.0))
    return gallery, probes


def test_detect_measures_with_the_gates_detector_settings(eval_models, lfw_dir, tmp_path):
    """The gate finds these faces (its det_thresh / min_face); hsst-eval's former 0.5 / 20 did not. One cache
    file serves both runs: crops detected with other settings are never reused."""
    pytest.importorskip("tflite2onnx")
    from hsst.runtime.config import GateConfig

    gallery, probes = _side_lit_probes(lfw_dir, tmp_path)
    folders = dict(protocol="folders", gallery=str(gallery), probes=str(probes), faces="detect")
    gate = evaluate(_config(eval_models["onnx"], tmp_path, **folders))
    assert gate["folds"][0]["failures"]["failed_probes_total"] == 0
    assert gate["faces"]["detector"] == dataclasses.asdict(GateConfig().detector)
    assert gate["faces"]["gate_config"] is None and gate["cache"]["computed"] == 5
    former = evaluate(_config(eval_models["onnx"], tmp_path, det_thresh=0.5, min_face=20, variant="both", **folders))
    assert former["cache"]["hits"] == 0 and former["folds"][0]["failures"]["probes"] == {"no_face": 2}
    assert (former["faces"]["detector"]["det_thresh"], former["faces"]["detector"]["min_face"]) == (0.5, 20)
    assert evaluate(_config(eval_models["onnx"], tmp_path, **folders))["cache"]["hits"] == 5


def test_detector_settings_come_from_a_gate_config_and_options_override_them():
    from hsst.runtime.config import load_config

    nano = "firmware_configs/jetson-nano.yaml"
    settings = EvalConfig(model="m.onnx", protocol="pairs", pairs="p", images="i", gate_config=nano,
                          det_thresh=0.5).detector_settings()
    assert settings == dataclasses.replace(load_config(nano).detector, det_thresh=0.5)
    with pytest.raises(ConfigError, match="--det-thresh.*drop them with --faces aligned"):
        EvalConfig(model="m.onnx", protocol="pairs", pairs="p", images="i", faces="aligned", det_thresh=0.5).validate()
    with pytest.raises(ConfigError, match=r"detector\.normalize must be one of"):
        EvalConfig(model="m.onnx", protocol="pairs", pairs="p", images="i", normalize="sometimes").validate()
