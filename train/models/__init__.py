"""Backbones: registry + factory, MobileFaceNet, IR-ResNet-50, checkpoints (probe-net and foreign weights)."""
from hsst.train.models.base import Backbone, count_parameters, model_summary, unwrap_model
from hsst.train.models.registry import create_backbone, list_backbones, register_backbone, resolve_backbone_name
from hsst.train.models.mobilefacenet import MobileFaceNet
from hsst.train.models.mobilefacenet_tf import MobileFaceNetTF
from hsst.train.models.resnet import IResNet
from hsst.train.models.probe_checkpoint import (LoadReport, load_foreign_state_dict, load_probe_checkpoint, meta_for,
                                          read_checkpoint_meta, save_probe_checkpoint)

__all__ = [
    "Backbone", "count_parameters", "model_summary", "unwrap_model",
    "create_backbone", "list_backbones", "register_backbone", "resolve_backbone_name",
    "MobileFaceNet", "MobileFaceNetTF", "IResNet",
    "LoadReport", "load_foreign_state_dict", "load_probe_checkpoint", "meta_for", "read_checkpoint_meta",
    "save_probe_checkpoint",
]
