"""``hsst-gallery``: keys, inspection, removal, bundles, re-embedding and checks of a gallery file.

Every command but ``keygen`` takes ``--gallery FILE`` and keys from ``--keys DIR`` (made by ``keygen``) or the
environment (``HSST_GALLERY_KEY``, ``HSST_GALLERY_VERIFY_KEY``, ``HSST_GALLERY_SIGNING_KEY``); ``--json`` prints
one JSON document on stdout for scripts. Errors end with one line on stderr saying what to do, exit status 1.
"""
from __future__ import annotations

import functools
import json
import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import click
import numpy as np

from hsst.core.errors import HsstError, InputError, ModelError
from hsst.gallery.bundle import export_bundle, import_bundle, read_header
from hsst.gallery.keys import generate_keys, keys_from
from hsst.gallery.records import model_hash
from hsst.gallery.store import GalleryStore

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def _emit(as_json: bool, value: Any, text: Callable[[Any], str]) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True) if as_json else text(value))


def _errors(fn: Callable) -> Callable:
    """HsstError -> one ``Error: ...`` line on stderr and exit status 1 (no traceback)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HsstError as exc:
            raise click.ClickException(str(exc)) from None
    return wrapper


def _gallery_options(fn: Callable) -> Callable:
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON (one document) instead of text.")(fn)
    fn = click.option("--keys", "keys_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                      help="Key folder (hsst-gallery keygen); default: HSST_GALLERY_KEY and friends.")(fn)
    fn = click.option("--gallery", "gallery", type=click.Path(dir_okay=False, path_type=Path), required=True,
                      help="The gallery file.")(fn)
    return _errors(fn)


def embedder_class() -> Any:
    """The gate's embedder (``hsst.runtime.embedder.Embedder``), found through the ``hsst.embedders: onnx``
    entry point (setup.py): the gallery sits below the gate and never imports it."""
    found = entry_points()
    group = found.select(group="hsst.embedders", name="onnx") if hasattr(found, "select") else \
        [ep for ep in found.get("hsst.embedders", []) if ep.name == "onnx"]  # Python 3.8 / 3.9
    for ep in group:
        return ep.load()
    raise ModelError("no 'hsst.embedders' entry point named 'onnx': reinstall hsst (pip install -e .) so that "
                     "re-embed can load models through the gate's embedder")


def _open(gallery: Path, keys_dir: Optional[Path], search: bool = False) -> GalleryStore:
    return GalleryStore.open(gallery, keys_from(keys_dir), search=search)


@click.group(context_settings=CONTEXT)
@click.option("-v", "--verbose", is_flag=True, help="Log progress (INFO) on stderr.")
def main(verbose: bool) -> None:
    """Persistent, encrypted face gallery: inspect, remove, bundle, re-embed, verify."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command(context_settings=CONTEXT)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the keys (created 0700; existing keys are never overwritten).")
@click.option("--no-data", is_flag=True, help="Skip the data key (e.g. a second signing pair).")
@click.option("--no-signing", is_flag=True, help="Skip the Ed25519 bundle signing pair.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_errors
def keygen(out: Path, no_data: bool, no_signing: bool, as_json: bool) -> None:
    """Make a data key (data.key, 0600) and a bundle signing pair (signing.pem 0600, verify.pem).

    The enrolment station keeps all three; each gate gets data.key and verify.pem, never signing.pem.
    """
    if no_data and no_signing:
        raise click.UsageError("--no-data with --no-signing leaves nothing to make")
    written = generate_keys(out, data=not no_data, signing=not no_signing)
    _emit(as_json, {k: str(v) for k, v in written.items()},
          lambda w: "\n".join(f"{k:8s} {v}" for k, v in w.items()))


@main.command(name="list", context_settings=CONTEXT)
@_gallery_options
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many identities.")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many first.")
def list_(gallery: Path, keys_dir: Optional[Path], as_json: bool, limit: Optional[int], offset: int) -> None:
    """Enrolled identities (id, name, templates, photos, last change)."""
    with _open(gallery, keys_dir) as store:
        people = [p.to_dict() for p in store.list(limit=limit, offset=offset)]
    _emit(as_json, people, lambda rows: "\n".join(
        f"{r['id']}\t{r['name'] or ''}\t{r['templates']} templates\t{r['photos']} photos\t{r['updated']}"
        for r in rows) or "(no identities)")


@main.command(context_settings=CONTEXT)
@_gallery_options
@click.argument("identity")
def show(gallery: Path, keys_dir: Optional[Path], as_json: bool, identity: str) -> None:
    """One identity: attributes, templates (model, quality verdict), photos and its audit trail."""
    with _open(gallery, keys_dir) as store:
        found = store.get(identity)
        if found is None:
            raise InputError(f"identity {identity!r} is not in {gallery}; `hsst-gallery list` shows who is")
        out = dict(found.to_dict(), template_list=[t.to_dict() for t in store.templates(identity)],
                   audit=[a.to_dict() for a in store.audit(identity_id=identity)])
    _emit(as_json, out, _show_text)


def _show_text(d: Dict[str, Any]) -> str:
    lines = [f"{d['id']}  {d['name'] or ''}", f"  attributes: {json.dumps(d['attributes'], sort_keys=True)}",
             f"  created {d['created']}, updated {d['updated']}, {d['photos']} kept photo(s)"]
    for t in d["template_list"]:
        lines.append(f"  template {t['id']}  model {t['model'][:16]}  quality {json.dumps(t['quality'])}")
    for a in d["audit"]:
        lines.append(f"  {a['at']}  {a['action']:8s} by {a['actor']}  {json.dumps(a['detail'], sort_keys=True)}")
    return "\n".join(lines)


