"""One-step video depth via self-distillation (Cui et al., KAUST): the DepthCrafter UNet at fixed σ.

The student is DepthCrafter's UNet (same conditioning: per-frame CLIP token, unscaled RGB-latent
concat, `added_time_ids = [7, 127, 0.02]`) evaluated **once** at σ = σ_max = 700:

    x̂0 = c_skip(700)·x_T + c_out(700)·F(c_in(700)·x_T ‖ r; c_noise(700); c),  c_noise(700) = 1.6378

which is exactly one Euler step of the teacher's sampler from σ_max to 0 (`edm.euler_step`).

Input modes (`mode`):

* ``"stochastic"``: `x_T = sqrt(σ²+1)·ε`, ε ~ N(0, I) seeded, like the teacher's first step;
  conditioning noise augmentation on by default, as in the teacher.
* ``"deterministic"`` (paper §3.2.2, "the RGB latent replaces the noise"): **our scaling
  convention**, which the paper leaves open: ε is replaced by the *scaled* RGB latent
  `ε_rgb = 0.18215 · E(x).mode()` -- the latent normalisation that makes SVD latents roughly unit
  variance, i.e. the statistics of the ε it replaces -- and `x_T = sqrt(σ²+1)·ε_rgb`, so the UNet's
  first input channels are exactly `c_in·x_T = ε_rgb`. `E(x)` is the same latent as the
  conditioning channels (clean frames: conditioning noise augmentation is **off** by default in this
  mode, so the path has no randomness; the third time id stays 0.02). The training engineer must
  use the same `initial_latent` for the student.

Heads (`head`):

* ``"vae"``: the denoised latent goes through the SVD temporal VAE decoder, as the teacher.
* ``"dpt"``: a temporal DPT head (Video-Depth-Anything style, `models/dpt.py: TemporalDPTHead`)
  decodes a 4-level pyramid of intermediate UNet features, replacing the VAE decoder. **Our choice
  of taps** (the paper does not say): the UNet *decoder* features, one per scale -- last up block
  (latent res, 320 ch in the release), up block 1 (1/2, 1280), up block 0 (1/4, 1280), mid block
  (1/8, 1280) (`SpatioTemporalUNet.feature_channels`). `TemporalDPTHead` wants one token grid; we
  use latent/4 (image/32), where DPT's reassemble factors (4, 2, 1, 1/2) put every level back at its
  native UNet scale: the finer maps are average-pooled onto the grid, the bottleneck is upsampled
  bilinearly, and `patch_size = 32` makes the output full resolution. The paper pairs the DPT head
  with the deterministic UNet only (stochastic features are noisy); we allow both.

Output: disparity min-max normalised over the clip to [0, 1], as DepthCrafter. Long clips
(`T > window`) with the VAE head use the teacher's windowing: stochastic windows reuse ε and the
first-step anchor exactly as DepthCrafter; deterministic windows have no noise to reuse, so only the
latent crossfade stitches them. The DPT head has no latent to crossfade; it takes at most
`input_constraints.max_window` frames (its temporal position table) and leaves stitching to the
pipeline. The paper does not discuss long videos; windows of 110 / overlap 25 are inherited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from vdepth_ros.errors import ConfigError, InputError
from vdepth_ros.models import edm
from vdepth_ros.models.base import InputConstraints, load_state_checked, load_state_dict_file, register_to_config
from vdepth_ros.models.depthcrafter import (
    DEFAULT_OVERLAP,
    DEFAULT_WINDOW,
    TINY_CLIP_CONFIG,
    TINY_UNET_CONFIG,
    TINY_VAE_CONFIG,
    Conditioning,
    DepthCrafter,
    SVDDepthModel,
)
from vdepth_ros.models.dpt import TemporalDPTHead

Mode = Literal["deterministic", "stochastic"]
Head = Literal["vae", "dpt"]

#: TemporalDPTHead kwargs for the released-size UNet (VDA ViT-L decoder widths); window 110 frames.
DEFAULT_DPT_CONFIG: dict[str, Any] = {
    "features": 256,
    "out_channels": [256, 512, 1024, 1024],
    "num_frames": DEFAULT_WINDOW,
}
TINY_DPT_CONFIG: dict[str, Any] = {
    "features": 32,
    "out_channels": [16, 32, 64, 64],
    "head_features": 16,
    "num_frames": 16,
    "num_heads": 2,
    "norm_groups": 8,
}


class OneStepDepth(SVDDepthModel):
    """The one-step self-distilled student.

    Args:
        unet, vae, image_encoder, window, overlap, noise_aug_strength, seed, decode_chunk_size:
            as `SVDDepthModel` (defaults: released SVD-XT/DepthCrafter sizes, 110/25, 0.02, 42, 8).
        mode: "deterministic" (RGB latent as input; paper's best) or "stochastic" (seeded noise).
        head: "vae" (temporal VAE decoder) or "dpt" (temporal DPT head on UNet features).
        dpt: `TemporalDPTHead` kwargs except `in_channels`/`patch_size` (derived); None = defaults.
        sigma: the fixed noise level (paper: σ_max = 700).
        augment_noise: conditioning noise augmentation; None = on for stochastic, off for deterministic.
    """

    family: ClassVar[str] = "onestep"

    @register_to_config
    def __init__(
        self,
        unet: dict[str, Any] | None = None,
        vae: dict[str, Any] | None = None,
        image_encoder: dict[str, Any] | None = None,
        mode: Mode = "deterministic",
        head: Head = "vae",
        dpt: dict[str, Any] | None = None,
        sigma: float = edm.SIGMA_MAX,
        window: int = DEFAULT_WINDOW,
        overlap: int = DEFAULT_OVERLAP,
        noise_aug_strength: float = 0.02,
        augment_noise: bool | None = None,
        seed: int = 42,
        decode_chunk_size: int = 8,
    ) -> None:
        if mode not in ("deterministic", "stochastic"):
            raise ConfigError(f"mode must be 'deterministic' or 'stochastic', got {mode!r}")
        if head not in ("vae", "dpt"):
            raise ConfigError(f"head must be 'vae' or 'dpt', got {head!r}")
        augment = (mode == "stochastic") if augment_noise is None else augment_noise
        super().__init__(unet, vae, image_encoder, window, overlap, noise_aug_strength, augment, seed,
                         decode_chunk_size)  # fmt: skip
        self.mode, self.head, self.sigma = mode, head, float(sigma)
        self.dpt: TemporalDPTHead | None = None
        if head == "dpt":
            kwargs = dict(DEFAULT_DPT_CONFIG if dpt is None else dpt)
            self.dpt = TemporalDPTHead(self.unet.feature_channels, patch_size=self.grid_factor, **kwargs)
            self.dpt.requires_grad_(False).eval()  # frozen like the rest until training unfreezes it
            if self.dpt.num_frames < self.window:
                raise ConfigError(f"window {self.window} exceeds the DPT head's {self.dpt.num_frames} frames")

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Kwargs of a tiny random CPU model (deterministic + DPT head, the paper's fastest variant)."""
        return {"unet": dict(TINY_UNET_CONFIG), "vae": dict(TINY_VAE_CONFIG), "image_encoder": dict(TINY_CLIP_CONFIG),
                "head": "dpt", "dpt": dict(TINY_DPT_CONFIG), "window": 16, "overlap": 4}  # fmt: skip

    @classmethod
    def tiny_input_shape(cls) -> tuple[int, int, int]:
        return (4, 64, 64)

    @classmethod
    def from_teacher(cls, teacher: DepthCrafter, **kwargs: Any) -> OneStepDepth:
        """A student initialised from a teacher's UNet, VAE and CLIP (self-distillation's start)."""
        cfg = teacher.config
        student = cls(unet=cfg["unet"], vae=cfg["vae"], image_encoder=cfg["image_encoder"], **kwargs)
        for name in ("unet", "vae", "image_encoder"):
            getattr(student, name).load_state_dict(getattr(teacher, name).state_dict())
        return student.to(teacher.added_time_ids.device).eval()

    def load_head(self, path: str | Path) -> None:
        """Load DPT-head weights (`TemporalDPTHead` key names) from a safetensors/torch file."""
        if self.dpt is None:
            raise ConfigError("this student has no DPT head (head='vae')")
        load_state_checked(self.dpt, load_state_dict_file(Path(path)), str(path))

    @property
    def grid_factor(self) -> int:
        """Image pixels per DPT token: the pyramid grid is latent/4 = image/32 for the release."""
        return self.vae_factor * 4

    @property
    def uses_window_noise(self) -> bool:
        """Whether the fixed-σ step starts from the seeded window noise ε: only in "stochastic" mode."""
        return self.mode == "stochastic"

    @property
    def input_constraints(self) -> InputConstraints:
        max_window = self.dpt.num_frames if self.dpt is not None else None
        return InputConstraints(
            multiple_of=self.multiple_of, window=self.window, overlap=self.overlap, max_window=max_window
        )

    def initial_latent(self, cond: Conditioning, eps: torch.Tensor | None) -> torch.Tensor:
        """x_T at σ: `sqrt(σ²+1)·ε` (stochastic) or `sqrt(σ²+1)·0.18215·E(x)` (deterministic).

        Args:
            cond: conditioning of T frames.
            eps: `(T, 4, h, w)` standard normal (stochastic mode only).

        Returns:
            `(T, 4, h, w)` latent whose c_in-scaled value is ε, resp. the scaled RGB latent.
        """
        scale = edm.init_noise_sigma(self.sigma)
        if self.mode == "deterministic":
            return scale * edm.LATENT_SCALE * cond.latents
        if eps is None or eps.shape[0] < len(cond):
            raise ValueError("stochastic mode needs ε for every frame")
        return scale * eps[: len(cond)]

    def step(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The student's single step: x̂0 = c_skip(σ)·x + c_out(σ)·F at the fixed σ; `(T,4,h,w)`."""
        return self.denoise(x, self.sigma, cond)

    def pyramid(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """UNet decoder maps (latent, /2, /4, /8) -> the DPT head's one grid (latent/4)."""
        grid = features[2].shape[-2:]
        out = []
        for f in features:
            if f.shape[-1] > grid[-1]:
                out.append(F.avg_pool2d(f, kernel_size=f.shape[-1] // grid[-1]))
            elif f.shape[-1] < grid[-1]:
                out.append(F.interpolate(f, size=tuple(grid), mode="bilinear", align_corners=False))
            else:
                out.append(f)
        return out

    def run(self, frames: torch.Tensor, aug_noise: torch.Tensor | None, eps: torch.Tensor | None) -> torch.Tensor:
        """Condition, one UNet step at σ, then the VAE decoder (windowed) or the DPT head.

        Args:
            frames: `(T, 3, H, W)` RGB in [0, 1].
            aug_noise: `(T, 3, H, W)` N(0, I) conditioning augmentation, or None.
            eps: `(min(T, window), 4, H/8, W/8)` N(0, I) (stochastic mode), or None.

        Returns:
            `(T, H, W)` disparity in [0, 1].
        """
        cond = self.condition(frames, aug_noise)
        if self.dpt is None:
            sigmas = torch.tensor([self.sigma, 0.0])
            if self.mode == "stochastic":
                z = self.sample_windows(cond, sigmas, eps)
            else:
                z = self.sample_windows(cond, sigmas, None, lambda s, e: self.initial_latent(cond[s:e], None))
            return self.normalize(self.decode_disparity(z))
        if len(cond) > self.dpt.num_frames:
            raise InputError(f"{len(cond)} frames exceed the DPT head's window of {self.dpt.num_frames}")
        _, features = self.unet_output(self.initial_latent(cond, eps), self.sigma, cond, return_features=True)
        disparity = self.dpt(self.pyramid(features), num_frames=len(cond))
        return self.normalize(disparity)


__all__ = ["DEFAULT_DPT_CONFIG", "OneStepDepth"]
