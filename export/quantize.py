"""onnxruntime INT8 for x86 gates (``hsst-export --format onnx-int8 --data DIR``) and Q/DQ ONNX for TensorRT.

Static quantisation calibrated on aligned faces: weights int8 per output channel, activations uint8
(x86: the u8 x s8 VNNI path). For onnxruntime the float graph first gets PRelu rewritten as Relu + depthwise
1x1 convolutions (:func:`hsst.export.onnx_export.decompose_prelu`, exact), so every operator has an integer
kernel, and is quantised in QOperator format (QLinearConv / QLinearAdd end to end; QDQ leaves a
dequantise/requantise pair around every Relu that costs 30% of the time). For TensorRT (explicit quantisation,
required by TensorRT 11) the plain graph gets symmetric int8 Q/DQ nodes, as TensorRT demands.
The gate: embedding cosine against the FP32 ONNX on real faces, mean >= 0.99.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from hsst.core.errors import ConfigError, ModelError
from hsst.core.files import atomic_write_bytes
from hsst.export.calibration import FaceImageFolder
from hsst.export.parity import compare_embeddings

logger = logging.getLogger(__name__)

__all__ = ["QuantizeConfig", "FaceCalibrationReader", "quantize_onnx", "rank_sensitive_convs",
           "MixedPrecision", "quantize_mixed"]


@dataclass
class QuantizeConfig:
    """Static INT8 quantisation settings.

    Attributes:
        target: ``onnxruntime`` (u8 activations, asymmetric) or ``tensorrt`` (s8, symmetric Q/DQ).
        per_channel: per-output-channel weight scales (recommended: depthwise convs differ per channel).
        method: calibration ``minmax`` (moving average of per-batch ranges), ``entropy`` or ``percentile``.
        batch: faces per calibration batch (1 for a static batch-1 model).
        exclude: node names left in float.
        fmt: ``qoperator`` or ``qdq``; default QOperator for onnxruntime, QDQ for TensorRT.
        reduce_range: 7-bit weights. Default (None): on for onnxruntime, off for TensorRT. x86 CPUs without VNNI
            (AVX2 only, e.g. many EPYC / Core parts) multiply u8 x s8 pairs with an instruction that saturates
            at int16, which full-range weights overflow: on this project's 2-core AVX2 machine the INT8 cosine to
            FP32 of an untrained MobileFaceNet fell from >= 0.99 to 0.979 and that of the MS1M MobileFaceNet from
            0.976 to 0.951. An INT8 file must also run on the gate's CPU, whatever it is.
    """

    target: str = "onnxruntime"
    per_channel: bool = True
    method: str = "minmax"
    batch: int = 1
    exclude: Sequence[str] = ()
    fmt: Optional[str] = None
    reduce_range: Optional[bool] = None

    @property
    def quant_format(self) -> str:
        return self.fmt or ("qdq" if self.target == "tensorrt" else "qoperator")


class FaceCalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over aligned faces (duck-typed: ``get_next`` / ``rewind``)."""

    def __init__(self, faces: np.ndarray, input_name: str, batch: int = 1) -> None:
        if faces.ndim != 4 or faces.shape[0] < batch:
            raise ConfigError(f"calibration needs at least {batch} faces as (N, C, S, S), got {faces.shape}")
        n = faces.shape[0] - faces.shape[0] % batch
        self._batches = [np.ascontiguousarray(faces[i:i + batch]) for i in range(0, n, batch)]
        self._name = input_name
        self._pos = 0

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self._pos >= len(self._batches):
            return None
        self._pos += 1
        return {self._name: self._batches[self._pos - 1]}

    def rewind(self) -> None:
        self._pos = 0

    def __len__(self) -> int:
        return len(self._batches)


def _float_graph(fp32_path: Path, tmp: Path, trt: bool) -> Path:
    """The float graph the quantiser reads: for onnxruntime, PRelus with slopes in [-1, 1] rewritten as Relu +
    depthwise convolutions (integer kernels); TensorRT keeps its native PRelu."""
    if trt:
        return fp32_path
    import onnx

    from hsst.export.onnx_export import decompose_prelu

    proto = onnx.load(str(fp32_path))
    if not decompose_prelu(proto, max_slope=1.0):
        return fp32_path
    onnx.save(proto, str(tmp / "cpu.onnx"))
    return tmp / "cpu.onnx"


def _float_ops(model_path: Path) -> List[str]:
    import onnx

    proto = onnx.load(str(model_path), load_external_data=False)
    return sorted({n.op_type for n in proto.graph.node})


