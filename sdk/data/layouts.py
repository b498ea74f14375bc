"""Readers for the three NIR-VIS dataset layouts, and layout detection.

* ``casia``: CASIA NIR-VIS 2.0 official layout, ``s1..s4/{NIR,VIS}/<id>/<n>.(bmp|jpg)`` plus
  ``protocols/{vis_train_k,nir_train_k,vis_gallery_k,nir_probe_k}.txt`` (k = 1..10).
* ``generic``: ``<root>/<identity>/{nir,vis}/<images>``.
* ``vis-folders``: VIS-only identity folders ``<root>/<identity>/<images>`` (LFW, AT&T/ORL); the NIR side is
  simulated NIR, made from the VIS images by the dataset's NIR transform.

Scanning lists the files and leaves out those :func:`hsst.core.image.image_problem` finds unreadable (empty,
corrupt, truncated, not an image: a corrupt file is never counted as an image); it reads only the head and tail
of a complete JPEG / PNG / BMP (LFW's 13k files in about a second). ``verify=True`` decodes every image as well.
"""
from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from tqdm import tqdm

from hsst.core.errors import ConfigError, DatasetError, ImageReadError
from hsst.core.image import IMAGE_SUFFIXES, image_problem, read_image
from hsst.data.records import NirVisIndex, ScanReport

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

CASIA_FOLDS = range(1, 11)
CASIA_SPLITS = {
    "train": (("vis", "vis_train_{k}.txt"), ("nir", "nir_train_{k}.txt")),
    "test": (("vis", "vis_gallery_{k}.txt"), ("nir", "nir_probe_{k}.txt")),
}

EXPECTED_LAYOUTS = """\
  CASIA NIR-VIS 2.0 (layout "casia"):
    <root>/protocols/vis_train_<k>.txt, nir_train_<k>.txt, vis_gallery_<k>.txt, nir_probe_<k>.txt  (k = 1..10)
    <root>/s1..s4/NIR/<identity>/<n>.bmp|jpg
    <root>/s1..s4/VIS/<identity>/<n>.jpg|bmp
  generic NIR-VIS (layout "generic"):
    <root>/<identity>/nir/<image>
    <root>/<identity>/vis/<image>
  VIS-only identity folders, NIR simulated from VIS (layout "vis-folders"):
    <root>/<identity>/<image>   (at least min_images images per identity)
  image suffixes: """ + " ".join(IMAGE_SUFFIXES)


def _layout_error(problem: str) -> DatasetError:
    """The layouts hsst reads, then ``problem`` on the last line (where a command line shows it)."""
    return DatasetError(f"hsst reads one of these layouts:\n{EXPECTED_LAYOUTS}\n{problem}")


def _check_root(root: PathLike) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise _layout_error(f"dataset root {root} does not exist; check the path")
    if not root.is_dir():
        raise _layout_error(f"dataset root {root} is not a folder; pass the folder that holds the identities")
    return root.resolve()


def _empty_error(root: Path, layout: str, report: ScanReport) -> DatasetError:
    return _layout_error(f"no usable identity in {root} (read as layout {layout!r}): {report.summary()}")


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _subdirs(folder: Path) -> List[Path]:
    """Visible sub-folders, sorted by name."""
    with os.scandir(folder) as entries:
        return sorted((Path(e.path) for e in entries if e.is_dir() and not _is_hidden(e.name)), key=lambda p: p.name)


def _find_child_dir(folder: Path, name: str) -> Optional[Path]:
    """Sub-folder of ``folder`` called ``name`` in any letter case (``NIR``, ``nir``, ``Nir``)."""
    for sub in _subdirs(folder):
        if sub.name.lower() == name:
            return sub
    return None


def _readable(paths: Sequence[Path], report: ScanReport) -> List[Path]:
    """The paths :func:`image_problem` passes; the others are reported as unreadable."""
    good = []
    for path in paths:
        problem = image_problem(path)
        if problem:
            report.add(path, "unreadable", problem)
        else:
            good.append(path)
    return good


def _list_images(folder: Path, report: ScanReport, keep_unreadable: bool = False) -> List[Path]:
    """Readable image files directly in ``folder``, sorted; unreadable and non-image files are reported
    (``keep_unreadable``: every image file, for an evaluation that counts the unreadable ones as failures)."""
    images = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if _is_hidden(entry.name) or not entry.is_file():
                continue
            path = Path(entry.path)
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                report.add(path, "not_an_image")
            else:
                images.append(path)
    return sorted(images) if keep_unreadable else _readable(sorted(images), report)


