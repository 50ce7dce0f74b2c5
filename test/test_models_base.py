"""`@register_to_config`: a family's constructor arguments are its config.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from vdepth_ros.models import InputConstraints, VideoDepthModel, register_to_config


class _Parent(VideoDepthModel):
    family: ClassVar[str] = "test_parent"

    @register_to_config
    def __init__(self, width: int = 4, sizes: tuple[int, ...] = (1, 2), name: str = "p") -> None:
        super().__init__()
        self.layer = torch.nn.Linear(width, 1)

    @property
    def input_constraints(self) -> InputConstraints:
        return InputConstraints()


class _Child(_Parent):
    family: ClassVar[str] = "test_child"

    @register_to_config
    def __init__(self, width: int = 6, extra: dict | None = None) -> None:
        super().__init__(width, sizes=(3,), name="from child")


def test_the_arguments_with_defaults_become_the_config_as_json_types() -> None:
    assert _Parent(8, name="x").config == {"width": 8, "sizes": [1, 2], "name": "x"}
    assert list(_Parent.__init__.__signature__.parameters) == ["self", "width", "sizes", "name"]  # kept for callers


def test_the_most_derived_class_records_and_its_parent_adds_nothing() -> None:
    assert _Child(extra={"a": (1, 2)}).config == {"width": 6, "extra": {"a": [1, 2]}}


def test_config_json_holds_family_class_and_config(tmp_path: Path) -> None:
    _Child(width=5).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved == {"_family": "test_child", "_class_name": "_Child", "width": 5, "extra": None}


def test_a_family_whose_init_is_not_decorated_is_refused_when_defined() -> None:
    with pytest.raises(TypeError, match="register_to_config"):

        class _Forgot(VideoDepthModel):  # pragma: no cover - the class statement itself raises
            def __init__(self, width: int = 4) -> None:
                super().__init__()


def test_values_that_json_cannot_hold_are_refused() -> None:
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        _Parent(name=Path("x"))  # type: ignore[arg-type]
