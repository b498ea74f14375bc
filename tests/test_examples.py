"""The README's main job (examples/quickstart.py) and the firmware guide's example (examples/enroll_and_identify.py,
docs/API.md) run on the shipped default model and the bundled sample photo, with no shared data."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_accepts_the_masked_simulated_nir_probe_of_the_enrolled_photo(tmp_path):
    pytest.importorskip("skimage", reason="the sample photo ships in scikit-image: pip install 'hsst[examples]'")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "--out", str(tmp_path)],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    accepted = [f for f in result["faces"] if f["accepted"]]
    assert [f["identity"] for f in accepted] == ["Eileen_Collins"], proc.stderr
    assert accepted[0]["far"] == 1e-3 and accepted[0]["score"] >= accepted[0]["threshold"]
    assert (tmp_path / "probe_masked_simulated_nir.png").is_file()
    assert "ACCEPTED as Eileen_Collins" in proc.stderr


@pytest.mark.slow
def test_enroll_and_identify_through_the_commands_and_the_gate_api(tmp_path):
    """docs/API.md's runnable example: keygen + hsst-enroll + hsst-identify on a store, then hsst.Gate on a second
    store: enrol, a decision callback on a streamed folder of frames, identify, remove."""
    pytest.importorskip("skimage", reason="the sample photo ships in scikit-image: pip install 'hsst[examples]'")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "enroll_and_identify.py"), "--keep", str(tmp_path)],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for expected in ("hsst-enroll: Eileen_Collins: 1 template(s) stored",
                     "hsst-identify: face 1 ACCEPTED as Eileen_Collins",
                     "Gate.enroll: Eileen_Collins: 1 template(s) stored",
                     "on_decision: accept Eileen_Collins",
                     "Gate.identify: face 1 ACCEPTED as Eileen_Collins",
                     "Gate.remove: Eileen_Collins: removed",
                     "Gate.identify after remove: face 1 unknown (empty gallery)"):
        assert any(line.startswith(expected) for line in lines), (expected, proc.stdout, proc.stderr)
    # both stores exist, sealed with the generated key; no line claims an accept after the removal
    assert (tmp_path / "gallery.db").is_file() and (tmp_path / "api-gallery.db").is_file()
    assert (tmp_path / "keys" / "data.key").stat().st_mode & 0o077 == 0
    assert not any(line.startswith("Gate.identify after remove") and "ACCEPTED" in line for line in lines)
