"""GemDepth's building blocks (`models/gemdepth.py` assembles them): pose maths (quaternions xyzw as
VGGT / MapAnything, poses relative to the first frame, translation normalisation, 2-D RoPE,
sin-cos tables) and the VGGT-style layers (attention block with qk-norm and RoPE, LayerScale, the
iterative camera head) and MapAnything's pose encoders. Kept apart from the model because they
are generic over it: the training recipes use the pose maths too.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vdepth_ros.errors import ConfigError

# --------------------------------------------------------------------------------------------------
# geometry helpers (quaternions are xyzw, as VGGT / MapAnything)


def rope_2d(x: torch.Tensor, pos: torch.Tensor, freq: float) -> torch.Tensor:
    """2-D rotary embedding (CroCo/VGGT `RoPE2D`): first half of the head dim rotates with y, second with x.

    Args:
        x: `(B, heads, N, d)` queries or keys, `d % 4 == 0`.
        pos: `(N, 2)` integer (y, x) token positions (shared by the batch).
        freq: RoPE base (100 in VGGT/GemDepth).

    Returns:
        `(B, heads, N, d)` rotated tensor.
    """
    half = x.shape[-1] // 2
    inv_freq = 1.0 / (freq ** (torch.arange(0, half, 2, device=x.device, dtype=torch.float32) / half))

    def rotate(t: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        ang = p.to(torch.float32)[:, None] * inv_freq[None]  # (N, half/2)
        ang = torch.cat((ang, ang), dim=-1)
        cos, sin = ang.cos().to(t.dtype), ang.sin().to(t.dtype)
        t1, t2 = t[..., : half // 2], t[..., half // 2 :]
        return t * cos + torch.cat((-t2, t1), dim=-1) * sin

    y, xx = x[..., :half], x[..., half:]
    return torch.cat((rotate(y, pos[:, 0]), rotate(xx, pos[:, 1])), dim=-1)


def quat_multiply(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Hamilton product of xyzw quaternions `(..., 4)`."""
    x1, y1, z1, w1 = q1.unbind(-1)
    x2, y2, z2, w2 = q2.unbind(-1)
    return torch.stack(
        (
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        ),
        dim=-1,
    )


def quat_inverse(q: torch.Tensor) -> torch.Tensor:
    """Inverse of (not necessarily unit) xyzw quaternions: conjugate / |q|^2."""
    conj = torch.cat((-q[..., :3], q[..., 3:]), dim=-1)
    return conj / (q * q).sum(-1, keepdim=True)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices `(..., 3, 3)` of xyzw quaternions (normalised first)."""
    q = q / q.norm(dim=-1, keepdim=True)
    x, y, z, w = q.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def relative_to_first(quat: torch.Tensor, trans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Express per-frame poses in the frame of slot 0 (MapAnything `transform_pose_..._2_to_1`).

    Args:
        quat: `(B, T, 4)` xyzw; trans: `(B, T, 3)`.

    Returns:
        `(quat_rel, trans_rel)` with `quat_rel = q0^-1 * q_i`, `trans_rel = R(q0^-1) (t_i - t0)`;
        slot 0 becomes (q0^-1 q0, 0) -- exactly zero translation.
    """
    inv0 = quat_inverse(quat[:, :1])
    rot0_inv = quat_to_matrix(inv0)  # (B, 1, 3, 3)
    t0_inv = -(rot0_inv @ trans[:, :1, :, None])[..., 0]
    quat_rel = quat_multiply(inv0.expand_as(quat), quat)
    trans_rel = (rot0_inv @ trans[..., None])[..., 0] + t0_inv
    return quat_rel, trans_rel