@main.command(context_settings=CONTEXT)
@_gallery_options
@click.argument("identity")
@click.option("--actor", default=None, help="Who removes (audit); default user@host.")
def remove(gallery: Path, keys_dir: Optional[Path], as_json: bool, identity: str, actor: Optional[str]) -> None:
    """Remove an identity with its templates and photos (one transaction; audited)."""
    with _open(gallery, keys_dir) as store:
        if not store.remove(identity, actor=actor):
            raise InputError(f"identity {identity!r} is not in {gallery}; nothing removed")
        version = store.version
    _emit(as_json, {"removed": identity, "version": version}, lambda d: f"removed {identity} (version {version})")


@main.command(context_settings=CONTEXT)
@_gallery_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Bundle file to write.")
@click.option("--since", type=click.IntRange(min=0), default=None,
              help="Only the changes after this version (what a gate at that version needs); default: full.")
def export(gallery: Path, keys_dir: Optional[Path], as_json: bool, out: Path, since: Optional[int]) -> None:
    """Write a signed bundle for the gates (needs the signing key)."""
    keys = keys_from(keys_dir)
    with GalleryStore.open(gallery, keys, search=False) as store:
        header = export_bundle(store, out, keys, since=since)
    _emit(as_json, dict(header.to_dict(), path=str(out)), lambda h: (
        f"wrote {out}: {h['kind']} bundle, version {h['version']}"
        + (f" (changes since {h['base_version']})" if h["kind"] == "incremental" else "")
        + f", {h['identities']} identities, {h['templates']} templates, {h['removed']} removals"))


@main.command(name="import", context_settings=CONTEXT)
@_gallery_options
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The gate's model file: a new gallery is bound to it (default: the bundle's model).")
@click.option("--new-source", is_flag=True, help="Accept a full bundle from another station than the last one.")
def import_(gallery: Path, keys_dir: Optional[Path], as_json: bool, bundle: Path, model: Optional[Path],
            new_source: bool) -> None:
    """Verify a signed bundle and apply it atomically (creates the gallery if missing)."""
    keys = keys_from(keys_dir)
    header = read_header(bundle, keys)  # signature first: nothing is created for a bad bundle
    gate_model = model_hash(model) if model is not None else None
    if gallery.exists():
        store = GalleryStore.open(gallery, keys, model=gate_model, search=False)
    else:
        store = GalleryStore.create(gallery, keys, gate_model or header.model, dim=header.dim)
    with store:
        result = import_bundle(store, bundle, keys, new_source=new_source)
    _emit(as_json, result, lambda r: (
        f"imported {bundle}: {r['bundle']['kind']} bundle version {r['bundle']['version']}; "
        f"{r['upserted']} identities in, {r['removed']} removed"))


@main.command(name="re-embed", context_settings=CONTEXT)
@_gallery_options
@click.option("--model", "model", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="The new model (.onnx with its .json sidecar).")
@click.option("--drop-missing", is_flag=True,
              help="Remove identities that cannot be re-embedded (no kept aligned photo) instead of refusing.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="onnxruntime intra-op threads.")
def re_embed(gallery: Path, keys_dir: Optional[Path], as_json: bool, model: Path, drop_missing: bool,
             threads: Optional[int]) -> None:
    """Re-make every template with a new model from the kept aligned enrolment photos (one transaction)."""
    options = {"threads": threads} if threads else {}
    embedder = embedder_class().from_file(model, **options)
    size = embedder.crop_size

    def embed(crops: List[np.ndarray]) -> np.ndarray:
        for crop in crops:
            if crop.shape[:2] != (size, size):
                raise InputError(f"a kept aligned photo is {crop.shape[1]}x{crop.shape[0]}, the model takes "
                                 f"{size}x{size} crops: re-embedding it needs the face path (detect and align "
                                 "again from the raw photo), which re-embed does not run; re-enrol instead")
        return embedder.embed(crops)

    with _open(gallery, keys_dir) as store:
        report = store.re_embed(embed, model_hash(model), drop_missing=drop_missing)
    _emit(as_json, report.to_dict(), lambda r: (
        f"re-embedded {r['identities']} identities ({r['templates']} templates) with model {r['model'][:16]} "
        f"({r['dim']}-d)" + (f"; removed {len(r['dropped'])} without a kept aligned photo: "
                             f"{', '.join(r['dropped'][:10])}" if r["dropped"] else "")))


@main.command(context_settings=CONTEXT)
@_gallery_options
def stats(gallery: Path, keys_dir: Optional[Path], as_json: bool) -> None:
    """Counts, model and key binding, versions, file size."""
    with _open(gallery, keys_dir) as store:
        out = store.stats()
    _emit(as_json, out, lambda d: "\n".join(f"{k:15s} {v}" for k, v in d.items()))


@main.command(context_settings=CONTEXT)
@_gallery_options
def verify(gallery: Path, keys_dir: Optional[Path], as_json: bool) -> None:
    """Check SQLite integrity, the key, every sealed row, model binding and file modes (exit 1 on a problem)."""
    with _open(gallery, keys_dir) as store:
        report = store.verify()
    _emit(as_json, report.to_dict(), lambda r: "\n".join(
        [f"integrity {r['integrity']}; {r['identities']} identities, {r['templates']} templates, "
         f"{r['photos']} photos checked"] + [f"PROBLEM: {p}" for p in r["problems"]]))
    if not report.ok:
        raise click.ClickException(f"{len(report.problems)} problem(s) in {gallery}; first: {report.problems[0]}")
