"""The repository keeps its promises: README's commands are the ones CI runs."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_block(heading: str) -> list:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"## {heading}", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.strip().splitlines()]


def test_ci_runs_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    (command,) = _readme_block("Run the tests")
    assert command in ci.splitlines()


def test_ci_installs_what_readme_installs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = _readme_block("Set-up")[1]
    for part in install.split("&&"):
        words = part.split()
        args = words[2:] if words[:2] == ["pip", "install"] else words  # "python -m pip install" in CI
        assert any(" ".join(args) in line for line in ci.splitlines()), part


def test_runtime_runs_on_jetpack5_python():
    """The gate runtime (sdk/ -> hsst) must run on Python 3.8, JetPack 5's (Xavier NX / AGX Xavier)."""
    import subprocess
    import sys

    vermin = Path(sys.executable).with_name("vermin")  # the [dev] extra's console script
    result = subprocess.run([str(vermin), "-q", "--no-tips", "--eval-annotations", "--violations",
                             "-t=3.8-", str(ROOT / "sdk")], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_every_command_of_setup_py_accepts_dash_h():
    """``-h`` is help on all eight commands (hsst-gate and hsst-identify once took only --help)."""
    import importlib

    from click.testing import CliRunner

    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    commands = re.findall(r'"(hsst-[a-z]+)=([\w.]+):(\w+)"', setup)
    assert len(commands) == 8, commands
    for name, module, attr in commands:
        result = CliRunner().invoke(getattr(importlib.import_module(module), attr), ["-h"])
        assert result.exit_code == 0 and "Usage:" in result.output, (name, result.output)
