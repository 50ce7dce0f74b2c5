"""DINOv2 encoder for the VDA/GemDepth families, on `transformers`' `Dinov2Backbone`.

`Dinov2Backbone` returns the final-LayerNorm'd patch tokens of chosen layers reshaped to
`(N, C, H/14, W/14)` maps -- exactly what Depth Anything's `get_intermediate_layers(..., norm=True)`
feeds its DPT head. Two details follow the original DINOv2 code (`dinov2.py` in Depth Anything V2 /
Video-Depth-Anything) rather than transformers:

* position-embedding interpolation uses DINOv2's `interpolate_offset = 0.1` and a `scale_factor`
  (transformers resizes to an exact `size`, which samples a slightly different bicubic grid);
* the released key layout (`blocks.N.attn.qkv`, `ls1.gamma`, `pos_embed`, ...) maps 1:1 onto the
  transformers names (`encoder.layer.N.attention.{q,k,v}_proj`, `layer_scale1.lambda1`,
  `embeddings.position_embeddings`, ...) with `released_to_hf` / `hf_to_released`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from transformers import Dinov2Backbone, Dinov2Config
from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

from vdepth_ros.errors import ConfigError

#: ImageNet normalisation used by Depth Anything / VDA / GemDepth.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: DINOv2 offset added to the target token grid before computing the bicubic scale factor.
INTERPOLATE_OFFSET = 0.1


class OffsetDinov2Embeddings(Dinov2Embeddings):
    """`Dinov2Embeddings` with the original DINOv2 position-embedding interpolation.

    The table (`image_size/patch` squared + 1 entries, 37x37+1 for the released 518 models) is
    resized bicubically to the input's token grid with `scale_factor = (grid + 0.1) / 37`; the table
    is used as is when the grid equals the table's and is square. Shapes are Python ints at trace
    time, so a fixed-shape ONNX graph holds the resized table as a constant subgraph.
    """

    def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        num_patches = embeddings.shape[1] - 1
        num_positions = self.position_embeddings.shape[1] - 1
        if num_patches == num_positions and height == width:
            return self.position_embeddings
        dim = embeddings.shape[-1]
        grid_h, grid_w = int(height) // self.patch_size, int(width) // self.patch_size
        side = int(math.sqrt(num_positions))
        cls_pos = self.position_embeddings[:, :1]
        patch_pos = self.position_embeddings[:, 1:].float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
        scale = ((grid_h + INTERPOLATE_OFFSET) / side, (grid_w + INTERPOLATE_OFFSET) / side)
        patch_pos = nn.functional.interpolate(patch_pos, scale_factor=scale, mode="bicubic", align_corners=False)
        if patch_pos.shape[-2:] != (grid_h, grid_w):  # cannot happen with the 0.1 offset; guard anyway
            raise RuntimeError(f"position-embedding resize gave {tuple(patch_pos.shape[-2:])}, want {(grid_h, grid_w)}")
        patch_pos = patch_pos.to(self.position_embeddings.dtype).permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
        return torch.cat((cls_pos, patch_pos), dim=1)


class ConvPatchStem(nn.Module):
    """A convolutional patch embedding: 3x3 conv stride 2 -> 3x3 conv -> (p/2)x(p/2) conv stride p/2.

    Replaces DINOv2's single linear `p x p` patchify for compact models trained from scratch:
    Xiao et al., "Early Convolutions Help Transformers See Better" (NeurIPS 2021) show that a few
    stride-2 3x3 convs before the transformer make ViTs train faster and generalise better with
    little data, which is exactly the from-scratch CPU setting of the bundled default model. Same
    token grid (H/p, W/p) and width as the linear patchify, so the rest of the model is unchanged.
    Not part of any released checkpoint.
    """

    def __init__(self, hidden_size: int, patch_size: int, width: int = 32) -> None:
        super().__init__()
        if patch_size % 2:
            raise ConfigError(f"conv_stem needs an even patch_size, got {patch_size}")
        half = patch_size // 2
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.norm1 = nn.GroupNorm(8, width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, 2 * width)
        self.proj = nn.Conv2d(2 * width, hidden_size, half, stride=half)

    @property
    def weight(self) -> torch.Tensor:
        """`Dinov2PatchEmbeddings` reads `projection.weight.dtype` to cast its input."""
        return self.proj.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.gelu(self.norm1(self.conv1(x)))
        x = nn.functional.gelu(self.norm2(self.conv2(x)))
        return self.proj(x)


def build_dinov2_backbone(
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    layer_indices: Sequence[int],
    patch_size: int = 14,
    image_size: int = 518,
    mlp_ratio: int = 4,
    conv_stem: bool = False,
) -> Dinov2Backbone:
    """A randomly initialised DINOv2 returning the LayerNorm'd token maps of `layer_indices`.

    Args:
        hidden_size, num_layers, num_heads: ViT size (vits 384/12/6, vitb 768/12/12, vitl 1024/24/16).
        layer_indices: 0-based block indices whose outputs are returned (VDA vits/vitb [2,5,8,11],
            vitl [4,11,17,23]); blocks after the last index are not built.
        patch_size: 14 for every released model.
        image_size: square size the position table was trained at (518 -> 37x37 table).
        mlp_ratio: MLP width / hidden size (4).
        conv_stem: replace the linear patchify by `ConvPatchStem` (from-scratch compact models
            only; released checkpoints use the linear one).

    Returns:
        `Dinov2Backbone`; `backbone(pixels).feature_maps` is a tuple of `(N, hidden, H/p, W/p)`.
    """
    idx = [int(i) for i in layer_indices]
    if sorted(set(idx)) != idx or not idx or idx[0] < 0 or idx[-1] >= num_layers:
        raise ConfigError(f"layer_indices {idx} must be increasing and within [0, num_layers={num_layers})")
    if hidden_size % num_heads:
        raise ConfigError(f"hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
    config = Dinov2Config(
        hidden_size=hidden_size,
        num_hidden_layers=idx[-1] + 1,
        num_attention_heads=num_heads,
        mlp_ratio=int(mlp_ratio),
        patch_size=patch_size,
        image_size=image_size,
        layer_norm_eps=1e-6,
        layerscale_value=1.0,
        qkv_bias=True,
        out_features=[f"stage{i + 1}" for i in idx],  # stage0 = embeddings, stage{k} = block k-1
        apply_layernorm=True,
        reshape_hidden_states=True,
    )
    backbone = Dinov2Backbone(config)
    backbone.embeddings = OffsetDinov2Embeddings(config)
    nn.init.trunc_normal_(backbone.embeddings.position_embeddings, std=0.02)
    nn.init.normal_(backbone.embeddings.cls_token, std=1e-6)
    if conv_stem:
        backbone.embeddings.patch_embeddings.projection = ConvPatchStem(hidden_size, patch_size)
    return backbone.eval()


def _block_map(n: int) -> list[tuple[str, str]]:
    """(released, transformers) name pairs of block `n`, excluding the fused qkv."""
    r, h = f"blocks.{n}.", f"encoder.layer.{n}."
    pairs = [
        ("norm1", "norm1"),
        ("attn.proj", "attention.o_proj"),
        ("norm2", "norm2"),
        ("mlp.fc1", "mlp.fc1"),
        ("mlp.fc2", "mlp.fc2"),
    ]
    out = [(f"{r}{a}.{p}", f"{h}{b}.{p}") for a, b in pairs for p in ("weight", "bias")]
    out += [(f"{r}ls1.gamma", f"{h}layer_scale1.lambda1"), (f"{r}ls2.gamma", f"{h}layer_scale2.lambda1")]
    return out


_TOP = [
    ("cls_token", "embeddings.cls_token"),
    ("mask_token", "embeddings.mask_token"),
    ("pos_embed", "embeddings.position_embeddings"),
    ("patch_embed.proj.weight", "embeddings.patch_embeddings.projection.weight"),
    ("patch_embed.proj.bias", "embeddings.patch_embeddings.projection.bias"),
    ("norm.weight", "layernorm.weight"),
    ("norm.bias", "layernorm.bias"),
]
_QKV = ("q_proj", "k_proj", "v_proj")


def released_to_hf(state: dict[str, torch.Tensor], src: str, dst: str, num_layers: int) -> dict[str, torch.Tensor]:
    """Rename a released DINOv2 state (prefix `src`, e.g. "pretrained.") to `Dinov2Backbone` names.

    Consumes (pops) the mapped keys from `state` so the caller can report leftovers as unexpected.
    Blocks at or beyond `num_layers` are dropped (they are not built when the last used index is lower).
    """
    out: dict[str, torch.Tensor] = {}
    for a, b in _TOP:
        if src + a in state:
            out[dst + b] = state.pop(src + a)
    n = 0
    while f"{src}blocks.{n}.norm1.weight" in state:
        keep = n < num_layers
        for a, b in _block_map(n):
            if src + a in state:
                t = state.pop(src + a)
                if keep:
                    out[dst + b] = t
        for p in ("weight", "bias"):
            key = f"{src}blocks.{n}.attn.qkv.{p}"
            if key in state:
                qkv = state.pop(key)
                if keep:
                    for name, t in zip(_QKV, qkv.chunk(3, dim=0), strict=True):
                        out[f"{dst}encoder.layer.{n}.attention.{name}.{p}"] = t.clone()
        n += 1
    return out


def hf_to_released(state: dict[str, torch.Tensor], src: str, dst: str) -> dict[str, torch.Tensor]:
    """Inverse of `released_to_hf` for the keys under `src` (pops them from `state`)."""
    out: dict[str, torch.Tensor] = {}
    for a, b in _TOP:
        if src + b in state:
            out[dst + a] = state.pop(src + b)
    n = 0
    while f"{src}encoder.layer.{n}.norm1.weight" in state:
        for a, b in _block_map(n):
            out[dst + a] = state.pop(src + b)
        for p in ("weight", "bias"):
            parts = [state.pop(f"{src}encoder.layer.{n}.attention.{q}.{p}") for q in _QKV]
            out[f"{dst}blocks.{n}.attn.qkv.{p}"] = torch.cat(parts, dim=0)
        n += 1
    return out


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OffsetDinov2Embeddings",
    "build_dinov2_backbone",
    "hf_to_released",
    "released_to_hf",
]