def normalize_translations(trans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide by `Z` = mean norm of the non-zero translations of each clip (GemDepth §3.2).

    Args:
        trans: `(B, T, 3)`.

    Returns:
        `(trans / Z, Z)` with `Z` of shape `(B,)`, clipped to >= 1e-8.
    """
    dist = trans.norm(dim=-1)
    count = (dist > 0).sum(dim=1).to(trans.dtype)
    scale = (dist.sum(dim=1) / (count + 1e-8)).clamp(min=1e-8)
    return trans / scale[:, None, None], scale


def sincos_1d(dim: int, length: int) -> torch.Tensor:
    """`(length, dim)` sin-cos table (MAE/CroCo `get_1d_sincos_pos_embed_from_grid`): [sin | cos]."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = torch.arange(length, dtype=torch.float64)[:, None] * omega[None]
    return torch.cat((out.sin(), out.cos()), dim=1).float()


def vda_sinusoid(dim: int, length: int) -> torch.Tensor:
    """`(1, length, dim)` interleaved sin/cos table of VDA's `PositionalEncoding` (unused buffer)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(pos * div)
    pe[0, :, 1::2] = torch.cos(pos * div)
    return pe


# --------------------------------------------------------------------------------------------------
# blocks


class Mlp(nn.Module):
    """`fc2(GELU(fc1(x)))`."""

    def __init__(self, dim: int, hidden: int, out: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention with fused qkv, optional per-head qk LayerNorm and 2-D RoPE."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = False, rope_freq: float | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"attention dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        head_dim = dim // heads
        if rope_freq is not None and head_dim % 4:
            raise ConfigError(f"2-D RoPE needs a head dim divisible by 4, got {head_dim} ({dim}/{heads})")
        self.rope_freq = rope_freq
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope_freq is not None and pos is not None:
            q, k = rope_2d(q, pos, self.rope_freq), rope_2d(k, pos, self.rope_freq)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block (VGGT `Block` with `layer_scale`, CroCo `Block` without).

    Args:
        dim, heads: width and attention heads.
        mlp_ratio: MLP hidden = dim * mlp_ratio.
        qk_norm: per-head LayerNorm on q and k (VGGT aggregator blocks).
        rope_freq: 2-D RoPE base, or None for no RoPE.
        layer_scale: LayerScale init (VGGT 0.01), or None for none (CroCo).
        eps: LayerNorm epsilon (VGGT 1e-5, CroCo/ASTT 1e-6).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: int = 4,
        qk_norm: bool = False,
        rope_freq: float | None = None,
        layer_scale: float | None = None,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qk_norm, rope_freq)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos))
        return x + self.ls2(self.mlp(self.norm2(x)))


class CameraHead(nn.Module):
    """VGGT camera head: iterative AdaLN-modulated trunk on camera tokens -> `absT_quaR_FoV` (9-D).

    Args:
        dim: camera-token width (2 x model width: frame and global tokens concatenated).
        trunk_depth, heads: trunk blocks (4) and heads (16).
        iterations: refinement iterations (4); each adds a delta to the encoding.
    """

    target_dim: ClassVar[int] = 9

    def __init__(self, dim: int, trunk_depth: int = 4, heads: int = 16, iterations: int = 4) -> None:
        super().__init__()
        self.iterations = int(iterations)
        self.trunk = nn.Sequential(*(Block(dim, heads, layer_scale=0.01) for _ in range(trunk_depth)))
        self.token_norm = nn.LayerNorm(dim)
        self.trunk_norm = nn.LayerNorm(dim)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, self.target_dim))
        self.embed_pose = nn.Linear(self.target_dim, dim)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim, dim // 2, self.target_dim)

    def forward(self, camera_tokens: torch.Tensor) -> torch.Tensor:
        """`(B, T, dim)` camera tokens -> `(B, T, 9)` = T(3), quat xyzw(4), FoV h/w(2) (FoV ReLU'd)."""
        tokens = self.token_norm(camera_tokens)
        enc: torch.Tensor | None = None
        for _ in range(self.iterations):
            cond = self.embed_pose(
                self.empty_pose_tokens.expand(*tokens.shape[:2], -1) if enc is None else enc.detach()
            )
            shift, scale, gate = self.poseLN_modulation(cond).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            enc = delta if enc is None else enc + delta
        assert enc is not None
        return torch.cat((enc[..., :7], F.relu(enc[..., 7:])), dim=-1)  # trans/quat linear, FoV ReLU


class PoseEncoder(nn.Module):
    """MapAnything `GlobalRepresentationEncoder`: Linear/GELU stack -> Linear -> LayerNorm(eps 1e-6)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.norm = nn.LayerNorm(out_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = F.gelu(layer(x))
        return self.norm(self.layers[-1](x))
