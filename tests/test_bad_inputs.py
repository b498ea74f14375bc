"""Every command of setup.py against bad input: missing, empty, corrupt, truncated, wrong type, wrong shape.

Each case runs the installed command (the venv's console script) in a subprocess and checks what its user sees:
a non-zero exit, a last line of stderr that names the problem, no traceback, and no new file under a final name
(a failed run's ``train.log`` is allowed: it is the record of the failure; temporary files must be gone).

The bad files are made here in tmp_path from real data (an LFW photo, AT&T/ORL faces, the shipped model); nothing
is committed. The commands run a few at a time: about 45 s of CPU in all, mostly the start-up of torch (hsst-train,
hsst-export of a checkpoint) and of the face models, so well under a minute of wall time on two free cores.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "sdk" / "assets" / "models"
SHIPPED_PT, SHIPPED_ONNX = MODELS / "hsst-mobilefacenet-112.pt", MODELS / "hsst-mobilefacenet-112.onnx"
LAPTOP = ROOT / "firmware_configs" / "laptop-cpu.yaml"
#: files a failed run may leave: the run's own log
ALLOWED = {"train.log"}
#: no case may take this long: a source that is retried instead of failing at once would
TIME_LIMIT_S = 30.0


@dataclass
class Case:
    """One command line; ``{name}`` in ``args`` is a file of the bad-input folder, ``{out}`` the case's output."""

    id: str
    command: str
    args: List[str]
    expect: str  # regex searched in stderr's last line
    marks: Tuple = field(default_factory=tuple)


TRAIN = ["--iters", "1", "--batch-size", "4", "--input-size", "32", "--max-identities", "8", "--queue-size", "8",
         "--device", "cpu", "--threads", "1", "--no-progress", "--out", "{out}"]
