"""The bundled default model's recipe: a compact Video Depth Anything (`vda` or `vda_lite`) trained
on the procedural synthetic renders (`data.synthetic`) with the VDA loss and heavy augmentation.

Data (`data:`): `seeds` [a, b) rendered in `style` at `render_size` with `frames` frames into
`data.root` (default `<output>/data`; rendered once, resumably, split across the ranks and
`render_workers` local processes, with the expected time logged first); clips of `clip_length`
frames at a frame step drawn from `stride` [lo, hi] (one stream per step, alternating batch by
batch), cropped to `size`, zoomed by `zoom` and photometrically augmented (`augment:`; see
`augment.py`). Batch `b` of a stage is a pure function of (`training.seed`, `b`).

Optimisation: AdamW with the encoder (`model.backbone`) at `optimizer.encoder_lr_scale` x the
learning rate (0 freezes it; a stage may set `encoder_lr_scale`, which holds for later stages) and
modules new since `training.init` (`training.init_new_modules`) at
`optimizer.new_module_lr_scale`; cosine stages (`optimizer.schedule: cosine`, to 5 %).
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from vdepth_training.augment import AUGMENT_KEYS, AUGMENT_TYPES, augment_batch
from vdepth_training.config import MODEL_KEYS, value_types
from vdepth_training.data.dataset import ClipDataset, ClipSampling, Source, collate_clips
from vdepth_training.data.stream import Batch, MappedBatches
from vdepth_training.recipes.dpt import VDARecipe
from vdepth_training.stages import Stage, plan_stages

from vdepth_ros.errors import ConfigError


class StrideBatches(Dataset):
    """Batch `b` comes from the stride stream `b % n` (its batch `b // n`), one stream per frame step."""

    def __init__(self, datasets: list[ClipDataset]) -> None:
        self.datasets = datasets

    def __len__(self) -> int:
        return sum(len(d) // d.batch_size for d in self.datasets)

    def __getitem__(self, b: int) -> Batch:
        ds = self.datasets[b % len(self.datasets)]
        j, bs = b // len(self.datasets), ds.batch_size
        return collate_clips([ds[j * bs + k] for k in range(bs)])


def _augment(index: int, batch: Batch, *, seed: int, zoom: tuple[float, float], aug: dict[str, Any]) -> Batch:
    return augment_batch(batch, seed, index, zoom, aug)


class DefaultRecipe(VDARecipe):
    """See the module docstring; the loss is `VDARecipe`'s (SSI + 0.5·GM + 10·TGM, plus the
    clip-level terms a stage's `loss` sets)."""

    name = "default"
    family = ("vda", "vda_lite")
    stage_keys = frozenset({"encoder_lr_scale"})
    optimizer_keys = frozenset({"encoder_lr_scale", "new_module_lr_scale"})
    data_keys = frozenset(
        ("root", "seeds", "style", "frames", "render_size", "render_workers", "clip_length", "size", "zoom")
        + ("normalization", "stride")
    )
    model_keys = MODEL_KEYS | {"pretrained_encoder"}
    augment_keys = AUGMENT_KEYS

    @classmethod
    def value_types(cls) -> dict[str, Any]:
        """The common types with this recipe's `data` keys (rendered clips: `stride` is a range), its
        encoder/new-module learning-rate factors and its `augment` section."""
        data = {"frames": int, "render_workers": int, "render_size": list[int], "clip_length": list[int]}
        data |= {"size": list[int], "stride": list[int], "normalization": str}
        factors = {"optimizer.encoder_lr_scale": float, "stage.encoder_lr_scale": float}
        augment = {f"augment.{k}": t for k, t in AUGMENT_TYPES.items()}
        return value_types(data) | factors | {"optimizer.new_module_lr_scale": float} | augment

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        self.plan = plan_stages(cfg, self.stage_keys)
        scales = [self.encoder_lr_scale(st) for st in self.plan]
        for st, scale in zip(self.plan, scales, strict=True):
            first = scales[self.plan.index(next(s for s in self.plan if s.start == st.origin))]
            if first in (0.0, 1.0) and scale != first:
                raise ConfigError(
                    f"stage {st.name!r} sets encoder_lr_scale {scale}, but its optimizer started with {first}: only "
                    "a factor other than 0 and 1 gives the encoder its own optimizer group (or make it a restart stage)"
                )

    @property
    def normalization(self) -> str:  # type: ignore[override]
        return str(self.cfg["data"].get("normalization", "minmax_sequence"))

    def build_model(self) -> nn.Module:
        model = super().build_model()
        # Start the final ReLU in its active range: with the default init the head's last conv is
        # negative almost everywhere, the ReLU outputs 0 and no gradient flows (a dead start).
        last = getattr(getattr(getattr(model, "head", None), "head", None), "conv3", None)
        if isinstance(last, nn.Conv2d) and last.bias is not None:
            with torch.no_grad():
                last.bias.fill_(1.0)
        if self.cfg["model"].get("pretrained_encoder"):  # e.g. vda_lite: ImageNet EfficientNet-Lite0
            model.load_pretrained_encoder()
        return model

    # -- optimisation -------------------------------------------------------------------------
    def encoder_lr_scale(self, stage: Stage) -> float:
        scale = float(self.cfg["optimizer"].get("encoder_lr_scale", 1.0))
        for entry in self.cfg["stages"][: stage.index + 1]:
            scale = float(entry.get("encoder_lr_scale", scale))
        return scale

    def configure_stage(self, model: nn.Module, stage: Stage) -> list[dict[str, Any]]:
        """Groups "encoder" (at `encoder_lr_scale`; frozen at 0), "rest" and "new" (modules new
        since `training.init`, at `new_module_lr_scale`); one "rest" group at scale 1."""
        super().configure_stage(model, stage)  # freezing keys and the never-used parameters
        prefixes = tuple(f"{m}." for m in self.cfg["training"].get("init_new_modules") or ())
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        new = [p for n, p in named if prefixes and n.startswith(prefixes)]
        extra = [{"params": new, "role": "new"}] if new else []
        scale = self.encoder_lr_scale(stage)
        backbone = {id(p) for p in model.backbone.parameters()}
        if scale == 0.0:
            model.backbone.requires_grad_(False)
        rest = [p for n, p in named if id(p) not in backbone and not (prefixes and n.startswith(prefixes))]
        if scale in (0.0, 1.0):
            enc = [] if scale == 0.0 else [p for _, p in named if id(p) in backbone]
            return [{"params": enc + rest if scale == 1.0 else rest, "role": "rest"}, *extra]
        enc = [p for _, p in named if id(p) in backbone]
        return [{"params": enc, "role": "encoder"}, {"params": rest, "role": "rest"}, *extra]

    def lr_scale(self, stage: Stage, role: str) -> float:
        if role == "encoder":
            return self.encoder_lr_scale(stage)
        if role == "new":
            return float(self.cfg["optimizer"].get("new_module_lr_scale", 1.0))
        return 1.0

    # -- data ---------------------------------------------------------------------------------
    def data_root(self) -> str:
        """`data.root`, else `<output>/data`."""
        root = self.cfg["data"].get("root") or (self.output_dir / "data" if self.output_dir else None)
        if not root:
            raise ConfigError("recipe default: set data.root (the folder of the rendered clips)")
        return str(root)

    def prepare_data(self, stage: Stage, process_index: int, num_processes: int) -> None:
        from vdepth_training.data.synthetic import render_dataset

        d = stage.cfg["data"]
        a, b = d["seeds"]
        workers = d.get("render_workers") or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
        render_dataset(self.data_root(), range(int(a), int(b)), int(d["frames"]), *map(int, d["render_size"]),
                       style=str(d.get("style", "basic")), rank=process_index, world=num_processes,
                       workers=int(workers))  # fmt: skip

    def batches(self, stage: Stage) -> Dataset:
        from vdepth_training.data.sequence import SequenceReader

        d, seed, bs = stage.cfg["data"], int(self.cfg["training"]["seed"]), int(self.cfg["training"]["batch_size"])
        a, b = d["seeds"]
        readers = [SequenceReader(os.path.join(self.data_root(), f"{s:06d}")) for s in range(int(a), int(b))]
        lo, hi = (int(v) for v in d["stride"])
        datasets = [
            ClipDataset(
                [Source(readers, weight=1.0, name=f"synthetic/stride{s}")],
                ClipSampling(
                    length_range=tuple(d["clip_length"]),
                    size=tuple(d["size"]),
                    normalization=d["normalization"],
                    stride=s,
                ),
                num_samples=bs * 1000,
                batch_size=bs,
                seed=seed + 17 * s,
            )
            for s in range(lo, hi + 1)
        ]
        augment = partial(_augment, seed=seed, zoom=tuple(d["zoom"]), aug=dict(stage.cfg["augment"]))
        return MappedBatches(StrideBatches(datasets), augment)


__all__ = ["DefaultRecipe", "StrideBatches"]
