"""Probe-net -> ONNX: fixed input name, NCHW float32, static H x W, static or symbolic batch.

torch's legacy TorchScript exporter (``dynamo=False``) is used on purpose: it writes exactly the requested
opset (down to 11; TensorRT 8.2 on a Jetson Nano parses up to 13) and needs no onnxscript; the dynamo
exporter is pinned to opset 18. Eval-mode export folds every Conv+BatchNorm; :func:`fold_gemm_batchnorm` folds
the final Linear+BatchNorm1d that the exporter leaves, so the graph is conv/PReLU/add plus one Gemm.
"""
from __future__ import annotations

import copy
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from hsst.core.errors import ConfigError, ModelError
from hsst.core.files import atomic_write_bytes
from hsst.core.metadata import ModelMeta
from hsst.export.options import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET

logger = logging.getLogger(__name__)

__all__ = ["NormalizedEmbedding", "OnnxExport", "export_onnx", "fold_gemm_batchnorm", "simplify_onnx",
           "inline_initializer_identities", "decompose_prelu", "onnx_io", "BATCH_DIM"]

#: Name of the symbolic batch dimension of dynamic exports.
BATCH_DIM = "batch"


class NormalizedEmbedding(nn.Module):
    """Wraps a backbone so the graph output is L2-normalised (``--normalize``)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.backbone(x), p=2.0, dim=1, eps=1e-12)


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ONNX file.
        input_shape: e.g. ``["batch", 1, 112, 112]`` (dynamic) or ``[8, 1, 112, 112]``.
        output_shape: e.g. ``["batch", 512]``.
        opset: the opset written.
        simplified: whether onnxslim ran.
        folded: number of Gemm+BatchNormalization pairs folded.
        prelu_decomposed: number of PRelu nodes rewritten for onnxruntime on CPU (``optimize``).
    """

    path: Path
    input_shape: List[Union[int, str]]
    output_shape: List[Union[int, str]]
    opset: int
    simplified: bool
    folded: int
    prelu_decomposed: int = 0


def _initializers(graph: onnx.GraphProto) -> dict:
    return {init.name: init for init in graph.initializer}


def fold_gemm_batchnorm(model: onnx.ModelProto) -> int:
    """Fold ``Gemm|MatMul -> BatchNormalization`` (inference mode, constant weights) into one Gemm, in place.

    ``y = gamma * (x W^T + b - mean) / sqrt(var + eps) + beta``, so ``W' = s W`` (row-wise) and
    ``b' = s (b - mean) + beta`` with ``s = gamma / sqrt(var + eps)``. A MatMul qualifies when its data input
    comes from a Flatten (2-D), as the exporter writes ``Linear(bias=False)``.

    Returns:
        How many pairs were folded.
    """
    graph = model.graph
    inits = _initializers(graph)
    for node in graph.node:  # the exporter routes shared weights through Identity nodes
        if node.op_type == "Identity" and node.input[0] in inits:
            inits[node.output[0]] = inits[node.input[0]]
    consumers: dict = {}
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    folded, remove = 0, []
    for lin in list(graph.node):
        if lin.op_type not in ("Gemm", "MatMul") or len(consumers.get(lin.output[0], [])) != 1:
            continue
        bn = consumers[lin.output[0]][0]
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 or lin.output[0] in graph_outputs:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in lin.attribute}
        if lin.op_type == "Gemm":
            if attrs.get("transA", 0) or float(attrs.get("alpha", 1.0)) != 1.0 or \
                    float(attrs.get("beta", 1.0)) != 1.0:
                continue
            trans_b = bool(attrs.get("transB", 0))
        else:
            src = producers.get(lin.input[0])
            if src is None or src.op_type != "Flatten":
                continue
            trans_b = False
        names = [lin.input[1]] + list(bn.input[1:5]) + ([lin.input[2]] if len(lin.input) > 2 else [])
        if not all(n in inits for n in names):
            continue
        weight = numpy_helper.to_array(inits[lin.input[1]]).astype(np.float64)
        if weight.ndim != 2:
            continue
        if not trans_b:
            weight = weight.T  # -> (out, in)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:5])
        eps = next((onnx.helper.get_attribute_value(a) for a in bn.attribute if a.name == "epsilon"), 1e-5)
        bias = numpy_helper.to_array(inits[lin.input[2]]).astype(np.float64) if len(lin.input) > 2 \
            else np.zeros(weight.shape[0])
        scale = gamma / np.sqrt(var + eps)
        tag = (lin.name or f"linear{folded}").strip("/").replace("/", "_")
        w_name, b_name = f"{tag}_folded_weight", f"{tag}_folded_bias"
        graph.initializer.extend([numpy_helper.from_array((weight * scale[:, None]).astype(np.float32), w_name),
                                  numpy_helper.from_array((scale * (bias - mean) + beta).astype(np.float32), b_name)])
        gemm = onnx.helper.make_node("Gemm", [lin.input[0], w_name, b_name], [bn.output[0]], name=f"{tag}_bn_folded",
                                     transB=1)
        position = list(graph.node).index(lin)
        graph.node.insert(position, gemm)
        remove += [lin, bn]
        folded += 1
    for node in remove:
        graph.node.remove(node)
    if folded:
        _drop_unused_initializers(graph)
    return folded


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    for init in list(graph.initializer):
        if init.name not in used:
            graph.initializer.remove(init)
    for value in list(graph.input):  # initializers listed as graph inputs (opset < 9 style)
        if value.name not in used:
            graph.input.remove(value)


