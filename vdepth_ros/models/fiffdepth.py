"""FiffDepth: a Stable-Diffusion-2 UNet turned into a one-step feed-forward depth estimator.

Inference is `unet(vae_mean(rgb) * 0.18215, t=0, empty_text)`, decode, mean of the 3 channels,
clip to [-1, 1], map to [0, 1]. The UNet keeps its 4-channel input (no Marigold-style concat).
Facts from the FiffDepth paper (Eq. 1-4, §3.1) and its public pipeline, as digested in
`shared/reference/seeds-dvd-gemdepth-fiffdepth.md` §3.

FiffDepth is a single-image model: every frame is predicted independently and comes out with its
own scale and shift, so the stream core's per-window alignment does the temporal work.

Resolution (deliberate difference, documented): the authors' `DirectPipeline.__call__` resizes each
image so its long edge is `processing_res` (the pipeline config's `default_processing_resolution`
unless given; bilinear with antialias) and resizes the depth back to the input size. `predict`
runs at the size it is given: the pipeline's working resolution (`height`/`width` of the node),
whose long edge should be set to the checkpoint's processing resolution to match. Its effect with
the released weights could not be measured here (no weights).

Checked against the authors' code (`test/test_parity_fiffdepth.py`): their `DirectPipeline`
called on the same random tiny UNet/VAE/text encoder (fp32 folder and an fp16-only folder, at
`processing_res=0`) gives the same depth to <= 1e-5 relative.

Output space: FiffDepth predicts affine-invariant relative *depth* (Marigold encoding). Our
pipeline aligns in disparity. `predict` therefore returns `1 - depth_rel` (near = high) by
default; this is monotone in disparity but not affine to it, so the stream's affine fit is an
approximation for this family (documented deviation). `output="depth"` returns the raw relative
depth for evaluation against the paper's protocol.

`inference: reference` (the default for this family) switches the pipeline's scene cuts off and
upsamples bilinearly (the authors' resize back); the processing-resolution resize above remains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from vdepth_ros.errors import ConfigError, ModelLoadError
from vdepth_ros.models.base import ExportSignature, InputConstraints, VideoDepthModel, register_to_config

LATENT_SCALE = 0.18215  # SD VAE latent scale (FiffDepth pipeline; Marigold)

# Stable Diffusion 2.x UNet (768-v), 4-channel input as FiffDepth keeps it.
SD2_UNET: dict[str, Any] = {
    "sample_size": 96,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
}
SD2_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 768,
}


class _FiffForward(nn.Module):
    def __init__(self, model: FiffDepth) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.predict(frames[0])[None]


class FiffDepth(VideoDepthModel):
    """FiffDepth one-step SD-2 depth regressor, applied frame by frame.

    Args:
        unet: `UNet2DConditionModel` config (4 input channels); None = SD 2.x.
        vae: `AutoencoderKL` config; None = the SD VAE.
        text_tokens: length of the constant empty-prompt embedding (2 = BOS+EOS without padding,
            the `[B, 2, 1024]` shape noted in FiffDepth's pipeline).
        output: "disparity" (1 - relative depth; what the stream core aligns) or "depth".
        window, overlap: streaming schedule for alignment (the model itself has no window).
        frame_chunk: frames per UNet batch in `predict` (memory bound).
    """

    family: ClassVar[str] = "fiffdepth"

    @register_to_config
    def __init__(
        self,
        unet: dict[str, Any] | None = None,
        vae: dict[str, Any] | None = None,
        text_tokens: int = 2,
        output: Literal["disparity", "depth"] = "disparity",
        window: int = 8,
        overlap: int = 4,
        frame_chunk: int = 8,
    ) -> None:
        super().__init__()
        from diffusers import AutoencoderKL, UNet2DConditionModel

        if output not in ("disparity", "depth"):
            raise ConfigError(f"FiffDepth output must be 'disparity' or 'depth', got {output!r}")
        ucfg = dict(SD2_UNET if unet is None else unet)
        if ucfg.get("in_channels", 4) != 4:
            raise ConfigError(f"FiffDepth keeps the 4-channel UNet input, got in_channels={ucfg['in_channels']}")
        self.unet = UNet2DConditionModel(**ucfg)
        self.vae = AutoencoderKL(**(SD2_VAE if vae is None else vae))
        self.output = output
        self.window, self.overlap, self.frame_chunk = window, overlap, max(1, frame_chunk)
        dim = self.unet.config.cross_attention_dim
        # Constant empty-prompt CLIP embedding; `from_released` computes it from the text encoder.
        self.register_buffer("empty_text_embedding", torch.zeros(1, text_tokens, dim))
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return {
            "unet": {
                "sample_size": 8,
                "in_channels": 4,
                "out_channels": 4,
                "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
                "block_out_channels": [32, 64],
                "layers_per_block": 1,
                "attention_head_dim": [2, 4],
                "cross_attention_dim": 32,
                "norm_num_groups": 16,
                "use_linear_projection": True,
            },
            "vae": {
                "in_channels": 3,
                "out_channels": 3,
                "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
                "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
                "block_out_channels": [16, 32],
                "layers_per_block": 1,
                "latent_channels": 4,
                "norm_num_groups": 16,
                "sample_size": 32,
            },
            "window": 4,
            "overlap": 2,
        }

    @classmethod
    def tiny_input_shape(cls) -> tuple[int, int, int]:
        return (3, 32, 48)

    @property
    def input_constraints(self) -> InputConstraints:
        # The VAE's factor only (8 for SD-2), not VAE x UNet (64): diffusers' UNet2DConditionModel
        # sizes each up-sampling to its skip connection (`forward_upsample_size`), so latents of any
        # size run, as in the authors' pipeline (`resize_max_res`: long edge `processing_res`, the
        # other side not rounded) and in the Marigold-lineage training the paper follows at 480x640
        # (FiffDepth §4.1: Hypersim + Virtual KITTI "following previous approaches"). A size off the
        # VAE's factor would come back smaller (its encoder floors each halving).
        return InputConstraints(
            multiple_of=self.vae_factor,
            window=self.window,
            overlap=self.overlap,
            frames_rule="any",
            keyframes=None,
            alignment="chain_ls",
            value_range=(0.0, 1.0),
            output_kind="disparity",
        )

    def _predict_chunk(self, frames: torch.Tensor) -> torch.Tensor:
        rgb = frames * 2.0 - 1.0
        latents = self.vae.encode(rgb).latent_dist.mean * LATENT_SCALE  # posterior mean, not a sample
        t = torch.zeros((), dtype=torch.long, device=frames.device)  # t = 0 (FiffDepth Eq. 1)
        ehs = self.empty_text_embedding.to(latents.dtype).expand(latents.shape[0], -1, -1)
        depth_latents = self.unet(latents, t, encoder_hidden_states=ehs, return_dict=False)[0]
        decoded = self.vae.decode(depth_latents / LATENT_SCALE).sample
        depth = (decoded.mean(dim=1).clamp(-1.0, 1.0) + 1.0) / 2.0
        return 1.0 - depth if self.output == "disparity" else depth

    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames `(T, 3, H, W)` RGB in [0, 1] -> `(T, H, W)` in [0, 1], one frame at a time."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"FiffDepth.predict expects (T, 3, H, W), got {tuple(frames.shape)}")
        m = self.input_constraints.multiple_of
        if frames.shape[-2] % m or frames.shape[-1] % m:
            raise ValueError(f"FiffDepth needs H and W multiples of {m}, got {frames.shape[-2]}x{frames.shape[-1]}")
        chunks = [self._predict_chunk(c) for c in frames.split(self.frame_chunk, dim=0)]
        return torch.cat(chunks, dim=0)

    def export_signature(self, frames: int, height: int, width: int) -> ExportSignature:
        m = self.input_constraints.multiple_of
        if height % m or width % m:
            raise ValueError(f"FiffDepth export needs H and W multiples of {m}, got {height}x{width}")
        return ExportSignature(module=_FiffForward(self).eval(), frames=frames, height=height, width=width)

    @classmethod
    def from_released(cls, folder: str | Path, *, variant: str | None = None, **config: Any) -> FiffDepth:
        """Load the authors' `DirectPipeline` folder (`DirectPipeline.from_pretrained(checkpoint)` in
        `run_direct.py`): `unet/`, `vae/`, and either `text_encoder/` + `tokenizer/` (the empty-prompt
        embedding is computed once, as `encode_empty_text` does) or a precomputed
        `empty_text_embedding.safetensors` (key `embedding`).

        Args:
            folder: the pipeline folder.
            variant: diffusers weight-file variant, e.g. "fp16" (`*.fp16.safetensors`, what
                `run_direct.py --fp16` loads); None picks "fp16" when a part has only fp16 files.
                The weights are cast to float32.
            **config: other constructor arguments (`output`, `window`...).
        """
        from diffusers import AutoencoderKL, UNet2DConditionModel

        from vdepth_ros.models.svd_parts import load_part

        folder = Path(folder)
        # strict: from_pretrained alone fills a missing weight randomly, or fails copying out of a meta tensor
        unet = load_part(UNet2DConditionModel, folder, "unet", variant)
        vae = load_part(AutoencoderKL, folder, "vae", variant)
        embedding = _empty_prompt_embedding(folder, variant)
        unet_cfg = {k: v for k, v in unet.config.items() if not k.startswith("_")}
        vae_cfg = {k: v for k, v in vae.config.items() if not k.startswith("_")}
        model = cls(unet=_jsonable(unet_cfg), vae=_jsonable(vae_cfg), text_tokens=embedding.shape[1], **config)
        model.unet.load_state_dict(unet.state_dict())  # casts fp16 files to the float32 modules
        model.vae.load_state_dict(vae.state_dict())
        model.empty_text_embedding.copy_(embedding)
        return model.eval()


def _empty_prompt_embedding(folder: Path, variant: str | None) -> torch.Tensor:
    pre = folder / "empty_text_embedding.safetensors"
    if pre.is_file():
        from safetensors.torch import load_file

        return load_file(str(pre))["embedding"].float()
    if not (folder / "text_encoder").is_dir() or not (folder / "tokenizer").is_dir():
        raise ModelLoadError(
            f"{folder}: need text_encoder/ + tokenizer/ or empty_text_embedding.safetensors for the empty prompt"
        )
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer", local_files_only=True)
    from vdepth_ros.models.svd_parts import load_part

    encoder = load_part(CLIPTextModel, folder, "text_encoder", variant).eval()
    ids = tokenizer("", padding="do_not_pad", return_tensors="pt").input_ids  # [BOS, EOS]
    with torch.no_grad():
        return encoder.float()(ids)[0]


def _jsonable(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
