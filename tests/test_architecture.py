"""The layers of hsst (docs/ARCHITECTURE.md) hold on the import graph: every import, lazy ones included, goes to
the module's own package or to a lower floor. The rule is read from this table, the graph from the sources."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
#: Where each import path lives (setup.py's package_dir).
SOURCE_ROOTS = {"hsst": ROOT / "sdk", "hsst.train": ROOT / "train", "hsst.export": ROOT / "export"}

#: Floor of each top-level part of hsst; a module may import its own part and parts on lower floors.
FLOORS: Dict[str, int] = {
    "core": 0, "assets": 0,                              # errors, config, files, images, alignment, backends
    "face": 1, "gallery": 1, "samples": 1, "data": 1,    # detection + alignment; the template store; datasets
    "synth": 2, "pretrained": 2,                         # NIR / mask / light synthesis; pretrained weights
    "runtime": 3,                                        # the gate
    "eval": 4,                                           # measurement (torch-free)
    "train": 5,                                          # torch
    "export": 6,                                         # checkpoints and ONNX -> engines
}
#: Parts that must import without torch (the gate and everything it or the evaluation stands on).
TORCH_FREE = {part for part, floor in FLOORS.items() if floor <= FLOORS["eval"]}


def _modules() -> Iterator[Tuple[str, Path]]:
    for package, root in SOURCE_ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            module = ".".join([package, *parts])
            if package == "hsst" and parts and f"hsst.{parts[0]}" in SOURCE_ROOTS:
                continue  # a folder of the same name under sdk/ would be shadowed
            yield module, path


def _part(module: str) -> str:
    """``hsst.runtime.pipeline`` -> ``runtime``; ``hsst`` itself -> ``hsst``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "hsst"


def _imports(path: Path) -> List[Tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "hsst":  # from hsst import assets: the part is the imported name
                found += [(node.lineno, f"hsst.{a.name}") for a in node.names]
            elif node.module.split(".")[0] == "hsst":
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "hsst"]
    return found


def test_every_part_has_a_floor():
    parts = {_part(module) for module, _ in _modules()} - {"hsst"}
    assert parts <= set(FLOORS), f"parts without a floor in FLOORS (and docs/ARCHITECTURE.md): {parts - set(FLOORS)}"


def test_imports_only_go_down():
    upward = []
    for module, path in _modules():
        here = _part(module)
        if here == "hsst":
            continue  # the package's front door re-exports the public API
        for line, target in _imports(path):
            there = _part(target)
            if there in (here, "hsst") and target != "hsst":
                continue
            if there == "hsst":
                upward.append(f"{path.relative_to(ROOT)}:{line} imports the package root ({target})")
            elif FLOORS.get(there, 99) >= FLOORS[here]:
                upward.append(f"{path.relative_to(ROOT)}:{line} {here} (floor {FLOORS[here]}) imports {target} "
                              f"({there}, floor {FLOORS.get(there)})")
    assert not upward, "imports that go up or sideways:\n" + "\n".join(upward)


def test_torch_only_above_the_evaluation():
    offenders = []
    for module, path in _modules():
        if _part(module) not in TORCH_FREE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == "torch"]
    assert not offenders, f"torch imported below the trainer: {offenders}"


def test_torch_free_parts_import_without_torch():
    # Every module below the trainer, CLIs included, imported in a fresh interpreter: torch never comes along.
    import subprocess
    import sys

    modules = sorted(m for m, _ in _modules() if _part(m) in TORCH_FREE)
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'hsst.train')))\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