def _verified(paths: Sequence[Path], report: ScanReport) -> List[Path]:
    """The paths that decode; the others are reported as unreadable."""
    good = []
    for path in paths:
        try:
            read_image(path)
        except ImageReadError as exc:
            report.add(path, "unreadable", str(exc))
        else:
            good.append(path)
    return good


def _progress(items: Sequence, verify: bool, desc: str):
    """A progress bar while verifying (decoding is the slow part); plain iteration otherwise."""
    return tqdm(items, desc=desc, unit="id", disable=None) if verify else items


def _keep_pair(identity: str, where: object, nir: List[Path], vis: List[Path], min_images: int,
               report: ScanReport) -> bool:
    """Whether an identity with these NIR and VIS images goes into a pair index; reports it when not."""
    if not nir and not vis:
        report.add(where, "empty_identity", f"identity {identity}: no images")
        return False
    if not nir or not vis:
        report.add(where, "one_modality", f"identity {identity}: {len(nir)} NIR, {len(vis)} VIS images")
        return False
    if len(nir) < min_images or len(vis) < min_images:
        report.add(where, "too_few_images",
                   f"identity {identity}: {len(nir)} NIR, {len(vis)} VIS images, need {min_images} of each")
        return False
    return True


def _finish(index: NirVisIndex) -> NirVisIndex:
    report = index.report
    report.num_identities = index.num_identities
    report.num_images = index.num_images
    if not index.identities:
        report.log(logger)
        raise _empty_error(index.root, index.layout, report)
    report.log(logger)
    return index


# ---------------------------------------------------------------------------------------------------- casia
def _casia_disk_map(root: Path, protocols: Path) -> Dict[str, List[Path]]:
    """Lower-case relative path without suffix -> image files on disk (``s2/vis/10117/016`` -> [.../016.jpg])."""
    files: Dict[str, List[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d) and here / d != protocols)
        for name in filenames:
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in IMAGE_SUFFIXES and not _is_hidden(name):
                rel = (here / stem).relative_to(root).as_posix().lower()
                files.setdefault(rel, []).append(here / name)
    return files


def _resolve_casia_line(line: str, disk: Dict[str, List[Path]]) -> Optional[Path]:
    rel = line.replace("\\", "/").strip().strip("/")
    stem, suffix = os.path.splitext(rel)
    candidates = disk.get(stem.lower())
    if not candidates:
        return None
    same = [p for p in candidates if p.suffix.lower() == suffix.lower()]
    return sorted(same or candidates)[0]


