"""VDA's temporal motion module, its causal (streaming) attention, and the cache that streams it.

A motion module's transformer block (diffusers' `BasicTransformerBlock`: LayerNorm -> + sinusoidal
position -> self-attention, twice, then a GEGLU feed-forward) normally attends over all frames of a
window (VDA). In **causal** mode every frame attends to itself and the `context - 1` frames before it,
with positions counted back from the query: the query sits at table position `context - 1` and the
frame `k` steps earlier at `context - 1 - k`, as in VDA's streaming mode (`video_depth_stream.py`,
where the new frame is the last of the attended list). Positions therefore do not depend on where a
frame lies in a window, so a stream can run for ever.

Every other layer of the head works frame by frame, so in causal mode the output of frame `t` depends
only on frames `t - context + 1 .. t` at each attention; the attention inputs (normalised, before the
position is added) of the last `context - 1` frames are all a stream has to keep. `TemporalCache`
holds them, per attention layer, in fixed-size buffers with a count of valid entries, and the same
function (`window_attention`) serves a whole clip (empty cache) and one new frame (full cache): so
streaming frame by frame equals running the clip causally, to float rounding (tested).

The keys of past frames are recomputed from the cached inputs at every step (their positions move
back by one each frame); with a few frames of context on a coarse grid that is a small cost, and it
keeps the computation identical to the whole-clip one.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.attention import BasicTransformerBlock
from torch import nn

from vdepth_ros.errors import ConfigError


class TemporalCache:
    """Attention inputs of the last `context - 1` frames of one stream, per causal attention layer.

    `states[key]` is `(N, context - 1, C)` (N = batch x spatial positions of that layer), newest
    frame last; `n_past` of the `context - 1` slots are real frames, the rest (at the front) are
    zeros that the attention masks out. `advance(T)` is called once the `T` new frames have passed
    every layer. Exact by construction: keyed by layer, cleared by `reset()` (a new stream).
    """

    def __init__(self, context: int) -> None:
        if context < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        self.context = int(context)
        self.n_past = 0
        self.states: dict[Any, torch.Tensor] = {}
        self._pending: dict[Any, torch.Tensor] = {}

    def past(self, key: Any, like: torch.Tensor) -> torch.Tensor:
        """`(N, context - 1, C)` past inputs of layer `key` (zeros before its first frame)."""
        state = self.states.get(key)
        n, _, c = like.shape
        if state is None or state.shape[0] != n or state.shape[2] != c:
            if state is not None:
                raise ValueError(f"cached layer state {tuple(state.shape)} does not match input {tuple(like.shape)}")
            return like.new_zeros(n, self.context - 1, c)
        return state.to(like.dtype)

    def stage(self, key: Any, state: torch.Tensor) -> None:
        """Record layer `key`'s new `(N, context - 1, C)` state; applied by `advance`."""
        self._pending[key] = state

    def staged(self, key: Any) -> torch.Tensor:
        """Layer `key`'s new state, recorded by `stage` in the step that has just run."""
        return self._pending[key]

    def advance(self, frames: int) -> None:
        """The `frames` new frames have passed every layer: their states become the past."""
        self.states.update(self._pending)
        self._pending.clear()
        self.n_past = min(self.context - 1, self.n_past + int(frames))

    def reset(self) -> None:
        """Forget the stream (next frame starts a new one)."""
        self.states.clear()
        self._pending.clear()
        self.n_past = 0


def causal_mask(frames: int, context: int, n_past: int | torch.Tensor, device: torch.device) -> torch.Tensor:
    """`(frames, context)` bool: slot `j` of the window ending at new frame `t` holds a real frame.

    The window of frame `t` covers `[past | new]` indices `t .. t + context - 1`; the first
    `context - 1 - n_past` entries of the past buffer are empty.
    """
    index = torch.arange(frames, device=device)[:, None] + torch.arange(context, device=device)[None, :]
    return index >= (context - 1 - n_past)


