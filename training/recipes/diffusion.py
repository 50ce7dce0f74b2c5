"""Recipes of the latent-diffusion families: DVD, DepthCrafter and its one-step student (003).

FiffDepth, whose t = −1 term needs a second (pseudo-labelled) stream, is in `fiffdepth.py`.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from vdepth_training import losses as L
from vdepth_training.cache import cached
from vdepth_training.config import MODEL_KEYS
from vdepth_training.recipes.base import LossOut, Recipe, Tensor, depth_video, dpt_unused_parameters
from vdepth_training.stages import Stage

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
    loss_keys = frozenset(("w_spatial", "w_temporal"))

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

        vae = (model.vae,)  # frozen: its weights name the entries
        z_x = cached(self.cache, "dvd_rgb", keys, lambda: encode(frames * 2.0 - 1.0), frames, vae)
        z_d = cached(self.cache, "dvd_depth", keys, lambda: encode(depth_video(target)), frames, vae)
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
    loss_keys = frozenset(("p_mean", "p_std"))
    within = "unet"

    def conditioning(self, model: nn.Module, frames: Tensor, key: Tensor | None, generator: torch.Generator) -> Any:
        from vdepth_ros.models.depthcrafter import Conditioning

        keys = None if key is None else key[None]
        aug = torch.randn(frames.shape, generator=generator).to(frames) if model.augment_noise else None
        with torch.no_grad():
            if self.cache is None or keys is None:
                cond = model.condition(frames, aug)
                return Conditioning(cond.latents.contiguous(), cond.clip)  # see `cache.cached` on layouts
            lat = cached(self.cache, "dc_cond", keys, lambda: model.condition(frames, aug).latents[None], frames,
                         (model.vae,))[0]  # fmt: skip
            clip = cached(self.cache, "dc_clip", keys, lambda: model.encode_clip(frames * 2 - 1)[None], frames,
                          (model.image_encoder,))[0]  # fmt: skip
            return Conditioning(lat, clip)

    def depth_latent(self, model: nn.Module, target: Tensor, key: Tensor | None) -> Tensor:
        from vdepth_ros.models.edm import LATENT_SCALE

        def compute() -> Tensor:
            with torch.no_grad():
                return (model.encode_latents(depth_video(target)) * LATENT_SCALE)[None]

        keys = None if key is None else key[None]
        return cached(self.cache, "dc_depth", keys, compute, target, (model.vae,))[0].contiguous()

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


# -- One-step self-distillation (003) ---------------------------------------------------------------------------


class OneStepRecipe(Recipe):
    """One-step self-distillation of DepthCrafter (003 §3.2–3.3, §4.1).

    A frozen DepthCrafter teacher (`model.teacher`: `init_from` folder or `use_tiny_config`) samples
    x̂_{0;5} with its 5-step Euler sampler; the student `OneStepDepth` starts as a copy of the
    teacher (`OneStepDepth.from_teacher`, `model.config` = mode/head/dpt/...). Teacher outputs
    depend only on the clip (noise seeded from the clip key), so they are cached (`latent_cache`).

    Stage `loss.stage: unet` (stage 1): L_latent = 0.5·||x̂_s − x̂_{0;5}||² + 0.5·L_g on latents
    (student spatial layers only). Stochastic students get the teacher's ε (our pairing choice).
    Stage `loss.stage: decoder` (stage 2, DPT head): L_silog(d_s, d_t) + 0.1·L_feature + 2·L_grad,
    d_t = teacher VAE decode of x̂_{0;5} (clip min-max normalised), d_s = DPT head output (same
    normalisation). Affinity features (our choice, unspecified in 003): the finest DPT fusion output
    vs the teacher VAE decoder's mid-block output, both average-pooled to `loss.affinity_size`².
    """

    name = "onestep"
    family = "onestep"
    normalization = "minmax_sequence"
    within = "unet"
    loss_keys = frozenset(("stage", "affinity_size", "lam", "w_feature", "w_grad"))
    model_keys = MODEL_KEYS | {"teacher"}
    nested_keys: ClassVar[dict[str, frozenset[str]]] = {
        "model.teacher": frozenset(("init_from", "config", "use_tiny_config", "steps"))
    }

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        self.teacher: nn.Module | None = None

    def build_model(self) -> nn.Module:
        from vdepth_ros.models import build_model, family_class, load_model
        from vdepth_ros.models.onestep import OneStepDepth

        mcfg = self.cfg["model"]
        if mcfg.get("init_from"):  # resume a student (e.g. stage 2 from a stage-1 export)
            student = load_model(mcfg["init_from"])
        tcfg = dict(mcfg.get("teacher") or {})
        if tcfg.get("init_from"):
            teacher = load_model(tcfg["init_from"])
        else:
            kwargs = dict(tcfg.get("config") or {})
            if tcfg.get("use_tiny_config"):
                kwargs = {**family_class("depthcrafter").tiny_config(), **kwargs}
            teacher = build_model("depthcrafter", **kwargs)
        teacher.num_inference_steps = int(tcfg.get("steps", 5))  # 003 §4.1: the 5-step teacher
        self.teacher = teacher.eval().requires_grad_(False)
        if not mcfg.get("init_from"):
            kwargs = dict(mcfg.get("config") or {})
            if mcfg.get("use_tiny_config"):
                tiny = family_class("onestep").tiny_config()
                kwargs = {**{k: v for k, v in tiny.items() if k not in ("unet", "vae", "image_encoder")}, **kwargs}
            student = OneStepDepth.from_teacher(teacher, **kwargs)
        return student.train()

    def frozen_models(self, stage: Stage) -> dict[str, str]:
        """The teacher's folder (`model.teacher.init_from`): the student learns from it at every start."""
        folder = (self.cfg["model"].get("teacher") or {}).get("init_from")
        return {"model.teacher.init_from": str(folder)} if folder else {}

    def unused_parameters(self, model: nn.Module) -> list[str]:
        """The decoder stage reads the UNet's features, never its output layers (`conv_norm_out`,
        `conv_out`), and the DPT head's coarsest fusion has no residual input (`dpt_unused_parameters`)."""
        if self.loss_cfg.get("stage", "unet") != "decoder":
            return []
        out = [n for n, _ in model.named_parameters() if n.startswith(("unet.conv_norm_out.", "unet.conv_out."))]
        return out + dpt_unused_parameters(model)

    def _teacher_outputs(self, frames: Tensor, key: Tensor | None, want_decoder: bool) -> dict[str, Tensor]:
        """x̂_{0;5} (T, 4, h, w), ε, and for stage 2 d_t (T, H, W) + decoder features (T, C, s, s)."""
        teacher = self.teacher.to(frames.device)
        t, _, h, w = frames.shape
        seed = 0 if key is None else (int(key[0]) * 1_000_003 + int(key[1])) % (2**63)  # the clip's content
        gen = torch.Generator().manual_seed(seed)
        aug = torch.randn(frames.shape, generator=gen).to(frames) if teacher.augment_noise else None
        f = teacher.vae_factor
        eps = torch.randn(min(t, teacher.window), teacher.unet.config.out_channels, h // f, w // f, generator=gen)
        eps = eps.to(frames)
        keys = None if key is None else key[None]
        with torch.no_grad():
            out = {"eps": eps}

            def sample() -> Tensor:
                return teacher.sample_latents(teacher.condition(frames, aug), eps)[None]

            out["latent"] = cached(self.cache, "os_teacher_latent", keys, sample, frames, (teacher,))[0]
            if want_decoder:
                size = int(self.loss_cfg.get("affinity_size", 16))

                def decode() -> Tensor:
                    with capture_outputs([teacher.vae.decoder.mid_block]) as feats:
                        disp = teacher.normalize(teacher.decode_disparity(out["latent"]))
                    return torch.cat([disp.flatten(1), pool_features(feats, size).flatten(1)], dim=1)[None]

                packed = cached(self.cache, "os_teacher_decoder", keys, decode, frames, (teacher, size))[0]
                out["disparity"] = packed[:, : h * w].reshape(t, h, w)
                out["features"] = packed[:, h * w :].reshape(t, -1, size, size)
        return out

    def loss(self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> LossOut:
        stage = self.loss_cfg.get("stage", "unet")
        if stage not in ("unet", "decoder"):
            raise ValueError(f"onestep loss.stage must be 'unet' or 'decoder', got {stage!r}")
        keys = batch.get("key")
        totals: list[Tensor] = []
        logs: dict[str, list[Tensor]] = {}
        for i in range(batch["frames"].shape[0]):
            frames = batch["frames"][i]
            teacher = self._teacher_outputs(frames, None if keys is None else keys[i], stage == "decoder")
            aug = torch.randn(frames.shape, generator=generator).to(frames) if model.augment_noise else None
            with torch.no_grad():
                cond = model.condition(frames, aug)
            cond.latents = cond.latents.contiguous()  # see `cache.cached` (channels-last GroupNorm)
            x_t = model.initial_latent(cond, teacher["eps"])
            if stage == "unet":
                loss, terms = L.latent_distillation_loss(
                    model.step(x_t, cond).float(), teacher["latent"].float(), lam=float(self.loss_cfg.get("lam", 0.5))
                )
            else:
                if model.dpt is None:
                    raise ValueError("the decoder stage needs a student with head='dpt'")
                _, feats = model.unet_output(x_t, model.sigma, cond, return_features=True)
                with capture_outputs(list(model.dpt.fusion)) as fused:
                    disp = model.normalize(model.dpt(model.pyramid(feats), num_frames=frames.shape[0]))
                student_feat = pool_features(fused, teacher["features"].shape[-1])
                loss, terms = L.onestep_decoder_loss(
                    disp[None].float(), teacher["disparity"][None].float(), student_feat.float(),
                    teacher["features"].float(), w_feature=float(self.loss_cfg.get("w_feature", 0.1)),
                    w_grad=float(self.loss_cfg.get("w_grad", 2.0)),
                )  # fmt: skip
            totals.append(loss)
            for k, v in terms.items():
                logs.setdefault(k, []).append(v)
        return torch.stack(totals).mean(), {k: torch.stack(v).mean() for k, v in logs.items()}


class capture_outputs:  # noqa: N801 - used as a context manager like `torch.no_grad`
    """Collect the outputs of `modules` while the context is open (forward hooks)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules = modules
        self.outputs: list[Tensor] = []
        self.handles: list[Any] = []

    def __enter__(self) -> list[Tensor]:
        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            self.outputs.append(out[0] if isinstance(out, tuple) else out)

        self.handles = [m.register_forward_hook(hook) for m in self.modules]
        return self.outputs

    def __exit__(self, *exc: object) -> bool:
        for h in self.handles:
            h.remove()
        return False


def pool_features(maps: list[Tensor], size: int) -> Tensor:
    """The finest of `maps` (N, C, h, w), average-pooled to (N, C, size, size)."""
    if not maps:
        raise ValueError("no feature map was captured")
    finest = max(maps, key=lambda m: m.shape[-1] * m.shape[-2])
    return F.adaptive_avg_pool2d(finest, size)


__all__ = ["DVDRecipe", "DepthCrafterRecipe", "OneStepRecipe", "capture_outputs", "pool_features"]
