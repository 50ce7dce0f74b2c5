"""DepthCrafter (Hu et al., CVPR 2025): SVD-based video depth, the teacher of the one-step student.

Architecture (all `diffusers` / `transformers` blocks, no re-implemented layers):

* `SpatioTemporalUNet`: diffusers `UNetSpatioTemporalConditionModel` (8 in = c_in-scaled depth latent
  + unscaled RGB latent of the same frame, 4 out = v-prediction). Its forward differs from diffusers'
  exactly as DepthCrafter's released `unet.py` does: `encoder_hidden_states` is one CLIP token *per
  frame* `(B, T, D) -> (B*T, 1, D)` instead of one per clip repeated. Inside diffusers'
  `TransformerSpatioTemporalModel` the temporal blocks still cross-attend to window frame 0's token
  (`time_context_first_timestep`), which we keep by reusing those blocks. It can also return the
  decoder feature pyramid that feeds the student's temporal DPT head.
* `AutoencoderKLTemporalDecoder` (SVD VAE, frozen): per-frame encoder, temporal decoder run in chunks.
* `CLIPVisionModelWithProjection` (OpenCLIP ViT-H in SVD-XT): one `image_embeds` token per frame.

The UNet class, the released/tiny configs of the three parts and their strict loader are in
`svd_parts.py` (shared with the one-step student); this module is the sampler around them.

Conditioning (released pipeline `DepthCrafterPipeline.__call__`): frames [0,1] -> [-1,1]; CLIP on the
clean frames squash-resized with antialiasing to the encoder's `image_size` (224 for the release; no
crop), mapped back to [0,1] and normalised with the OpenAI CLIP mean/std; then
`noise_aug_strength · N(0,I)` is added to the [-1,1] frames and the VAE *mode* is taken, unscaled.
`added_time_ids = [7, 127, 0.02]` (DepthCrafter passes fps = 7 directly).

Sampling: EDM v-prediction Euler over Karras sigmas (`models/edm.py`), 5 steps, no CFG. Long clips:
window 110 / overlap 25 with the released noise rotation, the first-step anchor `z_prev + σ_0·ε` on
the overlapped frames and a linear latent crossfade (new-window weights `linspace(0, 1, overlap)`).
The stitched latents are divided by 0.18215 and decoded in chunks of 8 frames; output
`clamp(x/2 + 0.5, 0, 1)`, mean of the 3 channels, min-max normalised over the whole clip: relative
*disparity* in [0, 1] (1 = nearest).

Deliberate differences from the release, all numerically tiny or opt-in:
* fp32 everywhere (the release runs fp16 on GPU).
* The last Euler step returns x̂0 exactly (`edm.euler_step`), not the formula's rounding of it.
* Min-max normalisation divides by `max(max - min, 1e-8)`, so a constant output gives 0, not NaN.
* `augment_noise=False` switches the conditioning noise off (a deterministic teacher) while keeping
  the time id at `noise_aug_strength`, because the UNet was trained with that constant.
* Loading goes through `from_pretrained(..., subfolder=, variant=, local_files_only=True)` as the
  release does, checked strictly (`from_pretrained` alone only warns about missing keys).
* Randomness comes from a CPU `torch.Generator` seeded with `seed` at every call (release: seed 42)
  and is drawn in the release's order: augmentation noise `(T,3,H,W)`, then the window noise
  `(W,4,h,w)`. `predict` is therefore bitwise repeatable on CPU.

Checked against the authors' code (`test/test_parity_depthcrafter.py`): their UNet class has the
same keys at the released config and the same forward on random tiny weights (<= 1e-5); their
`DepthCrafterPipeline.__call__` over two windows plus `infer`'s channel mean and min-max equals
`predict` with the same seed (<= 1e-4: float32 rounding through the steps and the min-max).

`inference: reference` (the default for this family) only switches the pipeline's scene cuts off;
the authors' resize (max side 1024, multiple of 64, via decord) is not reproduced and their output
stays at the processing resolution (the pipeline upsamples to the input's), not measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from diffusers import AutoencoderKLTemporalDecoder
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from vdepth_ros.errors import InputError, ModelLoadError
from vdepth_ros.models import edm
from vdepth_ros.models.base import ExportSignature, InputConstraints, VideoDepthModel, register_to_config
from vdepth_ros.models.svd_parts import (
    RELEASED_CLIP_CONFIG,
    RELEASED_UNET_CONFIG,
    RELEASED_VAE_CONFIG,
    TINY_CLIP_CONFIG,
    TINY_UNET_CONFIG,
    TINY_VAE_CONFIG,
    SpatioTemporalUNet,
    clean_config,
    clip_config,
    load_part,
    svd_unet_problem,
)

#: SVD micro-conditioning `[fps, motion_bucket_id, noise_aug_strength]` as DepthCrafter passes it.
ADDED_TIME_IDS: tuple[float, float, float] = (7.0, 127.0, 0.02)
DEFAULT_WINDOW = 110
DEFAULT_OVERLAP = 25


@dataclass
class Conditioning:
    """Per-frame conditioning of a clip.

    Attributes:
        latents: `(T, 4, h, w)` unscaled VAE modes of the (noise-augmented) [-1,1] frames.
        clip: `(T, D)` CLIP image embeddings of the clean frames.
    """

    latents: torch.Tensor
    clip: torch.Tensor

    def __getitem__(self, index: slice) -> Conditioning:
        return Conditioning(self.latents[index], self.clip[index])

    def __len__(self) -> int:
        return int(self.latents.shape[0])


def window_bounds(
    num_frames: int, window: int = DEFAULT_WINDOW, overlap: int = DEFAULT_OVERLAP
) -> list[tuple[int, int]]:
    """The released pipeline's windows `[s, e)`: stride `window - overlap`, loop `while s < N - overlap`.

    A clip no longer than `window` is one window with no overlap.

    Args:
        num_frames: N ≥ 1.
        window: frames per window.
        overlap: frames shared by consecutive windows (< window).

    Returns:
        List of `(start, end)`; e.g. N=300 -> [(0,110), (85,195), (170,280), (255,300)].
    """
    if num_frames < 1:
        raise InputError(f"need at least one frame, got {num_frames}")
    if not 0 <= overlap < window:
        raise InputError(f"overlap must be in [0, window={window}), got {overlap}")
    if num_frames <= window:
        return [(0, num_frames)]
    stride, bounds, start = window - overlap, [], 0
    while start < num_frames - overlap:
        bounds.append((start, min(start + window, num_frames)))
        start += stride
    return bounds


def _window_noise(noise: torch.Tensor, bounds: list[tuple[int, int]], overlap: int) -> Iterator[torch.Tensor]:
    """Per-window initial ε with the release's rotation `noise <- cat(noise[-o:], noise[:W-o])`.

    The first `overlap` frames of each window reuse the ε of the previous window's last frames.
    """
    stride = noise.shape[0] - overlap
    for start, end in bounds:
        yield noise[: end - start]
        if overlap:
            noise = torch.cat([noise[-overlap:], noise[:stride]])


class SVDDepthModel(VideoDepthModel):
    """Shared SVD machinery of DepthCrafter and the one-step student (no `family`: not registered).

    All parameters start frozen (`requires_grad=False`, eval mode): inference is the default. Training
    unfreezes what it trains, e.g. `p.requires_grad_(not model.unet.is_temporal(n))` over
    `model.unet.named_parameters()`; `condition`, `unet_output`, `denoise`, `sample_windows` and
    `encode_depth` carry gradients when enabled (`predict` runs under `no_grad`).

    Args:
        unet: diffusers UNet config (`{}` = the released SVD-XT/DepthCrafter UNet).
        vae: `AutoencoderKLTemporalDecoder` config (None = SVD-XT VAE).
        image_encoder: `CLIPVisionConfig` kwargs (None = SVD-XT ViT-H/14).
        window: default window length (frames).
        overlap: default overlap between windows.
        noise_aug_strength: conditioning noise σ and third added-time id.
        augment_noise: add the conditioning noise (see subclasses for the default).
        seed: seed of the per-call generator.
        decode_chunk_size: frames per temporal-VAE decode call (release: 8).
    """

    @register_to_config
    def __init__(
        self,
        unet: dict[str, Any] | None = None,
        vae: dict[str, Any] | None = None,
        image_encoder: dict[str, Any] | None = None,
        window: int = DEFAULT_WINDOW,
        overlap: int = DEFAULT_OVERLAP,
        noise_aug_strength: float = 0.02,
        augment_noise: bool = True,
        seed: int = 42,
        decode_chunk_size: int = 8,
    ) -> None:
        super().__init__()
        self.unet = SpatioTemporalUNet.from_config(clean_config(RELEASED_UNET_CONFIG if unet is None else unet))
        self.vae = AutoencoderKLTemporalDecoder.from_config(clean_config(RELEASED_VAE_CONFIG if vae is None else vae))
        clip_cfg = RELEASED_CLIP_CONFIG if image_encoder is None else image_encoder
        self.image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**clip_config(clip_cfg)))
        self.window, self.overlap = int(window), int(overlap)
        self.noise_aug_strength = float(noise_aug_strength)
        self.augment_noise = bool(augment_noise)
        self.seed = int(seed)
        self.decode_chunk_size = int(decode_chunk_size)
        ids = torch.tensor([[ADDED_TIME_IDS[0], ADDED_TIME_IDS[1], self.noise_aug_strength]])
        self.register_buffer("added_time_ids", ids, persistent=False)
        self.register_buffer("clip_mean", torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("clip_std", torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    # -- geometry ------------------------------------------------------------------------------
    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def multiple_of(self) -> int:
        """H, W multiple: VAE factor x UNet downsampling (8 x 8 = 64 for the release)."""
        return self.vae_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    def _check_frames(self, frames: torch.Tensor) -> None:
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise InputError(f"frames must be (T, 3, H, W), got {tuple(frames.shape)}")
        m = self.multiple_of
        if frames.shape[-1] % m or frames.shape[-2] % m:
            raise InputError(f"H and W must be multiples of {m}, got {tuple(frames.shape[-2:])}")

    # -- conditioning --------------------------------------------------------------------------
    def encode_clip(self, video: torch.Tensor) -> torch.Tensor:
        """CLIP tokens of `(T, 3, H, W)` frames in [-1, 1] -> `(T, D)` (release `encode_video`)."""
        size = int(self.image_encoder.config.image_size)
        x = (_resize_with_antialiasing(video, (size, size)) + 1.0) / 2.0
        x = (x - self.clip_mean) / self.clip_std
        return self.image_encoder(pixel_values=x).image_embeds

    def encode_latents(self, video: torch.Tensor) -> torch.Tensor:
        """Unscaled VAE modes of `(T, 3, H, W)` frames in [-1, 1] -> `(T, 4, H/8, W/8)`."""
        return torch.cat([self.vae.encode(c).latent_dist.mode() for c in self._chunks(video)])

    def encode_depth(self, disparity: torch.Tensor) -> torch.Tensor:
        """Training target latents: `(T, H, W)` disparity in [0, 1] -> `(T, 4, h, w)` x 0.18215.

        The paper encodes the disparity replicated to 3 channels; the [0,1] -> [-1,1] mapping is
        inferred from the decoder's `x/2 + 0.5` (seed digest §1.3 [D]). Inverse of `decode_disparity`
        up to the VAE's reconstruction error.
        """
        video = (disparity * 2.0 - 1.0).unsqueeze(1).expand(-1, 3, -1, -1)
        return edm.LATENT_SCALE * self.encode_latents(video)

    def _chunks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`decode_chunk_size`-frame slices (plain slicing: `Tensor.split` of a short clip exports as
        an ONNX Split with a wrong static size under the legacy exporter)."""
        n, size = int(x.shape[0]), self.decode_chunk_size
        return [x[i : i + size] for i in range(0, n, size)]

    def condition(self, frames: torch.Tensor, aug_noise: torch.Tensor | None) -> Conditioning:
        """Conditioning of `(T, 3, H, W)` frames in [0, 1]; `aug_noise` `(T,3,H,W)` N(0,I) or None."""
        video = frames * 2.0 - 1.0
        clip = self.encode_clip(video)  # before the augmentation noise, as released
        if aug_noise is not None:
            video = video + self.noise_aug_strength * aug_noise
        return Conditioning(self.encode_latents(video), clip)

    # -- UNet with EDM preconditioning ---------------------------------------------------------
    def unet_output(
        self, x: torch.Tensor, sigma: float, cond: Conditioning, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """F(c_in(σ)·x ‖ rgb latent; c_noise(σ); clip) for one clip.

        Args:
            x: `(T, 4, h, w)` noisy depth latent at σ.
            sigma: noise level.
            cond: conditioning of the same T frames.
            return_features: also return the UNet decoder pyramid.

        Returns:
            `(T, 4, h, w)` v-prediction (and the pyramid, `(T, C_i, h_i, w_i)` x 4).
        """
        sample = torch.cat([edm.c_in(sigma) * x, cond.latents], dim=1)[None]
        out = self.unet(sample, edm.c_noise(sigma), cond.clip[None], self.added_time_ids, return_features)
        if return_features:
            return out[0][0], out[1]
        return out[0]

    def denoise(self, x: torch.Tensor, sigma: float, cond: Conditioning) -> torch.Tensor:
        """x̂0 = c_skip·x + c_out·F at σ; `(T, 4, h, w)` -> `(T, 4, h, w)`."""
        return edm.denoise(x, self.unet_output(x, sigma, cond), sigma)

    def sample_windows(
        self,
        cond: Conditioning,
        sigmas: torch.Tensor,
        noise: torch.Tensor | None,
        init: Callable[[int, int], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Windowed Euler sampling with the released long-video stitching.

        Args:
            cond: conditioning of all N frames.
            sigmas: schedule ending in 0 (`edm.karras_sigmas`).
            noise: `(min(N, window), 4, h, w)` standard normal ε (reused across windows as released),
                or None to start every window from `init(start, end)` (no anchor: nothing to reuse).
            init: initial latent of frames `[start, end)` when `noise` is None.

        Returns:
            `(N, 4, h, w)` stitched denoised latents (scaled space, x0.18215 of the VAE's).
        """
        n = len(cond)
        window, overlap = (n, 0) if n <= self.window else (self.window, self.overlap)
        bounds = window_bounds(n, window, overlap)
        sigma0, scale = float(sigmas[0]), edm.init_noise_sigma(float(sigmas[0]))
        eps_iter = _window_noise(noise, bounds, overlap) if noise is not None else None
        weights = torch.linspace(0.0, 1.0, overlap).view(-1, 1, 1, 1) if overlap else None
        z_all: torch.Tensor | None = None
        for start, end in bounds:
            if eps_iter is not None:
                eps = next(eps_iter)
                x = eps * scale
                if z_all is not None and overlap:  # first-step anchor: z_prev + σ_0·ε (same ε)
                    x = torch.cat([z_all[-overlap:] + eps[:overlap] * sigma0, x[overlap:]])
            else:
                if init is None:
                    raise ValueError("sample_windows needs `noise` or `init`")
                x = init(start, end)
            part = cond[start:end]
            x = edm.sample_euler(lambda x, s, _i, part=part: self.denoise(x, s, part), x, sigmas)
            if z_all is None:
                z_all = x
            else:  # linear crossfade in latent space: old 1 -> 0, new 0 -> 1 over the overlap
                blend = x[:overlap] * weights + z_all[-overlap:] * (1.0 - weights)
                z_all = torch.cat([z_all[:-overlap], blend, x[overlap:]])
        assert z_all is not None
        return z_all

    # -- decoding ------------------------------------------------------------------------------
    def decode_disparity(self, latents: torch.Tensor) -> torch.Tensor:
        """`(T, 4, h, w)` scaled latents -> `(T, H, W)` disparity in [0,1], not yet normalised.

        Temporal VAE decode of `latents / 0.18215` in chunks of `decode_chunk_size` frames (no overlap
        between chunks, as released), then `clamp(x/2 + 0.5, 0, 1)` and the 3-channel mean.
        """
        z = latents / edm.LATENT_SCALE
        out = [self.vae.decode(c, num_frames=c.shape[0]).sample for c in self._chunks(z)]
        return (torch.cat(out) / 2.0 + 0.5).clamp(0.0, 1.0).mean(dim=1)

    @staticmethod
    def normalize(disparity: torch.Tensor) -> torch.Tensor:
        """Min-max over the whole clip (shared scale/shift across frames) -> [0, 1]."""
        dims = tuple(range(disparity.dim()))  # explicit dims: the dynamo exporter rejects a bare amin()
        lo, hi = disparity.amin(dim=dims), disparity.amax(dim=dims)
        return (disparity - lo) / (hi - lo).clamp_min(1e-8)

    # -- the VideoDepthModel contract ----------------------------------------------------------
    def draw_noise(self, frames: int, height: int, width: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Seeded random inputs of one call, in the release's order: `(aug (T,3,H,W), ε (W',4,h,w))`.

        Either is None when the model does not use it. Subclasses decide via `uses_window_noise`.
        """
        gen = torch.Generator().manual_seed(self.seed)
        aug = torch.randn(frames, 3, height, width, generator=gen) if self.augment_noise else None
        eps = None
        if self.uses_window_noise:
            f = self.vae_factor
            lat = self.unet.config.out_channels
            eps = torch.randn(min(frames, self.window), lat, height // f, width // f, generator=gen)
        return aug, eps

    @property
    def uses_window_noise(self) -> bool:
        """Whether sampling starts from the seeded window noise ε (else from a deterministic latent)."""
        return True

    def run(self, frames: torch.Tensor, aug_noise: torch.Tensor | None, eps: torch.Tensor | None) -> torch.Tensor:
        """The deterministic core: `(T,3,H,W)` [0,1] + explicit noise -> `(T,H,W)` disparity."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        """`(T, 3, H, W)` RGB in [0, 1] -> `(T, H, W)` relative disparity in [0, 1] (1 = nearest)."""
        self._check_frames(frames)
        frames = frames.to(self.added_time_ids.device, torch.float32)
        return self.run(frames, *self.draw_noise(*frames.shape[:1], *frames.shape[-2:]))

    def export_signature(self, frames: int, height: int, width: int) -> ExportSignature:
        """Fixed-shape graph `(1,T,3,H,W) -> (1,T,H,W)` equal to `predict` on the same input.

        Folded constants: added_time_ids, σ schedule and c_* coefficients, CLIP mean/std, and the
        seeded noise tensors `predict` would draw (so the graph is deterministic). The CLIP image
        encoder is *inside* the graph: the runtime feeds frames only, and CLIP costs one ViT pass per
        frame, small next to the UNet.
        """
        self._check_frames(torch.empty(frames, 3, height, width, device="meta"))
        aug, eps = self.draw_noise(frames, height, width)
        module = _ExportGraph(self, aug, eps).eval()
        extra = {"family": self.family, "seed": self.seed, "noise_folded": aug is not None or eps is not None}
        return ExportSignature(module=module, frames=frames, height=height, width=width, extra=extra)

    # -- released checkpoints ------------------------------------------------------------------
    @classmethod
    def from_released(
        cls, unet_dir: str | Path, svd_dir: str | Path, *, variant: str | None = None, **kwargs: Any
    ) -> Self:
        """Build from released folders on a local path.

        Each part goes through its library's `from_pretrained(folder, subfolder=, variant=,
        local_files_only=True)` (as DepthCrafter's `inference.py` loads them), checked strictly.

        Args:
            unet_dir: diffusers UNet folder (`config.json` + `diffusion_pytorch_model[.variant].safetensors`),
                e.g. `tencent/DepthCrafter`.
            svd_dir: SVD-XT folder with `vae/` and `image_encoder/` (`config.json` + weights).
            variant: weight-file variant, e.g. "fp16" (SVD-XT's files as DepthCrafter loads them; used
                for the parts that have files of that variant; weights are cast to fp32).
            **kwargs: the family's other constructor arguments.

        Raises:
            ModelLoadError: a file is missing, keys do not match exactly, or `unet_dir` is SVD's own UNet
                (`svd_unet_problem`: same keys, told by the class its config.json names).
        """
        unet_dir, svd_dir = Path(unet_dir), Path(svd_dir)
        if (why := svd_unet_problem(unet_dir, svd_dir)) is not None:  # same keys: only its config.json tells
            raise ModelLoadError(why)
        unet = load_part(SpatioTemporalUNet, unet_dir, None, variant)
        vae = load_part(AutoencoderKLTemporalDecoder, svd_dir, "vae", variant)
        image_encoder = load_part(CLIPVisionModelWithProjection, svd_dir, "image_encoder", variant)
        model = cls(
            unet=clean_config(dict(unet.config)),
            vae=clean_config(dict(vae.config)),
            image_encoder=clip_config(image_encoder.config.to_dict()),
            **kwargs,
        )
        for ours, loaded in ((model.unet, unet), (model.vae, vae), (model.image_encoder, image_encoder)):
            ours.load_state_dict(loaded.state_dict())  # float32 modules; fp16 files are cast here
        return model.eval()


class _ExportGraph(nn.Module):
    """`forward(frames (1,T,3,H,W)) -> (1,T,H,W)` with the model's noise folded in as constants."""

    def __init__(self, model: SVDDepthModel, aug: torch.Tensor | None, eps: torch.Tensor | None) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("aug", aug, persistent=False)
        self.register_buffer("eps", eps, persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.run(frames[0], self.aug, self.eps)[None]


class DepthCrafter(SVDDepthModel):
    """The DepthCrafter teacher: 5-step EDM Euler sampling of depth latents + temporal VAE decode.

    Args:
        unet, vae, image_encoder, window, overlap, noise_aug_strength, seed, decode_chunk_size:
            as `SVDDepthModel` (defaults: released SVD-XT/DepthCrafter, 110/25, 0.02, 42, 8).
        augment_noise: conditioning noise on (released behaviour); False = deterministic conditioning.
        num_inference_steps: Euler steps over Karras sigmas (release: 5).
    """

    family: ClassVar[str] = "depthcrafter"

    @register_to_config
    def __init__(
        self,
        unet: dict[str, Any] | None = None,
        vae: dict[str, Any] | None = None,
        image_encoder: dict[str, Any] | None = None,
        num_inference_steps: int = 5,
        window: int = DEFAULT_WINDOW,
        overlap: int = DEFAULT_OVERLAP,
        noise_aug_strength: float = 0.02,
        augment_noise: bool = True,
        seed: int = 42,
        decode_chunk_size: int = 8,
    ) -> None:
        super().__init__(unet, vae, image_encoder, window, overlap, noise_aug_strength, augment_noise, seed,
                         decode_chunk_size)  # fmt: skip
        self.num_inference_steps = int(num_inference_steps)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Kwargs of a tiny random CPU model with the released structure (forward ≪ 1 s at 4x64x64)."""
        return {"unet": dict(TINY_UNET_CONFIG), "vae": dict(TINY_VAE_CONFIG), "image_encoder": dict(TINY_CLIP_CONFIG),
                "num_inference_steps": 2}  # fmt: skip

    @classmethod
    def tiny_input_shape(cls) -> tuple[int, int, int]:
        return (4, 64, 64)

    @property
    def input_constraints(self) -> InputConstraints:
        return InputConstraints(multiple_of=self.multiple_of, window=self.window, overlap=self.overlap)

    def sample_latents(self, cond: Conditioning, eps: torch.Tensor) -> torch.Tensor:
        """`(N,4,h,w)` denoised latents of a clip from ε `(min(N, window),4,h,w)` (long-video mode)."""
        return self.sample_windows(cond, edm.karras_sigmas(self.num_inference_steps), eps)

    def run(self, frames: torch.Tensor, aug_noise: torch.Tensor | None, eps: torch.Tensor | None) -> torch.Tensor:
        """Condition, sample (windowed, `num_inference_steps` Euler steps), decode, normalise.

        Args:
            frames: `(T, 3, H, W)` RGB in [0, 1].
            aug_noise: `(T, 3, H, W)` N(0, I) for the conditioning augmentation, or None.
            eps: `(min(T, window), 4, H/8, W/8)` N(0, I) window noise.

        Returns:
            `(T, H, W)` disparity in [0, 1].
        """
        assert eps is not None
        cond = self.condition(frames, aug_noise)
        return self.normalize(self.decode_disparity(self.sample_latents(cond, eps)))


__all__ = [
    "ADDED_TIME_IDS",
    "Conditioning",
    "DepthCrafter",
    "SVDDepthModel",
    "SpatioTemporalUNet",
    "window_bounds",
]
