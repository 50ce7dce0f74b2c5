"""The recipe interface and the module the trainer's accelerator wraps.

A recipe builds its model (a `vdepth_ros.models` family), selects a stage's trainable parameters
and their learning-rate groups, provides the stage's batch stream, computes the loss of a batch
(`vdepth_training.losses`) and returns the model to save. `TrainingStep` puts the loss inside the
wrapped module's `forward`, so DDP and DeepSpeed see one forward per micro-batch whatever
submodules (`encode`, `vae`, `unet`, ...) the recipe calls.

Batches are `ClipDataset` dicts: `frames` (B, T, 3, H, W) in [0, 1], `target` (B, T, H, W)
normalised disparity, `valid`, `intrinsics`, `poses`, `has_camera`, `key` (B, 2).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset
from vdepth_training.cache import LatentCache
from vdepth_training.checkpoints import CONTENT_SUFFIX, MODEL_FOLDER_ENTRY, model_folder_digest
from vdepth_training.config import (
    DATA_KEYS,
    DEFAULT_OPTIMIZER,
    DEFAULT_TRAINING,
    MODEL_KEYS,
    build_dataset,
    build_family_model,
    build_sources,
    check_clip_lengths,
    value_types,
)
from vdepth_training.data.dataset import Source
from vdepth_training.data.stream import ClipBatches
from vdepth_training.freeze import set_trainable
from vdepth_training.stages import Stage

from vdepth_ros.errors import ConfigError

Tensor = torch.Tensor
LossOut = tuple[Tensor, dict[str, Tensor]]


def source_listing(where: str, source: Source) -> dict[str, dict[str, int]]:
    """`{where: Source.listing()}` and, for sources read from files, `{where + CONTENT_SUFFIX: Source.contents()}`:
    one source's part of `Recipe.data_listing`."""
    contents = source.contents()
    return {where: source.listing(), **({where + CONTENT_SUFFIX: contents} if contents else {})}


def depth_video(target: Tensor) -> Tensor:
    """(..., H, W) disparity in [0, 1] -> (..., 3, H, W) in [-1, 1] (replicated 3x, VAE input)."""
    return (target.unsqueeze(-3) * 2.0 - 1.0).expand(*target.shape[:-2], 3, *target.shape[-2:]).contiguous()


