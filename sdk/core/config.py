"""Typed configuration values: a mapping (YAML / JSON) checked and converted against a dataclass's type hints.

The one validation path of the gate configuration (:mod:`hsst.runtime.config`) and the training configuration
(:mod:`hsst.train.config`): wrong types are named with their key, YAML 1.1's quirks are read as meant.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Dict, List, Union

from hsst.core.errors import ConfigError


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check/convert a YAML value against a type hint (the subset the configs use)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], key)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if value is None and hint is not Any:
        raise ConfigError(f"{key} must not be empty (null)")
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__} {value!r}")
        return [coerce(v, args[0] if args else Any, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {type(value).__name__}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        number = _number(value)  # YAML 1.1 reads "2e3" as a string; JSON may write 2000.0
        if number is None or number != int(number):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(number)
    if hint is float:
        number = _number(value)
        if number is None:
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # camera index written as 0
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {value!r} (YAML reads off/on/yes/no as true/false: "
                              f"quote the word, e.g. \"off\")")
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def _number(value: Any):
    """``value`` as a float (numbers and numeric strings; YAML 1.1 reads "1e-3" as a string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(names)}")
    return cls(**{k: coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()})


def read_mapping(path: Union[str, Path]) -> Dict[str, Any]:
    """The mapping a YAML (or JSON) file holds; a one-line :class:`ConfigError` for a file that is unreadable,
    binary, malformed or holds no mapping (a command line shows the last line of an error)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file; a configuration is YAML or JSON text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"cannot parse {path}: {problem}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping at the top level, got {type(data).__name__}")
    return data
