"""hsst.core.registry: the one name -> entry table behind backbones, methods, backends, transforms and masks."""
import pytest

from hsst.core.errors import ConfigError
from hsst.core.registry import Registry


def test_register_resolve_and_aliases():
    reg = Registry("widget")

    @reg.register
    def plain():
        return "plain"

    @reg.register(name="Fancy", aliases=("ornate",))
    def fancy():
        return "fancy"

    assert reg.names() == ["fancy", "plain"] and reg.names(aliases=True) == ["fancy", "ornate", "plain"]
    assert reg.get("ORNATE") is fancy and reg["plain"] is plain and reg.resolve("Ornate") == "fancy"
    assert "ornate" in reg and "nope" not in reg and len(reg) == 2 and list(reg) == ["fancy", "plain"]
    assert reg.register(plain, name="plain") is plain  # the same entry again: a no-op
    with pytest.raises(ConfigError, match="widget name 'plain' is already registered"):
        reg.register(fancy, name="plain")
    with pytest.raises(ConfigError, match="unknown widget 'nope'; known: fancy, ornate, plain"):
        reg.get("nope")


def test_every_registry_of_hsst_is_one():
    from hsst.core.backends.base import BACKENDS
    from hsst.synth.mask.templates import TEMPLATES

    assert isinstance(BACKENDS, Registry) and isinstance(TEMPLATES, Registry)
    pytest.importorskip("torch")
    from hsst.train.data.transforms import NIR_TRANSFORMS
    from hsst.train.methods import METHODS
    from hsst.train.models.registry import BACKBONES

    assert all(isinstance(r, Registry) for r in (NIR_TRANSFORMS, METHODS, BACKBONES))


def test_unregister_removes_name_and_aliases():
    reg = Registry("widget")
    reg.register(len, name="size", aliases=("length",))
    reg.unregister("LENGTH")
    assert "size" not in reg and "length" not in reg and reg.names(aliases=True) == []
    reg.unregister("never-there")
