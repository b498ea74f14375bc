"""Command-line entry points: ``hsst-gate`` (the streaming gate), ``hsst-identify`` (single images, JSON) and
``hsst-enroll`` (one identity into the gallery store)."""
from __future__ import annotations

import json
import logging
import signal
from typing import Any, Dict, Optional, Tuple

import click

from hsst.core.errors import ConfigError, DatasetError, HsstError
from hsst.core.image import read_image
from hsst.runtime.config import load_config

logger = logging.getLogger(__name__)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _overrides(source: Optional[str], model: Optional[str], enroll: Optional[str],
               events: Optional[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if source is not None:
        out["source.uri"] = source
    if model is not None:
        out["embedder.model"] = model
        if model.endswith(".engine"):
            out["embedder.backend"] = "tensorrt"
    if enroll is not None:
        out["gallery.enroll_dir"] = enroll
    if events is not None:
        out["events.jsonl"] = events
    return out


def _enroll(gate, folder: Optional[str], allow_empty: bool) -> None:
    """Enrol ``folder``; an empty gallery is an error unless ``allow_empty`` (every face would be unknown)."""
    rejected = []
    if folder:
        rejected = [r for r in gate.enroll_dir(folder) if not r.accepted]
        for r in rejected:
            click.echo(f"enrolment rejected: {r.path}: {r.reason}", err=True)
    if len(gate.gallery) or allow_empty:
        return
    if folder:
        raise DatasetError(f"nobody enrolled: all {len(rejected)} photo(s) in {folder} were rejected (reasons "
                           "above); use clear photos with one face each, or pass --allow-empty to run with an empty "
                           "gallery")
    raise ConfigError("nobody enrolled: set gallery.path to a gallery store filled by `hsst-enroll` (or "
                      "`hsst-gallery import`), or for a demo pass --enroll DIR (VIS photos, <identity>/*.jpg or "
                      "<identity>.jpg) or set gallery.enroll_dir, or pass --allow-empty to run with an empty gallery "
                      "(every face unknown)")


def _pipeline(config_path: str, overrides: dict, allow_empty: bool):
    """Load the configuration, build the pipeline and enrol; configuration, model and enrolment errors become
    CLI errors."""
    from hsst.runtime.pipeline import GatePipeline

    try:
        config = load_config(config_path, overrides)
        gate = GatePipeline(config)
    except HsstError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        _enroll(gate, config.gallery.enroll_dir, allow_empty)
    except HsstError as exc:
        gate.close()
        raise click.ClickException(str(exc)) from None
    return gate


ALLOW_EMPTY_HELP = "Run with an empty gallery (no --enroll, or every enrolment photo rejected): every face is unknown."


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="Device configuration, e.g. firmware_configs/laptop-cpu.yaml.")
@click.option("--source", default=None, help="Override source.uri: 0, v4l2:///dev/video0, csi://0, rtsp://..., "
                                             "file://clip.mp4, file://frames/.")
@click.option("--model", default=None, help="Override embedder.model (.onnx or .engine with its .json sidecar).")
@click.option("--enroll", default=None, type=click.Path(file_okay=False),
              help="Folder of VIS enrolment photos: <identity>/*.jpg or <identity>.jpg.")
@click.option("--events", default=None, type=click.Path(dir_okay=False), help="Override events.jsonl.")
@click.option("--display", is_flag=True, help="Show the video with boxes and identities.")
@click.option("--duration", default=None, type=float, help="Stop after this many seconds.")
@click.option("--allow-empty", is_flag=True, help=ALLOW_EMPTY_HELP)
@click.option("--log-level", default="INFO", show_default=True)
def gate(config_path: str, source: Optional[str], model: Optional[str], enroll: Optional[str],
         events: Optional[str], display: bool, duration: Optional[float], allow_empty: bool, log_level: str) -> None:
    """Run the streaming gate: camera -> detect -> track -> embed -> match -> decide; events as JSON lines."""
    _setup_logging(log_level)
    pipeline = _pipeline(config_path, _overrides(source, model, enroll, events), allow_empty)
    pipeline.events.subscribe(lambda e: click.echo(json.dumps(e.to_dict(with_crop=False), default=str)))
    signal.signal(signal.SIGTERM, lambda *_: pipeline.stop())
    try:
        snapshot = pipeline.run(duration=duration, display=display)
    except HsstError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pipeline.stop()
        snapshot = pipeline.metrics.snapshot()
    finally:
        pipeline.close()
    click.echo(json.dumps({"metrics": snapshot}, default=str))
    if pipeline.source_error:
        raise click.ClickException(f"the source failed: {pipeline.source_error}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="Device configuration, e.g. firmware_configs/laptop-cpu.yaml.")
@click.option("--model", default=None, help="Override embedder.model.")
@click.option("--enroll", default=None, type=click.Path(file_okay=False), help="Folder of VIS enrolment photos.")
@click.option("--allow-empty", is_flag=True, help=ALLOW_EMPTY_HELP)
@click.option("--log-level", default="WARNING", show_default=True)
@click.argument("images", nargs=-1, required=True, type=click.Path())
def identify(config_path: str, model: Optional[str], enroll: Optional[str], allow_empty: bool, log_level: str,
             images: Tuple[str, ...]) -> None:
    """Identify the faces of single IMAGES; one JSON object per image on stdout."""
    _setup_logging(log_level)
    pipeline = _pipeline(config_path, _overrides(None, model, enroll, None), allow_empty)
    failed = []
    try:
        for path in images:
            try:
                faces = pipeline.identify(read_image(path))
                click.echo(json.dumps({"image": path, "faces": faces}))
            except HsstError as exc:
                failed.append(str(exc))
                click.echo(json.dumps({"image": path, "error": str(exc)}))
    finally:
        pipeline.close()
    if failed:  # the JSON lines say which; stderr says that some failed, for whoever reads only the exit
        raise click.ClickException(f"{len(failed)} of {len(images)} image(s) failed, e.g. {failed[0]}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="Gate configuration with gallery.path (the store) and gallery.keys_dir or gallery.key_env.")
@click.option("--id", "identity", required=True, help="Identity id (badge or employee number).")
@click.option("--name", default=None, help="Display name.")
@click.option("--attr", "attrs", multiple=True, metavar="KEY=VALUE", help="An attribute (repeatable).")
@click.option("--gallery", default=None, type=click.Path(dir_okay=False), help="Override gallery.path.")
@click.option("--json", "as_json", is_flag=True, help="One JSON report on stdout.")
@click.option("--log-level", default="WARNING", show_default=True)
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def enroll(config_path: str, identity: str, name: Optional[str], attrs: Tuple[str, ...], gallery: Optional[str],
           as_json: bool, log_level: str, photos: Tuple[str, ...]) -> None:
    """Enrol one identity from VIS PHOTOS (one face each) into the gallery store; refusals with reasons."""
    from hsst.runtime.gate import Gate

    _setup_logging(log_level)
    attributes = {}
    for item in attrs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--attr")
        attributes[key] = value
    try:
        config = load_config(config_path, {"gallery.path": gallery} if gallery else None)
        if not config.gallery.path:
            raise ConfigError(f"{config_path}: gallery.path is not set; hsst-enroll writes to the gallery store "
                              "(an in-memory gallery would be gone when the command ends): set gallery.path or "
                              "pass --gallery FILE")
        config.gallery.enroll_dir = None  # enrol what was asked, nothing else
        gate = Gate(config)
    except HsstError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        report = gate.enroll(identity, list(photos), name=name, attributes=attributes or None)
    except HsstError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        gate.close()
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        for r in report.photos:
            click.echo(f"{'accepted' if r.accepted else 'refused '} {r.path}{'' if r.accepted else ': ' + r.reason}")
        for who, score in report.duplicates:
            click.echo(f"warning: the face already matches {who} (cosine {score:.3f})", err=True)
        click.echo(f"{identity}: {report.templates} template(s) stored in {config.gallery.path}")
    if not report.accepted:
        raise click.ClickException(f"nothing enrolled for {identity}: every photo was refused (reasons above)")
