"""One registry helper for every name -> factory table of hsst (timm style: register by decorator, one factory).

Backbones, training methods, inference backends, NIR transforms and mask templates are all kept in a
:class:`Registry`: names are case-insensitive, aliases resolve to their name, a name registered twice is an error,
and an unknown name gets one clear message listing the choices::

    BACKENDS = Registry("backend")

    @BACKENDS.register(name="onnxruntime")
    class OnnxRuntimeBackend: ...

    BACKENDS.get("ONNXRuntime")         # -> OnnxRuntimeBackend
    BACKENDS.names()                    # ['onnxruntime', ...]
"""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, List, Optional, Sequence, TypeVar, Union

from hsst.core.errors import ConfigError

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Named entries of one kind, with aliases.

    Args:
        kind: what the entries are, for messages (``"backbone"``, ``"backend"``...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: Dict[str, T] = {}
        self._aliases: Dict[str, str] = {}

    def register(self, entry: Optional[T] = None, *, name: Optional[str] = None,
                 aliases: Sequence[str] = ()) -> Union[T, Callable[[T], T]]:
        """Add ``entry`` under ``name`` (default: its ``__name__``); usable as a bare or a called decorator.

        Raises:
            ConfigError: the name or an alias is taken.
        """

        def add(item: T) -> T:
            key = (name or getattr(item, "__name__", None) or "").lower()
            if not key:
                raise ConfigError(f"a {self.kind} needs a name to be registered")
            if self._entries.get(key) is item:  # the same entry again (a module imported twice): nothing to do
                return item
            for k in (key, *(a.lower() for a in aliases)):
                if k in self._entries or k in self._aliases:
                    raise ConfigError(f"{self.kind} name {k!r} is already registered")
            self._entries[key] = item
            self._aliases.update({a.lower(): key for a in aliases})
            return item

        return add(entry) if entry is not None else add

    def unregister(self, name: str) -> None:
        """Remove ``name`` and its aliases (tests and plugins that unload); unknown names are ignored."""
        key = self._aliases.get(str(name).lower(), str(name).lower())
        self._entries.pop(key, None)
        self._aliases = {a: k for a, k in self._aliases.items() if k != key}

    def resolve(self, name: str) -> str:
        """The registered name of ``name`` (a name or an alias, any case).

        Raises:
            ConfigError: unknown name, with the choices.
        """
        key = str(name).lower()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names(aliases=True))}")
        return key

    def get(self, name: str) -> T:
        """The entry registered as ``name`` (or an alias of it)."""
        return self._entries[self.resolve(name)]

    __getitem__ = get

    def names(self, aliases: bool = False) -> List[str]:
        """Registered names, sorted (and the aliases when asked)."""
        return sorted(set(self._entries) | (set(self._aliases) if aliases else set()))

    def __contains__(self, name: object) -> bool:
        key = str(name).lower()
        return self._aliases.get(key, key) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> List[tuple]:
        """(name, entry) pairs, sorted by name."""
        return [(k, self._entries[k]) for k in self.names()]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
