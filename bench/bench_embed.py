"""Embedding throughput on this CPU: onnxruntime FP32 / INT8 vs torch eager, and GFLOP/s vs the CPU's peak.

One command::

    python bench/bench_embed.py                      # untrained stand-in MobileFaceNet, LFW faces from $HSST_SHARED
    python bench/bench_embed.py --weights probe.pt --data faces/ --seconds 5 --json out.json
    python bench/bench_embed.py --onnx old.onnx --onnx new.onnx --data faces/   # files as they ship, vs the first

Measured in the same run: the CPU's float32 peak (a large numpy matmul), torch eager (the baseline), onnxruntime
FP32 for a plain export and for the optimised export (Gemm+BN folded, onnxslim, PRelu rewritten for onnxruntime's
blocked layout by --optimize, full graph optimisation), onnxruntime INT8 (what
--format onnx-int8 writes: QOperator, calibrated on faces) with its cosine to FP32 on faces NOT used for
calibration. Each configuration is reported as faces per wall second and per CPU second of
this process (the latter is independent of other workers' load on a shared machine), at 1 and all-core intra-op
threads (--threads). Goals (2-core CPU):
FP32 >= 110 faces/s at batch 32, INT8 >= 2x FP32 with cosine >= 0.99.
Without --weights the network is an untrained stand-in (tools/stand_in.py): throughput is the same as for
trained weights, the INT8 cosine is only indicative.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from hsst.samples import shared_dir

ROOT = Path(__file__).resolve().parents[1]
SHARED = shared_dir()


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def peak_gflops(seconds: float, n: int = 2048) -> float:
    """float32 GEMM throughput of numpy's BLAS (best of repeated n x n x n products)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2.0 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def count_flops(onnx_path: Path) -> float:
    """FLOPs of one face (2 x multiply-accumulates of Conv / Gemm / MatMul, from the shape-inferred graph)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    g = model.graph
    shapes = {}
    for v in list(g.value_info) + list(g.output) + list(g.input):
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in v.type.tensor_type.shape.dim]
        shapes[v.name] = dims
    inits = {i.name: numpy_helper.to_array(i).shape for i in g.initializer}
    total = 0.0
    for node in g.node:
        if node.op_type == "Conv":
            w = inits[node.input[1]]  # (Cout, Cin/groups, kh, kw)
            out = shapes[node.output[0]]
            total += 2.0 * np.prod(w) * out[2] * out[3]
        elif node.op_type in ("Gemm", "MatMul") and node.input[1] in inits:
            total += 2.0 * np.prod(inits[node.input[1]])
    return float(total)


def throughput(fn: Callable[[np.ndarray], object], x: np.ndarray, seconds: float) -> Tuple[float, float]:
    """(faces per wall second, faces per CPU second of this process) of ``fn`` on batch ``x``.

    On a shared machine the CPU-second rate is the one that does not depend on the other workers' load
    (it still includes their cache pressure); it is what one dedicated core would deliver.
    """
    fn(x)
    fn(x)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        fn(x)
        n += x.shape[0]
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n / elapsed, n / max(time.process_time() - c0, 1e-9)


def compare_files(args: argparse.Namespace) -> int:
    """Per-face time of ONNX files as they ship (each with its own sidecar's preprocessing), in one run."""
    from hsst.core.metadata import ModelMeta, sidecar_path
    from hsst.export.calibration import FaceImageFolder
    from hsst.export.parity import onnx_session

    data = args.data or SHARED / "datasets" / "lfw"
    rows = []
    for path in args.onnx:
        meta = ModelMeta.load(sidecar_path(path))
        x = FaceImageFolder(data, meta.preprocess, limit=32).tensor()
        static = int(meta.extra.get("batch", {}).get("size", 1)) if not meta.extra.get("batch", {}).get("dynamic") else 0
        for threads in args.threads:
            sess = onnx_session(path, threads=threads)
            name = sess.get_inputs()[0].name
            batch = x[:static] if static else x[:1]
            fps, cpu_fps = throughput(lambda b: sess.run(None, {name: b}), batch, args.seconds)
            rows.append({"model": str(path), "threads": threads, "ms_per_face": 1000.0 / fps,
                         "cpu_ms_per_face": 1000.0 / cpu_fps, "bytes": path.stat().st_size})
    print(f"CPU: {os.cpu_count()} cores, load average {load_average()}; batch 1 (or the file's static batch)")
    print(f"{'model':60s} {'thr':>3s} {'ms/face':>8s} {'CPU ms/face':>11s} {'x first':>8s} {'MB':>5s}")
    for row in rows:
        base = next(r for r in rows if r["threads"] == row["threads"])
        print(f"{row['model'][-60:]:60s} {row['threads']:3d} {row['ms_per_face']:8.2f} {row['cpu_ms_per_face']:11.2f} "
              f"{base['cpu_ms_per_face'] / row['cpu_ms_per_face']:8.2f} {row['bytes'] / 1e6:5.2f}")
    print("(x first: speed relative to the first file at the same thread count, per CPU second)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=None, help="probe-net checkpoint (default: untrained stand-in)")
    parser.add_argument("--data", type=Path, default=None, help="aligned faces (default: $HSST_SHARED/datasets/lfw)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per configuration")
    parser.add_argument("--threads", type=lambda v: [int(t) for t in v.split(",")],
                        default=sorted({1, os.cpu_count() or 1}), help="intra-op thread counts to measure, e.g. 1,2")
    parser.add_argument("--calib", type=int, default=128, help="calibration faces for INT8")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--onnx", type=Path, action="append", default=[],
                        help="measure these ONNX files as they are (repeat; ratios against the first), then stop")
    args = parser.parse_args(argv)
    if args.onnx:
        return compare_files(args)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("root").setLevel(logging.ERROR)

    import onnxruntime as ort
    import torch

    from hsst.export.calibration import FaceImageFolder
    from hsst.export.onnx_export import export_onnx
    from hsst.export.parity import compare_embeddings, onnx_session
    from hsst.export.quantize import QuantizeConfig, quantize_onnx
    sys.path.insert(0, str(ROOT / "tools"))  # development tooling, not part of the package
    from stand_in import stand_in_probe_net
    from hsst.train.models import create_backbone, load_probe_checkpoint, meta_for

    data = args.data or SHARED / "datasets" / "lfw"
    if not data.is_dir():
        print(f"face folder not found: {data} (pass --data DIR or set HSST_SHARED)", file=sys.stderr)
        return 1
    res: Dict[str, object] = {"cpu_count": os.cpu_count(), "threads": args.threads, "load_before": load_average(),
                              "onnxruntime": ort.__version__, "torch": torch.__version__}
    if args.weights:
        model, meta = load_probe_checkpoint(args.weights)
        res["model"] = str(args.weights)
    else:
        meta = meta_for(create_backbone("mobilefacenet"))
    faces = FaceImageFolder(data, meta.preprocess, limit=args.calib + 64).tensor()
    calib, test = faces[: args.calib], faces[args.calib:]
    if not args.weights:
        model = stand_in_probe_net(calib[:64])
        res["model"] = "untrained stand-in MobileFaceNet (seed 0, LSUV-scaled on faces)"
    model.eval()
    x1, x32 = test[:1], np.ascontiguousarray(np.resize(test, (32,) + test.shape[1:]))

    res["peak_gflops"] = peak_gflops(args.seconds)
    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="hsst-bench-") as tmp:
        plain, opt = Path(tmp) / "plain.onnx", Path(tmp) / "opt.onnx"
        export_onnx(model, meta, plain, dynamic=True, batch=32)
        export_onnx(model, meta, opt, dynamic=True, batch=32, simplify=True, optimize=True)
        flops = count_flops(plain)  # the model's FLOPs; --optimize adds cheap depthwise 1x1 work of its own
        res["gflop_per_face"] = flops / 1e9
        t0 = time.perf_counter()
        int8 = Path(tmp) / "int8.onnx"
        quantize_onnx(plain, int8, calib, config=QuantizeConfig(batch=32))
        res["quantize_s"] = time.perf_counter() - t0

        def torch_fn(x: np.ndarray) -> object:
            with torch.inference_mode():
                return model(torch.from_numpy(x))

        def ort_fn(path: Path, threads: int) -> Callable:
            sess = onnx_session(path, threads=threads)
            return lambda x: sess.run(None, {"input": x})

        for threads in args.threads:
            torch.set_num_threads(threads)
            configs = [("torch eager", torch_fn), ("onnxruntime fp32, plain export", ort_fn(plain, threads)),
                       ("onnxruntime fp32, --simplify --optimize", ort_fn(opt, threads)),
                       ("onnxruntime int8 (--format onnx-int8)", ort_fn(int8, threads))]
            for name, fn in configs:
                row: Dict[str, object] = {"config": name, "threads": threads}
                for bs, x in (("1", x1), ("32", x32)):
                    fps, cpu_fps = throughput(fn, x, args.seconds)
                    row[f"faces_s_b{bs}"], row[f"faces_cpu_s_b{bs}"] = fps, cpu_fps
                    row[f"gflops_b{bs}"] = fps * flops / 1e9
                rows.append(row)
        f32 = onnx_session(opt).run(None, {"input": test})[0]
        q8 = onnx_session(int8).run(None, {"input": test})[0]
        cos = compare_embeddings(f32, q8, "onnx-int8", "onnxruntime-fp32", "onnxruntime-int8")
    res["rows"] = rows
    res["int8_cosine"] = {"faces": cos.faces, "min": cos.cosine_min, "mean": cos.cosine_mean}
    res["load_after"] = load_average()

    print(f"CPU: {os.cpu_count()} cores; load average before {res['load_before']}, after {res['load_after']}")
    print(f"model: {res['model']}; {res['gflop_per_face']:.3f} GFLOP/face (counted from the ONNX graph)")
    print(f"peak float32 (numpy 2048^3 matmul): {res['peak_gflops']:.1f} GFLOP/s")
    print(f"{'configuration':42s} {'thr':>3s} {'faces/s b1':>10s} {'b32':>7s} {'per CPU-s b1':>12s} {'b32':>7s} "
          f"{'x torch':>8s} {'GFLOP/s':>8s} {'% peak':>7s}")
    for row in rows:
        base = next(r for r in rows if r["threads"] == row["threads"])
        print(f"{row['config']:42s} {row['threads']:3d} {row['faces_s_b1']:10.1f} {row['faces_s_b32']:7.1f} "
              f"{row['faces_cpu_s_b1']:12.1f} {row['faces_cpu_s_b32']:7.1f} "
              f"{row['faces_s_b32'] / base['faces_s_b32']:8.2f} {row['gflops_b32']:8.1f} "
              f"{100 * row['gflops_b32'] / res['peak_gflops']:6.1f}%")
    print("(x torch, GFLOP/s, % peak: batch 32, wall clock, against torch at the same thread count; GFLOP/s = the "
          "model's FLOPs x faces/s; INT8 rows do integer work, so their % is an equivalent)")

    def pick(name: str) -> Dict[str, object]:
        return max((r for r in rows if r["config"] == name), key=lambda r: r["faces_s_b32"])

    best_fp32, plain_row = pick("onnxruntime fp32, --simplify --optimize"), pick("onnxruntime fp32, plain export")
    int8_row = pick("onnxruntime int8 (--format onnx-int8)")
    ratio = int8_row["faces_s_b32"] / best_fp32["faces_s_b32"]
    res.update(int8_over_fp32_b32=ratio, int8_over_fp32_b1=int8_row["faces_s_b1"] / best_fp32["faces_s_b1"],
               int8_over_fp32_cpu_b32=int8_row["faces_cpu_s_b32"] / best_fp32["faces_cpu_s_b32"],
               int8_over_plain_fp32_b32=int8_row["faces_s_b32"] / plain_row["faces_s_b32"],
               fp32_over_plain_b32=best_fp32["faces_s_b32"] / plain_row["faces_s_b32"])
    print(f"best of each (faces/s b32): plain FP32 {plain_row['faces_s_b32']:.1f} ({plain_row['threads']} thr), "
          f"optimised FP32 {best_fp32['faces_s_b32']:.1f} ({best_fp32['threads']} thr, "
          f"{res['fp32_over_plain_b32']:.2f}x plain), INT8 {int8_row['faces_s_b32']:.1f} ({int8_row['threads']} thr)")
    print(f"INT8 / FP32 optimised: {ratio:.2f}x at batch 32 ({res['int8_over_fp32_cpu_b32']:.2f}x per CPU-s), "
          f"{res['int8_over_fp32_b1']:.2f}x at batch 1; INT8 / FP32 plain export: "
          f"{res['int8_over_plain_fp32_b32']:.2f}x at batch 32")
    print(f"INT8 cosine vs FP32 on {cos.faces} held-out faces: min {cos.cosine_min:.4f} mean {cos.cosine_mean:.4f}")
    print(f"goals: FP32 >= 110 faces/s -> {'met' if best_fp32['faces_s_b32'] >= 110 else 'NOT met'} "
          f"({best_fp32['faces_s_b32']:.1f}); INT8 >= 2x FP32 -> {'met' if ratio >= 2 else 'NOT met'}; INT8 cosine "
          f">= 0.99 -> {'met' if cos.cosine_mean >= 0.99 else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
