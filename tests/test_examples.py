"""The README's main job (examples/quickstart.py) runs on the shipped default model, with no shared data."""
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
