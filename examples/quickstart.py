"""The README's main job: enrol a VIS photo into an encrypted gallery, then identify a simulated masked NIR
version of it.

    python examples/quickstart.py [--config firmware_configs/laptop-cpu.yaml] [--out build/quickstart]

The photo is scikit-image's bundled astronaut portrait (Eileen Collins), found through the package's metadata;
the probe is made from it with the mask synthesis and the **simulated** NIR of ``hsst.synth``. The photo is
enrolled through the firmware API (``hsst.Gate``) into an encrypted gallery store (``gallery.path``) created in a
temporary folder with a freshly generated data key; a second gate then opens that store (the templates come back
from the file, decrypted with the key) and identifies the probe with the shipped default model through the same
pipeline the streaming gate uses. The decision is printed as JSON.
"""
import argparse
import json
import logging
import tempfile
from pathlib import Path

import cv2
import numpy as np

import hsst
from hsst.core.image import read_image
from hsst.gallery import generate_keys
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
    parser.add_argument("--out", default="build/quickstart", help="where the probe is written")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photo = sample_face_path("Eileen_Collins")
    probe = make_probe(photo, out, args.seed)
    logger.info("enrolment photo %s, probe %s (simulated NIR, synthesized mask)", photo, probe)

    with tempfile.TemporaryDirectory(prefix="hsst-quickstart-") as tmp:
        generate_keys(Path(tmp) / "keys", signing=False)          # data.key (0600): what `hsst-gallery keygen` makes
        store = {"gallery.path": str(Path(tmp) / "gallery.db"), "gallery.keys_dir": str(Path(tmp) / "keys")}
        gate = hsst.Gate.from_config(args.config, store)         # creates the store, bound to the model's hash
        try:
            report = gate.enroll("Eileen_Collins", [photo], name="Eileen Collins")
        finally:
            gate.close()
        if not report.accepted:
            raise SystemExit(f"enrolment refused {photo}: {report.photos[0].reason}")
        logger.info("enrolled Eileen_Collins into the encrypted store %s (%d template)", store["gallery.path"],
                    report.templates)
        gate = hsst.Gate.from_config(args.config, store)         # a new gate: the template comes from the file
        try:
            far = gate.config.decision.far
            faces = [dict(match.to_dict(), far=far) for match in gate.identify(probe)]
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
