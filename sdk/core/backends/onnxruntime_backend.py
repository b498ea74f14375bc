"""onnxruntime backend: CPU everywhere, the CUDA execution provider where the installed build has it."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from hsst.core.errors import ModelError
from hsst.core.backends.base import Backend, TensorSpec, register_backend

logger = logging.getLogger(__name__)

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
    "tensor(bool)": np.bool_,
}


def default_providers(device: int = 0) -> List[Union[str, tuple]]:
    """CUDA (when this onnxruntime build has it) then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers: List[Union[str, tuple]] = []
    if "CUDAExecutionProvider" in available:
        providers.append(("CUDAExecutionProvider", {"device_id": device}))
    providers.append("CPUExecutionProvider")
    return providers


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(_ORT_DTYPES.get(arg.type, np.float32)))


@register_backend("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """An ONNX model in an onnxruntime session.

    Args:
        model_path: ``.onnx`` file.
        providers: execution providers in order (None: :func:`default_providers`).
        threads: intra-op threads (0: onnxruntime's default, all cores).
        device: CUDA device for the default providers.
    """

    def __init__(self, model_path: Union[str, Path], providers: Optional[Sequence] = None, threads: int = 0,
                 device: int = 0, **_ignored) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"ONNX model not found: {path}; export one with hsst-export or set embedder.model")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        wanted = list(providers) if providers else default_providers(device)
        available = set(ort.get_available_providers())
        names = [p[0] if isinstance(p, tuple) else p for p in wanted]
        missing = [n for n in names if n not in available]
        if missing:
            raise ModelError(f"onnxruntime providers {missing} are not in this build (available: "
                             f"{sorted(available)}); install onnxruntime-gpu for CUDA or drop them from "
                             "embedder.providers")
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(f"onnxruntime cannot load {path}: {exc}") from exc
        self.path = path
        self._inputs = [_spec(a) for a in self._session.get_inputs()]
        self._outputs = [_spec(a) for a in self._session.get_outputs()]
        logger.info("onnxruntime %s on %s: inputs %s", path.name, self._session.get_providers(), self._inputs)

    @property
    def providers(self) -> List[str]:
        return self._session.get_providers()

    @property
    def inputs(self) -> List[TensorSpec]:
        return list(self._inputs)

    @property
    def outputs(self) -> List[TensorSpec]:
        return list(self._outputs)

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
        if self._session is None:
            raise ModelError(f"onnxruntime backend for {self.path} is closed")
        names = output_names or [o.name for o in self._outputs]
        values = self._session.run(names, dict(feeds))
        return dict(zip(names, values))

    def close(self) -> None:
        self._session = None
