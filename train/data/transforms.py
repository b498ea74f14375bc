"""Image transforms for training: ``(image, rng) -> image`` callables on uint8 crops.

A transform takes an aligned uint8 crop (gray HxW or BGR HxWx3) and a :class:`numpy.random.Generator` and
returns a uint8 crop of the same size. All randomness comes from ``rng``, so a sample is reproducible from its
seed (resumed runs see the same pixels as uninterrupted ones).

NIR transforms make the NIR side of a pair. They live in a registry so that the simulated-NIR and
masked-face synthesis modules add theirs by name::

    @register_nir_transform("nir-sim")
    class SimulatedNir: ...

    transform = resolve_nir_transform("nir-sim")
"""
from __future__ import annotations

import importlib
import logging
from typing import Callable, Sequence, Tuple

import numpy as np

from hsst.core.errors import ConfigError
from hsst.core.image import to_gray
from hsst.core.registry import Registry

logger = logging.getLogger(__name__)

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]

#: NIR transform factories by name (``gray``, ``identity``, ``nir-sim``, ``nir-sim+mask``...).
NIR_TRANSFORMS: Registry[Callable[..., Transform]] = Registry("NIR transform")
#: Modules imported on a registry miss, so transforms registered there resolve without an explicit import.
#: Registrations belong on the train side (``hsst`` itself never imports ``hsst.train``); add their module here.
NIR_TRANSFORM_PROVIDERS: Tuple[str, ...] = ("hsst.train.data.synth_transforms",)


class Identity:
    """Returns the image unchanged."""

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return image

    def __repr__(self) -> str:
        return "Identity()"


class GrayscaleNir:
    """Plain grayscale: the simplest stand-in for a NIR image (a crude simulated NIR, no NIR physics)."""

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return to_gray(image)

    def __repr__(self) -> str:
        return "GrayscaleNir()"


class RandomHorizontalFlip:
    """Mirrors the crop left-right with probability ``p`` (the aligned template is left-right symmetric)."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"flip probability must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.p:
            return np.ascontiguousarray(image[:, ::-1])
        return image

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Applies transforms in order, each with the same generator."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            image = transform(image, rng)
        return image

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def register_nir_transform(name: str) -> Callable[[Callable[..., Transform]], Callable[..., Transform]]:
    """Decorator that registers a NIR transform factory (a class or a function returning a transform).

    Raises:
        ConfigError: ``name`` is already registered to another factory.
    """
    return NIR_TRANSFORMS.register(name=name)


def available_nir_transforms() -> list:
    """Registered NIR transform names."""
    return NIR_TRANSFORMS.names()


def resolve_nir_transform(name: str, **kwargs) -> Transform:
    """Build the NIR transform registered under ``name`` (``gray``, ``identity``; ``nir-sim`` ... once added).

    Args:
        name: registry name.
        **kwargs: passed to the transform's factory.

    Raises:
        ConfigError: unknown name.
    """
    if name not in NIR_TRANSFORMS:
        for module in NIR_TRANSFORM_PROVIDERS:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:  # the provider is optional; the error below lists what exists
                if exc.name is None or not module.startswith(exc.name):
                    raise
                logger.debug("NIR transform provider %s not installed: %s", module, exc)
    return NIR_TRANSFORMS.get(name)(**kwargs)


register_nir_transform("gray")(GrayscaleNir)
register_nir_transform("identity")(Identity)
