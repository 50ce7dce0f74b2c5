"""Per-paper training recipes: how a batch becomes a loss for one model family.

A recipe builds its model (a `vdepth_ros.models` family), selects the trainable parameters of a
stage, computes the loss of a batch (see `vdepth_training.losses`) and returns the model to save.
The trainer (`trainer.py`) is recipe-agnostic.

Batches are `ClipDataset` dicts: `frames` (B, T, 3, H, W) in [0, 1], `target` (B, T, H, W)
normalised disparity, `valid`, `intrinsics`, `poses`, `has_camera`, `key` (B, 3).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import nn
from vdepth_training import losses as L
from vdepth_training.cache import LatentCache, cached
from vdepth_training.config import build_family_model
from vdepth_training.freeze import set_trainable

Tensor = torch.Tensor
LossOut = tuple[Tensor, dict[str, Tensor]]


def _depth_video(target: Tensor) -> Tensor:
    """(..., H, W) disparity in [0, 1] -> (..., 3, H, W) in [-1, 1] (replicated 3×, VAE input)."""
    return (target.unsqueeze(-3) * 2.0 - 1.0).expand(*target.shape[:-2], 3, *target.shape[-2:])


class Recipe:
    """Base recipe. Subclasses set `family`, `normalization` and implement `loss`.

    Args:
        cfg: the loaded config (`config.load_config`).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    normalization: ClassVar[str] = "minmax_sequence"
    within: ClassVar[str | None] = None  # submodule that holds the trainable layers (e.g. "unet")

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.loss_cfg: dict[str, Any] = dict(cfg.get("loss") or {})
        cache_dir = cfg["training"].get("latent_cache")
        self.cache = LatentCache(cache_dir) if cache_dir else None

    def build_model(self) -> nn.Module:
        model = build_family_model(self.cfg)
        if model.family != self.family:
            raise ValueError(f"recipe {self.name!r} trains family {self.family!r}, config builds {model.family!r}")
        return model

    def configure_stage(self, model: nn.Module, stage: dict[str, Any]) -> list[dict[str, Any]]:
        """Freeze per the stage and return optimizer param groups.

        Stage keys: `trainable` (all|none|spatial|temporal), `within`, `include`, `exclude` (see
        `freeze.set_trainable`); `lr`, `lr_new` + `new_params` (regex) override the optimizer's
        (GemDepth: 1e-4 for new modules, 1e-6 for pretrained ones).
        """
        import re

        names = set_trainable(
            model,
            stage["trainable"],
            within=stage.get("within", self.within),
            include=stage.get("include"),
            exclude=stage.get("exclude"),
        )
        if not names:
            raise ValueError(f"stage {stage['name']!r} leaves no trainable parameter")
        opt = self.cfg["optimizer"]
        lr = float(stage.get("lr", opt["lr"]))
        new_re = stage.get("new_params", opt.get("new_params"))
        lr_new = stage.get("lr_new", opt.get("lr_new"))
        params = dict(model.named_parameters())
        if new_re and lr_new is not None:
            pat = re.compile(new_re)
            new = [params[n] for n in names if pat.search(n)]
            old = [params[n] for n in names if not pat.search(n)]
            return [g for g in ({"params": new, "lr": float(lr_new)}, {"params": old, "lr": lr}) if g["params"]]
        return [{"params": [params[n] for n in names], "lr": lr}]

    def loss(self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> LossOut:
        raise NotImplementedError

    def export_model(self, model: nn.Module) -> nn.Module:
        """The `VideoDepthModel` to `save_pretrained` (a copy; training state untouched)."""
        return model


# -- GemDepth / Video Depth Anything ------------------------------------------------------------------------------


class VDARecipe(Recipe):
    """Video Depth Anything fine-tuning with GemDepth's depth losses (SSI + 0.5·GM + 10·TGM).

    The VDA family has no camera head, so L_cam is absent (GemDepth Eq. 3 with γ = 0).
    """

    name = "vda"
    family = "vda"
    normalization = "per_frame"

    def predict_batch(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Any]:
        out = model(batch["frames"])
        return out, None

    def loss(self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> LossOut:
        pred, camera = self.predict_batch(model, batch)
        return L.gemdepth_loss(
            pred.float(),
            batch["target"],
            batch["valid"],
            camera=camera,
            w_gm=float(self.loss_cfg.get("w_gm", 0.5)),
            w_tgm=float(self.loss_cfg.get("w_tgm", 10.0)),
            w_cam=float(self.loss_cfg.get("w_cam", 0.2)),
        )


class GemDepthRecipe(VDARecipe):
    """GemDepth (Eq. 3): SSI + 0.5·GM + 10·TGM + 0.2·L_cam; L_cam only on pose-annotated clips.

    The model's forward is expected to return the disparity, or a dict with `disparity` and the
    per-frame `quaternion` (B, T, 4) / `translation` (B, T, 3) (scale-normalised, relative to frame 0).
    GT poses are made relative to frame 0 and their translations divided by the mean norm (§3.2).
    """

    name = "gemdepth"
    family = "gemdepth"

    def predict_batch(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Any]:
        out = model(batch["frames"])
        if not isinstance(out, dict):
            return out, None
        camera = None
        if "quaternion" in out and bool(batch["has_camera"].all()):
            gt_q, gt_t = relative_pose_targets(batch["poses"])
            camera = (out["quaternion"], gt_q, out["translation"], gt_t)
        return out["disparity"], camera


def relative_pose_targets(poses: Tensor) -> tuple[Tensor, Tensor]:
    """Camera-to-world (B, T, 4, 4) -> poses relative to frame 0 as (quaternion xyzw (B, T, 4),
    translation (B, T, 3) divided by the mean translation norm of the clip, GemDepth §3.2)."""
    rel = torch.linalg.inv(poses[:, :1]) @ poses
    r, t = rel[..., :3, :3], rel[..., :3, 3]
    scale = t.norm(dim=-1).mean(dim=1, keepdim=True).clamp_min(1e-6)
    return matrix_to_quaternion(r), t / scale[..., None]


def matrix_to_quaternion(r: Tensor) -> Tensor:
    """(..., 3, 3) rotations -> (..., 4) unit quaternions (x, y, z, w) with w >= 0."""
    m = r
    w = torch.sqrt((1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]).clamp_min(1e-12)) / 2
    x = torch.sqrt((1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2]).clamp_min(0)) / 2
    y = torch.sqrt((1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2]).clamp_min(0)) / 2
    z = torch.sqrt((1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]).clamp_min(0)) / 2
    x = x * torch.sign(m[..., 2, 1] - m[..., 1, 2])
    y = y * torch.sign(m[..., 0, 2] - m[..., 2, 0])
    z = z * torch.sign(m[..., 1, 0] - m[..., 0, 1])
    q = torch.stack([x, y, z, w], -1)
    return q / q.norm(dim=-1, keepdim=True)


