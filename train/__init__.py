"""Training (torch): backbones, NIR-VIS datasets, losses, HSST and the ``hsst-train`` loop.

The gate runtime never imports this package.
"""
from hsst.train.config import TrainConfig
from hsst.train.trainer import Trainer, TrainResult, train

__all__ = ["TrainConfig", "Trainer", "TrainResult", "train"]
