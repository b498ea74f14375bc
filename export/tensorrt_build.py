"""ONNX -> TensorRT engine with the TensorRT Python API, across the three API generations found on Jetsons.

=========  ===============================  ===========================================================
api        TensorRT                          what differs
=========  ===============================  ===========================================================
``8.2``    8.0-8.4 (Nano, JetPack 4.6)       bindings runtime API; ``max_workspace_size`` before 8.4;
                                             explicit-batch network flag; no fast INT8 on the Nano
``8.5``    8.5-10.x (JetPack 5, 6)           named tensors; ``set_memory_pool_limit``; INT8 by
                                             ``IInt8EntropyCalibrator2`` (deprecated since 10.1, working)
``11``     11.x                              strongly typed only: no FP16/INT8 flags, no calibrators;
                                             FP16 from an AutoCast ONNX, INT8 from a Q/DQ ONNX
=========  ===============================  ===========================================================

The engine file holds plain TensorRT bytes (trtexec and C++ loaders read it); everything else is in its
JSON sidecar. A timing cache per TensorRT version and GPU makes rebuilds fast.
"""
from __future__ import annotations

import logging
import re
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple, Union

from hsst.core.files import atomic_write_bytes
from hsst.core.errors import ConfigError, ModelError
from hsst.export.calibration import FaceImageFolder, make_entropy_calibrator
from hsst.core.backends.cuda import CudaContext, cuda_device_name, import_tensorrt

logger = logging.getLogger(__name__)

__all__ = ["api_generation", "trt_version_tag", "device_tag", "engine_filename", "timing_cache_path",
           "EngineBuildConfig", "EngineBuild", "build_engine", "onnx_has_qdq", "autocast_fp16_command",
           "layer_placement", "AUTOCAST_OPTIONS"]

PRECISIONS = ("fp32", "fp16", "int8")


def _version(version: str) -> Tuple[int, int, int]:
    nums = [int(re.sub(r"\D.*", "", p) or 0) for p in str(version).split(".")[:3]]
    return tuple(nums + [0] * (3 - len(nums)))  # type: ignore[return-value]


def api_generation(version: str) -> str:
    """``8.2`` (TensorRT < 8.5: bindings), ``8.5`` (8.5-10.x: named tensors, calibrators) or ``11``."""
    major, minor, _ = _version(version)
    if major >= 11:
        return "11"
    if major < 8:
        raise ConfigError(f"TensorRT {version} is older than 8.0, which hsst does not support; use JetPack >= 4.6")
    return "8.5" if (major, minor) >= (8, 5) else "8.2"


def trt_version_tag(version: str) -> str:
    """Compact version for file names, as ``NV_TENSORRT_VERSION`` (8.2.1 -> ``8201``, 10.3.0 -> ``100300``)."""
    major, minor, patch = _version(version)
    if major >= 10:
        return str(major * 10000 + minor * 100 + patch)
    return str(major * 1000 + minor * 100 + patch)


def device_tag(device: Tuple[str, Optional[int]]) -> str:
    """``("gpu", None)`` -> ``gpu``; ``("dla", 1)`` -> ``dla1``."""
    kind, core = device
    return "gpu" if kind == "gpu" else f"dla{core}"


def engine_filename(model: str, max_batch: int, trt_version: str, device: Union[str, Tuple[str, Optional[int]]],
                    precision: str) -> str:
    """``<model>.<maxbatch>.<trtver>.<device>.<precision>.engine`` (jetson-inference's scheme).

    >>> engine_filename("hsst-mobilefacenet-112", 8, "10.3.0.30", ("gpu", None), "fp16")
    'hsst-mobilefacenet-112.8.100300.gpu.fp16.engine'
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    if max_batch < 1:
        raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
    dev = device if isinstance(device, str) else device_tag(device)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", model).strip("-") or "model"
    return f"{stem}.{int(max_batch)}.{trt_version_tag(trt_version)}.{dev}.{precision}.engine"


def timing_cache_path(cache_dir: Union[str, Path], trt_version: str, device_name: str) -> Path:
    """One timing cache per TensorRT version and GPU: ``<dir>/timing.<trtver>.<gpu>.cache``."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", device_name or "gpu").strip("-").lower() or "gpu"
    return Path(cache_dir) / f"timing.{trt_version_tag(trt_version)}.{gpu}.cache"


