"""The generic plugin registry."""

from __future__ import annotations

import pytest

from robench.errors import ConfigError
from robench.registry import Registry


def test_register_get_and_describe() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("alpha")
    def alpha() -> None:
        """Makes alphas. More text."""

    assert reg.get("alpha") is alpha
    assert reg.entries()[0].description == "Makes alphas. More text."
    assert "alpha" in reg and reg.names() == ["alpha"]


def test_unknown_name_suggests_the_closest() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("augmix")(1)
    reg.register("pixmix")(2)
    with pytest.raises(ConfigError, match=r"unknown widget 'augmx' \(did you mean 'augmix'\?\)"):
        reg.get("augmx")


def test_duplicate_registration_is_a_bug() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(2)