def inline_initializer_identities(model: onnx.ModelProto) -> int:
    """Remove ``Identity`` nodes that only forward an initializer (the exporter's shared-constant routing).

    Quantisation tools and TensorRT expect weights and biases to be initializers, not node outputs.

    Returns:
        How many nodes were removed.
    """
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {n.output[0]: n.input[0] for n in graph.node
             if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs}
    if not alias:
        return 0
    for node in list(graph.node):
        if node.op_type == "Identity" and node.output[0] in alias:
            graph.node.remove(node)
            continue
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    return len(alias)


def decompose_prelu(model: onnx.ModelProto, max_slope: Optional[float] = None) -> int:
    """Rewrite per-channel ``PRelu(x)`` as ``DWConv1x1(Relu(x), 1 - a) + DWConv1x1(x, a)``, in place (exact).

    onnxruntime's CPU PRelu is a slow broadcast kernel outside its blocked (NCHWc) convolution layout, so every
    PRelu also costs two layout reorders: they took 60-75% of MobileFaceNet's CPU time. Depthwise 1x1
    convolutions, Relu and Add stay in the blocked layout, and all of them have integer kernels, so the INT8
    model becomes integer end to end. For onnxruntime on CPU only: TensorRT and the DLA run PRelu natively.

    Args:
        model: the graph, changed in place.
        max_slope: leave PRelus with a slope beyond +-max_slope (None: rewrite all). For INT8 use 1: with
            ``|a| > 1`` both branches are larger than the result and cancel, which int8 cannot represent (the MS1M
            MobileFaceNet has slopes up to 9; its mean INT8 cosine to FP32 was 0.0 decomposed, 0.95 not).

    Returns:
        How many PRelu nodes were rewritten (those with a constant (C, 1, 1) or (C,) slope).
    """
    graph = model.graph
    inits = _initializers(graph)
    new_nodes, count = [], 0
    for node in graph.node:
        slope = inits.get(node.input[1]) if node.op_type == "PRelu" else None
        if slope is None:
            new_nodes.append(node)
            continue
        a = numpy_helper.to_array(slope).astype(np.float32)
        steep = max_slope is not None and float(np.abs(a).max()) > max_slope
        if a.ndim not in (1, 3) or a.shape[1:] not in ((), (1, 1)) or a.shape[0] < 2 or steep:
            new_nodes.append(node)
            continue
        c = a.shape[0]
        tag = (node.name or f"prelu{count}").strip("/").replace("/", "_")
        # not "<tensor>_scale": onnxruntime's quantiser names its scales that way and would pick these up
        w_pos, w_neg = f"{tag}_w_relu", f"{tag}_w_slope"
        graph.initializer.extend([
            numpy_helper.from_array((1.0 - a).reshape(c, 1, 1, 1), w_pos),
            numpy_helper.from_array(a.reshape(c, 1, 1, 1), w_neg)])
        x, y = node.input[0], node.output[0]
        new_nodes += [
            onnx.helper.make_node("Relu", [x], [f"{tag}_relu"], name=f"{tag}_relu"),
            onnx.helper.make_node("Conv", [f"{tag}_relu", w_pos], [f"{tag}_pos"], name=f"{tag}_pos", group=c,
                                  kernel_shape=[1, 1]),
            onnx.helper.make_node("Conv", [x, w_neg], [f"{tag}_lin"], name=f"{tag}_lin", group=c,
                                  kernel_shape=[1, 1]),
            onnx.helper.make_node("Add", [f"{tag}_pos", f"{tag}_lin"], [y], name=f"{tag}_add"),
        ]
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(new_nodes)
        _drop_unused_initializers(graph)
    return count