def onnx_has_qdq(onnx_path: Union[str, Path]) -> bool:
    """True when the ONNX carries explicit quantisation (QuantizeLinear / DequantizeLinear nodes)."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node)


# One set of AutoCast options for the Python call and the printed command. keep_io_types: the engine keeps FP32
# inputs and outputs, which the runtime feeds and reads (an FP16 input would be refused).
AUTOCAST_OPTIONS = {"low_precision_type": "fp16", "keep_io_types": True}


def autocast_fp16_command(onnx_path: Union[str, Path], out_path: Union[str, Path]) -> str:
    """NVIDIA ModelOpt AutoCast: FP32 ONNX -> mixed FP16 ONNX (what TensorRT 11 needs for FP16), as a command."""
    flags = " ".join(f"--{key}" if value is True else f"--{key} {value}" for key, value in AUTOCAST_OPTIONS.items())
    return f"python -m modelopt.onnx.autocast --onnx_path {onnx_path} --output_path {out_path} {flags}"


@dataclass
class EngineBuildConfig:
    """How to build one engine.

    Attributes:
        precision: ``fp32``, ``fp16`` or ``int8``.
        input_name: the ONNX input.
        chw: (C, H, W) of the input.
        profile: (min, opt, max) batch of a dynamic-batch ONNX; None for a static one.
        workspace_gib: builder workspace limit (None: TensorRT's default, the device memory).
        device: ("gpu", None) or ("dla", core).
        timing_cache: file of the timing cache (read if present, written after the build).
        calib_data: faces for implicit INT8 calibration (not needed for a Q/DQ ONNX).
        calib_cache: calibration cache file (reused when present).
        calib_batch: faces per calibration batch.
    """

    precision: str = "fp16"
    input_name: str = "input"
    chw: Tuple[int, int, int] = (1, 112, 112)
    profile: Optional[Tuple[int, int, int]] = None
    workspace_gib: Optional[float] = None
    device: Tuple[str, Optional[int]] = ("gpu", None)
    timing_cache: Optional[Path] = None
    calib_data: Optional[FaceImageFolder] = None
    calib_cache: Optional[Path] = None
    calib_batch: int = 8

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; use one of {PRECISIONS}")
        if self.device[0] == "dla" and self.profile is not None and len(set(self.profile)) != 1:
            # A range makes TensorRT run the DLA-incapable shapes on the GPU without a word.
            raise ConfigError(f"the DLA runs static shapes only: profile {self.profile} must be min = opt = max "
                              "(export without --dynamic, or build for --device gpu)")


@dataclass
class EngineBuild:
    """What :func:`build_engine` (or trtexec) produced: the record that goes into the sidecar's ``tensorrt``."""

    path: Path
    version: str
    api: str
    device: str
    device_name: str
    precision: str
    builder: str
    build_s: float
    quantization: Optional[str] = None
    layers: Optional[dict] = None  # DLA builds: which layers run on the DLA and which fall back to the GPU
    command: Optional[str] = None  # trtexec builds: the command line that built it

    def record(self, cfg: EngineBuildConfig) -> dict:
        record = {"version": self.version, "api": self.api, "device": self.device, "device_name": self.device_name,
                  "precision": self.precision, "builder": self.builder, "build_s": round(self.build_s, 2),
                  "workspace_gib": cfg.workspace_gib, "profile": list(cfg.profile) if cfg.profile else None,
                  "quantization": self.quantization, "layers": self.layers, "version_compatible": False,
                  "hardware_compatible": False}
        if self.command is not None:
            record["command"] = self.command
        return record


def _parse(trt: Any, network: Any, trt_logger: Any, onnx_path: Path, api: str) -> None:
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        hint = " (TensorRT 8.2 parses ONNX opset <= 13: re-export with --opset 13)" if api == "8.2" else ""
        raise ModelError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errors}{hint}")


def _set_workspace(trt: Any, config: Any, gib: Optional[float]) -> None:
    if gib is None:
        return
    nbytes = int(gib * (1 << 30))
    if hasattr(config, "set_memory_pool_limit"):  # TensorRT >= 8.4
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, nbytes)
    else:
        config.max_workspace_size = nbytes


