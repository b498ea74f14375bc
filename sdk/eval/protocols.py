"""Evaluation protocols: which images are gallery, which are probes, which pairs are compared.

Every protocol returns a :class:`ProtocolData`: one or more trials (CASIA NIR-VIS 2.0 has ten folds, the
others one) of either identification (gallery + probes) or verification (pairs), plus a fingerprint of the
exact files used. Registry names (``--protocol``):

* ``casia``: CASIA NIR-VIS 2.0 view 2, fold k: gallery ``vis_gallery_k``, probes ``nir_probe_k``.
* ``all-vis``: Oulu-CASIA NIR-VIS / BUAA-VisNir style on a generic ``<id>/{nir,vis}`` tree: every VIS image
  of an identity is in its gallery, every NIR image is a probe.
* ``first-image``: the first image (file name order) of each identity is its gallery, the others are probes
  (on a generic tree: first VIS image as gallery, the NIR images as probes). Optionally only listed
  identities and at most N probes per identity (the reproduction study's LFW test split).
* ``folders``: ``--gallery DIR --probes DIR``, both identity folders ``<id>/<images>``.
* ``pairs``: LFW-style pairs file (``name i j`` same person, ``name1 i name2 j`` different people), images
  at ``<images>/<name>/<name>_<NNNN>.jpg``.

Datasets are read by :mod:`hsst.data` (torch-free), as the trainer reads them.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from hsst.core.errors import ConfigError, DatasetError
from hsst.data import layouts

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


@dataclass(frozen=True)
class ImageItem:
    """One image of a protocol.

    Attributes:
        path: the image file.
        identity: its identity label.
        key: path relative to the dataset root (POSIX); seeds its probe transform, so the same image gets the
            same simulated pixels wherever the dataset lies.
    """

    path: Path
    identity: str
    key: str


@dataclass
class IdentificationTrial:
    """A closed-set identification test: every probe identity has gallery images."""

    name: str
    gallery: List[ImageItem]
    probes: List[ImageItem]


@dataclass
class PairTrial:
    """Verification pairs in file order (the LFW 10 folds are contiguous blocks of that order)."""

    name: str
    pairs: List[Tuple[ImageItem, ImageItem, bool]]


@dataclass
class ProtocolData:
    """What one protocol evaluates.

    Attributes:
        protocol: registry name.
        kind: ``identification`` or ``verification``.
        trials: the trials (folds).
        root: the dataset root (or the pairs file's image folder).
        description: one line for reports.
        skipped: skip counts of the dataset scans (reason -> count).
        options: the protocol's own options (fold list, identity filter, probe cap), for the report.
    """

    protocol: str
    kind: str
    trials: List[Union[IdentificationTrial, PairTrial]]
    root: Path
    description: str
    skipped: Dict[str, int] = field(default_factory=dict)
    options: Dict[str, object] = field(default_factory=dict)

    def items(self) -> List[ImageItem]:
        """Every distinct image of every trial, in first-use order."""
        seen: Dict[Path, ImageItem] = {}
        for trial in self.trials:
            if isinstance(trial, IdentificationTrial):
                group: Iterable[ImageItem] = list(trial.gallery) + list(trial.probes)
            else:
                group = [item for a, b, _ in trial.pairs for item in (a, b)]
            for item in group:
                seen.setdefault(item.path, item)
        return list(seen.values())

    def fingerprint(self) -> str:
        """sha256 over the sorted (trial, role, identity, relative path, file size) of every image.

        Raises:
            DatasetError: a listed image disappeared.
        """
        rows = []
        for trial in self.trials:
            if isinstance(trial, IdentificationTrial):
                roles = [("gallery", trial.gallery), ("probe", trial.probes)]
            else:
                roles = [("pair", [x for a, b, same in trial.pairs for x in (a, b)])]
                rows.extend(f"{trial.name}\tsame\t{i}\t{int(s)}" for i, (_, _, s) in enumerate(trial.pairs))
            for role, items in roles:
                for item in items:
                    rows.append(f"{trial.name}\t{role}\t{item.identity}\t{item.key}\t{_size(item.path)}")
        rows.sort()
        digest = hashlib.sha256(f"{self.protocol}\n".encode())
        for row in rows:
            digest.update(row.encode("utf-8") + b"\n")
        return digest.hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"image {path} is gone ({exc}); re-run the evaluation on the current dataset") from exc


def _item(path: Path, identity: str, root: Path) -> ImageItem:
    try:
        key = Path(path).relative_to(root).as_posix()
    except ValueError:
        key = Path(path).as_posix()
    return ImageItem(Path(path), identity, key)


def _merge_counts(target: Dict[str, int], counts: Dict[str, int]) -> None:
    for reason, n in counts.items():
        target[reason] = target.get(reason, 0) + n


# --------------------------------------------------------------------------------------------------- casia
def casia_protocol(root: PathLike, folds: Sequence[int] = tuple(range(1, 11))) -> ProtocolData:
    """CASIA NIR-VIS 2.0 view 2: per fold k, gallery ``vis_gallery_k`` and probes ``nir_probe_k``.

    Args:
        root: the CASIA NIR-VIS 2.0 folder (``protocols/``, ``s1``..``s4``).
        folds: folds to evaluate (1..10).

    Raises:
        ConfigError: a fold outside 1..10.
        DatasetError: missing root or protocol file, or a fold without usable images.
    """
    trials: List[IdentificationTrial] = []
    skipped: Dict[str, int] = {}
    resolved = None
    for k in folds:
        index = layouts.index_casia(root, int(k), split="test", keep_unreadable=True)
        resolved = index.root
        _merge_counts(skipped, index.report.counts)
        gallery = [_item(p, i, index.root) for i in index.identities for p in index.vis[i]]
        probes = [_item(p, i, index.root) for i in index.identities for p in index.nir[i]]
        trials.append(IdentificationTrial(f"fold{k}", gallery, probes))
    if not trials:
        raise ConfigError("casia protocol: no folds given; use --fold K (1..10) or --fold all")
    return ProtocolData("casia", "identification", trials, Path(resolved),
                        f"CASIA NIR-VIS 2.0 view 2, folds {','.join(str(k) for k in folds)}: VIS gallery vs NIR "
                        "probes", skipped, {"folds": [int(k) for k in folds]})


# ------------------------------------------------------------------------------------------------- all-vis
def all_vis_protocol(root: PathLike) -> ProtocolData:
    """Every VIS image of an identity in its gallery, every NIR image a probe (generic ``<id>/{nir,vis}``).

    Raises:
        DatasetError: ``root`` is not a generic NIR-VIS tree (the message names the protocol that reads it).
    """
    _check_all_vis_layout(root, *layouts.detect_layout(root))
    index = layouts.index_generic(root, keep_unreadable=True)
    gallery = [_item(p, i, index.root) for i in index.identities for p in index.vis[i]]
    probes = [_item(p, i, index.root) for i in index.identities for p in index.nir[i]]
    return ProtocolData("all-vis", "identification", [IdentificationTrial("all", gallery, probes)], index.root,
                        f"{index.root.name}: all VIS images of an identity as its gallery, NIR probes "
                        "(Oulu-CASIA / BUAA style)", dict(index.report.counts))


def _check_all_vis_layout(root: PathLike, layout: str, why: str) -> None:
    """Refuse the other layouts here: read as a generic tree they only report empty identity folders."""
    if layout == "vis-folders":
        raise DatasetError(f"{root} holds plain identity folders (<id>/<images>; {why}), but protocol all-vis needs "
                           "<id>/nir/ and <id>/vis/ images; evaluate them with --protocol first-image (gallery: "
                           "the first image of each identity, probes: the others; add --nir-sim for simulated NIR)")
    if layout == "casia":
        raise DatasetError(f"{root} is a CASIA NIR-VIS 2.0 root ({why}); evaluate it with --casia ROOT")


# --------------------------------------------------------------------------------------------- first-image
def read_identity_list(path: PathLike, key: Optional[str] = None) -> List[str]:
    """Identity names from a text file (one a line, ``#`` comments) or a JSON file.

    Args:
        path: ``.txt`` or ``.json``; a JSON file holds a list, or a mapping whose ``key`` entry is a list or a
            mapping with an ``identities`` list (the study's split file: ``{"test": {"identities": [...]}}``).
        key: entry of a JSON mapping.

    Raises:
        DatasetError: missing, unreadable or malformed file.
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"identity list not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() != ".json":
        return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"cannot parse identity list {path}: {exc}") from exc
    if isinstance(data, dict):
        if key is None or key not in data:
            raise DatasetError(f"{path} is a mapping; choose one of its entries {sorted(data)} (e.g. {path}:test)")
        data = data[key]
        if isinstance(data, dict):
            data = data.get("identities")
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise DatasetError(f"{path}{':' + key if key else ''} must be a list of identity names")
    return list(data)


def first_image_protocol(root: PathLike, identities: Optional[Sequence[str]] = None,
                         max_probes: Optional[int] = None, min_images: int = 2) -> ProtocolData:
    """First image of each identity as gallery, the others (up to ``max_probes``) as probes.

    On a generic ``<id>/{nir,vis}`` tree the gallery is the first VIS image and the probes the NIR images.

    Args:
        root: VIS-only identity folders (LFW, ORL) or a generic NIR-VIS tree.
        identities: only these identities (all must exist).
        max_probes: at most this many probes per identity, in file name order (None: all).
        min_images: identities with fewer images are skipped (VIS-only folders).
    """
    if max_probes is not None and max_probes < 1:
        raise ConfigError(f"max_probes must be >= 1 or None, got {max_probes}")
    layout, _ = layouts.detect_layout(root)
    if layout == "generic":
        index = layouts.index_generic(root, keep_unreadable=True)
        if identities is not None:
            index = index.subset(identities)
    elif layout == "vis-folders":
        index = layouts.index_vis_folders(root, min_images=min_images, identities=identities,
                                          keep_unreadable=True)  # unreadable probes count as failures
    else:
        raise DatasetError(f"{root} is a CASIA NIR-VIS 2.0 root; use --casia ROOT (protocol casia)")
    gallery, probes = [], []
    for ident in index.identities:
        vis = index.vis[ident]
        gallery.append(_item(vis[0], ident, index.root))
        rest = list(index.nir[ident]) if layout == "generic" else list(vis[1:])
        probes.extend(_item(p, ident, index.root) for p in rest[:max_probes])
    if not probes:
        raise DatasetError(f"{root}: no probe images (every identity has a single image); need >= 2 per identity")
    return ProtocolData("first-image", "identification", [IdentificationTrial("all", gallery, probes)], index.root,
                        f"{index.root.name}: first image of each identity as gallery, "
                        f"{'NIR images' if layout == 'generic' else 'the other images'} as probes",
                        dict(index.report.counts),
                        {"identities": len(index.identities), "max_probes": max_probes, "min_images": min_images})


# ------------------------------------------------------------------------------------------------- folders
def folders_protocol(gallery_dir: PathLike, probes_dir: PathLike) -> ProtocolData:
    """Gallery and probes from two identity-folder trees (``<id>/<images>``); probe identities must be enrolled.

    Raises:
        DatasetError: a folder is missing or empty, or probe identities have no gallery folder.
    """
    g = layouts.index_vis_folders(gallery_dir, min_images=1)  # an unreadable gallery photo enrols nobody
    p = layouts.index_vis_folders(probes_dir, min_images=1, keep_unreadable=True)  # counted as failed probes
    unknown = sorted(set(p.identities) - set(g.identities))
    if unknown:
        raise DatasetError(f"{len(unknown)} probe identities in {p.root} have no gallery folder in {g.root} "
                           f"(closed-set identification needs every probe identity enrolled): {unknown[:10]}")
    # keys are relative to each tree, prefixed so that equal relative paths of the two trees stay distinct
    gallery = [ImageItem(x, i, "gallery/" + _item(x, i, g.root).key) for i in g.identities for x in g.vis[i]]
    probes = [ImageItem(x, i, "probes/" + _item(x, i, p.root).key) for i in p.identities for x in p.vis[i]]
    skipped: Dict[str, int] = {}
    _merge_counts(skipped, g.report.counts)
    _merge_counts(skipped, p.report.counts)
    return ProtocolData("folders", "identification", [IdentificationTrial("all", gallery, probes)], g.root,
                        f"gallery {g.root.name}/ ({len(g.identities)} identities) vs probes {p.root.name}/",
                        skipped, {"gallery": str(g.root), "probes": str(p.root)})


# --------------------------------------------------------------------------------------------------- pairs
def lfw_image_path(images: Path, name: str, number: int) -> Path:
    """``<images>/<name>/<name>_<NNNN>.jpg`` (LFW file naming)."""
    return images / name / f"{name}_{number:04d}.jpg"


def parse_pairs(pairs_file: PathLike) -> List[Tuple[str, int, str, int, bool]]:
    """Lines of an LFW pairs file as ``(name1, i, name2, j, same)``.

    A header line of two integers (``10 300``, the original pairs.txt) is skipped; blank lines are ignored.

    Raises:
        DatasetError: missing file, or a line that is neither ``name i j`` nor ``name1 i name2 j``.
    """
    path = Path(pairs_file)
    if not path.is_file():
        raise DatasetError(f"pairs file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DatasetError(f"pairs file {path} is not a text file; an LFW pairs file has lines 'name i j' or "
                           "'name1 i name2 j'") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) == 2 and number == 1 and all(f.isdigit() for f in fields):
                continue
            if len(fields) == 3:
                pairs.append((fields[0], int(fields[1]), fields[0], int(fields[2]), True))
            elif len(fields) == 4:
                pairs.append((fields[0], int(fields[1]), fields[2], int(fields[3]), False))
            else:
                raise ValueError(f"{len(fields)} fields")
        except ValueError as exc:
            raise DatasetError(f"{path} line {number}: {line.strip()!r} is not 'name i j' or 'name1 i name2 j' "
                               f"({exc})") from None
    if not pairs:
        raise DatasetError(f"pairs file {path} has no pairs")
    return pairs


def pairs_protocol(pairs_file: PathLike, images: PathLike) -> ProtocolData:
    """LFW-style verification pairs.

    Raises:
        DatasetError: unreadable pairs file, missing image folder, or images named by the file that are missing.
    """
    images = Path(images).expanduser()
    if not images.is_dir():
        raise DatasetError(f"pairs image folder not found: {images} (expected <images>/<name>/<name>_<NNNN>.jpg)")
    images = images.resolve()
    rows, missing, n_same = [], [], 0
    for name1, i, name2, j, same in parse_pairs(pairs_file):
        a, b = lfw_image_path(images, name1, i), lfw_image_path(images, name2, j)
        for p in (a, b):
            if not p.is_file():
                missing.append(str(p))
        rows.append((_item(a, name1, images), _item(b, name2, images), same))
        n_same += same
    if missing:
        raise DatasetError(f"{len(missing)} images named in {pairs_file} are missing under {images}, e.g. "
                           f"{missing[:3]}; is --images the folder with <name>/<name>_<NNNN>.jpg?")
    return ProtocolData("pairs", "verification", [PairTrial("pairs", rows)], images,
                        f"{Path(pairs_file).name}: {len(rows)} pairs ({n_same} same, {len(rows) - n_same} different)",
                        {}, {"pairs_file": str(pairs_file)})


PROTOCOLS: Dict[str, Callable[..., ProtocolData]] = {
    "casia": casia_protocol,
    "all-vis": all_vis_protocol,
    "first-image": first_image_protocol,
    "folders": folders_protocol,
    "pairs": pairs_protocol,
}