class Recipe:
    """Base recipe. Subclasses set `family`, `normalization` and implement `loss`.

    Args:
        cfg: the loaded config (`config.load_config`).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str | tuple[str, ...]] = ""
    normalization: ClassVar[str] = "minmax_sequence"
    within: ClassVar[str | None] = None  # submodule that holds the trainable layers (e.g. "unet")
    stage_keys: ClassVar[frozenset[str]] = frozenset()  # stage keys beyond `stages.STAGE_KEYS`
    optimizer_keys: ClassVar[frozenset[str]] = frozenset()  # `optimizer` keys beyond `config.DEFAULT_OPTIMIZER`
    data_keys: ClassVar[frozenset[str]] = DATA_KEYS  # the `data` keys the recipe reads
    model_keys: ClassVar[frozenset[str]] = MODEL_KEYS  # the `model` keys the recipe reads
    loss_keys: ClassVar[frozenset[str]] = frozenset()  # the `loss` keys its `loss` reads
    augment_keys: ClassVar[frozenset[str]] = frozenset()  # the `augment` keys (none: no `augment` section)
    nested_keys: ClassVar[dict[str, frozenset[str]]] = {}  # nested sections, e.g. "data.pseudo" -> its keys

    @classmethod
    def config_keys(cls) -> dict[str, frozenset[str]]:
        """Section (dotted for nested ones) -> the keys the recipe reads (`config.check_keys`);
        `data.validation` takes the `data` keys (the held-out data, see `validation_stage`)."""
        return {
            "training": frozenset(DEFAULT_TRAINING),
            "optimizer": frozenset(DEFAULT_OPTIMIZER) | cls.optimizer_keys,
            "model": cls.model_keys,
            "data": cls.data_keys | {"validation"},
            "data.validation": cls.data_keys,
            "loss": cls.loss_keys,
            "augment": cls.augment_keys,
            **cls.nested_keys,
        }

    @classmethod
    def value_types(cls) -> dict[str, Any]:
        """ "<section>.<key>" -> the type of its value (`config.check_types`): `config.value_types()`
        for the `data` keys `build_dataset` reads; a recipe with other keys adds or replaces them."""
        return value_types()

    @staticmethod
    def validation_stage(stage: Stage) -> Stage | None:
        """`stage` on its held-out data (`data.validation` over the stage's `data`), or None
        without `data.validation`. Its batch stream is the recipe's own (`batches`), index 0 on."""
        held_out = stage.cfg["data"].get("validation")
        if not held_out:
            return None
        data = {**stage.cfg["data"], **held_out}
        data.pop("validation", None)
        return dataclasses.replace(stage, cfg={**stage.cfg, "data": data})

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.output_dir: Path | None = None  # the run's folder (set by the trainer)
        self.loss_cfg: dict[str, Any] = dict(cfg.get("loss") or {})
        cache_dir = cfg["training"].get("latent_cache")
        self.cache = LatentCache(cache_dir) if cache_dir else None
        self._sources: dict[str, list[Source]] = {}

    # -- model --------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        model = build_family_model(self.cfg)
        families = (self.family,) if isinstance(self.family, str) else self.family
        if model.family not in families:
            raise ValueError(f"recipe {self.name!r} trains family {self.family!r}, config builds {model.family!r}")
        if model.input_constraints.output_kind == "depth":
            # every recipe's targets are normalised disparity (`data.targets`); the saved model would
            # still say metric, and deployment would read its disparity-like output as metres
            where = "model.init_from's model" if self.cfg["model"].get("init_from") else "model.config"
            raise ConfigError(
                f"recipe {self.name!r} trains relative disparity (normalised targets), but {where} is metric "
                "(metric: true, output in metres): its final/ would be deployed as metric depth. Train a relative "
                "model: model.config metric: false, with the metric weights as training.init (or import the "
                "release with `vdepth-export import ... --set metric=false` for model.init_from)"
            )
        return model

    def unused_parameters(self, model: nn.Module) -> list[str]:
        """Names of parameters the recipe's forward never uses; the stage freezes them, so that
        DDP needs no `find_unused_parameters` (and its extra graph traversal per step).

        The DINOv2 + DPT families (vda, vda_lite, gemdepth) have two: DINOv2's `mask_token`
        (masked-image-modelling pre-training only) and the last DPT fusion block's
        `residual_layer1` (the coarsest fusion has no coarser path to add; as in the authors'
        code). `test_training_distributed` checks every recipe's list against a backward pass.
        """
        return []

    def configure_stage(self, model: nn.Module, stage: Stage) -> list[dict[str, Any]]:
        """Freeze per the stage and return optimizer param groups, each with a `role`
        (`lr_scale` maps it to its learning rate).

        Stage keys: `trainable` (all|none|spatial|temporal), `within`, `include`, `exclude` (see
        `freeze.set_trainable`); `lr_new` + `new_params` (regex) put matching parameters in a
        group of role "new" (GemDepth: 1e-4 for new modules, 1e-6 for pretrained ones).
        """
        spec = stage.spec
        names = set_trainable(model, spec["trainable"], within=spec.get("within", self.within),
                              include=spec.get("include"), exclude=spec.get("exclude"))  # fmt: skip
        unused = set(self.unused_parameters(model))
        params = dict(model.named_parameters())
        for n in unused & set(names):
            params[n].requires_grad_(False)
        names = [n for n in names if n not in unused]
        if not names:
            raise ValueError(f"stage {stage.name!r} leaves no trainable parameter")
        new_re = spec.get("new_params")
        if new_re and spec.get("lr_new") is not None:
            pat = re.compile(new_re)
            groups = [{"params": [params[n] for n in names if pat.search(n)], "role": "new"},
                      {"params": [params[n] for n in names if not pat.search(n)], "role": "main"}]  # fmt: skip
            return [g for g in groups if g["params"]]
        return [{"params": [params[n] for n in names], "role": "main"}]

    def lr_scale(self, stage: Stage, role: str) -> float:
        """A group's learning rate relative to the stage's (`stages.stage_lr`)."""
        if role == "new":
            return float(stage.spec["lr_new"]) / float(stage.spec["lr"])
        return 1.0

    # -- data ---------------------------------------------------------------------------------
    def start_stage(self, stage: Stage) -> None:
        """Called before a stage's first step: the stage's loss settings take effect."""
        self.loss_cfg = dict(stage.cfg.get("loss") or {})

    def prepare_data(self, stage: Stage, process_index: int, num_processes: int) -> None:
        """Make the stage's data exist (the default recipe renders its clips); every rank calls
        it, then the trainer waits for all of them."""

    def open_data(self, stage: Stage) -> None:
        """Open the stage's data sources now (every layout scans its folders and checks its files),
        so that a mistake in the data is an error before the model is built, not at the stage's start."""
        for st in (stage, self.validation_stage(stage)):
            if st is not None and st.cfg["data"].get("sources"):
                check_clip_lengths(self.sources(st.cfg["data"]), st)

    def data_listing(self, stage: Stage) -> dict[str, dict[str, int]]:
        """What the stage's sources and held-out sources draw from, `{where: Source.listing()}` (opened
        as `open_data` opens them): a checkpoint records it, `--resume` and every rank compare it."""
        out: dict[str, dict[str, int]] = {}
        for st, what in ((stage, "data"), (self.validation_stage(stage), "data.validation")):
            if st is not None and st.cfg["data"].get("sources"):
                for src in self.sources(st.cfg["data"]):
                    out.update(source_listing(f"stage {stage.name!r} {what}.sources[{src.name!r}]", src))
        for what, folder in self.frozen_models(stage).items():
            out[f"stage {stage.name!r} {what} {folder}"] = {MODEL_FOLDER_ENTRY: model_folder_digest(Path(folder))}
        return out

    def frozen_models(self, stage: Stage) -> dict[str, str]:
        """`{config key: folder}` of the model folders the stage reads, frozen, at every start (a teacher,
        a labeller): a checkpoint holds only the trained model, so `data_listing` records their files."""
        return {}

    def sources(self, data: dict[str, Any]) -> list[Source]:
        """`data.sources` as `Source`s, loaded once per distinct list (layouts scan folders)."""
        key = json.dumps(data.get("sources"), sort_keys=True, default=str)
        if key not in self._sources:
            self._sources[key] = build_sources(data)
        return self._sources[key]

    def batches(self, stage: Stage) -> Dataset:
        """The stage's batch stream (`data.stream`): batch `b` is a pure function of `b`."""
        seed = int(self.cfg["training"]["seed"]) + 7919 * stage.index
        data = stage.cfg["data"]
        ds = build_dataset(stage.cfg, stage.spec, self.sources(data), seed=seed, normalization=self.normalization)
        return ClipBatches(ds)

    # -- loss and export ----------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> LossOut:
        raise NotImplementedError

    def export_model(self, model: nn.Module) -> nn.Module:
        """The `VideoDepthModel` to `save_pretrained` (may be a copy; training state untouched)."""
        return model


class TrainingStep(nn.Module):
    """What the accelerator wraps: `forward(batch, generator)` returns the recipe's `(loss, terms)`.

    The model is the only submodule (the recipe, with any frozen teacher, is a plain attribute),
    so DDP/DeepSpeed see exactly the trained parameters and the checkpoint holds `model.*`.
    """

    def __init__(self, recipe: Recipe, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.recipe = recipe

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator) -> LossOut:
        return self.recipe.loss(self.model, batch, generator)


def dpt_unused_parameters(model: nn.Module) -> list[str]:
    """DINOv2's `mask_token` and, for every DPT head (`head`, `dpt`, ...), its coarsest fusion
    block's `residual_layer1` (see `Recipe.unused_parameters`)."""
    names = [n for n, _ in model.named_parameters()]
    coarsest: dict[str, int] = {}
    for n in names:
        if m := re.match(r"^(.*?fusion)\.(\d+)\.", n):
            coarsest[m.group(1)] = max(coarsest.get(m.group(1), 0), int(m.group(2)))
    prefixes = tuple(f"{head}.{i}.residual_layer1." for head, i in coarsest.items())
    return [n for n in names if n.endswith("embeddings.mask_token") or (prefixes and n.startswith(prefixes))]


__all__ = ["LossOut", "Recipe", "TrainingStep", "depth_video", "dpt_unused_parameters"]