def quantize_onnx(fp32_path: Union[str, Path], out_path: Union[str, Path], faces: Union[np.ndarray, FaceImageFolder],
                  input_name: str = "input", config: QuantizeConfig = QuantizeConfig()) -> Path:
    """Write a static INT8 (QDQ) copy of ``fp32_path`` calibrated on ``faces``.

    Args:
        fp32_path: the float32 ONNX (as exported by :func:`hsst.export.onnx_export.export_onnx`).
        out_path: the INT8 ONNX to write.
        faces: (N, C, S, S) network input, or a :class:`FaceImageFolder`.
        input_name: graph input name.
        config: quantisation settings.

    Returns:
        ``out_path``.
    """
    try:
        from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ConfigError(f"onnxruntime quantisation tools are missing ({exc}); pip install onnxruntime") from None
    if config.target not in ("onnxruntime", "tensorrt"):
        raise ConfigError(f"unknown quantisation target {config.target!r}; use onnxruntime or tensorrt")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if config.method not in methods:
        raise ConfigError(f"unknown calibration method {config.method!r}; use one of {sorted(methods)}")
    x = faces.tensor() if isinstance(faces, FaceImageFolder) else np.asarray(faces, dtype=np.float32)
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    reader = FaceCalibrationReader(x, input_name, batch=config.batch)
    trt = config.target == "tensorrt"
    # A moving average of per-batch activation ranges instead of the global extremes: a few outlier faces no
    # longer stretch the int8 grid (mean cosine to FP32 0.991 -> 0.993 on LFW / ORL faces).
    extra = {"ActivationSymmetric": trt, "WeightSymmetric": True, "CalibMovingAverage": config.method == "minmax"}
    if config.quant_format not in ("qoperator", "qdq"):
        raise ConfigError(f"unknown quantisation format {config.fmt!r}; use qoperator or qdq")
    if trt and config.quant_format != "qdq":
        raise ConfigError("TensorRT reads INT8 only as Q/DQ nodes: use fmt='qdq' with target='tensorrt'")
    with tempfile.TemporaryDirectory(prefix="hsst-quant-") as tmp:
        source = _float_graph(fp32_path, Path(tmp), trt)
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(source), str(pre), skip_optimization=True, skip_symbolic_shape=True)
        except Exception as exc:  # pre-processing is an optimisation; quantise the original if it fails
            logger.warning("onnxruntime quantisation pre-processing failed (%s); quantising %s as is", exc, source)
            pre = source
        tmp_out = Path(tmp) / "int8.onnx"
        fmt = QuantFormat.QDQ if config.quant_format == "qdq" else QuantFormat.QOperator
        quantize_static(str(pre), str(tmp_out), reader, quant_format=fmt,
                        per_channel=config.per_channel, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QInt8 if trt else QuantType.QUInt8,
                        calibrate_method=methods[config.method], nodes_to_exclude=list(config.exclude),
                        reduce_range=not trt if config.reduce_range is None else config.reduce_range,
                        extra_options=extra)
        if not tmp_out.is_file():
            raise ModelError(f"onnxruntime quantisation wrote nothing for {fp32_path}")
        atomic_write_bytes(out_path, tmp_out.read_bytes())  # the temporary folder may be on another disk
    logger.info("wrote INT8 %s (%s, %s, %d calibration batches of %d; ops %s)", out_path, config.target,
                config.quant_format, len(reader), config.batch, ", ".join(_float_ops(out_path)))
    return out_path


def rank_sensitive_convs(fp32_path: Union[str, Path], faces: np.ndarray, input_name: str = "input",
                         config: QuantizeConfig = QuantizeConfig()) -> List[Tuple[str, float]]:
    """The convolutions of ``fp32_path`` ranked by the signal-to-quantisation-noise ratio each one loses in INT8.

    A Q/DQ copy (``config``'s settings) and the float graph both run ``faces`` with every intermediate tensor
    kept (onnxruntime's ``qdq_loss_debug``); per tensor, SQNR = float signal over the quantised path's deviation,
    in dB. A convolution's loss is the SQNR of its input (capped at its output's own rounding SQNR: an exact
    input does not make a layer look bad) minus that of its output. On the MS1M MobileFaceNet the stem's
    depthwise convolution loses 16 dB where a typical layer loses 0-3.

    Returns:
        ``[(node name, dB lost)]``, worst first.
    """
    from onnxruntime.quantization import qdq_loss_debug as dbg

    fp32_path = Path(fp32_path)
    x = np.asarray(faces, dtype=np.float32)
    feeds = [{input_name: x[i:i + 1]} for i in range(len(x))] if config.batch == 1 else \
        [{input_name: x[i:i + config.batch]} for i in range(0, len(x) - len(x) % config.batch, config.batch)]
    with tempfile.TemporaryDirectory(prefix="hsst-sqnr-") as tmp:
        tmp_dir = Path(tmp)
        source = _float_graph(fp32_path, tmp_dir, config.target == "tensorrt")
        qdq = quantize_onnx(source, tmp_dir / "qdq.onnx", x, input_name=input_name, config=replace(config, fmt="qdq"))
        dbg.modify_model_output_intermediate_tensors(str(source), str(tmp_dir / "float_all.onnx"))
        dbg.modify_model_output_intermediate_tensors(str(qdq), str(tmp_dir / "qdq_all.onnx"))
        matched = dbg.create_activation_matching(dbg.collect_activations(str(tmp_dir / "qdq_all.onnx"), feeds),
                                                 dbg.collect_activations(str(tmp_dir / "float_all.onnx"), feeds))
        import onnx

        convs = [n for n in onnx.load(str(source), load_external_data=False).graph.node if n.op_type == "Conv"]
    sqnr: Dict[str, float] = {}
    own: Dict[str, float] = {}
    for name, m in matched.items():
        if "float" in m and "pre_qdq" in m:
            sqnr[name] = float(dbg.compute_signal_to_quantization_noice_ratio(m["float"], m["pre_qdq"]))
            if "post_qdq" in m:
                own[name] = float(dbg.compute_signal_to_quantization_noice_ratio(m["pre_qdq"], m["post_qdq"]))
    ranked = []
    for node in convs:
        src, out = node.input[0], node.output[0]
        if out not in sqnr:
            continue
        ceiling = own.get(out, sqnr.get(src, np.inf))
        ranked.append((node.name, min(sqnr.get(src, np.inf), ceiling) - sqnr[out]))
    return sorted(ranked, key=lambda item: -item[1])


