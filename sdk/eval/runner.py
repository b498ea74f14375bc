"""One evaluation: protocol + model + faces + probe transform -> every number, as one JSON-ready dict.

Failure policy (images that give no face crop: no face detected, unreadable file):

* identification: a gallery image without a crop is left out of the gallery; an identity left with no gallery
  image cannot be identified, so its probes fail. A failed probe is a miss at every rank (it stays in the
  Rank-1 / CMC denominator) and its genuine comparisons are rejected at every threshold (they stay in the VR
  denominator); it adds no impostor comparison. Failures are counted in the report.
* verification (pairs): a pair with a failed image is scored -1 (the lowest cosine): rejected, so it is an
  error for a same-person pair and correct for a different-person pair.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from hsst.core.errors import ConfigError, DatasetError
from hsst.eval import metrics
from hsst.eval.cache import EmbeddingCache, NullCache
from hsst.eval.embedding import EmbeddingExtractor
from hsst.eval.faces import create_face_source
from hsst.eval.embedders import EvalModel, load_model
from hsst.eval.protocols import (IdentificationTrial, PairTrial, ProtocolData, all_vis_protocol, casia_protocol,
                                 first_image_protocol, folders_protocol, pairs_protocol, read_identity_list)
from hsst.eval.scoring import identity_templates, score_all
from hsst.eval.transforms import ProbeTransform
from hsst.runtime.config import DetectorConfig, load_config

logger = logging.getLogger(__name__)

HEADLINE_FARS = (1e-2, 1e-3)
TABLE_FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
ROC_FARS = np.logspace(-6, 0, 61)
TEMPLATES = ("image", "identity")
#: EvalConfig field (hsst-eval option) -> the gate config's detector field it overrides
DETECTOR_OPTIONS = {"detector": "model", "variant": "variant", "det_thresh": "det_thresh", "min_face": "min_face",
                    "normalize": "normalize"}
RESULT_VERSION = 1
#: Most impostor scores kept for exact thresholds (5M float64 = 40 MB).
KEEP_LIMIT = 5_000_000
FAILURE_POLICY = ("identification: gallery images without a face crop are left out (an identity left without "
                  "gallery fails all its probes); a probe without a face crop is a miss at every rank and its "
                  "genuine comparisons are rejected at every threshold, with no impostor comparison. pairs: a "
                  "pair with a failed image is scored -1 (rejected).")


@dataclass
class EvalConfig:
    """Everything that defines one evaluation (``hsst-eval`` options map onto these fields).

    Attributes:
        model: ``.pt`` checkpoint, ``.onnx`` or ``.engine`` (with sidecar).
        protocol: ``casia``, ``all-vis``, ``first-image``, ``folders`` or ``pairs``.
        root: dataset root (casia, all-vis, first-image).
        folds: CASIA folds.
        gallery: gallery identity folders (folders).
        probes: probe identity folders (folders).
        pairs: pairs file (pairs).
        images: image folder of the pairs file (pairs).
        identities: identity list file (``.txt``, or ``file.json:key`` for a split file) for first-image.
        max_probes: probes per identity cap (first-image).
        template: gallery templates per ``image`` or per ``identity`` (mean of normalised embeddings).
        faces: ``detect``, ``aligned`` or ``box`` (see :mod:`hsst.eval.faces`).
        gate_config: gate configuration (``firmware_configs/*.yaml``) whose ``detector`` section ``detect``
            runs (None: the runtime's defaults), so that the evaluation finds the faces the gate finds.
        detector: detector model for ``detect`` (None: the gate config's).
        variant: BlazeFace model(s) (None: the gate config's).
        det_thresh: minimum detector score (None: the gate config's).
        min_face: smallest face side in pixels (None: the gate config's).
        normalize: hard-light handling, ``off``, ``retry`` or ``always`` (None: the gate config's).
        nir_sim: probes become simulated NIR.
        mask: probes get synthesized masks.
        mask_types: comma list of mask types (None: all).
        seed: seed of the probe transforms.
        threshold: fixed threshold for pair accuracy (None: the model's table at ``threshold_far``).
        threshold_far: FAR whose threshold from the model's table is the fixed one.
        max_far: largest FAR with an exact threshold (the top ``max_far`` impostor scores are kept).
        batch_size: crops per model call.
        workers: threads preparing crops.
        device: ``cpu``, ``cuda[:N]``, ``auto``.
        threads: onnxruntime threads.
        cache: embedding cache file (None: the default location).
        use_cache: False disables the cache.
        progress: tqdm bars.
    """

    model: str = ""
    protocol: str = "casia"
    root: Optional[str] = None
    folds: List[int] = field(default_factory=lambda: list(range(1, 11)))
    gallery: Optional[str] = None
    probes: Optional[str] = None
    pairs: Optional[str] = None
    images: Optional[str] = None
    identities: Optional[str] = None
    max_probes: Optional[int] = None
    template: str = "image"
    faces: str = "detect"
    gate_config: Optional[str] = None
    detector: Optional[str] = None
    variant: Optional[str] = None
    det_thresh: Optional[float] = None
    min_face: Optional[int] = None
    normalize: Optional[str] = None
    nir_sim: bool = False
    mask: bool = False
    mask_types: Optional[str] = None
    seed: int = 0
    threshold: Optional[float] = None
    threshold_far: float = 1e-3
    max_far: float = 0.1
    batch_size: int = 64
    workers: int = 0
    device: str = "auto"
    threads: int = 0
    cache: Optional[str] = None
    use_cache: bool = True
    progress: bool = True

    @property
    def transform(self) -> ProbeTransform:
        return ProbeTransform(nir_sim=self.nir_sim, mask=self.mask, mask_types=self.mask_types, seed=self.seed)

    def validate(self) -> "EvalConfig":
        if not self.model:
            raise ConfigError("no model: pass --model FILE (.pt checkpoint, .onnx or .engine)")
        if self.template not in TEMPLATES:
            raise ConfigError(f"--template must be one of {TEMPLATES}, got {self.template!r}")
        need = {"casia": ["root"], "all-vis": ["root"], "first-image": ["root"], "folders": ["gallery", "probes"],
                "pairs": ["pairs", "images"]}
        if self.protocol not in need:
            raise ConfigError(f"unknown protocol {self.protocol!r}; choose one of {sorted(need)}")
        missing = [name for name in need[self.protocol] if not getattr(self, name)]
        if missing:
            raise ConfigError(f"protocol {self.protocol} needs {', '.join('--' + m for m in missing)}")
        if not 0 < self.max_far <= 1 or not 0 < self.threshold_far <= 1:
            raise ConfigError("max_far and threshold_far must be in (0, 1]")
        if self.faces == "detect":
            self.detector_settings()  # a bad gate config or override fails here, before the model loads
        elif self.gate_config or any(getattr(self, name) is not None for name in DETECTOR_OPTIONS):
            options = ", ".join("--" + name.replace("_", "-") for name in DETECTOR_OPTIONS)
            raise ConfigError(f"--config and the detector options ({options}) set the detector of --faces detect; "
                              f"drop them with --faces {self.faces}")
        return self

    def detector_settings(self) -> DetectorConfig:
        """The gate config's detector section (or the runtime's defaults) with this config's overrides."""
        overrides = {f"detector.{key}": getattr(self, name) for name, key in DETECTOR_OPTIONS.items()
                     if getattr(self, name) is not None}
        return load_config(self.gate_config, overrides).detector


def load_protocol(config: EvalConfig) -> ProtocolData:
    """The protocol data named by ``config``."""
    if config.protocol == "casia":
        return casia_protocol(config.root, config.folds)
    if config.protocol == "all-vis":
        return all_vis_protocol(config.root)
    if config.protocol == "first-image":
        identities = None
        if config.identities:
            path, _, key = config.identities.partition(".json:")
            identities = (read_identity_list(path + ".json", key) if key else read_identity_list(config.identities))
        return first_image_protocol(config.root, identities=identities, max_probes=config.max_probes)
    if config.protocol == "folders":
        return folders_protocol(config.gallery, config.probes)
    return pairs_protocol(config.pairs, config.images)


def _stats(values: Sequence[float]) -> Dict[str, float]:
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": int(arr.size)}


def _far_key(far: float) -> str:
    return metrics.format_far(far)


class Evaluator:
    """Runs :class:`EvalConfig` evaluations; keeps the model, face source and cache between calls."""

    def __init__(self, config: EvalConfig, model: Optional[EvalModel] = None) -> None:
        self.config = config.validate()
        self.model = model or load_model(config.model, device=config.device, batch_size=config.batch_size,
                                         threads=config.threads)
        kwargs = ({"detector": config.detector_settings(), "template": self.model.meta.preprocess.template}
                  if config.faces == "detect" else {})
        self.faces = create_face_source(config.faces, self.model.crop_size, **kwargs)
        self.cache = EmbeddingCache(config.cache) if config.use_cache else NullCache()
        self.extractor = EmbeddingExtractor(self.model, self.faces, self.cache, batch_size=config.batch_size,
                                            workers=config.workers, progress=config.progress)

    def run(self, data: Optional[ProtocolData] = None) -> Dict[str, Any]:
        """Evaluate and return the result dict (see :mod:`hsst.eval.report` for its files)."""
        cfg = self.config
        data = data or load_protocol(cfg)
        started = time.perf_counter()
        hits0, computed = self.cache.hits, 0
        transform = cfg.transform
        result: Dict[str, Any] = {
            "version": RESULT_VERSION,
            "title": self.title(data),
            "simulated_nir": bool(cfg.nir_sim),
            "probe_transform": {"name": transform.name, "label": transform.label, "seed": cfg.seed,
                                "mask_types": cfg.mask_types, "signature": transform.signature},
            "protocol": {"name": data.protocol, "kind": data.kind, "description": data.description,
                         "root": str(data.root), "fingerprint": data.fingerprint(), "options": data.options,
                         "skipped_by_scan": data.skipped},
            "model": self.model.describe(),
            "faces": self.faces_record(),
            "template": cfg.template,
            "config": dataclasses.asdict(cfg),
            "failure_policy": FAILURE_POLICY,
        }
        if data.kind == "identification":
            folds = []
            for trial in data.trials:
                fold = self._identification(trial, transform)
                computed += fold.pop("_computed")
                folds.append(fold)
            result["folds"] = folds
            result["summary"] = self._summarise(folds)
        else:
            trial = data.trials[0]
            pair, computed = self._verification(trial, transform)
            result["pairs"] = pair
            result["summary"] = {"accuracy": {"mean": pair["accuracy"]["mean"], "std": pair["accuracy"]["std"]},
                                 **{f"vr@far={_far_key(f)}": {"mean": pair["vr"].get(_far_key(f))}
                                    for f in HEADLINE_FARS}}
        seconds = time.perf_counter() - started
        result["cache"] = {"path": str(self.cache.path) if self.cache.path else None,
                           "hits": self.cache.hits - hits0, "computed": computed}
        result["timing"] = {"seconds": round(seconds, 3),
                            "images_per_s": round(computed / seconds, 2) if computed and seconds > 0 else None}
        return result

    def faces_record(self) -> Dict[str, Any]:
        """How the crops were made; with ``detect`` the detector settings and the gate config they came from."""
        record = self.faces.describe()
        if self.config.faces == "detect":
            record["gate_config"] = self.config.gate_config  # None: the runtime's defaults
        return record

    def title(self, data: ProtocolData) -> str:
        transform = self.config.transform
        probe = f" ({transform.label})" if transform.active else ""
        return f"{self.model.meta.name} on {data.protocol}: {data.root.name}{probe}"

    # --------------------------------------------------------------------------------------- identification
    def _identification(self, trial: IdentificationTrial, transform: ProbeTransform) -> Dict[str, Any]:
        cfg = self.config
        gal = self.extractor.embed(trial.gallery, None, desc=f"{trial.name} gallery")
        prb = self.extractor.embed(trial.probes, transform, desc=f"{trial.name} probes ({transform.name})")
        g_labels = np.array([x.identity for x in trial.gallery])
        p_labels = np.array([x.identity for x in trial.probes])
        g_emb, g_lab = gal.embeddings[gal.ok], g_labels[gal.ok]
        if g_emb.shape[0] == 0:
            raise DatasetError(f"{trial.name}: no gallery image gave a face crop ({gal.failures}); check --faces")
        if cfg.template == "identity":
            g_emb, g_lab = identity_templates(g_emb, g_lab)
        enrolled = np.isin(p_labels, g_lab)
        use = prb.ok & enrolled
        if not use.any():
            raise DatasetError(f"{trial.name}: no probe gave a face crop with an enrolled identity "
                               f"(probe failures {prb.failures}, gallery failures {gal.failures})")
        n_impostor = int(use.sum()) * len(g_lab) - int(np.isin(g_lab, p_labels[use]).sum())  # upper bound
        max_far = cfg.max_far
        while max_far * n_impostor > KEEP_LIMIT and max_far > 1e-4:
            max_far /= 10.0  # keep memory bounded: exact thresholds up to this FAR, the histogram beyond
        summary = score_all(prb.embeddings[use], p_labels[use], g_emb, g_lab, max_far=max_far)
        failed = ~use
        per_id = {lab: n for lab, n in zip(*np.unique(g_lab, return_counts=True))}
        failed_genuine = int(sum(max(per_id.get(lab, 0), 1) for lab in p_labels[failed]))
        summary = summary.with_failures(int(failed.sum()), failed_genuine)
        table = summary.threshold_table(TABLE_FARS)
        vr = {_far_key(f): (table[_far_key(f)]["vr"] if _far_key(f) in table else None) for f in HEADLINE_FARS}
        roc = summary.roc_points(ROC_FARS)
        keep = np.isfinite(roc)
        return {
            "name": trial.name,
            "gallery_images": len(trial.gallery), "probe_images": len(trial.probes),
            "gallery_identities": int(np.unique(g_labels).size), "gallery_entries": int(g_emb.shape[0]),
            "probe_identities": int(np.unique(p_labels).size),
            "failures": {"gallery": gal.failures, "probes": prb.failures,
                         "probes_not_enrolled": int((prb.ok & ~enrolled).sum()),
                         "failed_probes_total": int(failed.sum()),
                         "examples": (gal.failed_paths + prb.failed_paths)[:20]},
            "exact_up_to_far": max_far,
            "rank1": float(summary.cmc[0]),
            "cmc": [float(x) for x in summary.cmc],
            "vr": vr,
            "threshold_table": table,
            "genuine_comparisons": int(summary.genuine.size),
            "impostor_comparisons": int(summary.impostor_count),
            "roc": {"far": [float(x) for x in ROC_FARS[keep]], "tar": [float(x) for x in roc[keep]]},
            "cache_hits": gal.cache_hits + prb.cache_hits,
            "_computed": gal.computed + prb.computed,
        }

    @staticmethod
    def _summarise(folds: List[Dict[str, Any]]) -> Dict[str, Any]:
        out: Dict[str, Any] = {"folds": len(folds), "rank1": _stats([f["rank1"] for f in folds])}
        for far in HEADLINE_FARS:
            out[f"vr@far={_far_key(far)}"] = _stats([f["vr"][_far_key(far)] for f in folds])
        out["cmc"] = [float(np.mean([f["cmc"][k] for f in folds])) for k in range(len(folds[0]["cmc"]))]
        thresholds = {}
        for key in folds[0]["threshold_table"]:
            values = [f["threshold_table"][key]["threshold"] for f in folds if key in f["threshold_table"]]
            if len(values) == len(folds):
                thresholds[key] = float(np.mean(values))
        out["thresholds"] = thresholds
        return out

    # ----------------------------------------------------------------------------------------- verification
    def _verification(self, trial: PairTrial, transform: ProbeTransform):
        cfg = self.config
        first = [a for a, _, _ in trial.pairs]
        second = [b for _, b, _ in trial.pairs]
        same = np.array([s for _, _, s in trial.pairs], bool)
        a = self.extractor.embed(first, None, desc="pairs: first images")
        b = self.extractor.embed(second, transform, desc=f"pairs: second images ({transform.name})")
        scores = np.sum(a.embeddings * b.embeddings, axis=1).astype(np.float64)
        failed = ~(a.ok & b.ok)
        scores[failed] = -1.0
        fixed = cfg.threshold
        fixed_source = "--threshold" if fixed is not None else None
        if fixed is None:
            fixed = self.model.meta.threshold_for_far(cfg.threshold_far)
            fixed_source = f"model thresholds at FAR {cfg.threshold_far}" if fixed is not None else None
        acc = metrics.lfw_accuracy(scores, same, folds=10, fixed_threshold=fixed)
        genuine, impostor = scores[same], scores[~same]
        table = metrics.threshold_table(impostor, TABLE_FARS, genuine=genuine) if impostor.size else {}
        vr = {_far_key(f): (table[_far_key(f)]["vr"] if _far_key(f) in table else None) for f in HEADLINE_FARS}
        far, tar, _ = metrics.roc_curve(genuine, impostor)
        grid = np.array([f for f in ROC_FARS if f * impostor.size >= 1])
        roc_tar = [float(tar[far <= f + 1e-12].max()) if np.any(far <= f + 1e-12) else 0.0 for f in grid]
        out = {
            "pairs": int(same.size), "same": int(same.sum()), "different": int((~same).sum()),
            "failures": {"first": a.failures, "second": b.failures, "failed_pairs": int(failed.sum()),
                         "examples": (a.failed_paths + b.failed_paths)[:20]},
            "accuracy": {"mean": acc.mean, "std": acc.std, "fold_thresholds": list(acc.fold_thresholds)},
            "fixed_threshold": {"threshold": acc.fixed_threshold, "accuracy": acc.fixed_accuracy,
                                "source": fixed_source},
            "vr": vr,
            "threshold_table": table,
            "roc": {"far": [float(x) for x in grid], "tar": roc_tar},
            "cache_hits": a.cache_hits + b.cache_hits,
        }
        return out, a.computed + b.computed

    def close(self) -> None:
        self.cache.close()
        self.model.close()


def evaluate(config: EvalConfig) -> Dict[str, Any]:
    """Run one evaluation (loads the model, evaluates, closes)."""
    evaluator = Evaluator(config)
    try:
        return evaluator.run()
    finally:
        evaluator.close()
