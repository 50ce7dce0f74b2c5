"""FiffDepth's recipe: synthetic clips with GT for t = 0 and the trajectory term, real images with
pseudo-labels for t = −1 (FiffDepth Eq. 7, §4.1)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset
from vdepth_training import losses as L
from vdepth_training.cache import cached
from vdepth_training.config import DATA_KEYS, build_dataset
from vdepth_training.data.stream import ClipBatches, PairedBatches
from vdepth_training.recipes.base import LossOut, Recipe, Tensor, depth_video, source_listing
from vdepth_training.stages import Stage

log = logging.getLogger(__name__)

PSEUDO_MODES = ("stream", "gt")


class FiffDepthRecipe(Recipe):
    """FiffDepth Eq. 7: Σ_{t∈{0,−1}} (MAE + 0.5·GM)(d_t, d*_t) + 0.2·L_k on SD latents.

    - t = 0: d_0 = U(x_0, 0) against the GT depth latent d*_0 of the synthetic clips (`data.sources`).
    - t = −1: d_{−1} = U(d_0, −1) on *real* images against their pseudo-label latent d*_{−1}
      (`loss.pseudo_labels: stream`, the default): `data.pseudo` names the image sources and
      either a labelling `model` folder (run on the fly, its latents cached by image content) or
      `model: null` when the sources' targets are precomputed labels (`python -m
      vdepth_training.data.pseudo`). Every batch is half synthetic, half real (the paper), one real
      image per synthetic clip. Gradients flow through d_0 into the t = 0 pass (the paper is silent).
      Without `data.pseudo` the recipe refuses to run: the paper's loss has this term.
      `loss.pseudo_labels: gt` (smoke tests only, not the paper) applies t = −1 to the synthetic
      clips against their GT.
    - L_k (Eq. 2–3): v-prediction on the blend b_0 = 0.5·x_0 + 0.5·d*_0 at t ~ U{1..999}, SD DDPM,
      on the synthetic clips.
    Targets: FiffDepth predicts relative *depth*; the model's `predict` returns 1 − depth as
    disparity, so a target depth is 1 − (per-frame normalised disparity), in [-1, 1]; pseudo-labels
    (relative disparity) are normalised per image the same way.
    """

    name = "fiffdepth"
    family = "fiffdepth"
    normalization = "per_frame"
    loss_keys = frozenset(("pseudo_labels", "gamma", "w_mae", "w_gm", "w_k"))
    data_keys = DATA_KEYS | {"pseudo"}
    # data.pseudo: `model` (the labelling model folder), `sources`, and any `data` key for the real images
    nested_keys: ClassVar[dict[str, frozenset[str]]] = {"data.pseudo": DATA_KEYS | {"model"}}

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        self.alpha_bar = L.ddpm_alpha_bar()
        self.labeler: Any = None
        self._label_size: tuple[Any, ...] | None = None  # `label_size_key` of the labeller, once
        self._relabel_noted = False  # the warning that labelled sources are labelled again, said
        mode = self.loss_cfg.get("pseudo_labels", "stream")
        if mode not in PSEUDO_MODES:
            raise ValueError(f"fiffdepth loss.pseudo_labels must be one of {PSEUDO_MODES}, got {mode!r}")
        if mode == "stream" and not (cfg["data"].get("pseudo") or {}).get("sources"):
            raise ValueError(
                "fiffdepth: the t = -1 term needs real images with pseudo-labels: set data.pseudo.sources "
                "(layout: images + data.pseudo.model, a labelling model folder; or precomputed labels from "
                "`python -m vdepth_training.data.pseudo` with layout: sequence and model: null)"
            )

    def _pseudo_data(self, stage: Stage) -> dict[str, Any]:
        """The real images' `data` (`data.pseudo` over `data`, per-frame normalised)."""
        pseudo = dict(stage.cfg["data"]["pseudo"])
        return {**stage.cfg["data"], **{k: v for k, v in pseudo.items() if k != "model"}, "normalization": "per_frame"}

    def open_data(self, stage: Stage) -> None:
        """Also the real images' sources, and their labels: without a labelling model, images with
        no labels (`layout: images`) would train t = -1 on empty targets; a labelling model folder
        that is not there would stop the run at its first step, after the UNet was loaded."""
        from vdepth_training.data.pseudo import ImageSequence

        from vdepth_ros.errors import ConfigError, ModelLoadError
        from vdepth_ros.runtime.registry import resolve_model

        super().open_data(stage)
        if (stage.cfg.get("loss") or {}).get("pseudo_labels", "stream") != "stream":
            return
        sources = self.sources(self._pseudo_data(stage))
        label_model = (stage.cfg["data"].get("pseudo") or {}).get("model")
        unlabelled = [s.name for s in sources if any(isinstance(q, ImageSequence) for q in s.sequences)]
        labelled = [s.name for s in sources if s.name not in unlabelled]
        if label_model:
            hint = (f"data.pseudo.sources {labelled} hold labels of their own (layout: sequence); set "
                    "data.pseudo.model: null to train on those") if labelled else ""  # fmt: skip
            try:
                resolve_model(str(label_model))  # ModelLoadError naming the path or the pull command
            except ModelLoadError as err:
                raise ModelLoadError(f"data.pseudo.model: {err}{'; or ' + hint if hint else ''}") from None
            if hint and not self._relabel_noted and int(os.environ.get("RANK", "0")) == 0:
                self._relabel_noted = True
                log.warning("data.pseudo.model %s labels every real image again: %s", label_model, hint)
            return
        if unlabelled:
            raise ConfigError(
                f"data.pseudo.sources {unlabelled} are images without labels and data.pseudo.model is null: the "
                "t = -1 term would train on empty targets; set data.pseudo.model to a labelling model folder, or "
                "label them first (`python -m vdepth_training.data.pseudo`) and read those with layout: sequence"
            )

    def frozen_models(self, stage: Stage) -> dict[str, str]:
        """The labelling model's folder (`data.pseudo.model`), which labels the real images at every start."""
        from vdepth_ros.runtime.registry import resolve_model

        model = (stage.cfg["data"].get("pseudo") or {}).get("model")
        if not model or (stage.cfg.get("loss") or {}).get("pseudo_labels", "stream") != "stream":
            return {}
        return {"data.pseudo.model": resolve_model(str(model))}

    def data_listing(self, stage: Stage) -> dict[str, dict[str, int]]:
        """Also the real images' sources: their clips are drawn by index too."""
        out = super().data_listing(stage)
        if (stage.cfg.get("loss") or {}).get("pseudo_labels", "stream") == "stream":
            for src in self.sources(self._pseudo_data(stage)):
                out.update(source_listing(f"stage {stage.name!r} data.pseudo.sources[{src.name!r}]", src))
        return out

    def batches(self, stage: Stage) -> Dataset:
        main = super().batches(stage)
        if self.loss_cfg.get("pseudo_labels", "stream") != "stream":
            return main
        data = self._pseudo_data(stage)
        cfg = {**stage.cfg, "data": data}
        seed = int(self.cfg["training"]["seed"]) + 7919 * stage.index + 1
        real = build_dataset(cfg, {"clip_length": [1, 1]}, self.sources(data), seed=seed, normalization="per_frame")
        return PairedBatches(main, ClipBatches(real), "pseudo")

    def _pseudo_latent(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """d*_{−1}: the latent of the real images' pseudo-labels (N, 4, h, w)."""
        frames = batch["pseudo/frames"].flatten(0, 1)
        label_model = (self.cfg["data"].get("pseudo") or {}).get("model")

        def compute() -> Tensor:
            if label_model:
                if self.labeler is None:
                    from vdepth_training.data.pseudo import PseudoLabeler

                    self.labeler = PseudoLabeler(label_model, str(frames.device))  # this rank's device
                disp = self.labeler(frames)
                lo = disp.flatten(1).amin(1)[:, None, None]
                hi = disp.flatten(1).amax(1)[:, None, None]
                disp = (disp - lo) / (hi - lo).clamp_min(1e-6)  # per image, as the GT targets
            else:
                disp = batch["pseudo/target"].flatten(0, 1)
            return self._encode(model, depth_video(1.0 - disp)).unflatten(0, batch["pseudo/frames"].shape[:2])

        if label_model:  # another labeller, or labels made at another size: other entries
            from vdepth_training.data.pseudo import label_size_key

            if self._label_size is None:
                self._label_size = label_size_key(label_model)
            producers = (model.vae, Path(label_model), self._label_size)
        else:
            producers = (model.vae,)
        return cached(self.cache, "fiff_pseudo", batch.get("pseudo/key"), compute, frames, producers).flatten(0, 1)

    @staticmethod
    def _encode(model: nn.Module, images: Tensor) -> Tensor:
        from vdepth_ros.models.fiffdepth import LATENT_SCALE

        with torch.no_grad():
            return model.vae.encode(images).latent_dist.mean * LATENT_SCALE

    def loss(self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> LossOut:
        frames = batch["frames"].flatten(0, 1)  # (N, 3, H, W): a single-image model
        keys = batch.get("key")
        b, t = batch["frames"].shape[:2]
        vae = (model.vae,)  # frozen: its weights name the entries
        x0 = cached(self.cache, "fiff_rgb", keys, lambda: self._encode(model, frames * 2 - 1).unflatten(0, (b, t)),
                    frames, vae).flatten(0, 1)  # fmt: skip
        depth = depth_video(1.0 - batch["target"].flatten(0, 1))
        d0_star = cached(self.cache, "fiff_depth", keys, lambda: self._encode(model, depth).unflatten(0, (b, t)),
                         frames, vae).flatten(0, 1)  # fmt: skip
        unet = model.unet

        def run(x: Tensor, timestep: int | Tensor) -> Tensor:
            if isinstance(timestep, int):
                timestep = torch.full((x.shape[0],), timestep, dtype=torch.long, device=x.device)
            ehs = model.empty_text_embedding.expand(x.shape[0], -1, -1)
            return unet(x, timestep, encoder_hidden_states=ehs, return_dict=False)[0]

        d0 = run(x0, 0)
        if self.loss_cfg.get("pseudo_labels", "stream") == "gt":
            dm1, dm1_star = run(d0, -1), d0_star
        else:
            real = batch["pseudo/frames"].flatten(0, 1)
            shape = batch["pseudo/frames"].shape[:2]
            xr = cached(self.cache, "fiff_rgb", batch.get("pseudo/key"),
                        lambda: self._encode(model, real * 2 - 1).unflatten(0, shape), real,
                        vae).flatten(0, 1)  # fmt: skip
            dm1, dm1_star = run(run(xr, 0), -1), self._pseudo_latent(model, batch)
        n = x0.shape[0]
        steps = torch.randint(1, len(self.alpha_bar), (n,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        b_t, v = L.trajectory_target(x0, d0_star, noise, self.alpha_bar[steps].to(x0),
                                     gamma=float(self.loss_cfg.get("gamma", 0.5)))  # fmt: skip
        v_pred = run(b_t, steps.to(x0.device))
        return L.fiffdepth_loss(
            d0.float(), d0_star.float(), dm1.float(), dm1_star.float(), v_pred.float(), v.float(),
            w_mae=float(self.loss_cfg.get("w_mae", 1.0)),
            w_gm=float(self.loss_cfg.get("w_gm", 0.5)),
            w_k=float(self.loss_cfg.get("w_k", 0.2)),
        )  # fmt: skip


__all__ = ["FiffDepthRecipe"]
