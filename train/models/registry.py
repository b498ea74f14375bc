"""Backbone registry and the one factory (timm style).

A backbone is registered by decorating its constructor function; the function name is the registry name::

    @register_backbone
    def mobilefacenet(input_size=112, embedding_dim=512, in_chans=1, **kwargs) -> Backbone: ...

    @register_backbone(aliases=("iresnet50",))
    def resnet50(...): ...

    model = create_backbone("mobilefacenet", input_size=144, in_chans=1)
"""
from __future__ import annotations

import inspect
from typing import Callable, List, Optional

from torch import nn

from hsst.core.errors import ConfigError
from hsst.core.registry import Registry
from hsst.train.models.base import check_backbone_args

BackboneFn = Callable[..., nn.Module]

#: Backbone constructors by name (``mobilefacenet``, ``mobilefacenet_tf``, ``resnet50`` alias ``iresnet50``).
BACKBONES: Registry[BackboneFn] = Registry("backbone")

#: Register a backbone constructor under its function name (or ``name=``), with optional ``aliases=``; usable
#: bare (``@register_backbone``) or called (``@register_backbone(aliases=("x",))``).
register_backbone = BACKBONES.register
#: Canonical registry name of a name or alias (any case); ConfigError listing the choices if unknown.
resolve_backbone_name = BACKBONES.resolve


def list_backbones(include_aliases: bool = False) -> List[str]:
    """Registered backbone names, sorted (aliases too when asked)."""
    return BACKBONES.names(aliases=include_aliases)


def create_backbone(name: str, input_size: int = 112, embedding_dim: Optional[int] = None, in_chans: int = 1,
                    **kwargs) -> nn.Module:
    """Build a registered backbone.

    Args:
        name: registry name or alias (``mobilefacenet``, ``resnet50`` / ``iresnet50``).
        input_size: side of the square aligned crop (multiple of 16: 112, 144...).
        embedding_dim: embedding length (None: the backbone's own default, 512; 192 for ``mobilefacenet_tf``).
        in_chans: 1 for gray / NIR input, 3 for RGB.
        **kwargs: backbone-specific options (e.g. ``dropout`` for ``resnet50``).

    Returns:
        The network (train mode) with ``arch`` set to the canonical registry name.

    Raises:
        ConfigError: unknown name, invalid size/channels or an option the backbone does not take.
    """
    key = resolve_backbone_name(name)
    fn = BACKBONES.get(key)
    params = inspect.signature(fn).parameters
    if embedding_dim is None:
        embedding_dim = params["embedding_dim"].default
    check_backbone_args(input_size, embedding_dim, in_chans)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            options = sorted(set(params) - {"input_size", "embedding_dim", "in_chans"})
            raise ConfigError(f"backbone {key!r} does not take option(s) {unknown}; its options are {options}")
    model = fn(input_size=input_size, embedding_dim=embedding_dim, in_chans=in_chans, **kwargs)
    model.arch = key
    return model
