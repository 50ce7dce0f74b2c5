"""A video-depth model as two graphs: per-frame work, then the window's temporal work.

For the families whose temporal layers all sit in the DPT head (VDA, VDA-Lite) the encoder and the
head's first per-frame steps see one frame at a time; only the head's motion modules mix frames.
`PerFrameSplit` cuts the forward there, so a runtime can keep the per-frame features of frames that
recur in later windows (`runtime/reuse.py`), and, with causal motion modules, run a stream frame by
frame from a `TemporalCache` (`models/motion.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from vdepth_ros.errors import ConfigError
from vdepth_ros.models.dpt import TemporalDPTHead
from vdepth_ros.models.motion import TemporalCache


@dataclass
class SplitSignature:
    """A model as two fixed-shape graphs: per-frame work, then the window's temporal work.

    `frame_module.forward(frames (N, 3, H, W))` (RGB in `value_range`) returns the per-frame feature
    maps, a tuple of `(N, *shape)` tensors with `shape` in `feature_shapes`; `N` is free.
    `window_module.forward(*features)` takes them for `frames` frames of one clip, in clip order
    (`N = frames`), and returns `(1, frames, height, width)`. Composed, they compute the model's
    `forward` exactly (the same operations, split at a point where nothing mixes frames), so a
    runtime can keep the features of frames that recur in later windows (exact reuse).
    """

    frame_module: nn.Module
    window_module: nn.Module
    frames: int
    height: int
    width: int
    feature_names: tuple[str, ...]
    feature_shapes: tuple[tuple[int, ...], ...]


class _FrameStage(nn.Module):
    def __init__(self, model: PerFrameSplit) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.encode_frames(frames))


class _WindowStage(nn.Module):
    def __init__(self, model: PerFrameSplit, frames: int, height: int, width: int) -> None:
        super().__init__()
        self.model, self.frames, self.height, self.width = model, frames, height, width

    def forward(self, *levels: torch.Tensor) -> torch.Tensor:
        return self.model.decode_window(levels, self.frames, self.height, self.width)


@dataclass
class StreamSignature:
    """One step of a causal model's stream as a graph whose stream state is explicit (for export).

    `module.forward(frame (1, 3, H, W), n_past (int64 scalar), *past)` runs the stream's next frame
    (RGB in `value_range`) and returns `(disparity (1, 1, H, W), *new_past)`. `past` are the
    `TemporalCache` buffers of every causal attention layer in `state_names` order, each
    `(N_l, context - 1, C_l)` (`state_shapes`); `n_past` of their `context - 1` slots hold real frames.
    A new stream starts from zeros and `n_past = 0`; after each step the caller takes the new buffers
    and sets `n_past = min(n_past + 1, context - 1)` (`TemporalCache.advance`). Frame by frame it
    computes exactly what `PerFrameSplit.stream` does.
    """

    module: nn.Module
    context: int
    height: int
    width: int
    state_names: tuple[str, ...]
    state_shapes: tuple[tuple[int, ...], ...]


class _StreamStep(nn.Module):
    def __init__(self, model: PerFrameSplit, height: int, width: int) -> None:
        super().__init__()
        self.model, self.height, self.width = model, height, width

    def forward(self, frame: torch.Tensor, n_past: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cache = self.model.new_stream()
        keys = self.model.stream_state_keys()
        cache.states = dict(zip(keys, past, strict=True))
        cache.n_past = n_past  # type: ignore[assignment]  # a graph input: the mask is computed from it
        out = self.model.decode_window(self.model.encode_frames(frame), 1, self.height, self.width, cache)
        return (out, *(cache.staged(key) for key in keys))


class PerFrameSplit:
    """Split forward of the families whose temporal layers all sit in the DPT head (VDA, VDA-Lite).

    Everything before the head's first motion module works frame by frame: the encoder, the
    head's reassemble step and the 3x3 convs of its two finest levels (`TemporalDPTHead.frame_levels`).
    `encode_frames` runs that part on independent frames, `decode_window` the rest on a clip;
    `forward` is exactly their composition. In a VDA window 10 of 32 frames (the bundled model: 4
    of 8) were already encoded by the previous window, so a runtime that keeps their features
    skips that work (`runtime.reuse`). With causal motion modules `stream` runs new frames of a
    stream from a `TemporalCache` (one inference per frame).
    """

    head: TemporalDPTHead

    def frame_skips(self, clip: torch.Tensor) -> list[torch.Tensor] | None:
        """Extra per-frame maps added to the head's finest levels (`ConvDetailEncoder`), or None."""
        return None

    def encode_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`(N, 3, H, W)` RGB in [0, 1] -> the 4 per-frame maps `TemporalDPTHead.frame_levels` gives."""
        clip = frames[None]
        return self.head.frame_levels(self.encode(clip), self.frame_skips(clip))  # type: ignore[attr-defined]

    def decode_window(
        self,
        levels: Sequence[torch.Tensor],
        num_frames: int,
        height: int,
        width: int,
        cache: TemporalCache | None = None,
    ) -> torch.Tensor:
        """`encode_frames` maps of `B` clips of `num_frames` frames -> `(B, T, height, width)` disparity."""
        b = levels[0].shape[0] // num_frames
        out = self.head.temporal_decode(levels, num_frames, cache)
        return self.disparity_output(out, b, num_frames, height, width)  # type: ignore[attr-defined]

    def split_signature(self, frames: int, height: int, width: int) -> SplitSignature:
        """The two graphs for windows of `frames` frames at `height x width` (see `SplitSignature`)."""
        sig = self.export_signature(frames, height, width)  # type: ignore[attr-defined]  # checks the shape
        with torch.no_grad():
            like = self.pixel_mean  # type: ignore[attr-defined]  # the model's device and dtype
            probe = self.encode_frames(torch.zeros(1, 3, height, width, device=like.device, dtype=like.dtype))
        return SplitSignature(
            frame_module=_FrameStage(self).eval(),
            window_module=_WindowStage(self, sig.frames, sig.height, sig.width).eval(),
            frames=sig.frames,
            height=sig.height,
            width=sig.width,
            feature_names=tuple(f"level{i + 1}" for i in range(len(probe))),
            feature_shapes=tuple(tuple(int(d) for d in p.shape[1:]) for p in probe),
        )

    @property
    def streamable(self) -> bool:
        """True when the head's attention is causal, so `stream` can run a stream frame by frame."""
        return bool(getattr(self.head, "causal_context", 0))

    def new_stream(self) -> TemporalCache:
        """An empty `TemporalCache` for `stream` (causal heads only)."""
        if not self.streamable:
            raise ConfigError("streaming needs causal temporal attention (causal_context > 0)")
        return TemporalCache(self.head.causal_context)

    def stream_state_keys(self) -> list[tuple[object, int]]:
        """The `TemporalCache` keys of every causal attention layer, in the head's order."""
        return [
            ((mm, k), i)
            for mm in self.head.motion_modules
            for k in range(len(mm.transformer_blocks))
            for i in (0, 1)  # each block's two attentions (`motion.causal_block`)
        ]

    def stream_signature(self, height: int, width: int) -> StreamSignature:
        """The stream-step graph at `height x width` (see `StreamSignature`)."""
        self.export_signature(2, height, width)  # type: ignore[attr-defined]  # checks the shape
        cache = self.new_stream()
        with torch.no_grad():
            like = self.pixel_mean  # type: ignore[attr-defined]  # the model's device and dtype
            self.stream(torch.zeros(1, 1, 3, height, width, device=like.device, dtype=like.dtype), cache)
        keys = self.stream_state_keys()
        return StreamSignature(
            module=_StreamStep(self, height, width).eval(),
            context=cache.context,
            height=height,
            width=width,
            state_names=tuple(f"past{j}" for j in range(len(keys))),
            state_shapes=tuple(tuple(int(d) for d in cache.states[key].shape) for key in keys),
        )

    def stream(self, frames: torch.Tensor, cache: TemporalCache) -> torch.Tensor:
        """The next `T` frames `(B, T, 3, H, W)` of a stream -> `(B, T, H, W)`, attending to the
        frames `cache` holds (then updated). Equals the causal forward of the whole stream."""
        _, t, _, h, w = frames.shape
        out = self.decode_window(self.encode_frames(frames.flatten(0, 1)), t, h, w, cache)
        cache.advance(t)
        return out


__all__ = ["PerFrameSplit", "SplitSignature", "StreamSignature"]