@dataclass
class MixedPrecision:
    """What :func:`quantize_mixed` settled on.

    Attributes:
        float_layers: convolutions left in float32 (most sensitive first).
        cosine: mean embedding cosine to FP32 on the check faces with them.
        tried: ``(float layer count, cosine)`` per quantisation made.
    """

    float_layers: List[str]
    cosine: float
    tried: List[Tuple[int, float]]


#: How many convolutions :func:`quantize_mixed` leaves in float32, step by step (see :func:`_float_candidates`).
FLOAT_LAYER_STEPS = (0, 2, 3, 4, 5, 6, 8)


def _float_candidates(fp32_path: Path, faces: np.ndarray, input_name: str, config: QuantizeConfig) -> List[str]:
    """Convolutions in the order they are left in float32: the first and the last (the one reading the image and
    the one writing the embedding, whose uint8 output rounding lands on the embedding unfiltered: the usual
    mixed-precision choice), then the rest by the signal they lose (:func:`rank_sensitive_convs`)."""
    import onnx

    convs = [n.name for n in onnx.load(str(fp32_path), load_external_data=False).graph.node if n.op_type == "Conv"]
    ends = list(dict.fromkeys(convs[:1] + convs[-1:]))
    ranked = [name for name, _ in rank_sensitive_convs(fp32_path, faces, input_name, config)]
    return ends + [name for name in ranked if name not in ends]


def quantize_mixed(fp32_path: Union[str, Path], out_path: Union[str, Path], faces: np.ndarray,
                   embed: Callable[[Path], np.ndarray], target_cosine: float, input_name: str = "input",
                   config: QuantizeConfig = QuantizeConfig(), steps: Optional[Sequence[int]] = None
                   ) -> MixedPrecision:
    """INT8 with as few float32 convolutions as keep the embeddings within ``target_cosine`` of FP32.

    Quantises everything first; while the mean cosine of ``embed(out_path)`` to ``embed(fp32_path)`` stays below
    ``target_cosine``, leaves the first ``steps[i]`` convolutions of :func:`_float_candidates` in float32 and
    quantises again. ``embed`` should run faces apart from the ones the export gate judges, so the gate stays an
    independent check. The last file written stays at ``out_path``.

    Args:
        faces: calibration faces (N, C, S, S); the first 64 also rank the convolutions.
        embed: embeddings of the check faces from an ONNX file (the caller's runner: batch, static shapes).
        target_cosine: mean cosine to reach.
        steps: float32 convolution counts to try in order (None: :data:`FLOAT_LAYER_STEPS`).
    """
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    reference = embed(fp32_path)
    ranked: Optional[List[str]] = None
    tried: List[Tuple[int, float]] = []
    layers: List[str] = []
    for count in FLOAT_LAYER_STEPS if steps is None else steps:
        if count and ranked is None:
            ranked = _float_candidates(fp32_path, faces[:64], input_name, config)
        layers = list(ranked[:count]) if count else []
        quantize_onnx(fp32_path, out_path, faces, input_name=input_name,
                      config=replace(config, exclude=tuple(config.exclude) + tuple(layers)))
        cosine = compare_embeddings(reference, embed(out_path), "onnx-int8").cosine_mean
        tried.append((len(layers), cosine))
        logger.info("INT8 with %d float32 convolution(s)%s: mean cosine to FP32 %.4f on %d check faces (target %.2f)",
                    len(layers), f" ({', '.join(layers)})" if layers else "", cosine, len(reference), target_cosine)
        if cosine >= target_cosine or (ranked is not None and count >= len(ranked)):
            break
    return MixedPrecision(layers, tried[-1][1], tried)

