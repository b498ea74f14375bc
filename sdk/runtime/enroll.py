"""Enrolment from VIS photos: detect, check (size, blur, pose, exposure, no mask), align, embed, warn about
duplicates, add to a gallery; bad photos rejected with reasons."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from dataclasses import field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from hsst.core.errors import DatasetError, ImageReadError
from hsst.core.image import IMAGE_SUFFIXES, read_image
from hsst.face.cropper import FaceCropper
from hsst.runtime.config import QualityConfig
from hsst.runtime.embedder import Embedder
from hsst.runtime.gallery import Gallery
from hsst.runtime.quality import EnrolmentCheck, FaceQuality, QualityAssessor

logger = logging.getLogger(__name__)


@dataclass
class EnrollResult:
    """Outcome of one enrolment photo.

    Attributes:
        identity: who the photo is of.
        path: the photo ("<array>" for arrays).
        accepted: the photo's template went into the gallery.
        reason: why it was rejected (empty when accepted).
        quality: the face's quality when a single face was found.
    """

    identity: str
    path: str
    accepted: bool
    reason: str = ""
    quality: Optional[FaceQuality] = None

    def to_dict(self) -> Dict[str, object]:
        return {"identity": self.identity, "path": self.path, "accepted": self.accepted, "reason": self.reason,
                "quality": self.quality.to_dict() if self.quality else None}


@dataclass
class EnrollReport:
    """Outcome of enrolling one identity from several photos.

    Attributes:
        identity: the id enrolled.
        photos: one :class:`EnrollResult` per photo, with the reason of each refusal.
        templates: templates stored (0: nothing was stored).
        duplicates: ``(other identity, cosine)`` pairs at or above the decision threshold: the face already
            matches someone else (the same person enrolled twice, or photos mixed up). A warning, not a refusal.
    """

    identity: str
    photos: List[EnrollResult]
    templates: int = 0
    duplicates: List[Tuple[str, float]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.templates > 0

    def to_dict(self) -> Dict[str, Any]:
        return {"identity": self.identity, "accepted": self.accepted, "templates": self.templates,
                "duplicates": [[who, round(score, 4)] for who, score in self.duplicates],
                "photos": [r.to_dict() for r in self.photos]}


class Enroller:
    """Turns enrolment photos into gallery templates.

    A photo is rejected when it has no face, more than one face, a face below the quality gate (``quality``
    thresholds and an overall score below ``min_quality``), or fails the enrolment checks (exposure, a mask):
    a bad enrolment photo would poison every later match of that person.

    Args:
        finder: the gate's :class:`hsst.face.FaceFinder` (or a detector with ``detect(image) -> (boxes, scores,
            kps)``).
        embedder: the gate's embedder (the same model must enrol and match; its template frames the crops).
        quality: quality thresholds.
        min_quality: smallest overall quality score (0..1).
        checks: the enrolment-only checks (default :class:`EnrolmentCheck` thresholds).
    """

    def __init__(self, finder, embedder: Embedder, quality: Optional[QualityConfig] = None,
                 min_quality: float = 0.3, checks: Optional[EnrolmentCheck] = None) -> None:
        self.cropper = FaceCropper.for_model(finder, embedder.meta.preprocess, QualityAssessor(quality))
        self.embedder = embedder
        self.min_quality = min_quality
        self.checks = checks or EnrolmentCheck()

    def check_photo(self, image: np.ndarray) -> Tuple[Optional[np.ndarray], str, Optional[FaceQuality]]:
        """``(aligned crop, "", quality)`` for a usable photo, else ``(None, reason, quality_or_None)``."""
        faces = self.cropper.faces(image)
        if not faces:
            return None, "no face found", None
        if len(faces) > 1:
            return None, f"{len(faces)} faces found; an enrolment photo must show exactly one person", None
        face = faces[0]
        reasons = list(face.quality.reasons) + self.checks.reasons(face.aligned)
        if reasons:
            return None, "low quality: " + "; ".join(reasons), face.quality
        if face.quality.score < self.min_quality:
            return None, f"low quality: overall score {face.quality.score:.2f} < {self.min_quality:.2f}", face.quality
        return face.aligned, "", face.quality

    def embed_photo(self, image: np.ndarray) -> Tuple[Optional[np.ndarray], str, Optional[FaceQuality]]:
        """``(embedding (D,), "", quality)`` for a usable photo, else ``(None, reason, quality_or_None)``."""
        aligned, reason, quality = self.check_photo(image)
        if aligned is None:
            return None, reason, quality
        return self.embedder.embed([aligned])[0], "", quality

    def enroll(self, gallery: Gallery, identity: str, photos: Sequence[Union[str, Path, np.ndarray]], *,
               name: Optional[str] = None, attributes: Optional[Dict[str, Any]] = None,
               threshold: Optional[float] = None) -> EnrollReport:
        """Enrol one identity from several photos (files or arrays): every usable photo becomes a template.

        Args:
            gallery: where the templates go (a :class:`hsst.gallery.GalleryStore` also keeps the name, the
                quality verdicts and the aligned crops, sealed, so the gallery can be re-embedded later).
            identity: the id (badge or employee number...).
            photos: VIS photos with one face each.
            name: display name.
            attributes: JSON-serialisable facts (badge number, department...).
            threshold: the decision threshold; a usable photo that matches another identity at or above it is
                reported in ``duplicates`` and logged as a warning (None: no duplicate check).

        Returns:
            The report; nothing is stored when no photo is usable.
        """
        results: List[EnrollResult] = []
        crops: List[np.ndarray] = []
        qualities: List[FaceQuality] = []
        for i, photo in enumerate(photos):
            label = str(photo) if not isinstance(photo, np.ndarray) else f"<array {i}>"
            try:
                image = photo if isinstance(photo, np.ndarray) else read_image(photo)
            except ImageReadError as exc:
                results.append(EnrollResult(identity, label, False, str(exc)))
                continue
            aligned, reason, quality = self.check_photo(image)
            results.append(EnrollResult(identity, label, aligned is not None, reason, quality))
            if aligned is None:
                logger.warning("enrolment photo %s of %s rejected: %s", label, identity, reason)
                continue
            crops.append(aligned)
            qualities.append(quality)
        report = EnrollReport(identity, results)
        if not crops:
            return report
        templates = np.ascontiguousarray(self.embedder.embed(crops), np.float32)
        if threshold is not None:
            report.duplicates = self.duplicates(gallery, identity, templates, threshold)
        if hasattr(gallery, "enrol"):  # the store keeps what the runtime's Gallery interface has no place for
            gallery.enrol(identity, templates, name=name, attributes=attributes,
                          quality=[q.to_dict() for q in qualities], photos=crops, if_exists="add")
        else:
            meta = dict(attributes or {})
            if name is not None:
                meta["name"] = name
            gallery.add(identity, templates, meta)
        report.templates = len(templates)
        return report

    @staticmethod
    def duplicates(gallery: Gallery, identity: str, templates: np.ndarray,
                   threshold: float) -> List[Tuple[str, float]]:
        """Other identities that ``templates`` match at or above ``threshold`` (best score each), logged."""
        if not len(gallery):
            return []
        ids, scores = gallery.search(templates, min(len(gallery), 3))
        best: Dict[str, float] = {}
        for who, score in zip(ids.ravel(), scores.ravel()):
            if who is not None and who != identity and score >= threshold:
                best[who] = max(best.get(who, -1.0), float(score))
        found = sorted(best.items(), key=lambda kv: -kv[1])
        for who, score in found:
            logger.warning("enrolling %s: the face already matches %s (cosine %.3f >= threshold %.3f); the same "
                           "person enrolled twice, or photos mixed up?", identity, who, score, threshold)
        return found

    def enroll_image(self, gallery: Gallery, identity: str, image: np.ndarray, path: str = "<array>") -> EnrollResult:
        """Enrol one photo (array) of ``identity``."""
        emb, reason, quality = self.embed_photo(image)
        if emb is None:
            logger.warning("enrolment photo %s of %s rejected: %s", path, identity, reason)
            return EnrollResult(identity, path, False, reason, quality)
        photos = list(gallery.metadata(identity).get("photos", [])) if identity in gallery else []
        gallery.add(identity, np.ascontiguousarray(emb[None, :], np.float32), {"photos": photos + [path]})
        return EnrollResult(identity, path, True, "", quality)

    def enroll_file(self, gallery: Gallery, identity: str, path: Union[str, Path]) -> EnrollResult:
        """Enrol one photo file; unreadable files are rejected with the reason."""
        try:
            image = read_image(path)
        except ImageReadError as exc:
            return EnrollResult(identity, str(path), False, str(exc))
        return self.enroll_image(gallery, identity, image, str(path))

    def enroll_dir(self, gallery: Gallery, folder: Union[str, Path], skip: Sequence[str] = ()) -> List[EnrollResult]:
        """Enrol ``<folder>/<identity>/*.jpg`` (several photos per person) and ``<folder>/<identity>.jpg``.

        Args:
            gallery: where the templates go.
            folder: the enrolment folder.
            skip: identities left out (already enrolled in a persistent gallery).

        Raises:
            DatasetError: the folder is missing or has no photos.
        """
        root = Path(folder)
        if not root.is_dir():
            raise DatasetError(f"enrolment folder not found: {root}")
        jobs: List[Tuple[str, Path]] = []
        for entry in sorted(root.iterdir()):
            if entry.is_dir():
                jobs += [(entry.name, p) for p in sorted(entry.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
            elif entry.suffix.lower() in IMAGE_SUFFIXES:
                jobs.append((entry.stem, entry))
        if not jobs:
            raise DatasetError(f"enrolment folder {root} has no photos; expected <identity>/<photo>.jpg or "
                               "<identity>.jpg")
        skip = set(skip)
        results = [self.enroll_file(gallery, identity, path) for identity, path in jobs if identity not in skip]
        ok = sum(r.accepted for r in results)
        logger.info("enrolled %d of %d photos (%d identities) from %s%s", ok, len(results),
                    len({r.identity for r in results if r.accepted}), root,
                    f"; {len(skip & {i for i, _ in jobs})} already enrolled, skipped" if skip else "")
        return results
