"""Evaluation: metrics (Rank-1, CMC, VR@FAR, ROC, threshold table), protocols and ``hsst-eval``."""
from hsst.eval.metrics import (cmc_curve, lfw_accuracy, rank_k_accuracy, roc_curve, threshold_at_far,
                               threshold_table, verification_rate)

__all__ = ["cmc_curve", "lfw_accuracy", "rank_k_accuracy", "roc_curve", "threshold_at_far", "threshold_table",
           "verification_rate"]