def _load_timing_cache(config: Any, path: Optional[Path]) -> Any:
    if path is None or not hasattr(config, "create_timing_cache"):
        return None
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if config.set_timing_cache(cache, ignore_mismatch=False) is False:
        # Written by another TensorRT or GPU (or damaged): build without it, and save a fresh one after.
        logger.warning("TensorRT refused the timing cache %s (another TensorRT version or GPU, or a damaged file); "
                       "building without it, a new one replaces it", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        return cache
    logger.info("%s timing cache %s", "using" if data else "creating", path)
    return cache


def _save_timing_cache(config: Any, path: Optional[Path]) -> None:
    if path is None or not hasattr(config, "get_timing_cache"):
        return
    cache = config.get_timing_cache()
    if cache is None:
        return
    atomic_write_bytes(path, bytes(cache.serialize()))


def layer_placement(network: Any, config: Any) -> dict:
    """Which network layers the DLA of ``config`` can run, and which fall back to the GPU (``can_run_on_DLA``).

    Returns:
        ``{"dla": n, "gpu": m, "gpu_layers": [names]}``; with ``GPU_FALLBACK`` set, the ``gpu_layers`` run on the
        GPU inside an engine named ``.dla<N>.``.
    """
    gpu_layers, dla = [], 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if config.can_run_on_DLA(layer):
            dla += 1
        else:
            gpu_layers.append(layer.name)
    return {"dla": dla, "gpu": len(gpu_layers), "gpu_layers": gpu_layers}


def _has_fast(builder: Any, what: str) -> bool:
    attr = f"platform_has_fast_{what}"
    return bool(getattr(builder, attr)) if hasattr(builder, attr) else True  # removed in 11, deprecated in 10.5


def build_engine(onnx_path: Union[str, Path], engine_path: Union[str, Path], cfg: EngineBuildConfig) -> EngineBuild:
    """Build and write a TensorRT engine from an ONNX file (plain serialized bytes).

    Args:
        onnx_path: the FP32 ONNX (or a Q/DQ ONNX for explicit INT8, or an AutoCast FP16 ONNX on TensorRT 11).
        engine_path: where to write the engine.
        cfg: build settings.

    Raises:
        TensorRTUnavailable: ``tensorrt`` does not import.
        ConfigError: a precision / device this TensorRT or GPU cannot do (the message says what to do).
        ModelError: the ONNX does not parse, the build fails, or INT8 calibration finds no pycuda / GPU.
    """
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    version = str(trt.__version__)
    api = api_generation(version)
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {cfg.precision!r}; use one of {PRECISIONS}")
    qdq = onnx_has_qdq(onnx_path)
    # Implicit INT8 calibration feeds faces from a device buffer (pycuda): the builder runs, and is destroyed,
    # inside that buffer's CUDA context. Every other build needs TensorRT alone.
    ctx = CudaContext(0) if (api != "11" and cfg.precision == "int8" and not qdq) else None
    try:
        with ctx.active() if ctx is not None else nullcontext():
            try:
                serialized, quantization, build_s, placement = _build(trt, onnx_path, cfg, api, qdq, ctx)
            except BaseException as exc:
                # A traceback keeps _build's TensorRT objects alive: release them while their context is current.
                traceback.clear_frames(exc.__traceback__)
                raise
    finally:
        if ctx is not None:
            ctx.close()
    if serialized is None:
        raise ModelError(f"TensorRT {version} failed to build an engine from {onnx_path} (see the TensorRT log "
                         "above); try a larger --workspace, --device gpu, or another precision")
    atomic_write_bytes(engine_path, serialized)
    name = cuda_device_name() or ""  # empty: check_engine_compat then checks the TensorRT version only
    if not name:
        logger.warning("could not read the CUDA device name (pycuda missing?); the sidecar records the TensorRT "
                       "version only")
    logger.info("built %s with TensorRT %s (%s API) in %.1f s", engine_path, version, api, build_s)
    return EngineBuild(path=engine_path, version=version, api=api, device=device_tag(cfg.device), device_name=name,
                       precision=cfg.precision, builder="tensorrt-python", build_s=build_s,
                       quantization=quantization, layers=placement)


def _build(trt: Any, onnx_path: Path, cfg: EngineBuildConfig, api: str, qdq: bool,
           cuda: Optional[CudaContext]) -> Tuple[Optional[bytes], Optional[str], float, Optional[dict]]:
    """The TensorRT builder run: (engine bytes or None, quantization, build seconds, DLA layer placement or None);
    saves the timing cache.

    ``cuda`` is the current CUDA context for implicit INT8 calibration (None otherwise); every TensorRT object
    made here is released on return, before the caller destroys that context.
    """
    version = str(trt.__version__)
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 0
    if api != "11" and _version(version)[0] < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # the default from 10 on
    network = builder.create_network(flags)
    _parse(trt, network, trt_logger, onnx_path, api)
    config = builder.create_builder_config()
    _set_workspace(trt, config, cfg.workspace_gib)

    profile = None
    if cfg.profile is not None:
        lo, opt, hi = cfg.profile
        profile = builder.create_optimization_profile()
        profile.set_shape(cfg.input_name, (lo, *cfg.chw), (opt, *cfg.chw), (hi, *cfg.chw))
        config.add_optimization_profile(profile)

    calibrator, quantization, placement = None, None, None
    if api == "11":
        if cfg.precision == "fp16" and not _onnx_has_fp16(onnx_path):
            raise ConfigError(
                f"TensorRT {version} builds strongly typed networks only: FP16 must be in the ONNX. Convert it "
                f"with NVIDIA ModelOpt ({autocast_fp16_command(onnx_path, onnx_path.with_suffix('.fp16.onnx'))}), "
                "or install nvidia-modelopt and rerun (hsst-export converts automatically when it imports)")
        if cfg.precision == "int8" and not qdq:
            raise ConfigError(f"TensorRT {version} has no INT8 calibrators: INT8 comes from a Q/DQ ONNX; "
                              "hsst-export --trt --int8 --data DIR writes one (hsst.export.quantize) before building")
        quantization = "explicit-qdq" if qdq else None
    else:
        if cfg.precision in ("fp16", "int8"):
            if not _has_fast(builder, "fp16"):
                logger.warning("this GPU reports no fast FP16; the engine will still build")
            config.set_flag(trt.BuilderFlag.FP16)
        if cfg.precision == "int8":
            if not _has_fast(builder, "int8"):
                raise ConfigError("this GPU has no fast INT8 (e.g. Jetson Nano, SM 5.3): build FP16 with --half")
            config.set_flag(trt.BuilderFlag.INT8)
            if qdq:
                quantization = "explicit-qdq"
            else:
                if cfg.calib_data is None or cfg.calib_cache is None:
                    raise ConfigError("INT8 calibration needs faces (--data DIR) and a calibration cache path")
                calibrator = make_entropy_calibrator(trt, cfg.calib_data, cfg.calib_batch, cfg.calib_cache, cuda)
                config.int8_calibrator = calibrator
                if profile is not None and hasattr(config, "set_calibration_profile"):
                    config.set_calibration_profile(profile)
                quantization = "entropy-calibration"

    kind, core = cfg.device
    if kind == "dla":
        if cfg.precision == "fp32":
            raise ConfigError("the DLA runs FP16 or INT8 only: add --half or --int8 (or use --device gpu)")
        cores = int(getattr(builder, "num_DLA_cores", 0))
        if core is None or core >= cores:
            raise ConfigError(f"--device dla:{core}: this device has {cores} DLA core(s) (Xavier / Orin NX / AGX "
                              "have 1-2, Orin Nano and Jetson Nano none); use --device gpu")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        placement = layer_placement(network, config)
        logger.info("DLA core %d: %d of %d layers on the DLA, %d fall back to the GPU%s", core, placement["dla"],
                    placement["dla"] + placement["gpu"], placement["gpu"],
                    f" ({', '.join(placement['gpu_layers'][:5])}...)" if placement["gpu"] else "")

    _load_timing_cache(config, cfg.timing_cache)
    t0 = time.perf_counter()
    try:
        if hasattr(builder, "build_serialized_network"):
            serialized = builder.build_serialized_network(network, config)
        else:  # TensorRT 7.x-style API kept by early 8.x builds
            engine = builder.build_engine(network, config)
            serialized = engine.serialize() if engine is not None else None
    finally:
        if calibrator is not None:
            calibrator.free()
    build_s = time.perf_counter() - t0
    if calibrator is not None:
        calibrator.feed.raise_error()  # e.g. too few faces: TensorRT itself only saw "no more batches"
    if serialized is None:
        return None, quantization, build_s, placement
    _save_timing_cache(config, cfg.timing_cache)
    return bytes(serialized), quantization, build_s, placement  # IHostMemory supports the buffer protocol


def _onnx_has_fp16(onnx_path: Path) -> bool:
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    return any(init.data_type == onnx.TensorProto.FLOAT16 for init in proto.graph.initializer)


def autocast_fp16(onnx_path: Union[str, Path], out_path: Union[str, Path]) -> Optional[Path]:
    """Convert an FP32 ONNX to mixed FP16 with NVIDIA ModelOpt AutoCast when it is installed (else None)."""
    try:
        import modelopt.onnx.autocast as autocast
    except ImportError:
        return None
    import onnx

    converted = autocast.convert_to_mixed_precision(onnx_path=str(onnx_path), **AUTOCAST_OPTIONS)
    onnx.save(converted, str(out_path))
    return Path(out_path)
