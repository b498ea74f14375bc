"""Check the converted ONNX face models against the original tflite files on real faces.

Needs a tflite interpreter, which hsst itself never needs: ``ai-edge-litert`` (or ``tflite-runtime``), e.g.
``pip install --target /tmp/litert --no-deps ai-edge-litert`` and ``PYTHONPATH=/tmp/litert``.
Feeds the first image of ``--num`` LFW identity folders (resized to each model's input, in the model's
input range) to both and reports the largest absolute output difference per model.

Usage:
    PYTHONPATH=/tmp/litert python tools/check_face_onnx_parity.py --data ../shared/datasets/lfw --num 20
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from hsst.samples import shared_dir
from hsst.core.image import read_image
from hsst.face.weights import create_session, package_file

logger = logging.getLogger("check_face_onnx_parity")
# model -> input value range
MODELS = {"blazeface_full": (-1.0, 1.0), "blazeface_short": (-1.0, 1.0), "face_mesh": (0.0, 1.0)}


def _interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise SystemExit("needs a tflite interpreter: pip install --target /tmp/litert --no-deps ai-edge-litert "
                             "and PYTHONPATH=/tmp/litert") from None
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    return interp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=shared_dir() / "datasets" / "lfw")
    parser.add_argument("--num", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folders = sorted(p for p in args.data.iterdir() if p.is_dir())[:args.num]
    images = [cv2.cvtColor(read_image(sorted(f.iterdir())[0]), cv2.COLOR_BGR2RGB) for f in folders]
    for name, (lo, hi) in MODELS.items():
        interp = _interpreter(package_file(name))
        session = create_session(name, threads=1)
        inp = interp.get_input_details()[0]
        size = int(inp["shape"][1])
        worst, scale = 0.0, 0.0
        for rgb in images:
            x = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
            x = (x * (hi - lo) + lo)[None]
            interp.set_tensor(inp["index"], x)
            interp.invoke()
            ref = [interp.get_tensor(o["index"]) for o in interp.get_output_details()]
            got = session.run(None, {session.get_inputs()[0].name: x.transpose(0, 3, 1, 2)})
            for a, b in zip(ref, got):
                worst = max(worst, float(np.abs(a.reshape(b.shape) - b).max()))
                scale = max(scale, float(np.abs(a).max()))
        logger.info("%-16s %d real faces: max |tflite - onnx| = %.2e (outputs up to %.1f)", name, len(images), worst,
                    scale)


if __name__ == "__main__":
    main()
