"""tools/gpu_study.sh: the prepared GPU grid says what is missing before it does anything (the GPU run itself
needs a lent device with a CUDA torch: it cannot run here)."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "gpu_study.sh"


def _run(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_usage_and_missing_pack(tmp_path):
    assert _run().returncode == 2 and "usage" in _run().stderr
    missing = _run("run", str(tmp_path / "nopack"), str(tmp_path / "out"))
    assert missing.returncode == 2 and "tools/gpu_study.sh pack CROPS" in missing.stderr
    assert not (tmp_path / "out").exists()


def test_pack_refuses_crops_without_the_split_identities(tmp_path):
    (tmp_path / "crops" / "Somebody_Else").mkdir(parents=True)
    result = _run("pack", str(tmp_path / "crops"), str(tmp_path / "pack"))
    assert result.returncode != 0 and "is missing: CROPS must be aligned crops" in result.stderr
