"""``hsst-mask``: aligned (optionally simulated-NIR, masked) crops of an identity-folder dataset, in parallel.

::

    hsst-mask --in /data/lfw --out /data/lfw-masked-nir --nir-sim --types surgical,kn95,n95,cloth \\
        --seed 0 --workers 2 --align 112
    hsst-mask sheet --in /work/shared/datasets/lfw --out build/contact_sheet.png

Every image under ``<in>/<identity>/`` gets one record in ``<out>/manifest.jsonl`` (source, output, status,
mask type, parameters, landmarks); faces are written to ``<out>/<identity>/<name>.png`` atomically (temporary
file + rename). Images without a face or unreadable are recorded with their status and counted in the
summary, never dropped. A run that writes no crop at all (every image unreadable or without a face, and none
done before) is an error: its manifest is removed again and the exit status is 1. A rerun skips sources whose
last record is ``ok`` and whose output exists. Each image's draws depend only on ``(seed, relative path)``, so
results do not depend on ``--workers``.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import click
import cv2
import numpy as np

from hsst.core.alignment import align_face
from hsst.core.errors import DatasetError, HsstError, ImageReadError
from hsst.core.image import IMAGE_SUFFIXES, read_image, to_bgr

logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"


@dataclass
class JobConfig:
    """What every worker does with an image."""

    in_dir: str
    out_dir: str
    types: Tuple[str, ...]
    mask: bool
    nir_sim: bool
    seed: int
    align: int
    textures: Optional[str] = None


def list_sources(root: Path) -> Tuple[List[str], List[str]]:
    """Relative paths of the images under ``root/<identity>/`` and of other (ignored) files there."""
    if not root.is_dir():
        raise DatasetError(f"--in {root}: folder not found")
    images, other = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(p for p in folder.iterdir() if p.is_file()):
            (images if f.suffix.lower() in IMAGE_SUFFIXES else other).append(f.relative_to(root).as_posix())
    if not images:
        raise DatasetError(f"--in {root}: no images found in <identity>/ sub-folders "
                           f"(expected files ending in {', '.join(IMAGE_SUFFIXES)})")
    return images, other


def read_manifest(path: Path) -> Dict[str, dict]:
    """Last record per source of an existing manifest (a torn last line from a killed run is ignored)."""
    records: Dict[str, dict] = {}
    if not path.is_file():
        return records
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "source" in rec:
                records[rec["source"]] = rec
    return records


def write_atomic(path: Path, image: np.ndarray) -> None:
    """PNG-encode ``image`` to ``path`` through a temporary file in the same folder and a rename."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise HsstError(f"PNG encoding failed for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.tobytes())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


_WORKER: dict = {}


def _init_worker(config: JobConfig) -> None:
    from hsst.synth.mask.synthesizer import MaskSynthesizer
    from hsst.synth.nir import NirSimulator

    cv2.setNumThreads(1)
    _WORKER["config"] = config
    _WORKER["synth"] = MaskSynthesizer(types=config.types, seed=config.seed, textures=config.textures)
    _WORKER["nir"] = NirSimulator()


def process_one(rel: str) -> dict:
    """Make the output of one source image; returns its manifest record (never raises for bad images)."""
    from hsst.synth.mask.synthesizer import rng_for

    config: JobConfig = _WORKER["config"]
    synth = _WORKER["synth"]
    out_rel = str(Path(rel).with_suffix(".png").as_posix())
    record = {"source": rel, "output": out_rel, "status": "ok", "mask_type": None, "params": {},
              "landmarks": None, "nir_sim": config.nir_sim, "align": config.align}
    try:
        image = to_bgr(read_image(Path(config.in_dir) / rel))
    except (ImageReadError, HsstError) as exc:
        record.update(status="unreadable", error=str(exc), output=None)
        return record
    rng = rng_for(config.seed, rel)
    try:
        fitted = synth.fit_face(image)
        if fitted is None:
            record.update(status="no_face", output=None)
            return record
        vertices, landmarks, score = fitted
        record["landmarks"] = np.round(landmarks, 2).tolist()
        record["params"]["det_score"] = round(score, 4)
        if config.mask:
            result = synth.synthesize(image, rng=rng, nir=config.nir_sim, face=vertices)
            image = result.image
            record["mask_type"] = result.mask_type
            record["params"]["mask"] = result.params
        if config.nir_sim:
            sim = _WORKER["nir"]
            nir_params = sim.sample(rng)
            image = sim.apply(image, nir_params, center=landmarks.mean(0))
            record["params"]["nir"] = {k: (round(v, 4) if isinstance(v, float) else v)
                                       for k, v in nir_params.to_dict().items()}
        crop = align_face(image, landmarks, config.align)
        write_atomic(Path(config.out_dir) / out_rel, crop)
    except HsstError as exc:
        record.update(status="error", error=str(exc), output=None)
    except Exception as exc:   # a worker must report, not die: the record names the file and the error
        logger.exception("failed on %s", rel)
        record.update(status="error", error=f"{type(exc).__name__}: {exc}", output=None)
    return record


