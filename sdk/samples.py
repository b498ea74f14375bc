"""Sample data for demos, tests, benchmarks and tools, never downloaded.

* :func:`sample_face_path`: ``astronaut.png`` of scikit-image (NASA portrait of Eileen Collins, public domain),
  found through the installed wheel's metadata (``pip install hsst[examples]``).
* :func:`shared_dir`: the shared data folder (LFW, AT&T/ORL...) that tests, ``bench/`` and ``tools/`` read in place:
  ``$HSST_SHARED``, else ``shared`` beside the repository.
"""
from __future__ import annotations

import importlib.metadata as metadata
import os
from pathlib import Path

from hsst.core.errors import ConfigError

#: identity name -> (distribution, file name inside it) of the bundled sample face photos.
SAMPLE_FACES = {"Eileen_Collins": ("scikit-image", "astronaut.png")}


def sample_face_path(identity: str = "Eileen_Collins") -> Path:
    """Path of a sample VIS face photo shipped inside an installed package.

    Raises:
        ConfigError: unknown sample, or its package is not installed.
    """
    if identity not in SAMPLE_FACES:
        raise ConfigError(f"unknown sample face {identity!r}; known: {', '.join(SAMPLE_FACES)}")
    dist_name, file_name = SAMPLE_FACES[identity]
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise ConfigError(f"the sample face {identity} ships in the {dist_name} package, which is not installed; "
                          f"pip install 'hsst[examples]'") from None
    for entry in dist.files or ():
        if entry.name == file_name:
            path = Path(dist.locate_file(entry))
            if path.is_file():
                return path
    raise ConfigError(f"{file_name} not found in the installed {dist_name} ({dist.version}); reinstall it")


def shared_dir() -> Path:
    """The shared data folder: ``$HSST_SHARED``, else ``shared`` beside the repository this package was
    installed from (editable install), else ``../shared`` from the working directory. It may not exist."""
    if os.environ.get("HSST_SHARED"):
        return Path(os.environ["HSST_SHARED"])
    repo = next((p for p in Path(__file__).resolve().parents if (p / "setup.py").is_file()), None)
    return (repo.parent if repo is not None else Path.cwd().parent) / "shared"