EVAL = ["--no-cache", "--no-progress", "--out", "{out}"]
GATE = ["--config", str(LAPTOP), "--duration", "20"]
IDENTIFY = ["--config", str(LAPTOP)]
CASES = [
    # -- hsst-train
    Case("train-data-missing", "hsst-train", ["--data", "{missing}", *TRAIN], r"dataset root .*missing does not exist"),
    Case("train-data-empty", "hsst-train", ["--data", "{empty}", *TRAIN], r"no usable identity in .*empty"),
    Case("train-data-corrupt", "hsst-train", ["--data", "{corrupt_ids}", *TRAIN],
         r"no usable identity .*0 images.*unreadable or corrupt image: 9"),
    Case("train-init-truncated", "hsst-train", ["--data", "{orl}", "--init", "{truncated_pt}", *TRAIN],
         r"cannot read checkpoint .*truncated.pt: the file is truncated"),
    Case("train-init-wrong-type", "hsst-train", ["--data", "{orl}", "--init", "{photo}", *TRAIN],
         r"cannot read checkpoint .*photo.jpg: not a PyTorch checkpoint"),
    Case("train-init-wrong-network", "hsst-train", ["--data", "{orl}", "--init", str(SHIPPED_PT), "--backbone",
                                                    "mobilefacenet", "--embedding-dim", "128", *TRAIN],
         r"--init .*hsst-mobilefacenet-112.pt loads into --backbone mobilefacenet_tf, not mobilefacenet"),
    Case("train-resume-truncated", "hsst-train", ["--data", "{orl}", "--resume", *TRAIN],
         r"cannot read resume checkpoint .*last.ckpt: the file is truncated"),
    Case("train-config-binary", "hsst-train", ["--data", "{orl}", "--config", "{photo_yaml}", *TRAIN],
         r"not a text file"),
    # -- hsst-mask
    Case("mask-in-missing", "hsst-mask", ["--in", "{missing}", "--out", "{out}"], r"--in .*missing: folder not found"),
    Case("mask-in-empty", "hsst-mask", ["--in", "{empty}", "--out", "{out}"], r"no images found"),
    Case("mask-in-corrupt", "hsst-mask", ["--in", "{corrupt_ids}", "--out", "{out}"],
         r"no crop written, none of its 9 image\(s\) gave a face \(unreadable=9"),
    Case("mask-in-wrong-shape", "hsst-mask", ["--in", "{tiny_ids}", "--out", "{out}"],
         r"no crop written, none of its 1 image\(s\) gave a face \(unreadable=1; .*smaller than 8 px"),
    Case("mask-in-wrong-type", "hsst-mask", ["--in", "{photo}", "--out", "{out}"], r"Directory .*photo.jpg' is a file"),
    # -- hsst-eval
    Case("eval-model-missing", "hsst-eval", ["--model", "{missing}.onnx", "--gallery", "{enrol}", "--probes",
                                             "{enrol}", *EVAL], r"File .*missing.onnx' does not exist"),
    Case("eval-model-truncated-onnx", "hsst-eval", ["--model", "{truncated_onnx}", "--gallery", "{enrol}",
                                                    "--probes", "{enrol}", *EVAL], r"onnxruntime cannot load"),
    Case("eval-model-empty", "hsst-eval", ["--model", "{empty_onnx}", "--gallery", "{enrol}", "--probes", "{enrol}",
                                           *EVAL], r"onnxruntime cannot load .*empty.onnx"),
    Case("eval-model-wrong-type", "hsst-eval", ["--model", "{photo}", "--gallery", "{enrol}", "--probes", "{enrol}",
                                                *EVAL], r"cannot tell the model kind of .*photo.jpg"),
    Case("eval-model-wrong-shape", "hsst-eval", ["--model", "{wrong_onnx}", "--gallery", "{enrol}", "--probes",
                                                 "{enrol}", *EVAL], r"sidecar does not belong to this model"),
    Case("eval-gallery-corrupt", "hsst-eval", ["--model", str(SHIPPED_ONNX), "--gallery", "{corrupt_ids}",
                                               "--probes", "{enrol}", *EVAL], r"unreadable or corrupt image: 9"),
    Case("eval-pairs-wrong-type", "hsst-eval", ["--model", str(SHIPPED_ONNX), "--pairs", "{photo}", "--images",
                                                "{enrol}", *EVAL], r"photo.jpg"),
    # -- hsst-export
    Case("export-weights-missing", "hsst-export", ["--weights", "{missing}.pt", "-o", "{out}"],
         r"model file not found: .*missing.pt"),
    Case("export-pt-truncated", "hsst-export", ["--weights", "{truncated_pt}", "-o", "{out}"],
         r"cannot read probe-net checkpoint .*truncated.pt: the file is truncated"),
    Case("export-pt-wrong-type", "hsst-export", ["--weights", "{photo}", "-o", "{out}"],
         r"photo.jpg: not a PyTorch checkpoint"),
    Case("export-onnx-truncated", "hsst-export", ["--weights", "{truncated_onnx}", "-o", "{out}"],
         r"truncated.onnx is not a loadable ONNX model"),
    Case("export-onnx-truncated-int8", "hsst-export", ["--weights", "{truncated_onnx}", "--format", "onnx-int8",
                                                       "--data", "{orl}", "-o", "{out}"],
         r"truncated.onnx is not a loadable ONNX model"),
    Case("export-onnx-truncated-trt", "hsst-export", ["--weights", "{truncated_onnx}", "--trt", "-o", "{out}"],
         r"truncated.onnx is not a loadable ONNX model"),
    Case("export-onnx-empty", "hsst-export", ["--weights", "{empty_onnx}", "--trt", "-o", "{out}"],
         r"empty.onnx is not a loadable ONNX model"),
    Case("export-onnx-wrong-shape", "hsst-export", ["--weights", "{wrong_onnx}", "--trt", "-o", "{out}"],
         r"takes input\(s\) \[\[1, 3, 64, 64\]\], but its sidecar .* says \[1, 1, 112, 112\]"),
    Case("export-onnx-nothing-to-do", "hsst-export", ["--weights", "{valid_onnx}", "-o", "{out}"],
         r"already is an ONNX: --format onnx has nothing to write"),
    Case("export-sidecar-corrupt", "hsst-export", ["--weights", "{bad_sidecar_onnx}", "--trt", "-o", "{out}"],
         r"cannot read model metadata .*bad_sidecar.onnx.json"),
    # -- hsst-gate
    Case("gate-source-missing", "hsst-gate", [*GATE, "--enroll", "{enrol}", "--source", "file://{missing}.avi"],
         r"video file not found: .*missing.avi"),
    Case("gate-source-corrupt", "hsst-gate", [*GATE, "--enroll", "{enrol}", "--source", "file://{garbage}"],
         r"ended before its first frame"),
    Case("gate-source-truncated", "hsst-gate", [*GATE, "--enroll", "{enrol}", "--source", "file://{truncated_avi}"],
         r"cannot open source file:.*truncated.avi"),
    Case("gate-source-empty-folder", "hsst-gate", [*GATE, "--enroll", "{enrol}", "--source", "file://{empty}/"],
         r"image folder .*empty has no images"),
    Case("gate-source-corrupt-folder", "hsst-gate", [*GATE, "--enroll", "{enrol}", "--source",
                                                     "file://{corrupt_frames}/"], r"none of its 3 image file"),
    Case("gate-enrol-corrupt", "hsst-gate", [*GATE, "--enroll", "{corrupt_ids}", "--source", "file://{frames}/"],
         r"nobody enrolled: all 9 photo"),
    Case("gate-enrol-none", "hsst-gate", [*GATE, "--source", "file://{frames}/"],
         r"nobody enrolled: set gallery.path .* or pass --allow-empty"),
    Case("gate-config-missing", "hsst-gate", ["--config", "{missing}.yaml"], r"configuration file not found"),
    Case("gate-config-binary", "hsst-gate", ["--config", "{photo_yaml}"], r"photo.yaml is not a text file"),
    Case("gate-model-truncated", "hsst-gate", [*GATE, "--model", "{truncated_onnx}", "--allow-empty"],
         r"onnxruntime cannot load .*truncated.onnx"),
    Case("gate-model-wrong-shape", "hsst-gate", [*GATE, "--model", "{wrong_onnx}", "--allow-empty"],
         r"sidecar does not belong to this model"),
    # -- hsst-identify
    Case("identify-image-missing", "hsst-identify", [*IDENTIFY, "--allow-empty", "{missing}.jpg"],
         r"1 of 1 image\(s\) failed, e.g. image not found"),
    Case("identify-image-corrupt", "hsst-identify", [*IDENTIFY, "--allow-empty", "{garbage}"], r"cannot decode image"),
    Case("identify-image-empty", "hsst-identify", [*IDENTIFY, "--allow-empty", "{empty_jpg}"],
         r"cannot decode image .*empty.jpg \(0 bytes\)"),
    Case("identify-image-wrong-shape", "hsst-identify", [*IDENTIFY, "--allow-empty", "{tiny_png}"],
         r"tiny.png is 4x4 px, smaller than 8 px"),
    Case("identify-image-truncated", "hsst-identify", [*IDENTIFY, "--allow-empty", "{truncated_jpg}"],
         r"cannot decode image"),
    Case("identify-image-wrong-type", "hsst-identify", [*IDENTIFY, "--allow-empty", "{text_jpg}"],
         r"cannot decode image"),
    Case("identify-enrol-missing", "hsst-identify", [*IDENTIFY, "--enroll", "{missing}", "{photo}"],
         r"enrolment folder not found"),
    Case("identify-enrol-corrupt", "hsst-identify", [*IDENTIFY, "--enroll", "{corrupt_ids}", "{photo}"],
         r"nobody enrolled: all 9 photo"),
    Case("identify-enrol-none", "hsst-identify", [*IDENTIFY, "{photo}"],
         r"nobody enrolled: set gallery.path .* or pass --allow-empty"),
    Case("identify-model-truncated", "hsst-identify", [*IDENTIFY, "--model", "{truncated_onnx}", "--allow-empty",
                                                       "{photo}"], r"onnxruntime cannot load"),
    Case("identify-model-wrong-shape", "hsst-identify", [*IDENTIFY, "--model", "{wrong_onnx}", "--allow-empty",
                                                         "{photo}"], r"sidecar does not belong to this model"),
    # -- hsst-gallery, hsst-enroll (the gallery store)
    Case("gallery-missing", "hsst-gallery", ["list", "--gallery", "{missing}.db", "--keys", "{keys}"],
         r"gallery not found: .*missing.db"),
    Case("gallery-corrupt", "hsst-gallery", ["list", "--gallery", "{garbage}", "--keys", "{keys}"],
         r"garbage.jpg is not a gallery"),
    Case("gallery-empty-file", "hsst-gallery", ["stats", "--gallery", "{empty_jpg}", "--keys", "{keys}"],
         r"empty.jpg holds no gallery"),
    Case("gallery-wrong-type", "hsst-gallery", ["verify", "--gallery", "{enrol}", "--keys", "{keys}"],
         r"enrol"),
    Case("gallery-import-truncated", "hsst-gallery", ["import", "{truncated_bundle}", "--gallery", "{out}/g.db",
                                                      "--keys", "{keys}"], r"truncated.hgb is truncated"),
    Case("gallery-import-wrong-type", "hsst-gallery", ["import", "{photo}", "--gallery", "{out}/g.db", "--keys",
                                                       "{keys}"], r"photo.jpg is not a gallery bundle"),
    Case("gallery-import-wrong-key", "hsst-gallery", ["import", "{foreign_bundle}", "--gallery", "{out}/g.db",
                                                      "--keys", "{keys}"], r"fails its signature check"),
    Case("enroll-no-key", "hsst-enroll", ["--config", str(LAPTOP), "--id", "E1", "--gallery", "{out}/g.db",
                                          "{photo}"], r"no key for it"),
]