def run(config: JobConfig, workers: int = 1, limit: Optional[int] = None, progress: bool = True) -> Counter:
    """Process a dataset; returns the status counts of this run (``skipped`` = already done)."""
    from tqdm import tqdm

    in_dir, out_dir = Path(config.in_dir), Path(config.out_dir)
    if in_dir.resolve() == out_dir.resolve():
        raise DatasetError("--out must differ from --in (outputs would be mixed with the sources)")
    sources, other = list_sources(in_dir)
    if limit is not None:
        sources = sources[:limit]
    created = [p for p in (out_dir, out_dir / MANIFEST) if not p.exists()]  # removed again if nothing is written
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST
    done = read_manifest(manifest_path)
    todo = [s for s in sources if not (done.get(s, {}).get("status") == "ok"
                                       and (out_dir / str(done[s].get("output"))).is_file())]
    counts: Counter = Counter(skipped=len(sources) - len(todo))
    first_error: Dict[str, str] = {}
    if other:
        counts["ignored_non_image"] = len(other)
        logger.warning("%d files without an image suffix ignored, e.g. %s", len(other), other[0])
    with open(manifest_path, "a", encoding="utf-8") as manifest:
        bar = tqdm(total=len(todo), unit="img", disable=not progress, desc="hsst-mask")
        if workers <= 1:
            _init_worker(config)
            results = map(process_one, todo)
            pool = None
        else:
            # ProcessPoolExecutor, not multiprocessing.Pool: a worker that dies (or whose initializer fails)
            # breaks the pool with an error instead of being respawned forever while the parent waits.
            pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                       initargs=(config,))
            results = pool.map(process_one, todo, chunksize=4)
        try:
            for record in results:
                manifest.write(json.dumps(record) + "\n")
                manifest.flush()
                counts[record["status"]] += 1
                if record["status"] != "ok":
                    first_error.setdefault(record["status"], f"{record['source']}: {record.get('error', 'no face')}")
                bar.update(1)
        except BrokenProcessPool as exc:
            raise HsstError(f"a hsst-mask worker process died ({exc}); the {sum(counts.values())} images done are in "
                            f"{manifest_path}: rerun the same command to resume, or use --workers 1 to see the "
                            "error") from exc
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    if todo and not counts["ok"] and not counts["skipped"]:
        _remove_created(created)
        raise DatasetError(_nothing_written(in_dir, counts, first_error))
    return counts


def _remove_created(paths: List[Path]) -> None:
    """Remove the manifest (and output folder) a run created, when it wrote nothing: no output that only
    claims a dataset was processed."""
    for path in reversed(paths):
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
        elif path.exists():
            path.unlink()


def _nothing_written(in_dir: Path, counts: Counter, first_error: Dict[str, str]) -> str:
    failed = {k: counts[k] for k in ("unreadable", "no_face", "error") if counts[k]}
    total = sum(failed.values())
    example = first_error.get("unreadable") or first_error.get("error") or first_error.get("no_face", "")
    return (f"--in {in_dir}: no crop written, none of its {total} image(s) gave a face ("
            + ", ".join(f"{k}={v}" for k, v in failed.items()) + f"; e.g. {example}); check that --in holds "
            "readable face photos in <identity>/ sub-folders")


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--in", "in_dir", type=click.Path(file_okay=False, path_type=Path), help="<in>/<identity>/<images>")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="output folder")
@click.option("--nir-sim", is_flag=True, help="simulate NIR (labelled simulated NIR) after masking")
@click.option("--types", default="surgical,kn95,n95,cloth", show_default=True, help="mask types, comma-separated")
@click.option("--no-mask", is_flag=True, help="only align (and NIR-simulate)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="worker processes")
@click.option("--align", type=click.Choice(["112", "144"]), default="112", show_default=True, help="crop size")
@click.option("--limit", type=int, default=None, help="process only the first N images (sorted)")
@click.option("--textures", type=click.Path(file_okay=False), default=None,
              help="folder of extra cloth print images (read at run time)")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def main(ctx, in_dir, out_dir, nir_sim, types, no_mask, seed, workers, align, limit, textures, verbose):
    """Aligned, optionally masked and NIR-simulated crops of an identity-folder dataset, with a manifest."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if ctx.invoked_subcommand is not None:
        return
    if in_dir is None or out_dir is None:
        raise click.UsageError("--in and --out are required (or use: hsst-mask sheet --in DIR --out FILE.png)")
    from hsst.synth.mask.templates import get_template

    type_list = tuple(t.strip() for t in types.split(",") if t.strip())
    try:
        for t in type_list:
            get_template(t)
        if workers < 1:
            raise click.BadParameter("--workers must be >= 1")
        config = JobConfig(str(in_dir), str(out_dir), type_list, not no_mask, nir_sim, seed, int(align), textures)
        start = time.time()
        counts = run(config, workers=workers, limit=limit)
    except HsstError as exc:
        raise click.ClickException(str(exc)) from None
    elapsed = time.time() - start
    new = sum(v for k, v in counts.items() if k not in ("skipped", "ignored_non_image"))
    click.echo(f"hsst-mask: {new} processed in {elapsed:.1f} s ({new / max(elapsed, 1e-9):.1f} img/s), "
               f"ok={counts['ok']} no_face={counts['no_face']} unreadable={counts['unreadable']} "
               f"error={counts['error']} skipped(already done)={counts['skipped']}"
               + (f" ignored_non_image={counts['ignored_non_image']}" if counts["ignored_non_image"] else ""))
    click.echo(f"manifest: {Path(out_dir) / MANIFEST}" + ("  (outputs are simulated NIR)" if nir_sim else ""))


@main.command("sheet")
@click.option("--in", "in_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="identity-folder dataset (e.g. shared/datasets/lfw)")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG file")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--scan", type=int, default=600, show_default=True, help="images scanned to find poses")
def sheet(in_dir, out_path, seed, scan):
    """Contact sheet: original / simulated NIR / masked simulated NIR over poses and mask types."""
    from hsst.synth.contact_sheet import make_contact_sheet

    try:
        make_contact_sheet(in_dir, out_path, seed=seed, scan=scan)
    except HsstError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"contact sheet (simulated NIR): {out_path}")


if __name__ == "__main__":
    main()
