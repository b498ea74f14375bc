"""Enrol and identify with an encrypted gallery store, through the commands and through the Python API.

    python examples/enroll_and_identify.py
    python examples/enroll_and_identify.py ../shared/datasets/lfw/Colin_Powell/Colin_Powell_0002.jpg \\
        ../shared/datasets/lfw/Colin_Powell/Colin_Powell_0003.jpg --probe ../shared/datasets/lfw/Colin_Powell/Colin_Powell_0005.jpg

PHOTOS are VIS enrolment photos of one person (one face each); without them, the bundled sample photo
(scikit-image's astronaut portrait of Eileen Collins, ``pip install 'hsst[examples]'``). The identity is ``--id``,
else the photos' folder name (``<identity>/*.jpg``, the LFW layout), else Eileen_Collins for the sample. The
probe is ``--probe``, else a simulated NIR, synthetically masked version of the first photo.

Everything happens in a temporary folder (``--keep DIR`` keeps it):

1. Commands: ``hsst-gallery keygen`` makes a data key, ``hsst-enroll`` enrols PHOTOS into the store named by
   ``gallery.path`` of a small gate config, ``hsst-identify`` identifies the probe from that store.
2. Python API (``hsst.Gate``), on a second store with the same key: enrol, run the streaming gate on a folder of
   frames with a decision callback, identify the probe, remove the identity, identify again.

One line per result. The config written holds only the ``gallery`` section; everything else is the default
(the shipped model, FAR 1e-3).
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

import cv2
import numpy as np

import hsst
from hsst.core.image import read_image


def command(name: str) -> str:
    """A console script of hsst: beside this Python (a venv that is not activated), else on the PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install hsst (pip install -e .) in this Python's environment")
    return found


def run(*args: str) -> str:
    """Run an hsst command; its stdout, or exit with its error."""
    proc = subprocess.run([command(args[0]), *args[1:]], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def face_line(where: str, i: int, face: dict) -> str:
    """One identified face as one line."""
    if not face["quality"]["passed"]:
        return f"{where}: face {i} skipped by the quality gate ({'; '.join(face['quality']['reasons'])})"
    if face["accepted"]:
        return f"{where}: face {i} ACCEPTED as {face['identity']} (cosine {face['score']:.3f} >= {face['threshold']:.3f})"
    score = "empty gallery" if face["score"] is None else f"best cosine {face['score']:.3f} < {face['threshold']:.3f}"
    return f"{where}: face {i} unknown ({score})"


def make_probe(photo: Path, path: Path) -> Path:
    """A simulated NIR version of ``photo`` with a synthesized surgical mask (8-bit gray PNG)."""
    from hsst.synth import MaskedNirTransform

    transform = MaskedNirTransform(types=("surgical",), aligned=False)
    probe = transform(read_image(photo), np.random.default_rng(0))
    if transform.stats["masked"] != 1:
        raise SystemExit(f"no face found in {photo} for the mask synthesis; pass --probe IMAGE")
    cv2.imwrite(str(path), probe)
    return path


def with_commands(config: Path, keys: Path, identity: str, photos: List[Path], probe: Path) -> None:
    """Key, enrolment and identification through hsst-gallery, hsst-enroll and hsst-identify."""
    run("hsst-gallery", "keygen", "--out", str(keys), "--no-signing")   # data.key (0600); a station adds signing
    print(f"hsst-gallery keygen: data key {keys / 'data.key'}")
    report = json.loads(run("hsst-enroll", "--config", str(config), "--id", identity, "--json", *map(str, photos)))
    refused = [f"{r['path']}: {r['reason']}" for r in report["photos"] if not r["accepted"]]
    print(f"hsst-enroll: {identity}: {report['templates']} template(s) stored"
          + (f", refused {'; '.join(refused)}" if refused else ""))
    for line in run("hsst-identify", "--config", str(config), str(probe)).splitlines():
        for i, face in enumerate(json.loads(line)["faces"], 1):
            print(face_line("hsst-identify", i, face))


def with_the_api(config: Path, work: Path, identity: str, photos: List[Path], probe: Path) -> None:
    """The same through ``hsst.Gate``, plus the streaming gate on a folder of frames with a callback."""
    frames = work / "frames"
    frames.mkdir()
    for i in range(4):  # a person standing at the gate for four frames
        shutil.copyfile(probe, frames / f"{i:03d}{probe.suffix}")
    overrides = {"gallery.path": str(work / "api-gallery.db"),     # a second store, same key
                 "source.uri": f"file://{frames}/", "source.fps": None, "pipeline.metrics_every_s": 0}
    gate = hsst.Gate.from_config(config, overrides)
    try:
        report = gate.enroll(identity, photos, name=identity.replace("_", " "))
        print(f"Gate.enroll: {identity}: {report.templates} template(s) stored"
              + "".join(f", refused {r.path}: {r.reason}" for r in report.photos if not r.accepted))

        @gate.on_decision  # runs on the gate's callback thread, never the capture thread
        def show(event: hsst.Event) -> None:
            if event.kind == "accept":
                print(f"on_decision: accept {event.identity} (cosine {event.score:.3f}, track {event.track_id}, "
                      f"frame {event.frame_index})")
            elif event.kind == "unknown":
                print(f"on_decision: unknown person on track {event.track_id}")
            else:
                print(f"on_decision: source: {event.message}")

        gate.start()
        gate.wait(timeout=60)   # a folder of frames ends; a camera runs until gate.stop()
        gate.stop()             # delivers the queued decisions before returning
        for i, match in enumerate(gate.identify(probe), 1):
            print(face_line("Gate.identify", i, match.to_dict()))
        print(f"Gate.remove: {identity}: {'removed' if gate.remove(identity) else 'not enrolled'}")
        for i, match in enumerate(gate.identify(probe), 1):
            print(face_line("Gate.identify after remove", i, match.to_dict()))
    finally:
        gate.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", type=Path, help="VIS enrolment photos of one person (default: sample)")
    parser.add_argument("--id", dest="identity", default=None, help="identity id (default: the photos' folder)")
    parser.add_argument("--probe", type=Path, default=None, help="image to identify (default: masked NIR of photo 1)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args()

    if args.photos:
        photos, identity = args.photos, args.identity or args.photos[0].resolve().parent.name
    else:
        from hsst.samples import sample_face_path

        photos, identity = [sample_face_path("Eileen_Collins")], args.identity or "Eileen_Collins"
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="hsst-example-")
    work = Path(args.keep or tmp.name)
    try:
        work.mkdir(parents=True, exist_ok=True)
        probe = args.probe or make_probe(photos[0], work / "probe_masked_simulated_nir.png")
        keys = work / "keys"
        config = work / "gate.yaml"
        config.write_text(f"gallery:\n  path: {json.dumps(str(work / 'gallery.db'))}\n"
                          f"  keys_dir: {json.dumps(str(keys))}\n", encoding="utf-8")
        with_commands(config, keys, identity, photos, probe)
        with_the_api(config, work, identity, photos, probe)
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
