"""The runtime must import and build its parts without torch (a gate installs no torch)."""
import subprocess
import sys


def test_runtime_never_imports_torch():
    code = ("import sys\n"
            "import hsst.runtime, hsst.runtime.cli, hsst.core.backends.tensorrt_backend\n"
            "from hsst.runtime.pipeline import create_face_finder\n"
            "from hsst.runtime.config import DetectorConfig\n"
            "create_face_finder(DetectorConfig(threads=1))\n"
            "bad = sorted(m for m in sys.modules\n"
            "             if m == 'torch' or m.startswith(('torch.', 'hsst.train', 'hsst.export')))\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
