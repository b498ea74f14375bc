"""Runtime fixtures: the shipped default model and a scene builder that assembles gate videos (people entering,
standing, leaving) from LFW photos. The model fixtures (an exported MobileFaceNet, the packaged face detector)
are in tests/conftest.py: the backends' tests (tests/core/backends) use them too.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from hsst.synth.scene import SceneBuilder


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The shipped, trained default embedding model (sdk/assets/models)."""
    from hsst.runtime.model_files import default_embedding_model

    return default_embedding_model()


@pytest.fixture
def scene_builder():
    return SceneBuilder
