"""Probe-net checkpoints (the trained embedding model + its ModelMeta) and loading foreign weights.

A probe-net checkpoint is a ``torch.save`` dict of plain types and CPU tensors (loadable with
``torch.load(weights_only=True)``)::

    {"format": "hsst-probe-net", "format_version": 1, "arch": "mobilefacenet",
     "arch_kwargs": {"input_size": 112, "embedding_dim": 512, "in_chans": 1},
     "state_dict": {...}, "meta": ModelMeta.to_dict(), "extra": {...}}

Foreign checkpoints (FaceX-Zoo, TreB1eN, insightface ``arcface_torch``) load by parameter name with
:func:`load_foreign_state_dict`, which reports what matched.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from hsst.train.checkpointing import atomic_torch_save, torch_load
from hsst.core.errors import ConfigError, ModelError
from hsst.core.metadata import ModelMeta, Preprocess
from hsst.train.models.base import unwrap_model
from hsst.train.models.registry import create_backbone

logger = logging.getLogger(__name__)

FORMAT = "hsst-probe-net"
FORMAT_VERSION = 1
_NESTED_KEYS = ("state_dict", "model", "backbone")
_PREFIXES = ("module.", "backbone.", "_orig_mod.")


def _arch_kwargs(model: nn.Module) -> Dict[str, int]:
    missing = [a for a in ("arch", "input_size", "embedding_dim", "in_chans") if not hasattr(model, a)]
    if missing or not model.arch:
        raise ModelError(f"{type(model).__name__} lacks backbone attributes {missing or ['arch']}; build it with "
                         "hsst.train.models.create_backbone")
    return {"input_size": int(model.input_size), "embedding_dim": int(model.embedding_dim),
            "in_chans": int(model.in_chans)}


def meta_for(model: nn.Module, **overrides: Any) -> ModelMeta:
    """ModelMeta describing ``model``: arch, embedding size and gray/RGB preprocessing at its input size.

    Args:
        model: a backbone from :func:`create_backbone` (DDP wrappers are unwrapped).
        **overrides: ModelMeta fields to set (``name``, ``training``, ``thresholds``...).
    """
    model = unwrap_model(model)
    kw = _arch_kwargs(model)
    fields = {
        "name": f"hsst-{model.arch}-{kw['input_size']}",
        "arch": model.arch,
        "embedding_dim": kw["embedding_dim"],
        "preprocess": Preprocess.for_size(kw["input_size"], color="gray" if kw["in_chans"] == 1 else "rgb"),
    }
    fields.update(overrides)
    try:
        return ModelMeta(**fields)
    except TypeError as exc:
        raise ConfigError(f"invalid ModelMeta override: {exc}") from exc


def _check_meta(meta: ModelMeta, arch_kwargs: Mapping[str, int], where: str) -> None:
    pre = meta.preprocess
    problems = []
    if meta.embedding_dim != arch_kwargs["embedding_dim"]:
        problems.append(f"embedding_dim {meta.embedding_dim} != network {arch_kwargs['embedding_dim']}")
    if pre.crop_size != arch_kwargs["input_size"]:
        problems.append(f"preprocess.crop_size {pre.crop_size} != network input {arch_kwargs['input_size']}")
    if pre.channels != arch_kwargs["in_chans"]:
        problems.append(f"preprocess.color {pre.color!r} ({pre.channels} ch) != network in_chans "
                        f"{arch_kwargs['in_chans']}")
    if problems:
        raise ModelError(f"{where}: model metadata does not match the network: {'; '.join(problems)}; "
                         "build the metadata with hsst.train.models.meta_for(model)")


_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Only plain types load with ``torch.load(weights_only=True)``: reject others when saving, not loading."""
    if isinstance(value, dict):
        for k, v in value.items():
            if type(k) not in _PLAIN:
                raise ConfigError(f"{where}: key {k!r} is a {type(k).__name__}; use str / int keys")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif type(value) not in _PLAIN and not isinstance(value, torch.Tensor):  # exact: np.float64 is a float
        raise ConfigError(f"{where} is a {type(value).__name__}; checkpoints hold plain types only (str, int, "
                          "float, bool, None, lists, dicts, tensors): convert it (e.g. str(path), float(np_value))")


