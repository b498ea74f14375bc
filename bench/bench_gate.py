"""End-to-end gate speed at 640x480: hsst's pipeline (onnxruntime, this CPU) vs the dlib face_recognition
pipeline, on the same frames, in the same run.

Frames: real LFW people (synthesized masks, simulated NIR) entering, standing and leaving a 640x480 gray
scene, with 1 face and with 3 faces at a time (see tests/runtime/conftest.py:SceneBuilder).

Measured for hsst (model from --model, else the shipped default):
* throughput: frames/s of the threaded pipeline fed as fast as it takes them (no drops), and of the same
  stages run sequentially in one thread (``process``);
* live latency: frames paced at 30 fps from a live source (drop-oldest on), face appears -> decision p95 and
  capture -> frame done p95, dropped frames.
Baseline: face_recognition's steps done directly with dlib (HOG detector, 5-point shape predictor, ResNet
descriptor from face_recognition_models, Euclidean match), sequential like face_recognition itself.

Goals: >= 30 fps sustained, p95 face->decision <= 100 ms, >= 10x the dlib pipeline's frame rate.
"face->decision" starts at the first detection of the track (a face still walking in at the frame edge);
"usable face->decision" at the first frame whose face passed the quality gate.

Usage:
    OMP_NUM_THREADS=1 python bench/bench_gate.py [--model m.onnx] [--frames 150] [--dlib-frames 20]
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import List, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

from hsst.samples import shared_dir
from hsst.core.errors import ModelError  # noqa: E402
from hsst.face.cropper import FaceCropper  # noqa: E402
from hsst.runtime.config import GateConfig  # noqa: E402
from hsst.runtime.embedder import Embedder  # noqa: E402
from hsst.runtime.model_files import default_embedding_model  # noqa: E402
from hsst.runtime.pipeline import GatePipeline, create_face_finder  # noqa: E402
from hsst.runtime.quality import QualityAssessor  # noqa: E402
from hsst.runtime.sources import FrameSource  # noqa: E402

logger = logging.getLogger("bench_gate")
GOAL_FPS, GOAL_P95_MS, GOAL_RATIO = 30.0, 100.0, 10.0


class MemorySource(FrameSource):
    """Decoded frames from memory; ``fps`` paces them like a live camera (None: as fast as they are taken)."""

    def __init__(self, frames: List[np.ndarray], fps: Optional[float] = None) -> None:
        super().__init__("memory")
        self.frames, self.fps, self.pos = frames, fps, 0
        self.is_live = fps is not None
        self._next = None

    def open(self) -> None:
        self.pos, self._next = 0, None

    def read(self) -> Optional[np.ndarray]:
        if self.pos >= len(self.frames):
            return None
        if self.fps:
            now = time.monotonic()
            self._next = now if self._next is None else self._next + 1.0 / self.fps
            if self._next > now:
                time.sleep(self._next - now)
        self.pos += 1
        return self.frames[self.pos - 1]


def resolve_model(arg: Optional[str]) -> tuple:
    if arg:
        return Path(arg), "given"
    try:
        return default_embedding_model(), "shipped default"
    except ModelError as exc:
        raise SystemExit(str(exc)) from None


def usable_people(lfw: Path, builder, count: int) -> list:
    """People whose masked simulated-NIR face the detector finds and the quality gate passes on a still frame.

    Detection and landmark accuracy on masked NIR are measured elsewhere (bench_detect.py, tests); this bench
    measures speed and latency, so it uses faces the gate can decide on.
    """
    from hsst.synth.scene import identity_photos as lfw_people

    cropper = FaceCropper(create_face_finder(GateConfig().detector), quality=QualityAssessor(GateConfig().quality))
    chosen = []
    for name, files in lfw_people(lfw, 4, 60, skip=40):
        face = builder.face_image(files[0])
        frame = builder.background.copy()
        p = face.shape[0]
        y, x = (frame.shape[0] - p) // 2, (frame.shape[1] - p) // 2
        frame[y:y + p, x:x + p] = face
        boxes, scores, aux = cropper.finder.boxes(frame)
        if len(boxes) != 1:
            continue
        if cropper.track_face(frame, boxes[0], scores[0], aux[0]).quality.passed:
            chosen.append((name, files))
        if len(chosen) == count:
            break
    return chosen


def render(lfw: Path, faces: int, frames: int, workdir: Path, seed: int) -> tuple:
    from hsst.synth.scene import Appearance, SceneBuilder

    builder = SceneBuilder(seed=seed, photo_px=200 if faces > 1 else 220)
    people = usable_people(lfw, builder, 12)
    # Faces pop in fully visible and stay 40 frames, then half a second without anyone: "face appears ->
    # decision" then measures the gate, not how long a face needs to slide into view.
    stand = 40
    cycle = stand + 2 + 15
    apps = []
    for i in range(max(1, frames // cycle + 1) * faces):
        name, files = people[i % len(people)]
        lane = i % faces if faces > 1 else 0
        start = (i // faces) * cycle + (lane * 6 if faces > 1 else 0)
        apps.append(Appearance(name, files[0], start=start, enter=1, stand=stand, leave=1, lane=lane))
    scene = builder.render(apps, workdir / f"scene{faces}.avi", fps=30.0)
    cap = cv2.VideoCapture(str(scene.path))
    out = []
    while len(out) < frames:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    # Gallery photos: each person's own face as it stands in the scene, so decisions happen whatever the
    # weights are (this bench measures speed and latency; accuracy is measured by tests and hsst-eval).
    enrol = {}
    for app in scene.appearances:
        mid = app.start + app.enter + app.stand // 2
        if app.identity in enrol or mid >= len(out):
            continue
        x1, y1, x2, y2 = (int(v) for v in app.boxes[mid])
        w, h = x2 - x1, y2 - y1
        crop = out[mid][max(0, y1 - h):y2 + h, max(0, x1 - w):x2 + w]
        enrol[app.identity] = cv2.copyMakeBorder(crop, 40, 40, 40, 40, cv2.BORDER_REPLICATE)
    return out, enrol, builder.masked


def make_gate(model: Path, enrol: dict, threads: int = 1) -> GatePipeline:
    cfg = GateConfig()
    cfg.decision.threshold = 0.5      # used only when the model has no FAR table
    cfg.decision.cooldown_s = 0.0
    cfg.pipeline.metrics_every_s = 0
    cfg.detector.threads = threads
    cfg.embedder.threads = threads
    gate = GatePipeline(cfg, embedder=Embedder.from_file(model, threads=threads),
                        finder=create_face_finder(cfg.detector))
    for name, image in enrol.items():
        # straight to the gallery (no enrolment quality gate: these are NIR frames, not VIS photos)
        faces = gate.cropper.faces(image)
        if faces:
            gate.gallery.add(name, gate.embedder.embed([faces[0].aligned]))
    return gate


def bench_hsst(model: Path, frames: List[np.ndarray], people) -> dict:
    out = {}
    gate = make_gate(model, people)
    for f in frames[:10]:                        # warm-up (onnxruntime arenas)
        gate.process(f)
    gate = make_gate(model, people)
    t0 = time.perf_counter()
    for f in frames:
        gate.process(f)
    out["sequential_fps"] = len(frames) / (time.perf_counter() - t0)

    gate = make_gate(model, people)
    gate.config.pipeline.drop_frames = False
    t0 = time.perf_counter()
    snap = gate.run(MemorySource(frames))
    out["threaded_fps"] = snap["counters"]["frames_processed"] / (time.perf_counter() - t0)

    gate = make_gate(model, people)
    snap = gate.run(MemorySource(frames, fps=30.0))
    c = snap["counters"]
    out["live30_processed"] = c.get("frames_processed", 0)
    out["live30_dropped"] = c.get("dropped_frames", 0) + c.get("dropped_work", 0)
    out["live30_fps"] = snap["fps"]
    out["face_to_decision_p95_ms"] = snap["latency"].get("face_to_decision", {}).get("p95_ms")
    out["face_to_decision_n"] = snap["latency"].get("face_to_decision", {}).get("n", 0)
    out["usable_to_decision_p95_ms"] = snap["latency"].get("usable_to_decision", {}).get("p95_ms")
    out["frame_latency_p95_ms"] = snap["latency"].get("frame_latency", {}).get("p95_ms")
    out["stages_p50_ms"] = {k: v["p50_ms"] for k, v in snap["latency"].items()}
    return out


def bench_dlib(frames: List[np.ndarray], people) -> Optional[float]:
    try:
        import dlib
    except ImportError:
        logger.warning("dlib not installed (pip install dlib-bin face-recognition-models): no baseline")
        return None
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        logger.warning("face_recognition_models not installed: no baseline")
        return None
    models = Path(spec.submodule_search_locations[0]) / "models"
    detector = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def encode(img):
        # face_recognition feeds RGB; the ResNet needs 3 channels, so gray frames are replicated
        rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        boxes = detector(rgb, 1)                 # face_recognition.face_locations default: upsample once
        return [np.array(encoder.compute_face_descriptor(rgb, shape(rgb, b), 1)) for b in boxes]

    gallery = [e for image in people.values() for e in encode(image)[:1]]
    gallery = np.array(gallery) if gallery else np.zeros((0, 128))
    t0 = time.perf_counter()
    for f in frames:
        for emb in encode(f):
            if len(gallery):
                np.linalg.norm(gallery - emb, axis=1) <= 0.6   # face_recognition.compare_faces
    return len(frames) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="embedding model (.onnx with sidecar)")
    parser.add_argument("--lfw", default=str(shared_dir() / "datasets" / "lfw"))
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--dlib-frames", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        model, origin = resolve_model(args.model)
        print(f"model: {model.name} [{origin}]; frames: 640x480 gray, simulated NIR, LFW faces; "
              f"cpu cores: {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
        for faces in (1, 3):
            frames, enrol, masked = render(Path(args.lfw), faces, args.frames, Path(tmp), seed=faces)
            r = bench_hsst(model, frames, enrol)
            dlib_fps = bench_dlib(frames[:args.dlib_frames], enrol)
            print(f"\n== {faces} face(s), {len(frames)} frames ({masked} masked appearances), "
                  f"{len(enrol)} people ==")
            print(f"hsst threaded   : {r['threaded_fps']:7.1f} fps   (goal >= {GOAL_FPS:.0f})")
            print(f"hsst sequential : {r['sequential_fps']:7.1f} fps   (one thread, all stages)")
            print(f"hsst live 30fps : {r['live30_fps']:7.1f} fps, processed {r['live30_processed']}, dropped "
                  f"{r['live30_dropped']}; face->decision p95 {r['face_to_decision_p95_ms']} ms over "
                  f"{r['face_to_decision_n']} decisions (goal <= {GOAL_P95_MS:.0f}); usable face->decision p95 "
                  f"{r['usable_to_decision_p95_ms']} ms; capture->done p95 {r['frame_latency_p95_ms']} ms")
            print(f"stage p50 ms    : {r['stages_p50_ms']}")
            if dlib_fps:
                print(f"dlib baseline   : {dlib_fps:7.2f} fps   (HOG + 5-pt + ResNet, sequential, "
                      f"{min(args.dlib_frames, len(frames))} frames)")
                print(f"ratio           : threaded {r['threaded_fps'] / dlib_fps:5.1f}x, sequential "
                      f"{r['sequential_fps'] / dlib_fps:5.1f}x   (goal >= {GOAL_RATIO:.0f}x)")


if __name__ == "__main__":
    main()