# ------------------------------------------------------------------------------------------------ bad files
def _with_sidecar(path: Path, data: bytes, sidecar: bytes) -> Path:
    path.write_bytes(data)
    Path(f"{path}.json").write_bytes(sidecar)
    return path


def _wrong_shape_onnx() -> bytes:
    """A valid ONNX graph taking 3x64x64 (the shipped sidecar says 1x112x112)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["embedding"])], "wrong", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


def _video(path: Path, photo: np.ndarray) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for _ in range(5):
        writer.write(cv2.resize(photo, (320, 240)))
    writer.release()
    return path


def _model_files(d: Path) -> Dict[str, Path]:
    sidecar = Path(f"{SHIPPED_ONNX}.json").read_bytes()
    onnx, pt = SHIPPED_ONNX.read_bytes(), SHIPPED_PT.read_bytes()
    (d / "truncated.pt").write_bytes(pt[: len(pt) // 3])
    return {
        "truncated_pt": d / "truncated.pt",
        "truncated_onnx": _with_sidecar(d / "truncated.onnx", onnx[:1000], sidecar),
        "empty_onnx": _with_sidecar(d / "empty.onnx", b"", sidecar),
        "wrong_onnx": _with_sidecar(d / "wrong.onnx", _wrong_shape_onnx(), sidecar),
        "valid_onnx": _with_sidecar(d / "valid.onnx", onnx, sidecar),
        "bad_sidecar_onnx": _with_sidecar(d / "bad_sidecar.onnx", onnx, bytes(range(256))),
    }


def _image_files(d: Path, lfw_dir: Path) -> Dict[str, Path]:
    source = lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg"
    jpeg = source.read_bytes()
    files = {"photo": d / "photo.jpg", "photo_yaml": d / "photo.yaml", "garbage": d / "garbage.jpg",
             "truncated_jpg": d / "truncated.jpg", "text_jpg": d / "text.jpg", "empty_jpg": d / "empty.jpg",
             "tiny_png": d / "tiny.png"}
    _, tiny = cv2.imencode(".png", cv2.resize(cv2.imread(str(source)), (4, 4)))   # a real photo, 4x4 px
    for key, data in (("photo", jpeg), ("photo_yaml", jpeg), ("garbage", bytes(range(256)) * 8),
                      ("truncated_jpg", jpeg[: len(jpeg) * 2 // 5]), ("text_jpg", b"a text file named .jpg\n"),
                      ("empty_jpg", b""), ("tiny_png", tiny.tobytes())):
        files[key].write_bytes(data)
    (d / "enrol" / "AJ_Cook").mkdir(parents=True)
    (d / "enrol" / "AJ_Cook" / source.name).write_bytes(jpeg)
    (d / "frames").mkdir()
    (d / "frames" / "0001.jpg").write_bytes(jpeg)
    video = _video(d / "video.avi", cv2.imread(str(source)))
    (d / "truncated.avi").write_bytes(video.read_bytes()[:300])   # the header, not one frame
    return {**files, "enrol": d / "enrol", "frames": d / "frames", "truncated_avi": d / "truncated.avi"}


def _folders(d: Path, files: Dict[str, Path]) -> Dict[str, Path]:
    """An empty folder, identity folders of corrupt (or 4x4 px) images only, a frame folder of corrupt images."""
    (d / "empty").mkdir()
    for name in ("p1", "p2", "p3"):
        (d / "corrupt_ids" / name).mkdir(parents=True)
        for key in ("garbage", "truncated_jpg", "text_jpg"):
            (d / "corrupt_ids" / name / files[key].name).write_bytes(files[key].read_bytes())
    (d / "tiny_ids" / "p1").mkdir(parents=True)
    (d / "tiny_ids" / "p1" / "tiny.png").write_bytes(files["tiny_png"].read_bytes())
    (d / "corrupt_frames").mkdir()
    for key in ("garbage", "truncated_jpg", "text_jpg"):
        (d / "corrupt_frames" / files[key].name).write_bytes(files[key].read_bytes())
    return {"empty": d / "empty", "corrupt_ids": d / "corrupt_ids", "corrupt_frames": d / "corrupt_frames",
            "tiny_ids": d / "tiny_ids", "missing": d / "missing"}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, lfw_dir, orl_dir) -> Dict[str, Path]:
    pytest.importorskip("onnx")
    d = tmp_path_factory.mktemp("bad")
    files = _image_files(d, lfw_dir)
    from hsst.gallery.keys import generate_keys

    generate_keys(d / "keys")  # a valid key folder: the gallery cases are about the gallery file
    return {**files, **_model_files(d), **_folders(d, files), **_bundles(d), "orl": orl_dir, "keys": d / "keys"}


def _bundles(d: Path) -> Dict[str, Path]:
    """A real signed bundle from another station's keys (one identity of two real-sized templates), and its first
    third: the import cases are about the bundle, so the gate's own keys stay valid."""
    from hsst.gallery.bundle import export_bundle
    from hsst.gallery.keys import FileKeys, generate_keys
    from hsst.gallery.store import GalleryStore

    generate_keys(d / "station_keys")
    station = FileKeys.from_dir(d / "station_keys")
    store = GalleryStore.create(d / "station.db", station, "0" * 64, dim=192)
    try:
        vectors = np.random.default_rng(0).standard_normal((2, 192)).astype(np.float32)
        store.enrol("E1", vectors, name="Station person")
        export_bundle(store, d / "foreign.hgb", station)
    finally:
        store.close()
    (d / "truncated.hgb").write_bytes((d / "foreign.hgb").read_bytes()[:200])
    return {"foreign_bundle": d / "foreign.hgb", "truncated_bundle": d / "truncated.hgb"}


