"""Evaluation: metrics (Rank-1, CMC, VR@FAR, ROC, threshold table), protocols and ``hsst-eval``.

The reproduction study that drives these (``tools/study.py``) is repository tooling, not part of the package.

Example::

    from hsst.eval import EvalConfig, evaluate
    result = evaluate(EvalConfig(model="model.onnx", protocol="pairs", pairs="pairs.txt", images="lfw/"))
"""
from hsst.eval.metrics import (cmc_curve, lfw_accuracy, rank_k_accuracy, roc_curve, threshold_at_far,
                               threshold_table, verification_rate)
from hsst.eval.embedders import EvalModel, load_model, write_thresholds
from hsst.eval.protocols import PROTOCOLS, ProtocolData
from hsst.eval.runner import EvalConfig, Evaluator, evaluate
from hsst.eval.scoring import ScoreSummary, identity_templates, score_all
from hsst.eval.transforms import ProbeTransform

__all__ = ["cmc_curve", "lfw_accuracy", "rank_k_accuracy", "roc_curve", "threshold_at_far", "threshold_table",
           "verification_rate", "EvalModel", "load_model", "write_thresholds", "PROTOCOLS", "ProtocolData",
           "EvalConfig", "Evaluator", "evaluate", "ScoreSummary", "identity_templates", "score_all",
           "ProbeTransform"]
