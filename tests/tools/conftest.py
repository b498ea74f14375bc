"""Tests of the repository's tools (``tools/*.py``, research tooling that is not part of the ``hsst`` package).

A tool runs as ``python tools/<name>.py`` from the repository root, so its folder is the first entry of its
``sys.path``; the tests import it the same way (``import study``).
"""
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))