# ---------------------------------------------------------------------------------------------------- running
def _command(name: str) -> List[str]:
    """The venv's console script; without it, the entry point setup.py names, run by this Python."""
    script = Path(sys.executable).with_name(name)
    if script.is_file():
        return [str(script)]
    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    module, attr = re.search(rf'"{name}=([\w.]+):(\w+)"', setup).groups()
    return [sys.executable, "-c", f"import sys; sys.argv[0] = {name!r}; from {module} import {attr}; {attr}()"]


def _files(folder: Path) -> Dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}


def _prepare(case: Case, bad: Dict[str, Path], root: Path) -> Tuple[Path, List[str]]:
    """The case's own working folder (its output folder inside) and its argument list."""
    work = root / case.id
    (work / "out").mkdir(parents=True)
    if case.id == "train-resume-truncated":  # a run folder whose resume checkpoint was cut short
        (work / "out" / "last.ckpt").write_bytes(bad["truncated_pt"].read_bytes())
    names = {key: str(path) for key, path in bad.items()}
    args = [a.format(out=work / "out", **names) for a in case.args]
    return work, args


def _run(case: Case, bad: Dict[str, Path], root: Path) -> dict:
    work, args = _prepare(case, bad, root)
    before = _files(work)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # several commands share the cores
    start = time.monotonic()
    # errors="replace": FFmpeg may echo bytes of a corrupt video to stderr
    try:
        proc = subprocess.run(_command(case.command) + args, cwd=work, env=env, capture_output=True, text=True,
                              errors="replace", timeout=TIME_LIMIT_S * 2)
        rc, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:  # reported by this case's test, not as an error of every case
        rc, stderr = None, f"killed after {TIME_LIMIT_S * 2:.0f} s"
    after = _files(work)
    new = sorted(k for k, t in after.items() if k not in before or before[k] != t)
    return {"rc": rc, "stderr": stderr, "seconds": time.monotonic() - start, "new": new}