# -- DVD ---------------------------------------------------------------------------------------------------


class DVDRecipe(Recipe):
    """DVD: one DiT pass on the RGB latent at τ0, x-prediction of the depth latent; LoRA only.

    Loss: DVD Eq. 7 (latent MSE + 0.5·L_sp + 0.5·L_temp) on Wan-VAE latents of the clip-level
    2–98 % quantile disparity, replicated ×3 in [-1, 1]. Clips are padded to 4n+1 frames by
    repeating the last frame (Wan VAE). Images are T = 1 clips (Eq. 10, λ_image = 1).
    """

    name = "dvd"
    family = "dvd"
    normalization = "quantile_clip"

    def loss(self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> LossOut:
        from vdepth_ros.models.dvd import pad_to_4n_plus_1

        frames, target = batch["frames"], batch["target"]
        t = frames.shape[1]
        n = pad_to_4n_plus_1(t)
        if n > t:
            frames = torch.cat([frames, frames[:, -1:].expand(-1, n - t, -1, -1, -1)], dim=1)
            target = torch.cat([target, target[:, -1:].expand(-1, n - t, -1, -1)], dim=1)
        keys = batch.get("key")

        def encode(video: Tensor) -> Tensor:
            with torch.no_grad():
                return model.encode(video.permute(0, 2, 1, 3, 4))  # (B, 3, F, H, W) -> (B, z, f, h, w)

        z_x = cached(self.cache, "dvd_rgb", keys, lambda: encode(frames * 2.0 - 1.0), frames)
        z_d = cached(self.cache, "dvd_depth", keys, lambda: encode(_depth_video(target)), frames)
        pred = model.denoise(z_x)
        return L.dvd_loss(
            pred.transpose(1, 2).float(),
            z_d.transpose(1, 2).float(),
            w_spatial=float(self.loss_cfg.get("w_spatial", 0.5)),
            w_temporal=float(self.loss_cfg.get("w_temporal", 0.5)),
        )

    def export_model(self, model: nn.Module) -> nn.Module:
        out = copy.deepcopy(model)
        if getattr(out, "lora_rank", 0):
            out.merge_lora()  # DVD App. D: LoRA merged for inference/export
        return out


# -- FiffDepth ------------------------------------------------------------------------------------------------


class FiffDepthRecipe(Recipe):
    """FiffDepth Eq. 7: Σ_{t∈{0,−1}} (MAE + 0.5·GM)(d_t, d*_t) + 0.2·L_k on SD latents.

    - t = 0: d_0 = U(x_0, 0) against the GT depth latent d*_0 (synthetic data).
    - t = −1: d_{−1} = U(d_0, −1) against the pseudo-label latent d*_{−1}; the paper uses DAv2-L
      labels on real images. A batch may carry them as `pseudo_target` (B, T, H, W); otherwise
      (`loss.pseudo_labels: gt`, the tiny config) the GT stands in. Gradients flow through d_0
      (unspecified in the paper).
    - L_k (Eq. 2–3): v-prediction on the blend b_0 = 0.5·x_0 + 0.5·d*_0 at t ~ U{1..999}, SD DDPM.
    Targets: FiffDepth predicts relative *depth*; the model's `predict` returns 1 − depth as
    disparity, so the target depth is 1 − (per-frame normalised disparity), in [-1, 1].
    """

    name = "fiffdepth"
    family = "fiffdepth"
    normalization = "per_frame"

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        self.alpha_bar = L.ddpm_alpha_bar()

    def loss(self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> LossOut:
        from vdepth_ros.models.fiffdepth import LATENT_SCALE

        frames = batch["frames"].flatten(0, 1)  # (N, 3, H, W): a single-image model
        keys = batch.get("key")

        def encode(images: Tensor) -> Tensor:
            with torch.no_grad():
                return model.vae.encode(images).latent_dist.mean * LATENT_SCALE

        def per_image(x: Tensor) -> Tensor:
            return x.flatten(0, 1)

        b, t = batch["frames"].shape[:2]
        x0 = cached(self.cache, "fiff_rgb", keys, lambda: encode(frames * 2 - 1).unflatten(0, (b, t)), frames)
        d0_star = cached(
            self.cache, "fiff_depth", keys,
            lambda: encode(_depth_video(1.0 - batch["target"].flatten(0, 1))).unflatten(0, (b, t)), frames,
        )  # fmt: skip
        x0, d0_star = per_image(x0), per_image(d0_star)
        ehs = model.empty_text_embedding.expand(x0.shape[0], -1, -1)
        unet = model.unet
        n = x0.shape[0]

        def run(x: Tensor, timestep: Tensor) -> Tensor:
            return unet(x, timestep, encoder_hidden_states=ehs, return_dict=False)[0]

        d0 = run(x0, torch.zeros(n, dtype=torch.long, device=x0.device))
        dm1 = dm1_star = None
        if self.loss_cfg.get("pseudo_labels", "batch") == "gt" or "pseudo_target" in batch:
            if "pseudo_target" in batch:
                pseudo = batch["pseudo_target"].flatten(0, 1)
                dm1_star = encode(_depth_video(1.0 - pseudo))
            else:
                dm1_star = d0_star
            dm1 = run(d0, torch.full((n,), -1, dtype=torch.long, device=x0.device))
        steps = torch.randint(1, len(self.alpha_bar), (n,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        b_t, v = L.trajectory_target(x0, d0_star, noise, self.alpha_bar[steps].to(x0),
                                     gamma=float(self.loss_cfg.get("gamma", 0.5)))  # fmt: skip
        v_pred = run(b_t, steps.to(x0.device))
        return L.fiffdepth_loss(
            d0.float(), d0_star.float(),
            None if dm1 is None else dm1.float(), dm1_star,
            v_pred.float(), v.float(),
            w_mae=float(self.loss_cfg.get("w_mae", 1.0)),
            w_gm=float(self.loss_cfg.get("w_gm", 0.5)),
            w_k=float(self.loss_cfg.get("w_k", 0.2)),
        )  # fmt: skip


# -- DepthCrafter ------------------------------------------------------------------------------------------------


class DepthCrafterRecipe(Recipe):
    """DepthCrafter EDM fine-tuning of the SVD UNet (Eq. 2, 6, 7).

    x_0 = 0.18215 · E(depth) (VAE mode of the sequence-normalised disparity, ×3, in [-1, 1]);
    ln σ ~ N(0.7, 1.6²); x = x_0 + σε; D = c_skip·x + c_out·F(c_in·x ‖ z(v); c_noise; CLIP);
    loss λ_σ·||D − x_0||² with λ_σ = (1+σ²)/σ². Conditioning as at inference (frame-wise VAE
    latents of the noise-augmented video, per-frame CLIP). One σ per clip.
    """

    name = "depthcrafter"
    family = "depthcrafter"
    normalization = "minmax_sequence"
    within = "unet"

    def conditioning(self, model: nn.Module, frames: Tensor, key: Tensor | None, generator: torch.Generator) -> Any:
        from vdepth_ros.models.depthcrafter import Conditioning

        keys = None if key is None else key[None]
        aug = torch.randn(frames.shape, generator=generator).to(frames) if model.augment_noise else None
        with torch.no_grad():
            if self.cache is None or keys is None:
                return model.condition(frames, aug)
            lat = cached(self.cache, "dc_cond", keys, lambda: model.condition(frames, aug).latents[None], frames)[0]
            clip = cached(self.cache, "dc_clip", keys, lambda: model.encode_clip(frames * 2 - 1)[None], frames)[0]
            return Conditioning(lat, clip)

    def depth_latent(self, model: nn.Module, target: Tensor, key: Tensor | None) -> Tensor:
        from vdepth_ros.models.edm import LATENT_SCALE

        def compute() -> Tensor:
            with torch.no_grad():
                return (model.encode_latents(_depth_video(target)) * LATENT_SCALE)[None]

        return cached(self.cache, "dc_depth", None if key is None else key[None], compute, target)[0]

    def loss(self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> LossOut:
        from vdepth_ros.models import edm

        total, terms = 0.0, []
        keys = batch.get("key")
        for i in range(batch["frames"].shape[0]):
            key = None if keys is None else keys[i]
            frames, target = batch["frames"][i], batch["target"][i]
            cond = self.conditioning(model, frames, key, generator)
            x0 = self.depth_latent(model, target, key)
            p_mean, p_std = float(self.loss_cfg.get("p_mean", 0.7)), float(self.loss_cfg.get("p_std", 1.6))
            sigma = float(L.sample_edm_sigma(1, p_mean=p_mean, p_std=p_std, generator=generator))
            noise = torch.randn(x0.shape, generator=generator).to(x0)
            x = edm.add_noise(x0, noise, sigma)
            denoised = edm.denoise(x, model.unet_output(x, sigma, cond), sigma)
            loss_i = L.edm_denoising_loss(denoised[None].float(), x0[None].float(), torch.tensor([sigma]))
            total = total + loss_i
            terms.append(torch.tensor(sigma))
        n = batch["frames"].shape[0]
        return total / n, {"sigma": torch.stack(terms).mean()}


RECIPES: dict[str, type[Recipe]] = {
    r.name: r for r in (VDARecipe, GemDepthRecipe, DVDRecipe, FiffDepthRecipe, DepthCrafterRecipe)
}


def get_recipe(cfg: dict[str, Any]) -> Recipe:
    name = cfg["recipe"]
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name](cfg)


__all__ = [
    "RECIPES",
    "DVDRecipe",
    "DepthCrafterRecipe",
    "FiffDepthRecipe",
    "GemDepthRecipe",
    "Recipe",
    "VDARecipe",
    "get_recipe",
    "matrix_to_quaternion",
    "relative_pose_targets",
]