def window_attention(
    attn: torch.nn.Module, x: torch.Tensor, pe: torch.Tensor, past: torch.Tensor, n_past: int | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention of `T` new frames over themselves and the past, query-relative positions.

    Args:
        attn: the block's diffusers `Attention` (self-attention; keys/values from the window).
        x: `(N, T, C)` normalised inputs of the new frames (no position added).
        pe: `(context, C)` sinusoidal positions; the query uses the last row.
        past: `(N, context - 1, C)` normalised inputs of the previous frames, newest last.
        n_past: how many of the past slots hold real frames.

    Returns:
        `(N, T, C)` attention output and the new past `(N, context - 1, C)`.
    """
    n, t, c = x.shape
    context = pe.shape[0]
    seq = torch.cat((past, x), dim=1)  # (N, context - 1 + T, C)
    # (N, T, context, C): window i is seq[i : i + context]. Slices rather than `unfold`, which the
    # ONNX exporter cannot lower when a length comes from a graph input (the stream step's cache).
    windows = torch.stack([seq[:, j : j + t] for j in range(context)], dim=2)
    keys = (windows + pe).reshape(n * t, context, c)
    query = (x + pe[-1]).reshape(n * t, 1, c)
    valid = causal_mask(t, context, n_past, x.device)
    mask = torch.zeros(valid.shape, dtype=x.dtype, device=x.device).masked_fill(~valid, float("-inf"))
    mask = mask[None].expand(n, t, context).reshape(n * t, 1, context)
    out = attn(query, encoder_hidden_states=keys, attention_mask=mask).reshape(n, t, c)
    return out, seq[:, seq.shape[1] - (context - 1) :]


def causal_block(
    block: torch.nn.Module, y: torch.Tensor, context: int, cache: TemporalCache | None, key: Any
) -> torch.Tensor:
    """A `BasicTransformerBlock` (layer_norm type, two self-attentions, sinusoidal positions) run
    causally over `(N, T, C)`: the same weights and operations as `block(y)`, except that each
    attention sees only the current and `context - 1` previous frames (module docstring)."""
    pe = block.pos_embed.pe[0, :context].to(y.dtype)
    n_past = cache.n_past if cache is not None else 0
    for i, (norm, attn) in enumerate(((block.norm1, block.attn1), (block.norm2, block.attn2))):
        h = norm(y)
        past = cache.past((key, i), h) if cache is not None else h.new_zeros(h.shape[0], context - 1, h.shape[2])
        out, new_past = window_attention(attn, h, pe, past, n_past)
        if cache is not None:
            cache.stage((key, i), new_past)
        y = out + y
    return block.ff(block.norm3(y)) + y


def check_causal_block(block: torch.nn.Module) -> None:
    """Refuse a block whose forward `causal_block` would not reproduce (other norms, cross-attention)."""
    if getattr(block, "norm_type", None) != "layer_norm" or block.pos_embed is None or block.attn2 is None:
        raise ValueError("causal temporal attention needs layer_norm blocks, sinusoidal positions, two attentions")
    if block.only_cross_attention or getattr(block, "_chunk_size", None) is not None:
        raise ValueError("causal temporal attention does not support cross-attention or chunked feed-forward")


class TemporalMotionModule(nn.Module):
    """VDA/AnimateDiff motion module: attention over frames at every spatial location.

    `x + proj_out(blocks(proj_in(GroupNorm(x))))`, where the blocks attend along time for each pixel.
    GroupNorm is applied **per frame** (VDA normalises `(b f) c h w`; diffusers' AnimateDiff module
    normalises over all frames jointly, so we wrap the diffusers block ourselves).

    Args:
        channels: `C` of the maps.
        num_heads: attention heads (VDA: 8; head dim = C / heads).
        num_blocks: transformer blocks (VDA: 1), each with 2 temporal self-attentions + GEGLU FF.
        max_frames: length of the sinusoidal positional table (VDA: 32) -- the longest window.
        norm_groups: GroupNorm groups (VDA: 32).
        zero_init: zero `proj_out` so the module starts as the identity (VDA: True).
        causal_context: 0 (VDA): every frame attends to every frame of the window. `k > 0`: each
            frame attends to itself and the `k - 1` frames before it, positions counted back from
            the query (`models/causal_temporal.py`), so a stream can be run frame by frame from a
            `TemporalCache`. Same weights either way.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 8,
        num_blocks: int = 1,
        max_frames: int = 32,
        norm_groups: int = 32,
        zero_init: bool = True,
        causal_context: int = 0,
    ) -> None:
        super().__init__()
        if channels % num_heads or channels % norm_groups:
            raise ConfigError(
                f"motion module channels {channels} must be divisible by num_heads {num_heads} "
                f"and norm_groups {norm_groups}"
            )
        self.max_frames = int(max_frames)
        self.causal_context = int(causal_context)
        if not 0 <= self.causal_context <= self.max_frames:
            raise ConfigError(f"causal_context {causal_context} must be in [0, max_frames={self.max_frames}]")
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(
                channels,
                num_heads,
                channels // num_heads,
                activation_fn="geglu",
                attention_bias=False,
                double_self_attention=True,
                positional_embeddings="sinusoidal",
                num_positional_embeddings=self.max_frames,
            )
            for _ in range(num_blocks)
        )
        if self.causal_context:
            for block in self.transformer_blocks:
                check_causal_block(block)
        self.proj_out = nn.Linear(channels, channels)
        if zero_init:
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, num_frames: int, cache: TemporalCache | None = None) -> torch.Tensor:
        """Args: x `(B*T, C, h, w)` frame-major per clip; num_frames `T`; `cache`: causal mode only,
        the stream's earlier frames (updated in place, `TemporalCache.advance` by the caller).
        Returns the same shape."""
        bt, c, h, w = x.shape
        if cache is not None and not self.causal_context:
            raise ValueError("a TemporalCache needs a causal motion module (causal_context > 0)")
        if num_frames > self.max_frames and not self.causal_context:
            raise ValueError(f"{num_frames} frames exceed the temporal position table ({self.max_frames})")
        if bt % num_frames:
            raise ValueError(f"batch*frames {bt} is not a multiple of num_frames {num_frames}")
        b = bt // num_frames
        y = self.norm(x)
        y = y.reshape(b, num_frames, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, num_frames, c)
        y = self.proj_in(y)
        for k, block in enumerate(self.transformer_blocks):
            y = causal_block(block, y, self.causal_context, cache, (self, k)) if self.causal_context else block(y)
        y = self.proj_out(y)
        y = y.reshape(b, h * w, num_frames, c).permute(0, 2, 3, 1).reshape(bt, c, h, w)
        return x + y


__all__ = [
    "TemporalCache",
    "TemporalMotionModule",
    "causal_block",
    "causal_mask",
    "check_causal_block",
    "window_attention",
]