@pytest.fixture(scope="module")
def results(bad_files, tmp_path_factory) -> Dict[str, dict]:
    root = tmp_path_factory.mktemp("runs")
    # the heavy (torch) commands first, so the light ones fill the gaps
    order = sorted(CASES, key=lambda c: c.command not in ("hsst-train", "hsst-export"))
    with ThreadPoolExecutor(max_workers=max(2, min(4, (os.cpu_count() or 2) + 1))) as pool:
        futures = {case.id: pool.submit(_run, case, bad_files, root) for case in order}
        return {key: future.result() for key, future in futures.items()}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_is_one_clear_error(case: Case, results):
    got = results[case.id]
    lines = [line for line in got["stderr"].splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    assert got["rc"] not in (0, None), f"{case.command}: exit {got['rc']} on bad input:\n{got['stderr'][-2000:]}"
    assert "Traceback" not in got["stderr"], got["stderr"][-3000:]
    assert re.search(case.expect, last), f"last line of stderr does not name the problem: {last!r}"
    assert got["seconds"] < TIME_LIMIT_S, f"took {got['seconds']:.1f} s (retried instead of failing?)"
    leftovers = [n for n in got["new"] if Path(n).name not in ALLOWED]
    assert not leftovers, f"wrote {leftovers} although it failed"
