"""Choosing the engine implementation (apps.orders.engine_impl): the setting, the names, no silent fallback."""

from __future__ import annotations

import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import engine_native
from apps.orders.engine_impl import engine_class
from engine.engine import Engine


def test_the_platform_runs_the_native_engine_by_default() -> None:
    assert engine_class() is engine_native.Engine


def test_each_name_gives_its_engine_and_the_setting_picks_one() -> None:
    assert engine_class("python") is Engine
    assert engine_class("native") is engine_native.Engine
    with override_settings(ENGINE_IMPLEMENTATION="python"):
        assert engine_class() is Engine


def test_an_unknown_name_is_a_configuration_error() -> None:
    with pytest.raises(ImproperlyConfigured, match="one of"):
        engine_class("rust")


def test_native_without_its_extension_fails_instead_of_running_the_python_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "engine_native", None)  # what an image without the wheel imports
    with pytest.raises(ImproperlyConfigured, match="not installed"):
        engine_class("native")
    assert engine_class("python") is Engine
