"""The README's main job: enrol a VIS photo, then identify a simulated masked NIR version of it.

    python examples/quickstart.py [--config firmware_configs/laptop-cpu.yaml] [--out build/quickstart]

The photo is scikit-image's bundled astronaut portrait (Eileen Collins), found through the package's metadata;
the probe is made from it with the mask synthesis and the **simulated** NIR of ``hsst.synth``. It runs the
shipped default model through the same GatePipeline the gate uses, and prints the decision as JSON.
"""
import argparse
import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np

from hsst.core.image import read_image
from hsst.runtime import GatePipeline, load_config
from hsst.samples import sample_face_path
from hsst.synth import MaskedNirTransform

logger = logging.getLogger("quickstart")


def make_probe(photo: Path, out: Path, seed: int) -> Path:
    """Write a simulated-NIR, synthetically masked version of ``photo`` (8-bit gray PNG)."""
    transform = MaskedNirTransform(types=("surgical",), aligned=False)
    probe = transform(read_image(photo), np.random.default_rng(seed))
    if transform.stats["masked"] != 1:
        raise RuntimeError(f"no face found in {photo} for the mask synthesis")
    path = out / "probe_masked_simulated_nir.png"
    cv2.imwrite(str(path), probe)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="firmware_configs/laptop-cpu.yaml")
    parser.add_argument("--out", default="build/quickstart", help="where the enrolment photo and probe are written")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    out = Path(args.out)
    (out / "enrol").mkdir(parents=True, exist_ok=True)
    photo = sample_face_path("Eileen_Collins")
    shutil.copyfile(photo, out / "enrol" / "Eileen_Collins.png")   # <identity>.png: one VIS enrolment photo
    probe = make_probe(photo, out, args.seed)
    logger.info("enrolment photo %s, probe %s (simulated NIR, synthesized mask)", out / "enrol", probe)

    gate = GatePipeline(load_config(args.config))
    try:
        for result in gate.enroll_dir(out / "enrol"):
            if not result.accepted:
                raise SystemExit(f"enrolment rejected {result.path}: {result.reason}")
        faces = gate.identify(read_image(probe))
    finally:
        gate.close()
    print(json.dumps({"probe": str(probe), "faces": faces}, indent=2))
    for i, face in enumerate(faces, 1):
        if not face["quality"]["passed"]:
            logger.info("face %d: skipped by the quality gate (%s)", i, "; ".join(face["quality"]["reasons"]))
        elif face["accepted"]:
            logger.info("face %d: ACCEPTED as %s (cosine %.3f >= %.3f, the threshold for FAR %g)", i,
                        face["identity"], face["score"], face["threshold"], face["far"])
        else:
            logger.info("face %d: unknown (best cosine %.3f < %.3f)", i, face["score"], face["threshold"])


if __name__ == "__main__":
    main()