def save_probe_checkpoint(path: Union[str, Path], model: nn.Module, meta: ModelMeta,
                          extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write the probe-net and its metadata atomically (temporary file + ``os.replace``).

    Args:
        path: destination file (parent folders are created).
        model: the backbone (DDP / torch.compile wrappers are unwrapped; tensors are saved on CPU).
        meta: its metadata; must agree with the network's size, channels and embedding length.
        extra: free-form plain-type fields (iteration, loss, data summary...); other types raise
            :class:`ConfigError` here, since they would not load with ``weights_only=True``.

    Returns:
        The written path.
    """
    path = Path(path)
    model = unwrap_model(model)
    kw = _arch_kwargs(model)
    _check_meta(meta, kw, str(path))
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": model.arch,
        "arch_kwargs": kw,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta.to_dict(),
        "extra": dict(extra or {}),
    }
    _check_plain(payload["meta"], "meta")
    _check_plain(payload["extra"], "extra")
    return atomic_torch_save(payload, path)


def read_checkpoint_meta(path: Union[str, Path]) -> ModelMeta:
    """The metadata of a probe-net checkpoint, without building the model.

    Raises:
        ModelError: missing or unreadable file, or not an hsst probe-net checkpoint.
    """
    path = Path(path)
    ckpt = torch_load(path, "probe-net checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "meta" not in ckpt:
        raise ModelError(f"{path} is not an hsst probe-net checkpoint (no format={FORMAT!r})")
    return ModelMeta.from_dict(ckpt["meta"])


def load_probe_checkpoint(path: Union[str, Path], map_location: Any = "cpu") -> Tuple[nn.Module, ModelMeta]:
    """Recreate a probe-net saved by :func:`save_probe_checkpoint`.

    Returns:
        ``(model, meta)`` with the model in eval mode on ``map_location``.

    Raises:
        ModelError: missing, truncated or corrupt file, a file that is not an hsst probe-net checkpoint, or a
            newer format version.
    """
    path = Path(path)
    ckpt = torch_load(path, "probe-net checkpoint", map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelError(f"{path} is not an hsst probe-net checkpoint (no format={FORMAT!r}); for weights from "
                         "other projects create the backbone and use hsst.train.models.load_foreign_state_dict")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint format_version {version!r} is not supported by this hsst "
                         f"(<= {FORMAT_VERSION}); upgrade hsst")
    for key in ("arch", "arch_kwargs", "state_dict", "meta"):
        if key not in ckpt:
            raise ModelError(f"{path}: checkpoint lacks {key!r}; the file is damaged, re-create it")
    meta = ModelMeta.from_dict(ckpt["meta"])
    try:
        model = create_backbone(ckpt["arch"], **ckpt["arch_kwargs"])
    except ConfigError as exc:
        raise ModelError(f"{path}: cannot recreate backbone {ckpt['arch']!r}: {exc}") from exc
    _check_meta(meta, _arch_kwargs(model), str(path))
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit {ckpt['arch']} {ckpt['arch_kwargs']}: "
                         f"{str(exc).splitlines()[0]}") from exc
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    model.eval()
    return model, meta


@dataclass
class LoadReport:
    """What :func:`load_foreign_state_dict` did, by parameter / buffer name (after prefix stripping).

    Attributes:
        loaded: names copied into the model.
        missing: model names absent from the source (left as they were).
        unexpected: source names the model does not have (e.g. a classifier head).
        shape_mismatch: ``(name, source_shape, model_shape)`` not loaded.
        adapted: names loaded after an exact input-channel conversion (RGB stem conv summed to 1 channel).
    """

    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    shape_mismatch: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    adapted: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every model tensor was loaded."""
        return not self.missing and not self.shape_mismatch

    def __str__(self) -> str:
        def names(items: List[Any], limit: int = 8) -> str:
            shown = ", ".join(str(i) for i in items[:limit])
            return shown + (f", ... (+{len(items) - limit})" if len(items) > limit else "")

        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.adapted:
            lines.append(f"adapted (RGB -> gray stem, summed over colour) {len(self.adapted)}: {names(self.adapted)}")
        if self.missing:
            lines.append(f"missing {len(self.missing)} (kept initial values): {names(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected {len(self.unexpected)} (ignored): {names(self.unexpected)}")
        if self.shape_mismatch:
            shown = [f"{n} {tuple(s)} vs model {tuple(m)}" for n, s, m in self.shape_mismatch]
            lines.append(f"shape mismatch {len(self.shape_mismatch)} (not loaded): {names(shown)}")
        return "; ".join(lines)


def _extract_state_dict(obj: Any, where: str) -> Dict[str, torch.Tensor]:
    """Find the tensor dict, possibly nested under state_dict / model / backbone."""
    for _ in range(4):
        if isinstance(obj, nn.Module):
            obj = obj.state_dict()
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        nested = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), (Mapping, nn.Module))), None)
        if nested is None:
            break
        obj = nested
    raise ModelError(f"{where} holds no state dict (a name -> tensor mapping, possibly under "
                     f"{'/'.join(_NESTED_KEYS)}); got {type(obj).__name__}")


