"""DPT decoder heads: the Depth Anything DPT head and Video Depth Anything's temporal variant.

Both heads take a **feature pyramid at one token grid**: a list of 4 maps `(N, C_i, h, w)` (for a
ViT, the reshaped patch tokens of 4 intermediate layers; for a UNet, any 4 maps resized to one grid).
Internally each level is projected to `out_channels[i]` by a 1x1 conv and resized by factors
(4, 2, 1, 1/2) -- the DPT "reassemble" step -- then fused coarse-to-fine (RefineNet-style) and
decoded to one channel at `(h * patch_size, w * patch_size)`.

The layers are `transformers`' Depth Anything building blocks (`DepthAnythingReassembleLayer`,
`DepthAnythingFeatureFusionLayer`, `DepthAnythingDepthEstimationHead`), which compute the same
function as the DPT head in Depth Anything V2 / Video-Depth-Anything (`dpt.py`, `util/blocks.py`);
the temporal motion modules are built from `diffusers`' `BasicTransformerBlock` with two
self-attentions and a sinusoidal positional table, as in VDA's `motion_module.py` (AnimateDiff).

Module names (used by the released-checkpoint key maps in `vda.py` / `gemdepth.py`):

    reassemble.{i}.projection / .resize    <- projects.{i} / resize_layers.{i}
    convs.{i}                              <- scratch.layer{i+1}_rn
    fusion.{i}                             <- scratch.refinenet{i+1}
    head.conv1 / conv2 / conv3             <- scratch.output_conv1 / output_conv2.0 / output_conv2.2
    motion_modules.{k}                     <- motion_modules.{k} (TemporalDPTHead only)

Deliberate differences from VDA: no class-token readout (`use_clstoken=False` in every released
VDA config), no batch-norm option (`use_bn=False` likewise), no micro-batching of the last fusion
stages. VDA's streaming cache of hidden states is replaced by causal motion modules with a
`TemporalCache` (`models/motion.py`), used only by models built with `causal_context > 0`.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock
from torch import nn
from transformers import DepthAnythingConfig
from transformers.models.depth_anything.modeling_depth_anything import (
    DepthAnythingDepthEstimationHead,
    DepthAnythingFeatureFusionLayer,
    DepthAnythingReassembleLayer,
)

from vdepth_ros.errors import ConfigError
from vdepth_ros.models.motion import TemporalCache, TemporalMotionModule

#: DPT reassemble factors per level (x4 up, x2 up, identity, /2 down), as in DPT / Depth Anything.
REASSEMBLE_FACTORS: tuple[float, ...] = (4, 2, 1, 0.5)


def _check_levels(name: str, values: Sequence[int]) -> list[int]:
    values = [int(v) for v in values]
    if len(values) != 4 or any(v <= 0 for v in values):
        raise ConfigError(f"{name} must be 4 positive ints (one per pyramid level), got {values!r}")
    return values


class DPTHead(nn.Module):
    """DPT decoder (Depth Anything V2 variant) over a 4-level feature pyramid at one token grid.

    Args:
        in_channels: channels `C_i` of each of the 4 input maps (e.g. `[embed_dim] * 4` for a ViT).
        features: fusion width (VDA: 64 for vits, 128 vitb, 256 vitl).
        out_channels: per-level projection widths (VDA: [48,96,192,384] vits, [96,192,384,768] vitb,
            [256,512,1024,1024] vitl).
        head_features: hidden width of the last output conv (32 in DAv2/VDA).
        patch_size: output size is `(h * patch_size, w * patch_size)` for the `h x w` grid of the
            third input map (a ViT's token grid).
        reassemble_factors: resize of each level; DPT's (4, 2, 1, 0.5) turns one ViT token grid
            into a pyramid. A convolutional encoder that already yields a pyramid (strides 4, 8,
            16, 32) passes (1, 1, 1, 1) with `patch_size` = the third map's stride.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        head_features: int = 32,
        patch_size: int = 14,
        reassemble_factors: Sequence[float] = REASSEMBLE_FACTORS,
    ) -> None:
        super().__init__()
        in_channels = _check_levels("in_channels", in_channels)
        out_channels = _check_levels("out_channels", out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = int(features)
        self.patch_size = int(patch_size)
        self.reassemble_factors = tuple(reassemble_factors)
        if len(self.reassemble_factors) != 4:
            raise ConfigError(f"reassemble_factors must be 4 numbers, got {reassemble_factors!r}")
        # One DepthAnythingConfig carries the decoder hyper-parameters for the transformers blocks.
        cfg = DepthAnythingConfig(
            reassemble_hidden_size=in_channels[0],
            patch_size=self.patch_size,
            fusion_hidden_size=self.features,
            head_hidden_size=int(head_features),
            neck_hidden_sizes=out_channels,
            reassemble_factors=list(self.reassemble_factors),
            depth_estimation_type="relative",
            max_depth=1,
            head_in_index=-1,
        )
        layers = []
        for c_in, c_out, factor in zip(in_channels, out_channels, self.reassemble_factors, strict=True):
            level_cfg = copy.copy(cfg)
            level_cfg.reassemble_hidden_size = c_in  # per-level input width (ViT: all equal)
            layers.append(DepthAnythingReassembleLayer(level_cfg, channels=c_out, factor=factor))
        self.reassemble = nn.ModuleList(layers)
        self.convs = nn.ModuleList(
            nn.Conv2d(c, self.features, kernel_size=3, padding=1, bias=False) for c in out_channels
        )
        self.fusion = nn.ModuleList(DepthAnythingFeatureFusionLayer(cfg) for _ in range(4))
        # conv1 -> upsample to (h*p, w*p) -> conv2 -> ReLU -> conv3 -> ReLU (x max_depth = 1).
        self.head = DepthAnythingDepthEstimationHead(cfg)

    def _levels(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Project + resize each level: `(N, C_i, h, w)` -> `(N, out_channels[i], h*f_i, w*f_i)`."""
        if len(features) != 4:
            raise ValueError(f"DPT head expects 4 feature maps, got {len(features)}")
        grid = features[0].shape[-2:]
        one_grid = self.reassemble_factors == tuple(REASSEMBLE_FACTORS)  # a ViT's single token grid
        for i, f in enumerate(features):
            if f.dim() != 4 or f.shape[1] != self.in_channels[i] or (one_grid and f.shape[-2:] != grid):
                raise ValueError(
                    f"feature {i} has shape {tuple(f.shape)}; expected (N, {self.in_channels[i]}, "
                    + (f"{grid[0]}, {grid[1]})" if one_grid else "h_i, w_i)")
                )
        return [layer(f) for layer, f in zip(self.reassemble, features, strict=True)]

    def _decode(self, path: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Output convs on the finest fused map -> `(N, h*p, w*p)` (ReLU'd)."""
        return self.head([path], grid[0], grid[1])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decode a feature pyramid to one non-negative map per sample.

        Args:
            features: 4 tensors `(N, C_i, h, w)` at one token grid.

        Returns:
            `(N, h * patch_size, w * patch_size)` float tensor, >= 0.
        """
        grid = (int(features[2].shape[-2]), int(features[2].shape[-1]))
        l1, l2, l3, l4 = (conv(x) for conv, x in zip(self.convs, self._levels(features), strict=True))
        path = self.fusion[3](l4, size=l3.shape[2:])
        path = self.fusion[2](path, l3, size=l2.shape[2:])
        path = self.fusion[1](path, l2, size=l1.shape[2:])
        path = self.fusion[0](path, l1)
        return self._decode(path, grid)


def sinusoidal_2d(
    height: int, width: int, dim: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Fixed 2D sine/cosine positions `(height * width, dim)`, row-major: half the channels encode
    the row, half the column (the 2D form of the Transformer table, as in MAE / DETR). Computed from
    the grid size, so any input resolution works and a fixed-shape export folds it to a constant."""
    if dim % 4:
        raise ConfigError(f"2D positional embedding needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    freq = torch.exp(torch.arange(quarter, device=device, dtype=torch.float32) * (-math.log(10000.0) / quarter))
    ys = torch.arange(height, device=device, dtype=torch.float32)[:, None] * freq  # (h, dim/4)
    xs = torch.arange(width, device=device, dtype=torch.float32)[:, None] * freq  # (w, dim/4)
    rows = torch.cat([ys.sin(), ys.cos()], 1)[:, None, :].expand(height, width, 2 * quarter)
    cols = torch.cat([xs.sin(), xs.cos()], 1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([rows, cols], 2).reshape(height * width, dim).to(dtype or torch.float32)


class SpatialContextModule(nn.Module):
    """Global self-attention over the positions of one frame's coarsest map (not in VDA).

    `x + proj_out(blocks(proj_in(GroupNorm(x)) + pos2d))`, attention over the `h * w` cells of each
    frame. Why: VDA's DINOv2 encoder attends globally, so every patch sees the whole room; a
    convolutional encoder only sees a neighbourhood, and the vda_lite model's largest error on real
    video is the depth *between* parts of a scene (`docs/model-history.md`, two-view study). This
    gives the stride-32 features that global view at the width `inner` (cheap: 35 cells at 160x224).
    Built from `diffusers`' `BasicTransformerBlock` as the temporal motion modules are.

    Args:
        channels: `C` of the map.
        inner: attention width (`proj_in` to it and `proj_out` back).
        num_heads: attention heads (head dim = inner / heads).
        num_blocks: transformer blocks (self-attention + GEGLU feed-forward each).
        norm_groups: GroupNorm groups on the input.
        zero_init: zero `proj_out`, so the module starts as the identity (a trained model extended
            with it computes exactly what it did before).
    """

    def __init__(
        self,
        channels: int,
        inner: int = 128,
        num_heads: int = 4,
        num_blocks: int = 1,
        norm_groups: int = 8,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        if channels % norm_groups or inner % num_heads or inner % 4:
            raise ConfigError(
                f"spatial context: channels {channels} must be divisible by norm_groups {norm_groups}, "
                f"inner {inner} by num_heads {num_heads} and by 4"
            )
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, num_heads, inner // num_heads, activation_fn="geglu", attention_bias=False)
            for _ in range(num_blocks)
        )
        self.proj_out = nn.Linear(inner, channels)
        if zero_init:
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x `(N, C, h, w)`, N frames. Returns the same shape."""
        n, c, h, w = x.shape
        y = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))  # (N, h*w, inner)
        y = y + sinusoidal_2d(h, w, y.shape[-1], device=y.device, dtype=y.dtype)
        for block in self.transformer_blocks:
            y = block(y)
        y = self.proj_out(y).transpose(1, 2).reshape(n, c, h, w)
        return x + y


class TemporalDPTHead(DPTHead):
    """VDA's `DPTHeadTemporal`: the DPT head with 4 temporal motion modules.

    Motion modules act on the reassembled levels 3 and 4 (before the 3x3 `convs`) and on the outputs
    of the two coarsest fusion stages, exactly where VDA places them.

    Args:
        in_channels, features, out_channels, head_features, patch_size: as `DPTHead`.
        num_frames: maximum window length = temporal positional table length (VDA: 32).
        num_heads: attention heads per motion module (VDA: 8).
        num_blocks: transformer blocks per motion module (VDA: 1).
        norm_groups: GroupNorm groups in the motion modules (VDA: 32; must divide
            `out_channels[2]`, `out_channels[3]` and `features`).
        zero_init: zero-initialise the motion modules' output projections (VDA: True).
        reassemble_factors: as `DPTHead` ((1, 1, 1, 1) for a convolutional pyramid); the third
            must be 1 (its grid is the output grid).
        causal_context: 0 = VDA's window attention; `k > 0` = causal attention over `k` frames in
            every motion module (`TemporalMotionModule`), streamable with a `TemporalCache`.

    Example:
        >>> head = TemporalDPTHead([64] * 4, features=32, out_channels=[16, 32, 64, 64], norm_groups=8)
        >>> feats = [torch.randn(2 * 4, 64, 6, 8) for _ in range(4)]   # B=2 clips of T=4 frames
        >>> head(feats, num_frames=4).shape
        torch.Size([8, 84, 112])
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        head_features: int = 32,
        patch_size: int = 14,
        num_frames: int = 32,
        num_heads: int = 8,
        num_blocks: int = 1,
        norm_groups: int = 32,
        zero_init: bool = True,
        reassemble_factors: Sequence[float] = REASSEMBLE_FACTORS,
        causal_context: int = 0,
    ) -> None:
        super().__init__(in_channels, features, out_channels, head_features, patch_size, reassemble_factors)
        if self.reassemble_factors[2] != 1:
            raise ConfigError(f"the third reassemble factor must be 1 (output grid), got {reassemble_factors!r}")
        self.num_frames = int(num_frames)
        self.causal_context = int(causal_context)

        def mm(c: int) -> TemporalMotionModule:
            return TemporalMotionModule(
                c, num_heads, num_blocks, self.num_frames, norm_groups, zero_init, self.causal_context
            )

        self.motion_modules = nn.ModuleList(
            [mm(self.out_channels[2]), mm(self.out_channels[3]), mm(self.features), mm(self.features)]
        )

    def forward(  # type: ignore[override]
        self, features: Sequence[torch.Tensor], num_frames: int, skips: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Decode clips of frames with temporal attention.

        Args:
            features: 4 tensors `(B*T, C_i, h, w)`, frames of one clip consecutive (frame-major).
            num_frames: `T`, at most `self.num_frames`.
            skips: optional 2 convolutional feature maps `(B*T, out_channels[i], H_i, W_i)` added to
                the two finest reassembled levels (resized to them), as DPT-Hybrid feeds its ResNet
                stages to those levels; see `ConvDetailEncoder`.

        Returns:
            `(B*T, h * patch_size, w * patch_size)` float tensor, >= 0.
        """
        return self.temporal_decode(self.frame_levels(features, skips), num_frames)

    def frame_levels(
        self, features: Sequence[torch.Tensor], skips: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The head's per-frame work before its first temporal layer (reassemble, skips, the 3x3
        convs of the two finest levels): `(N, C_i, h, w)` x 4 -> 4 maps of N independent frames.

        `temporal_decode(frame_levels(f), T) == forward(f, T)` exactly (the same operations in the
        same order); splitting them lets a runtime keep these maps for frames that recur in later
        windows (exact reuse of overlap work).
        """
        l1, l2, l3, l4 = self._levels(features)
        if skips is not None:
            l1 = l1 + F.interpolate(skips[0], size=l1.shape[2:], mode="bilinear", align_corners=False)
            l2 = l2 + F.interpolate(skips[1], size=l2.shape[2:], mode="bilinear", align_corners=False)
        return self.convs[0](l1), self.convs[1](l2), l3, l4

    def temporal_decode(
        self,
        levels: Sequence[torch.Tensor],
        num_frames: int,
        temporal_cache: TemporalCache | None = None,
    ) -> torch.Tensor:
        """From `frame_levels` maps of clips of `num_frames` frames to `(B*T, h*p, w*p)` (>= 0).

        The output grid is the third level's (a ViT's token grid; reassemble factor 1). With
        `temporal_cache` (causal motion modules only) the frames continue a stream whose earlier
        frames' attention inputs the cache holds (`TemporalCache`).
        """
        l1, l2, l3, l4 = levels
        grid = (int(l3.shape[-2]), int(l3.shape[-1]))
        mm = self.motion_modules
        l3 = self.convs[2](mm[0](l3, num_frames, temporal_cache))
        l4 = self.convs[3](mm[1](l4, num_frames, temporal_cache))
        path = self.fusion[3](l4, size=l3.shape[2:])
        path = mm[2](path, num_frames, temporal_cache)
        path = self.fusion[2](path, l3, size=l2.shape[2:])
        path = mm[3](path, num_frames, temporal_cache)
        path = self.fusion[1](path, l2, size=l1.shape[2:])
        path = self.fusion[0](path, l1)
        return self._decode(path, grid)


class ConvDetailEncoder(nn.Module):
    """A small convolutional encoder whose 1/4 and 1/8 feature maps feed the DPT head's two finest
    levels (`TemporalDPTHead.forward(skips=...)`).

    After DPT-Hybrid (Ranftl et al., "Vision Transformers for Dense Prediction", ICCV 2021), which
    takes the features of its ResNet's first two stages for the 1/4 and 1/8 reassemble levels
    instead of upsampled ViT tokens: convolutions give the decoder local detail (edges, texture
    gradients, shading) that a compact ViT trained from scratch on little data learns slowly.
    Unlike DPT-Hybrid the ViT keeps its own levels and the branch is added to them (zero-initialised
    projections: a new branch starts as a no-op), and the maps are resized to the head's 14-pixel
    grid (1/3.5 and 1/7 of the input) because 14 is not a power of two.

    Args:
        width: channels of the first stage (stages: width, 2*width, 4*width at 1/2, 1/4, 1/8).
        out_channels: the head's `out_channels[0]` and `out_channels[1]`.
    """

    def __init__(self, width: int, out_channels: Sequence[int]) -> None:
        super().__init__()

        def stage(c_in: int, c_out: int) -> nn.Sequential:
            groups = math.gcd(8, c_out)
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(groups, c_out),
                nn.GELU(),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.GroupNorm(groups, c_out),
                nn.GELU(),
            )

        w = int(width)
        self.stages = nn.ModuleList([stage(3, w), stage(w, 2 * w), stage(2 * w, 4 * w)])
        self.proj = nn.ModuleList(
            [nn.Conv2d(2 * w, int(out_channels[0]), 1), nn.Conv2d(4 * w, int(out_channels[1]), 1)]
        )
        for conv in self.proj:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """Normalised images `(N, 3, H, W)` -> `[(N, out_channels[0], H/4, W/4), (N, out_channels[1], H/8, W/8)]`."""
        x2 = self.stages[0](pixels)
        x4 = self.stages[1](x2)
        x8 = self.stages[2](x4)
        return [self.proj[0](x4), self.proj[1](x8)]


def released_head_names(name: str) -> list[str]:
    """Released VDA/GemDepth `DPTHeadTemporal` name(s) of one of our head parameters/buffers.

    Args:
        name: a key of `DPTHead.state_dict()` / `TemporalDPTHead.state_dict()` (no prefix).

    Returns:
        The released key(s), without the model prefix. Usually one; the sinusoidal table
        `pos_embed.pe` maps to both attention blocks' `pos_encoder.pe` (VDA keeps one copy per
        attention, diffusers one per transformer block -- same values).

    Raises:
        KeyError: `name` is not a head key this map knows.
    """

    def lvl(m: re.Match[str], g: int = 1) -> int:
        return int(m.group(g)) + 1

    rules: list[tuple[str, object]] = [
        (r"reassemble\.(\d)\.projection\.(.+)", lambda m: [f"projects.{m[1]}.{m[2]}"]),
        (r"reassemble\.(\d)\.resize\.(.+)", lambda m: [f"resize_layers.{m[1]}.{m[2]}"]),
        (r"convs\.(\d)\.(.+)", lambda m: [f"scratch.layer{lvl(m)}_rn.{m[2]}"]),
        (r"fusion\.(\d)\.projection\.(.+)", lambda m: [f"scratch.refinenet{lvl(m)}.out_conv.{m[2]}"]),
        (
            r"fusion\.(\d)\.residual_layer(\d)\.convolution(\d)\.(.+)",
            lambda m: [f"scratch.refinenet{lvl(m)}.resConfUnit{m[2]}.conv{m[3]}.{m[4]}"],
        ),
        (r"head\.conv1\.(.+)", lambda m: [f"scratch.output_conv1.{m[1]}"]),
        (r"head\.conv2\.(.+)", lambda m: [f"scratch.output_conv2.0.{m[1]}"]),
        (r"head\.conv3\.(.+)", lambda m: [f"scratch.output_conv2.2.{m[1]}"]),
        (
            r"motion_modules\.(\d)\.(norm|proj_in|proj_out)\.(.+)",
            lambda m: [f"motion_modules.{m[1]}.temporal_transformer.{m[2]}.{m[3]}"],
        ),
        (
            r"motion_modules\.(\d)\.transformer_blocks\.(\d+)\.(.+)",
            lambda m: [
                f"motion_modules.{m[1]}.temporal_transformer.transformer_blocks.{m[2]}.{n}" for n in _block(m[3])
            ],
        ),
    ]
    for pattern, fn in rules:
        m = re.fullmatch(pattern, name)
        if m:
            return fn(m)  # type: ignore[operator]
    raise KeyError(f"no released name for head key {name!r}")


def _block(rest: str) -> list[str]:
    """Inside one temporal transformer block: diffusers names -> VDA (AnimateDiff) names."""
    if rest == "pos_embed.pe":
        return ["attention_blocks.0.pos_encoder.pe", "attention_blocks.1.pos_encoder.pe"]
    m = re.fullmatch(r"attn([12])\.(.+)", rest)
    if m:
        return [f"attention_blocks.{int(m[1]) - 1}.{m[2]}"]
    m = re.fullmatch(r"norm([12])\.(.+)", rest)
    if m:
        return [f"norms.{int(m[1]) - 1}.{m[2]}"]
    if rest.startswith("norm3."):
        return ["ff_norm." + rest[len("norm3.") :]]
    if rest.startswith("ff."):
        return [rest]
    raise KeyError(f"no released name for temporal block key {rest!r}")


__all__ = [
    "REASSEMBLE_FACTORS",
    "DPTHead",
    "SpatialContextModule",
    "TemporalDPTHead",
    "TemporalMotionModule",
    "released_head_names",
    "sinusoidal_2d",
]
