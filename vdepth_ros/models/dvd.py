"""DVD: deterministic video depth from a video-diffusion prior (Wan2.1 DiT + Wan VAE).

One forward pass of the Wan DiT on the RGB video latent at a fixed timestep (τ = 0.5, i.e.
timestep 500 on Wan's 0-1000 scale, no flow shift), with a zero text context, predicting the
depth latent directly (x-prediction), decoded by the frozen Wan VAE.
Facts from the DVD paper (§2-§3, App. D, Tab. 5) and the authors' public code, as digested in
`shared/reference/seeds-dvd-gemdepth-fiffdepth.md` §1.

Deliberate differences from the released code, all numerically equivalent or documented:
- The zero text context `[B, 512, 4096]` is replaced by a single zero token `[B, 1, text_dim]`.
  Cross-attention over N identical keys/values gives uniform softmax weights, so its output is
  that one value row: the result is the same up to float rounding (tested), and the exported
  graph is 512x smaller on the key/value side.
- LoRA (rank/alpha 512 on q, k, v, o, ffn.0, ffn.2 of every block) is applied with `peft` for
  training and merged into the base weights for inference and export (`merge_lora`).
- The VAE output keeps DVD's three channels until `predict`, which averages them (the authors keep
  all three through window stitching and average after it, `test_from_trained_all_vid.py`). Both
  are linear until the stitching's clamp at 0 and its scale clip, but the least-squares fit over
  three channels is not the fit over their mean. In `inference: reference` (the default for this
  family) the torch engine's `infer_channels` returns `predict_channels` and the stream stitches the
  three channels as the authors' `generate_depth_sliced` (scale clipped to [0.7, 1.5], shift kept),
  averaging after (`test/test_parity_dvd_stitch.py`: <= 1e-4 against their stitching). Remaining:
  a last window moved back to the video's end revises, in the authors' code, frames a causal
  stream has already output (up to 0.13 relative there on a synthetic worst case; none before);
  their 480x640 bilinear resize is not reproduced; exported graphs give the mean only (0.37
  relative on a tiny random DVD with very unequal channels, `benchmarks/reference_mode_effects.py`).

The released files are DVD's `model.safetensors` / `dvd_1.1.safetensors` (the DiffSynth DiT under
`pipe.dit.` with unmerged peft LoRA pairs) and the original `Wan2.1_VAE.pth`; `from_released`
reads both through diffusers' converters (`test/test_parity_dvd.py` checks them against the
authors' `WanModel` and `VideoVAE_`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from vdepth_ros.errors import ConfigError, ModelLoadError
from vdepth_ros.models.base import (
    ExportSignature,
    InputConstraints,
    VideoDepthModel,
    load_state_checked,
    load_state_dict_file,
    register_to_config,
)
from vdepth_ros.models.identify import CheckpointKind, refuse_other_checkpoint

# Wan2.1-T2V-1.3B DiT (DVD §4.1; code `wan_video_dit.py`: dim 1536, ffn 8960, 12 heads, 30 layers).
WAN21_1_3B_TRANSFORMER: dict[str, Any] = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
}
# diffusers' AutoencoderKLWan defaults are the Wan2.1 VAE (8x spatial, 4x temporal, 16 channels).
WAN21_VAE: dict[str, Any] = {}

# DVD code: `lora_target_modules='q,k,v,o,ffn.0,ffn.2'`, here in diffusers' module names.
LORA_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")

_CHECKPOINT_PREFIXES = ("pipe.dit.", "dit.", "model.diffusion_model.", "diffusion_model.", "model.")


def pad_to_4n_plus_1(num_frames: int) -> int:
    """Smallest F >= num_frames with F = 4n+1 (Wan's causal VAE: 1 + 4k frames per latent)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return num_frames + (-(num_frames - 1)) % 4


class _DVDForward(nn.Module):
    """Fixed-shape graph: `(1, T, 3, H, W)` RGB in [0,1] -> `(1, T, H, W)` disparity in [0,1]."""

    def __init__(self, model: DVD, frames: int) -> None:
        super().__init__()
        self.model = model
        self.frames = frames

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.predict(frames[0])[None]


class DVD(VideoDepthModel):
    """DVD one-step deterministic video-depth regressor.

    Args:
        transformer: `WanTransformer3DModel` config; None = Wan2.1-T2V-1.3B.
        vae: `AutoencoderKLWan` config; None (or {}) = the Wan2.1 VAE.
        timestep: the fixed structural-anchor timestep on Wan's 0-1000 scale (τ0 = 0.5 -> 500).
        window, overlap: streaming schedule (paper 45/9; demo 81/9; open-world script 81/21).
        lora_rank, lora_alpha: LoRA on `LORA_TARGETS` for training (0 = none; the paper: 512/512).
        context_tokens: length of the zero text context (1 is exact, see module docstring).
    """

    family: ClassVar[str] = "dvd"

    @register_to_config
    def __init__(
        self,
        transformer: dict[str, Any] | None = None,
        vae: dict[str, Any] | None = None,
        timestep: float = 500.0,
        window: int = 45,
        overlap: int = 9,
        lora_rank: int = 0,
        lora_alpha: float | None = None,
        context_tokens: int = 1,
    ) -> None:
        super().__init__()
        from diffusers import AutoencoderKLWan, WanTransformer3DModel

        if (window - 1) % 4:
            raise ConfigError(f"DVD window must be 4n+1 frames (Wan VAE), got {window}")
        if not 0 <= overlap < window:
            raise ConfigError(f"DVD overlap must be in [0, window), got {overlap}")
        if context_tokens < 1:
            raise ConfigError(f"context_tokens must be >= 1, got {context_tokens}")
        tcfg = dict(WAN21_1_3B_TRANSFORMER if transformer is None else transformer)
        if "patch_size" in tcfg:
            tcfg["patch_size"] = tuple(tcfg["patch_size"])
        self.transformer = WanTransformer3DModel(**tcfg)
        self.vae = AutoencoderKLWan(**(vae or WAN21_VAE))
        self.timestep = float(timestep)
        self.window, self.overlap = window, overlap
        self.context_tokens = context_tokens
        text_dim = self.transformer.config.text_dim
        self.register_buffer("context", torch.zeros(1, context_tokens, text_dim), persistent=False)
        z = self.vae.config.z_dim
        self.register_buffer("latents_mean", torch.tensor(self.vae.config.latents_mean).view(1, z, 1, 1, 1))
        self.register_buffer("latents_std", torch.tensor(self.vae.config.latents_std).view(1, z, 1, 1, 1))
        self.lora_rank = lora_rank
        if lora_rank:
            self.add_lora(lora_rank, lora_alpha if lora_alpha is not None else float(lora_rank))

    # -- presets -----------------------------------------------------------------------------
    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return {
            "transformer": {
                "patch_size": [1, 2, 2],
                "num_attention_heads": 2,
                "attention_head_dim": 8,
                "in_channels": 4,
                "out_channels": 4,
                "text_dim": 16,
                "freq_dim": 16,
                "ffn_dim": 32,
                "num_layers": 2,
                "cross_attn_norm": True,
                "qk_norm": "rms_norm_across_heads",
                "eps": 1e-6,
                "rope_max_seq_len": 32,
            },
            "vae": {
                "base_dim": 8,
                "z_dim": 4,
                "dim_mult": [1, 2, 2, 2],
                "num_res_blocks": 1,
                "attn_scales": [],
                "temperal_downsample": [False, True, True],
                "latents_mean": [0.1, -0.2, 0.05, 0.0],
                "latents_std": [1.5, 0.8, 1.2, 1.0],
            },
            "window": 9,
            "overlap": 3,
        }

    @classmethod
    def tiny_input_shape(cls) -> tuple[int, int, int]:
        return (5, 32, 48)

    @property
    def input_constraints(self) -> InputConstraints:
        return InputConstraints(
            multiple_of=16,
            window=self.window,
            overlap=self.overlap,
            frames_rule="4n+1",
            keyframes=None,
            alignment="chain_ls",
            value_range=(0.0, 1.0),
            output_kind="disparity",
        )

    # -- LoRA ---------------------------------------------------------------------------------
    def add_lora(self, rank: int, alpha: float) -> None:
        """Inject trainable LoRA adapters (peft) on q, k, v, o and both FFN linears of every block."""
        from peft import LoraConfig, inject_adapter_in_model

        cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(LORA_TARGETS), lora_dropout=0.0)
        inject_adapter_in_model(cfg, self.transformer)

    def merge_lora(self) -> None:
        """Fold LoRA into the base weights and remove the adapters (inference/export form)."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        for name, module in list(self.transformer.named_modules()):
            if isinstance(module, BaseTunerLayer):
                module.merge()
                parent_name, _, child = name.rpartition(".")
                parent = self.transformer.get_submodule(parent_name) if parent_name else self.transformer
                setattr(parent, child, module.get_base_layer())
        self.lora_rank = 0
        self._vdepth_config["lora_rank"] = 0

    # -- latent space -------------------------------------------------------------------------
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """`(B, 3, F, H, W)` in [-1, 1] -> normalised latent `(B, z, f, H/8, W/8)` (posterior mode)."""
        mode = self.vae.encode(video).latent_dist.mode()
        return (mode - self.latents_mean) / self.latents_std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latent -> `(B, 3, F, H, W)` in about [-1, 1]."""
        return self.vae.decode(latents * self.latents_std + self.latents_mean).sample

    def denoise(self, rgb_latents: torch.Tensor) -> torch.Tensor:
        """One DiT pass at the fixed timestep; the output *is* the depth latent (x-prediction)."""
        b = rgb_latents.shape[0]
        t = torch.full((b,), self.timestep, dtype=rgb_latents.dtype, device=rgb_latents.device)
        ctx = self.context.to(rgb_latents.dtype).expand(b, -1, -1)
        return self.transformer(rgb_latents, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]

    # -- interface ----------------------------------------------------------------------------
    def predict_channels(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames `(T, 3, H, W)` RGB in [0, 1] -> the VAE's three decoded channels `(T, 3, H, W)`,
        each clamped and mapped to [0, 1] as the authors' `vae_output_to_video` does.

        T is padded to 4n+1 by repeating the last frame; the padded outputs are dropped.
        """
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"DVD.predict expects (T, 3, H, W), got {tuple(frames.shape)}")
        t, _, h, w = frames.shape
        if h % 16 or w % 16:
            raise ValueError(f"DVD needs H and W multiples of 16, got {h}x{w}")
        n = pad_to_4n_plus_1(t)
        if n > t:
            frames = torch.cat([frames, frames[-1:].expand(n - t, -1, -1, -1)], dim=0)
        video = (frames * 2.0 - 1.0).permute(1, 0, 2, 3)[None]  # (1, 3, F, H, W)
        depth_latents = self.denoise(self.encode(video))
        decoded = self.decode(depth_latents)[0]  # (3, F, H, W)
        return ((decoded.clamp(-1.0, 1.0) + 1.0) / 2.0).permute(1, 0, 2, 3)[:t]

    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames `(T, 3, H, W)` RGB in [0, 1] -> `(T, H, W)` window-normalised disparity in [0, 1]:
        the mean of `predict_channels` (the authors average after stitching; see the module doc)."""
        return self.predict_channels(frames).mean(dim=1)

    def export_signature(self, frames: int, height: int, width: int) -> ExportSignature:
        if height % 16 or width % 16:
            raise ValueError(f"DVD export needs H and W multiples of 16, got {height}x{width}")
        if self.lora_rank:
            raise ValueError("merge_lora() before export: the exported graph holds merged weights")
        return ExportSignature(
            module=_DVDForward(self, frames).eval(),
            frames=frames,
            height=height,
            width=width,
            # The Wan VAE's causal cache is unrolled at trace time: the frame count is baked in
            # (platform.md §7), and the legacy exporter has no aten::rms_norm (Wan's RMSNorm): export's
            # "auto" uses the exporter named here instead of a failed legacy trace first.
            extra={"exporter": "dynamo", "fixed_frames": True},
        )

    # -- released checkpoints -----------------------------------------------------------------
    @classmethod
    def from_released(
        cls,
        dit_checkpoint: str | Path,
        vae_weights: str | Path,
        *,
        lora_alpha_over_rank: float = 1.0,
        **config: Any,
    ) -> DVD:
        """Load DVD's release: the DiT checkpoint (DiffSynth / original Wan naming, LoRA merged or
        not) and the Wan2.1 VAE.

        Key names go through diffusers' own converters (`convert_wan_transformer_to_diffusers`,
        `convert_wan_vae_to_diffusers`, the functions behind `from_single_file`); unmerged LoRA pairs
        (`*.lora_A/B.default.weight` on `*.base_layer`, peft's layout, as DVD trains them) are loaded
        into peft adapters of the same rank and merged with peft (`merge_lora`).

        Args:
            dit_checkpoint: `model.safetensors` / `dvd_1.1.safetensors` (or `.pth`, read with weights_only=True).
            vae_weights: the original `Wan2.1_VAE.pth` (as DVD's code loads it), or a diffusers
                `AutoencoderKLWan` folder. Required: without it the model would decode with random weights.
            lora_alpha_over_rank: α/r of unmerged LoRA pairs (DVD: 512/512 = 1).
            **config: constructor overrides (e.g. a tiny transformer config in tests).

        Raises:
            ModelLoadError: no VAE, or keys/shapes that do not fit the Wan config.
        """
        if vae_weights is None or not Path(vae_weights).exists():
            raise ModelLoadError(
                f"DVD needs its VAE ({str(vae_weights)!r} not found): pass the release's Wan2.1_VAE.pth "
                "(Wan-AI/Wan2.1-T2V-1.3B) or a diffusers AutoencoderKLWan folder"
            )
        state = dit_state_in_diffusers_names(load_state_dict_file(dit_checkpoint))
        model = cls(**config)
        ranks = {v.shape[0] for k, v in state.items() if ".lora_A." in k}
        if len(ranks) > 1:
            raise ModelLoadError(f"{dit_checkpoint}: LoRA pairs of several ranks {sorted(ranks)}")
        if ranks:  # peft adapters of the checkpoint's rank, loaded, then merged by peft
            rank = ranks.pop()
            model.add_lora(rank, rank * lora_alpha_over_rank)
        _load_strict(model.transformer, state, f"{dit_checkpoint} (DiT)", dit_checkpoint, "dit")
        if any(".lora_A." in k for k in state):
            model.merge_lora()
        _load_strict(model.vae, _wan_vae_state(Path(vae_weights)), f"{vae_weights} (VAE)", vae_weights, "vae")
        return model.eval()


def dit_state_in_diffusers_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Wan DiT state dict (or a LoRA adapter's `<module>.weight` names on it) in the package transformer's
    names: a trainer's prefix (`pipe.dit.`, ...) off, the original Wan / DiffSynth naming through diffusers'
    converter (`convert_wan_transformer_to_diffusers`, behind `from_single_file`); diffusers naming kept."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    for prefix in _CHECKPOINT_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            break
    original = (".self_attn.", ".cross_attn.", ".ffn.0.", ".ffn.2.")  # diffusers: attn1/attn2, ffn.net.N
    if any(k.startswith("head.head") or any(part in k for part in original) for k in state):
        state = convert_wan_transformer_to_diffusers(dict(state))
    return state


def _wan_vae_state(vae: Path) -> dict[str, torch.Tensor]:
    """A Wan VAE state dict in diffusers naming from the original `.pth` or a diffusers folder."""
    if vae.is_dir():
        from diffusers import AutoencoderKLWan

        from vdepth_ros.models.svd_parts import load_part

        return load_part(AutoencoderKLWan, vae, None, None).state_dict()  # strict, as every diffusers part
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    state = load_state_dict_file(vae)
    return convert_wan_vae_to_diffusers(state) if "decoder.middle.0.residual.0.gamma" in state else state


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str, path: str | Path, part: str) -> None:
    """`state` into `module` strictly; a file of another family or the release's other part (the VAE given
    where the DiT goes, the sources swapped) raises `identify.WrongCheckpointError` naming both."""
    try:
        load_state_checked(module, state, f"{what}: does not fit the Wan config")
    except ModelLoadError:
        refuse_other_checkpoint(state, CheckpointKind("dvd", part), path)
        raise