def _strip_prefixes(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix):], True
    return name


def _adapt_stem(source: torch.Tensor, target_shape: torch.Size) -> Optional[torch.Tensor]:
    """RGB first-conv weight -> 1-channel: summing over colour is exact for a gray image fed as R=G=B."""
    if (source.dim() == 4 and len(target_shape) == 4 and source.shape[1] == 3 and target_shape[1] == 1
            and source.shape[0] == target_shape[0] and source.shape[2:] == target_shape[2:]):
        return source.sum(dim=1, keepdim=True)
    return None


def load_foreign_state_dict(model: nn.Module, source: Union[str, Path, Mapping[str, Any]], strict: bool = False,
                            weights_only: bool = True) -> LoadReport:
    """Load weights from another project's checkpoint into ``model`` by parameter name.

    ``module.``, ``backbone.`` (and ``torch.compile``'s ``_orig_mod.``) prefixes are stripped; a 3-channel stem
    conv is summed into a 1-channel one when the model takes gray input. Tensors with other shapes are
    reported, not loaded.

    Args:
        model: the target network (DDP / torch.compile wrappers are unwrapped).
        source: a state dict, or a file holding one (also nested under ``state_dict`` / ``model`` /
            ``backbone``).
        strict: raise instead of loading partially when any model tensor is missing or mismatched.
        weights_only: passed to ``torch.load``; set False only for trusted files holding pickled objects.

    Returns:
        The :class:`LoadReport` (also logged at INFO).

    Raises:
        ModelError: unreadable file, no state dict inside, or (``strict``) missing / mismatched tensors.
    """
    model = unwrap_model(model)
    where = "state dict"
    if isinstance(source, (str, Path)):
        where = str(source)
        source = torch_load(source, "checkpoint", weights_only=weights_only)
    src = {_strip_prefixes(k): v for k, v in _extract_state_dict(source, where).items()}
    target = model.state_dict()
    report = LoadReport()
    to_load: Dict[str, torch.Tensor] = {}
    for name, tensor in target.items():
        if name not in src:
            if not name.endswith("num_batches_tracked"):  # older torch checkpoints lack it; harmless
                report.missing.append(name)
            continue
        value = src[name]
        if value.shape != tensor.shape:
            adapted = _adapt_stem(value, tensor.shape)
            if adapted is None:
                report.shape_mismatch.append((name, tuple(value.shape), tuple(tensor.shape)))
                continue
            value = adapted
            report.adapted.append(name)
        to_load[name] = value
        report.loaded.append(name)
    report.unexpected = sorted(set(src) - set(target))
    if strict and not report.ok:
        raise ModelError(f"{where} does not fully match {getattr(model, 'arch', type(model).__name__)} "
                         f"{getattr(model, 'arch_kwargs', '')}: {report}; nothing was loaded (strict=True)")
    with torch.no_grad():
        for name, value in to_load.items():
            target[name].copy_(value.to(dtype=target[name].dtype))
    logger.info("loaded foreign weights from %s into %s: %s", where, getattr(model, "arch", type(model).__name__),
                report)
    return report