def simplify_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """Graph simplification with onnxslim (constant folding, dead-node removal, fusions)."""
    try:
        import onnxslim
    except ImportError:
        raise ConfigError("--simplify needs onnxslim: pip install onnxslim (part of pip install hsst[export])") \
            from None
    return onnxslim.slim(model)


def _check_size(meta: ModelMeta, model: nn.Module, imgsz: Optional[int]) -> int:
    size = meta.preprocess.crop_size
    net = getattr(model, "input_size", size)
    if net != size:
        raise ModelError(f"model metadata says {size}x{size} crops but the network takes {net}x{net}; the "
                         "checkpoint is inconsistent, re-save it with hsst.train.models.save_probe_checkpoint")
    if imgsz is not None and imgsz != size:
        raise ConfigError(f"--imgsz {imgsz} does not match this model's input {size}x{size}: MobileFaceNet's "
                          f"global depthwise layer fixes the input size; drop --imgsz or pass --imgsz {size}")
    return size


def export_onnx(model: nn.Module, meta: ModelMeta, path: Union[str, Path], opset: int = DEFAULT_OPSET,
                batch: int = 1, dynamic: bool = False, normalize: bool = False, simplify: bool = False,
                imgsz: Optional[int] = None, optimize: bool = False) -> OnnxExport:
    """Export a probe-net to ONNX and check it (``onnx.checker.check_model(full_check=True)``).

    Args:
        model: the backbone (any device; exported on CPU in float32 eval mode from a copy).
        meta: its metadata (input/output names, crop size, colour).
        path: the ONNX file to write (atomically).
        opset: ONNX opset (11..20).
        batch: static batch size, or the example batch for a dynamic export.
        dynamic: symbolic batch dimension named ``batch``.
        normalize: append L2 normalisation to the graph.
        simplify: run onnxslim.
        imgsz: expected input side (checked against the metadata).
        optimize: rewrite the graph for onnxruntime on CPU (:func:`decompose_prelu`; exact, about 2x faster).

    Returns:
        The :class:`OnnxExport` record.
    """
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"opset {opset} outside {MIN_OPSET}..{MAX_OPSET}")
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    size = _check_size(meta, model, imgsz)
    path = Path(path)
    net = copy.deepcopy(model).cpu().float().eval()
    if normalize:
        net = NormalizedEmbedding(net).eval()
    dummy = torch.zeros(batch, meta.preprocess.channels, size, size, dtype=torch.float32)
    axes = {meta.input_name: {0: BATCH_DIM}, meta.output_name: {0: BATCH_DIM}} if dynamic else None
    raw = io.BytesIO()  # in memory: the graph is rewritten before anything is written to disk
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation notice
        torch.onnx.export(net, (dummy,), raw, input_names=[meta.input_name], output_names=[meta.output_name],
                          opset_version=opset, dynamic_axes=axes, do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(raw.getvalue())
    inline_initializer_identities(proto)
    folded = fold_gemm_batchnorm(proto)
    if simplify:
        proto = simplify_onnx(proto)
    rewritten = decompose_prelu(proto) if optimize else 0
    proto.producer_name = "hsst-export"
    proto.doc_string = f"{meta.name} ({meta.arch}) probe-net; preprocessing and thresholds in the .json sidecar"
    onnx.checker.check_model(proto, full_check=True)
    atomic_write_bytes(path, proto.SerializeToString())
    in_shape = [BATCH_DIM if dynamic else batch, meta.preprocess.channels, size, size]
    out_shape = [BATCH_DIM if dynamic else batch, meta.embedding_dim]
    logger.info("exported %s (opset %d, input %s, simplified=%s, folded %d Gemm+BN)", path, opset, in_shape,
                simplify, folded)
    return OnnxExport(path=path, input_shape=in_shape, output_shape=out_shape, opset=opset, simplified=simplify,
                      folded=folded, prelu_decomposed=rewritten)


def onnx_io(path: Union[str, Path]) -> Tuple[List[Tuple[str, List[Union[int, str]]]], List[Tuple[str, list]]]:
    """Input and output (name, shape) of an ONNX file; symbolic dimensions by name."""
    proto = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}

    def shape(v: onnx.ValueInfoProto) -> list:
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    ins = [(v.name, shape(v)) for v in proto.graph.input if v.name not in inits]
    outs = [(v.name, shape(v)) for v in proto.graph.output]
    return ins, outs
