"""Python API: enrol VIS photos, identify the faces of single images (no camera, no threads).

    python examples/identify_api.py --model model.onnx --enroll enrol/ probe1.jpg probe2.png

``enrol/`` holds ``<identity>/*.jpg`` (or ``<identity>.jpg``). Without --model the shipped default model is used.
"""
import argparse
import json

from hsst.core.image import read_image
from hsst.runtime import GatePipeline, load_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="firmware_configs/laptop-cpu.yaml")
    parser.add_argument("--model", default=None)
    parser.add_argument("--enroll", required=True)
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()

    overrides = {"embedder.model": args.model} if args.model else {}
    gate = GatePipeline(load_config(args.config, overrides))
    for result in gate.enroll_dir(args.enroll):
        if not result.accepted:
            print(f"rejected {result.path}: {result.reason}")
    for path in args.images:
        faces = gate.identify(read_image(path))     # one dict per face: identity, score, accepted, candidates
        print(json.dumps({"image": path, "faces": faces}, indent=2))
    gate.close()


if __name__ == "__main__":
    main()
