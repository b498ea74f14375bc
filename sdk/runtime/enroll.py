"""Enrolment from VIS photos: detect, check, align, embed, add to a gallery; bad photos rejected with reasons."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from hsst.core.errors import DatasetError, ImageReadError
from hsst.core.image import IMAGE_SUFFIXES, read_image
from hsst.face.cropper import FaceCropper
from hsst.runtime.config import QualityConfig
from hsst.runtime.embedder import Embedder
from hsst.runtime.gallery import Gallery
from hsst.runtime.quality import FaceQuality, QualityAssessor

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


class Enroller:
    """Turns enrolment photos into gallery templates.

    A photo is rejected when it has no face, more than one face, or a face below the quality gate
    (``quality`` thresholds and an overall score below ``min_quality``): a bad enrolment photo would
    poison every later match of that person.

    Args:
        finder: the gate's :class:`hsst.face.FaceFinder` (or a detector with ``detect(image) -> (boxes, scores,
            kps)``).
        embedder: the gate's embedder (the same model must enrol and match; its template frames the crops).
        quality: quality thresholds.
        min_quality: smallest overall quality score (0..1).
    """

    def __init__(self, finder, embedder: Embedder, quality: Optional[QualityConfig] = None,
                 min_quality: float = 0.3) -> None:
        self.cropper = FaceCropper.for_model(finder, embedder.meta.preprocess, QualityAssessor(quality))
        self.embedder = embedder
        self.min_quality = min_quality

    def embed_photo(self, image: np.ndarray) -> Tuple[Optional[np.ndarray], str, Optional[FaceQuality]]:
        """``(embedding (D,), "", quality)`` for a usable photo, else ``(None, reason, quality_or_None)``."""
        faces = self.cropper.faces(image)
        if not faces:
            return None, "no face found", None
        if len(faces) > 1:
            return None, f"{len(faces)} faces found; an enrolment photo must show exactly one person", None
        face = faces[0]
        if not face.quality.passed:
            return None, "low quality: " + "; ".join(face.quality.reasons), face.quality
        if face.quality.score < self.min_quality:
            return None, f"low quality: overall score {face.quality.score:.2f} < {self.min_quality:.2f}", face.quality
        return self.embedder.embed([face.aligned])[0], "", face.quality

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

    def enroll_dir(self, gallery: Gallery, folder: Union[str, Path]) -> List[EnrollResult]:
        """Enrol ``<folder>/<identity>/*.jpg`` (several photos per person) and ``<folder>/<identity>.jpg``.

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
        results = [self.enroll_file(gallery, identity, path) for identity, path in jobs]
        ok = sum(r.accepted for r in results)
        logger.info("enrolled %d of %d photos (%d identities) from %s", ok, len(results),
                    len({r.identity for r in results if r.accepted}), root)
        return results
