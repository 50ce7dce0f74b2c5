"""Per-paper training recipes (and the bundled default model's): how a batch becomes a loss for one
model family. The trainer (`trainer.py`) is recipe-agnostic; `base.Recipe` is the interface.

Modules: `base` (interface, `TrainingStep`), `dpt` (vda, gemdepth), `diffusion` (dvd,
depthcrafter, onestep), `fiffdepth`, `default` (the bundled model, on synthetic renders).
"""

from __future__ import annotations

from typing import Any

from vdepth_training.config import check_keys
from vdepth_training.recipes.base import LossOut, Recipe, TrainingStep
from vdepth_training.recipes.default import DefaultRecipe
from vdepth_training.recipes.diffusion import DepthCrafterRecipe, DVDRecipe, OneStepRecipe
from vdepth_training.recipes.dpt import GemDepthRecipe, VDARecipe, matrix_to_quaternion
from vdepth_training.recipes.fiffdepth import FiffDepthRecipe

from vdepth_ros.errors import ConfigError

RECIPES: dict[str, type[Recipe]] = {
    r.name: r
    for r in (VDARecipe, GemDepthRecipe, DVDRecipe, FiffDepthRecipe, DepthCrafterRecipe, OneStepRecipe, DefaultRecipe)
}


def recipe_class(cfg: dict[str, Any]) -> type[Recipe]:
    """The recipe class `cfg["recipe"]` names."""
    name = cfg["recipe"]
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name]


def get_recipe(cfg: dict[str, Any]) -> Recipe:
    """The recipe of `cfg`, after refusing any key in its sections that the recipe does not read."""
    cls = recipe_class(cfg)
    check_keys(cfg, cls.config_keys(), cls.value_types())
    return cls(cfg)


__all__ = [
    "RECIPES",
    "DVDRecipe",
    "DefaultRecipe",
    "DepthCrafterRecipe",
    "FiffDepthRecipe",
    "GemDepthRecipe",
    "LossOut",
    "OneStepRecipe",
    "Recipe",
    "TrainingStep",
    "VDARecipe",
    "get_recipe",
    "matrix_to_quaternion",
    "recipe_class",
]
