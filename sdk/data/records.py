"""What a dataset scan found: the NIR-VIS index of identities and images, and the report of what was skipped.

Every layout reader (:mod:`hsst.data.layouts`) returns the same :class:`NirVisIndex`, so datasets,
samplers and the trainer never care whether the images came from CASIA NIR-VIS 2.0, a generic
``<id>/{nir,vis}`` tree or VIS-only folders with simulated NIR.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from hsst.core.errors import DatasetError

logger = logging.getLogger(__name__)

#: Why an image or identity was left out of an index.
SKIP_REASONS = {
    "unreadable": "unreadable or corrupt image",
    "missing_file": "listed in a protocol file but not found on disk",
    "not_an_image": "file without an image suffix",
    "empty_identity": "identity folder without images",
    "one_modality": "identity with images of only one modality",
    "too_few_images": "identity with fewer images than required",
}
#: Reasons that point at a broken file (logged one by one, with the path); the others are dataset filtering.
FILE_PROBLEMS = ("unreadable", "missing_file")
_LOG_LIMIT = 20


@dataclass
class SkippedItem:
    """One image or identity left out of an index.

    Attributes:
        path: the file or identity folder (for protocol lines: the line as written).
        reason: a key of :data:`SKIP_REASONS`.
        detail: the specifics (decoder message, image counts, protocol file and line number).
    """

    path: str
    reason: str
    detail: str = ""


@dataclass
class ScanReport:
    """Counts and lists of everything a scan skipped, with reasons.

    Attributes:
        root: the dataset root that was scanned.
        layout: layout name (``casia``, ``generic``, ``vis-folders``).
        num_images: images kept in the index (NIR + VIS, counting a synthetic-NIR file once).
        num_identities: identities kept in the index.
        skipped: every skipped file or identity, in scan order.
    """

    root: Path
    layout: str
    num_images: int = 0
    num_identities: int = 0
    skipped: List[SkippedItem] = field(default_factory=list)
    _logged: bool = field(default=False, repr=False, compare=False)

    def add(self, path: object, reason: str, detail: str = "") -> None:
        """Record a skipped file or identity."""
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}; expected one of {sorted(SKIP_REASONS)}")
        self.skipped.append(SkippedItem(str(path), reason, detail))

    @property
    def counts(self) -> Dict[str, int]:
        """Number of skipped items per reason (only reasons that occurred)."""
        counts: Dict[str, int] = {}
        for item in self.skipped:
            counts[item.reason] = counts.get(item.reason, 0) + 1
        return counts

    def items(self, reason: str) -> List[SkippedItem]:
        """Skipped items with one reason."""
        return [item for item in self.skipped if item.reason == reason]

    def summary(self) -> str:
        """One line: what was kept and what was skipped, by reason."""
        text = (f"{self.layout} dataset at {self.root}: {self.num_identities} identities, "
                f"{self.num_images} images")
        counts = self.counts
        if counts:
            parts = [f"{SKIP_REASONS[reason]}: {n}" for reason, n in sorted(counts.items())]
            text += "; skipped: " + ", ".join(parts)
        return text

    def log(self, log: Optional[logging.Logger] = None) -> None:
        """Log the summary and every broken file once; repeated calls do nothing.

        Broken files (unreadable, missing) are logged one by one with their path; filtered identities are
        logged as a count with the first few names, since on LFW thousands of single-image identities are
        expected and not a problem.
        """
        if self._logged:
            return
        self._logged = True
        log = log or logger
        log.info(self.summary())
        for item in self.skipped:
            if item.reason in FILE_PROBLEMS:
                log.warning("skipped %s: %s%s", item.path, SKIP_REASONS[item.reason],
                            f" ({item.detail})" if item.detail else "")
        for reason, count in sorted(self.counts.items()):
            if reason in FILE_PROBLEMS:
                continue
            names = [item.path for item in self.items(reason)[:_LOG_LIMIT]]
            more = f" and {count - len(names)} more" if count > len(names) else ""
            log.debug("skipped %d (%s): %s%s", count, SKIP_REASONS[reason], ", ".join(names), more)


class _Count(int):
    """An int that can also be called, so ``index.num_identities`` and ``index.num_identities()`` both work."""

    def __call__(self) -> int:
        return int(self)


@dataclass
class NirVisIndex:
    """Identities and their NIR and VIS images.

    Attributes:
        identities: identity names, sorted; the label of an identity is its position here.
        nir: identity -> NIR image paths (sorted). For ``synthetic_nir`` indexes these are the VIS files.
        vis: identity -> VIS image paths (sorted).
        synthetic_nir: True when the NIR side is produced from VIS images by a transform (simulated NIR).
        root: the dataset root.
        layout: layout name (``casia``, ``generic``, ``vis-folders``).
        report: what the scan skipped.
    """

    identities: List[str]
    nir: Dict[str, List[Path]]
    vis: Dict[str, List[Path]]
    synthetic_nir: bool
    root: Path
    layout: str
    report: ScanReport
    _labels: Dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if list(self.identities) != sorted(self.identities):
            raise ValueError("NirVisIndex.identities must be sorted")
        self._labels = {identity: i for i, identity in enumerate(self.identities)}

    @property
    def num_identities(self) -> int:
        """Number of identities (usable as attribute or call)."""
        return _Count(len(self.identities))

    def __len__(self) -> int:
        return len(self.identities)

    @property
    def num_images(self) -> int:
        """Distinct image files in the index."""
        files = set()
        for identity in self.identities:
            files.update(self.nir[identity])
            files.update(self.vis[identity])
        return len(files)

    def label_of(self, identity: str) -> int:
        """Integer label of ``identity`` (its position in :attr:`identities`)."""
        try:
            return self._labels[identity]
        except KeyError:
            raise DatasetError(f"identity {identity!r} is not in the {self.layout} dataset at {self.root}") from None

    def subset(self, identities: Iterable[str]) -> "NirVisIndex":
        """A new index with only ``identities`` (relabelled 0..n-1 in sorted order); the report is shared."""
        wanted = sorted(set(identities))
        unknown = [i for i in wanted if i not in self._labels]
        if unknown:
            raise DatasetError(f"{len(unknown)} identities are not in the {self.layout} dataset at {self.root}: "
                               f"{unknown[:10]}")
        return NirVisIndex(identities=wanted, nir={i: list(self.nir[i]) for i in wanted},
                           vis={i: list(self.vis[i]) for i in wanted}, synthetic_nir=self.synthetic_nir,
                           root=self.root, layout=self.layout, report=self.report)

    def _relative(self, path: Path) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return Path(path).as_posix()

    def fingerprint(self) -> str:
        """sha256 over the sorted (modality, identity, relative path, size) of every image.

        Independent of where the dataset root lies, so a checkpoint can tell whether it is resumed on the same
        data on another machine.

        Raises:
            DatasetError: an indexed file disappeared since the scan.
        """
        rows = []
        for modality, table in (("nir", self.nir), ("vis", self.vis)):
            for identity in self.identities:
                for path in table[identity]:
                    try:
                        size = Path(path).stat().st_size
                    except OSError as exc:
                        raise DatasetError(f"indexed image {path} is gone ({exc}); re-scan the dataset") from exc
                    rows.append(f"{modality}\t{identity}\t{self._relative(path)}\t{size}")
        rows.sort()
        digest = hashlib.sha256()
        digest.update(f"synthetic_nir={self.synthetic_nir}\n".encode())
        for row in rows:
            digest.update(row.encode("utf-8") + b"\n")
        return digest.hexdigest()