def _read_protocol(path: Path) -> List[Tuple[int, str]]:
    """Non-empty lines of a protocol file (first token), with 1-based line numbers; tolerates a BOM and CRLF."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise DatasetError(f"cannot read CASIA protocol file {path}: {exc}") from exc
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.strip().split()
        if tokens and not tokens[0].startswith("#"):
            lines.append((number, tokens[0]))
    return lines


def index_casia(root: PathLike, fold: int, split: str = "train", min_images: int = 1,
                verify: bool = False, keep_unreadable: bool = False) -> NirVisIndex:
    """Index CASIA NIR-VIS 2.0 through its official protocol lists.

    Protocol lines are Windows-style relative paths (``s2\\VIS\\10117\\016.jpg``). The suffix in a list does
    not always match the file on disk, so a line resolves to the file with the same path and any image
    suffix (folder and file names compared case-insensitively), preferring the listed suffix. The identity
    is the image's folder name.

    Args:
        root: the CASIA NIR-VIS 2.0 folder (holds ``protocols/`` and ``s1``..``s4``).
        fold: protocol fold, 1..10.
        split: ``train`` (``vis_train_k`` / ``nir_train_k``) or ``test`` (gallery ``vis_gallery_k`` as VIS,
            probes ``nir_probe_k`` as NIR).
        min_images: images of each modality an identity needs to be kept.
        verify: decode every image and skip unreadable ones (slow; by default files are only listed).

    Raises:
        ConfigError: invalid fold or split.
        DatasetError: missing root, protocol file, or no usable identity.
    """
    if isinstance(fold, bool) or not isinstance(fold, int) or fold not in CASIA_FOLDS:
        raise ConfigError(f"CASIA NIR-VIS 2.0 fold must be an integer 1..10, got {fold!r}")
    if split not in CASIA_SPLITS:
        raise ConfigError(f"CASIA split must be one of {sorted(CASIA_SPLITS)}, got {split!r}")
    root = _check_root(root)
    protocols = _find_child_dir(root, "protocols")
    if protocols is None:
        raise _layout_error(f"{root} has no protocols/ folder, so it is not a CASIA NIR-VIS 2.0 root")
    available = {p.name.lower(): p for p in protocols.iterdir() if p.is_file()}
    report = ScanReport(root=root, layout="casia")
    disk = _casia_disk_map(root, protocols)
    tables: Dict[str, Dict[str, List[Path]]] = {"nir": {}, "vis": {}}
    for modality, pattern in CASIA_SPLITS[split]:
        name = pattern.format(k=fold)
        if name not in available:
            raise DatasetError(f"CASIA protocol file {protocols / name} not found (fold {fold}, split {split!r}); "
                               f"{protocols} holds: {sorted(available)[:20]}")
        seen = set()
        for number, entry in _read_protocol(available[name]):
            path = _resolve_casia_line(entry, disk)
            if path is None:
                report.add(entry, "missing_file", f"{available[name].name} line {number}: no image "
                                                  f"{entry.replace(chr(92), '/')} with any of {IMAGE_SUFFIXES}")
                continue
            if path in seen:
                continue
            seen.add(path)
            tables[modality].setdefault(path.parent.name, []).append(path)
    for table in tables.values():
        for identity in _progress(sorted(table), verify, "verifying CASIA images"):
            if verify or not keep_unreadable:
                table[identity] = (_verified if verify else _readable)(table[identity], report)
    nir: Dict[str, List[Path]] = {}
    vis: Dict[str, List[Path]] = {}
    for identity in sorted(set(tables["nir"]) | set(tables["vis"])):
        n, v = sorted(tables["nir"].get(identity, [])), sorted(tables["vis"].get(identity, []))
        if _keep_pair(identity, identity, n, v, min_images, report):
            nir[identity], vis[identity] = n, v
    return _finish(NirVisIndex(identities=sorted(nir), nir=nir, vis=vis, synthetic_nir=False, root=root,
                               layout="casia", report=report))


# -------------------------------------------------------------------------------------------------- generic
def index_generic(root: PathLike, min_images: int = 1, verify: bool = False,
                  keep_unreadable: bool = False) -> NirVisIndex:
    """Index ``<root>/<identity>/{nir,vis}/<images>`` (sub-folder names in any letter case).

    Args:
        root: dataset root.
        min_images: images of each modality an identity needs to be kept.
        verify: decode every image and skip unreadable ones.
        keep_unreadable: list unreadable image files too (an evaluation counts them as failed probes).

    Raises:
        DatasetError: missing root or no usable identity.
    """
    root = _check_root(root)
    report = ScanReport(root=root, layout="generic")
    nir: Dict[str, List[Path]] = {}
    vis: Dict[str, List[Path]] = {}
    for folder in _progress(_subdirs(root), verify, "verifying NIR-VIS images"):
        found = {}
        for modality in ("nir", "vis"):
            sub = _find_child_dir(folder, modality)
            images = _list_images(sub, report, keep_unreadable) if sub is not None else []
            found[modality] = _verified(images, report) if verify else images
        if _keep_pair(folder.name, folder, found["nir"], found["vis"], min_images, report):
            nir[folder.name], vis[folder.name] = found["nir"], found["vis"]
    return _finish(NirVisIndex(identities=sorted(nir), nir=nir, vis=vis, synthetic_nir=False, root=root,
                               layout="generic", report=report))


# --------------------------------------------------------------------------------------------- vis-folders
def index_vis_folders(root: PathLike, min_images: int = 2, max_identities: Optional[int] = None,
                      identities: Optional[Sequence[str]] = None, verify: bool = False,
                      keep_unreadable: bool = False) -> NirVisIndex:
    """Index VIS-only identity folders ``<root>/<identity>/<images>``; the NIR side is simulated NIR.

    ``nir[id]`` is ``vis[id]`` (the same files): datasets make the NIR side with their NIR transform.

    Args:
        root: dataset root, e.g. LFW or AT&T/ORL.
        min_images: images an identity needs to be kept (2 lets a pair use two different photos).
        max_identities: keep only the first this many usable identities in name order (scanning stops there).
        identities: only these identity folders (all must exist).
        verify: decode every image and skip unreadable ones.
        keep_unreadable: list unreadable image files too (an evaluation counts them as failed probes).

    Raises:
        ConfigError: invalid ``min_images`` or ``max_identities``.
        DatasetError: missing root, a requested identity that does not exist, or no usable identity.
    """
    if min_images < 1:
        raise ConfigError(f"min_images must be >= 1, got {min_images}")
    if max_identities is not None and max_identities < 1:
        raise ConfigError(f"max_identities must be >= 1 or None, got {max_identities}")
    root = _check_root(root)
    folders = _subdirs(root)
    if identities is not None:
        by_name = {f.name: f for f in folders}
        missing = sorted(set(identities) - set(by_name))
        if missing:
            raise DatasetError(f"{len(missing)} requested identities have no folder in {root}: {missing[:10]}")
        folders = [by_name[name] for name in sorted(set(identities))]
    report = ScanReport(root=root, layout="vis-folders")
    vis: Dict[str, List[Path]] = {}
    for folder in _progress(folders, verify, "verifying VIS images"):
        images = _list_images(folder, report, keep_unreadable)
        if verify:
            images = _verified(images, report)
        if not images:
            report.add(folder, "empty_identity", f"identity {folder.name}: no images")
        elif len(images) < min_images:
            report.add(folder, "too_few_images", f"identity {folder.name}: {len(images)} images, need {min_images}")
        else:
            vis[folder.name] = images
            if max_identities is not None and len(vis) >= max_identities:
                break
    return _finish(NirVisIndex(identities=sorted(vis), nir=dict(vis), vis=vis, synthetic_nir=True, root=root,
                               layout="vis-folders", report=report))


# ------------------------------------------------------------------------------------------------ detection
LAYOUTS: Dict[str, Callable[..., NirVisIndex]] = {
    "casia": index_casia,
    "generic": index_generic,
    "vis-folders": index_vis_folders,
}
_DETECT_PROBE = 50  # identity folders looked at to tell generic from vis-folders


def detect_layout(root: PathLike) -> Tuple[str, str]:
    """Guess the layout of ``root``.

    Returns:
        (layout name, why it was chosen).

    Raises:
        DatasetError: the root does not exist or is not a folder.
    """
    root = _check_root(root)
    if _find_child_dir(root, "protocols") is not None:
        return "casia", f"{root} has a protocols/ folder"
    for folder in _subdirs(root)[:_DETECT_PROBE]:
        for modality in ("nir", "vis"):
            if _find_child_dir(folder, modality) is not None:
                return "generic", f"identity folder {folder.name} has a {modality}/ sub-folder"
    return "vis-folders", "no protocols/ folder and no identity folder with nir/ or vis/ sub-folders"


def index_dataset(root: Optional[PathLike] = None, casia: Optional[PathLike] = None, fold: Optional[int] = None,
                  layout: Optional[str] = None, **kw) -> NirVisIndex:
    """Index a NIR-VIS dataset in whichever layout it has (detected unless ``layout`` names it).

    Args:
        root: dataset root; the layout is detected (``casia`` if it has ``protocols/``, ``generic`` if identity
            folders hold ``nir``/``vis`` sub-folders, else ``vis-folders``).
        casia: a CASIA NIR-VIS 2.0 root (shorthand for ``root=..., layout="casia"``).
        fold: CASIA protocol fold (1..10), needed for the ``casia`` layout.
        layout: force a layout (``casia``, ``generic``, ``vis-folders``) instead of detecting it.
        **kw: options of the layout's reader (``split``, ``min_images``, ``max_identities``, ``identities``,
            ``verify``).

    Raises:
        ConfigError: no root, both ``root`` and ``casia``, unknown layout, missing fold, or an option that the
            chosen layout does not take.
        DatasetError: as raised by the layout's reader.
    """
    if root is not None and casia is not None:
        raise ConfigError("give either root (layout detected) or casia (a CASIA NIR-VIS 2.0 root), not both")
    if casia is not None:
        root, layout = casia, layout or "casia"
        if layout != "casia":
            raise ConfigError(f"casia={casia} contradicts layout={layout!r}")
    if root is None:
        raise ConfigError("no dataset given: pass root=<dataset folder> or casia=<CASIA NIR-VIS 2.0 folder>")
    if layout is None:
        layout, why = detect_layout(root)
        logger.info("dataset %s: layout %r (%s)", root, layout, why)
    elif layout not in LAYOUTS:
        raise ConfigError(f"unknown dataset layout {layout!r}; expected one of {sorted(LAYOUTS)}")
    else:
        logger.info("dataset %s: layout %r (given)", root, layout)
    reader = LAYOUTS[layout]
    accepted = set(inspect.signature(reader).parameters) - {"root", "fold"}
    unknown = sorted(set(kw) - accepted)
    if unknown:
        raise ConfigError(f"option(s) {unknown} do not apply to the {layout!r} layout at {root}; "
                          f"it accepts {sorted(accepted)}")
    if layout == "casia":
        if fold is None:
            raise ConfigError(f"{root} is a CASIA NIR-VIS 2.0 root: choose a protocol fold (fold=1..10)")
        return reader(root, fold, **kw)
    if fold is not None:
        raise ConfigError(f"fold={fold} only applies to CASIA NIR-VIS 2.0, but {root} is read as {layout!r}")
    return reader(root, **kw)
