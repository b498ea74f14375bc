"""Errors of the persistent gallery, each a :class:`~hsst.core.errors.HsstError` of the closest shared kind.

They live here rather than in :mod:`hsst.core.errors` because only the gallery raises them; callers that
catch the shared kinds (``ConfigError`` for keys, ``ModelError`` for model binding) still catch these.
"""
from __future__ import annotations

from hsst.core.errors import ConfigError, HsstError, ModelError


class GalleryError(HsstError):
    """Base class of gallery errors."""


class KeySourceError(GalleryError, ConfigError):
    """A key is missing, malformed or stored with unsafe permissions."""


class WrongKey(GalleryError):
    """The data key does not open this gallery or bundle (it was made with another key)."""


class TamperedData(GalleryError):
    """A stored row failed its authentication: it was modified, moved to another identity, or corrupted."""


class ModelMismatch(GalleryError, ModelError):
    """Templates were made by another embedding model than the one in use."""


class StoreError(GalleryError):
    """The gallery file is missing, not a gallery, corrupt, or from a newer hsst."""


class BundleError(GalleryError):
    """A gallery bundle is malformed, unsigned or signed by another key, stale, or does not apply."""
