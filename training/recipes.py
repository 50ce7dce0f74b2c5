"""Per-paper training recipes: how a batch becomes a loss for one model family.

A recipe builds its model (a `vdepth_ros.models` family), selects the trainable parameters of a
stage, computes the loss of a batch (see `vdepth_training.losses`) and returns the model to save.
The trainer (`trainer.py`) is recipe-agnostic.

Batches are `ClipDataset` dicts: `frames` (B, T, 3, H, W) in [0, 1], `target` (B, T, H, W)
normalised disparity, `valid`, `intrinsics`, `poses`, `has_camera`, `key` (B, 3).
"""

from __future__ import annotations

import copy
import re
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from vdepth_training import losses as L
from vdepth_training.cache import LatentCache, cached
from vdepth_training.config import build_family_model
from vdepth_training.freeze import set_trainable

Tensor = torch.Tensor
LossOut = tuple[Tensor, dict[str, Tensor]]


def _depth_video(target: Tensor) -> Tensor:
    """(..., H, W) disparity in [0, 1] -> (..., 3, H, W) in [-1, 1] (replicated 3×, VAE input)."""
    return (target.unsqueeze(-3) * 2.0 - 1.0).expand(*target.shape[:-2], 3, *target.shape[-2:]).contiguous()


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
    """GemDepth (Eq. 1–3): SSI + 0.5·GM + 10·TGM + 0.2·L_cam; L_cam only on pose-annotated clips.

    Camera supervision follows the released code: predicted and GT poses (camera-from-world, VGGT
    encoding) are expressed relative to frame 0 and their translations divided by the clip's mean
    translation norm, with the model's own `relative_to_first` / `normalize_translations`; quaternions
    are sign-canonicalised (w ≥ 0) before the L1 loss. Stage 2 freezes the GEM (config `exclude`).
    """

    name = "gemdepth"
    family = "gemdepth"

    def predict_batch(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Any]:
        from vdepth_ros.models.gemdepth import normalize_translations, relative_to_first

        out = model.forward_geometry(batch["frames"])
        if float(self.loss_cfg.get("w_cam", 0.2)) == 0 or not bool(batch["has_camera"].all()):
            return out.disparity, None

        def relative(quat: Tensor, trans: Tensor) -> tuple[Tensor, Tensor]:
            q, t = relative_to_first(quat, trans)
            q = q * torch.where(q[..., 3:] < 0, -1.0, 1.0)
            return q, normalize_translations(t)[0]

        enc = out.pose_encoding.float()
        q_pred, t_pred = relative(enc[..., 3:7], enc[..., :3])
        w2c = torch.linalg.inv(batch["poses"].float())  # dataset poses are camera-to-world
        q_gt, t_gt = relative(matrix_to_quaternion(w2c[..., :3, :3]), w2c[..., :3, 3])
        return out.disparity, (q_pred, q_gt, t_pred, t_gt)


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
                cond = model.condition(frames, aug)
                return Conditioning(cond.latents.contiguous(), cond.clip)  # see `cache.cached` on layouts
            lat = cached(self.cache, "dc_cond", keys, lambda: model.condition(frames, aug).latents[None], frames)[0]
            clip = cached(self.cache, "dc_clip", keys, lambda: model.encode_clip(frames * 2 - 1)[None], frames)[0]
            return Conditioning(lat, clip)

    def depth_latent(self, model: nn.Module, target: Tensor, key: Tensor | None) -> Tensor:
        from vdepth_ros.models.edm import LATENT_SCALE

        def compute() -> Tensor:
            with torch.no_grad():
                return (model.encode_latents(_depth_video(target)) * LATENT_SCALE)[None]

        return cached(self.cache, "dc_depth", None if key is None else key[None], compute, target)[0].contiguous()

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

    def _teacher_outputs(self, frames: Tensor, key: Tensor | None, want_decoder: bool) -> dict[str, Tensor]:
        """x̂_{0;5} (T, 4, h, w), ε, and for stage 2 d_t (T, H, W) + decoder features (T, C, s, s)."""
        teacher = self.teacher.to(frames.device)
        t, _, h, w = frames.shape
        seed = 0 if key is None else int(key[0]) * 1_000_003 + int(key[1]) * 7919 + int(key[2])
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

            out["latent"] = cached(self.cache, "os_teacher_latent", keys, sample, frames)[0]
            if want_decoder:
                size = int(self.loss_cfg.get("affinity_size", 16))

                def decode() -> Tensor:
                    with capture_outputs([teacher.vae.decoder.mid_block]) as feats:
                        disp = teacher.normalize(teacher.decode_disparity(out["latent"]))
                    return torch.cat([disp.flatten(1), pool_features(feats, size).flatten(1)], dim=1)[None]

                packed = cached(self.cache, "os_teacher_decoder", keys, decode, frames)[0]
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


RECIPES: dict[str, type[Recipe]] = {
    r.name: r for r in (VDARecipe, GemDepthRecipe, DVDRecipe, FiffDepthRecipe, DepthCrafterRecipe, OneStepRecipe)
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
    "OneStepRecipe",
    "Recipe",
    "VDARecipe",
    "get_recipe",
    "matrix_to_quaternion",
]
