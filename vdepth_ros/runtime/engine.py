"""`DepthEngine`: a window of frames in, per-frame disparity out. Backends subclass it."""

from __future__ import annotations

import abc
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from vdepth_ros.errors import ConfigError, InputError, ModelOutputError
from vdepth_ros.runtime.reuse import FrameFeatureCache, window_ids
from vdepth_ros.runtime.spec import InputSpec


class DepthEngine(abc.ABC):
    """One interface over torch, ONNX Runtime and TensorRT.

    `infer(frames)` takes `(T, H, W, 3)` RGB at the spec's working resolution, either uint8
    or float32 already in `value_range`, with `1 <= T <= spec.frames` for fixed-shape graphs
    (shorter windows are padded by repeating the last frame and the padding is cut from the
    output). It returns `(T, H, W)` float32. Engines are context managers.

    With `frame_ids` (one identity per frame, unique within a stream: the pipeline's frame
    indices) a backend that runs the model as a per-frame and a per-window graph (`supports_reuse`)
    encodes only the frames it has not seen in the previous window and reuses the others' features
    (`runtime/reuse.py`); `reset_stream()` forgets them. Without split graphs `frame_ids` is ignored.
    """

    backend: str = ""

    def __init__(self, spec: InputSpec) -> None:
        self.input_spec = spec
        self.feature_cache = FrameFeatureCache()
        self.reset_stream()

    # -- to implement ------------------------------------------------------------------------
    @abc.abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """`(1, T, 3, H, W)` float32 -> `(1, T, H, W)` float32, T == graph frames."""

    def _encode(self, frames: np.ndarray) -> Sequence[Any]:
        """Split backends: `(N, 3, H, W)` float32 -> per-frame features, each with a leading axis N."""
        raise NotImplementedError

    def _decode(self, features: list[Sequence[Any]]) -> np.ndarray:
        """Split backends: one window's per-frame features (each leading axis 1) -> `(1, T, H, W)`."""
        raise NotImplementedError

    def _new_stream(self) -> Any:
        """Streaming backends: the state of a new stream (a causal model's `TemporalCache`)."""
        raise NotImplementedError

    def _step(self, frames: np.ndarray, state: Any) -> np.ndarray:
        """Streaming backends: the stream's next `N` frames `(N, 3, H, W)` -> `(N, H, W)`, `state` updated."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions/buffers."""

    def infer_channels(self, frames: np.ndarray) -> np.ndarray | None:
        """`(T, C, H, W)` per-channel output of a family that stitches several channels (DVD's
        reference), or None when this engine has only `infer`'s averaged output (exported graphs)."""
        return None

    def resolutions(self) -> list[tuple[int, int]] | None:
        """The working (H, W) this engine runs; None = any multiple of `input_spec.multiple_of`."""
        return [(self.input_spec.height, self.input_spec.width)]

    def at_resolution(self, height: int, width: int) -> DepthEngine:
        """The engine for working resolution `height x width` (one of `resolutions()`)."""
        if (height, width) == (self.input_spec.height, self.input_spec.width):
            return self
        raise ConfigError(
            f"this {self.backend or 'engine'} runs {self.input_spec.height}x{self.input_spec.width} only, "
            f"not {height}x{width}"
        )

    # -- shared ------------------------------------------------------------------------------
    @property
    def supports_reuse(self) -> bool:
        """True when `infer(frame_ids=...)` reuses per-frame work (the backend has split graphs)."""
        return False

    def _reuses(self, frames: int) -> bool:
        """Whether a window of `frames` frames runs on the split graphs (default: any length). A backend whose
        window graph was exported at one length runs other lengths, a dynamic-frames graph's, whole."""
        return True

    @property
    def streams(self) -> bool:
        """True when `infer(frame_ids=...)` runs a causal model as a stream: each new frame once,
        attending to the stream's earlier frames (`_new_stream`, `_step`)."""
        return False

    def reset_stream(self) -> None:
        """Forget the current stream: cached per-frame work, a causal model's past frames."""
        self.feature_cache.clear()
        self._stream: Any = None
        self._stream_out: dict[Hashable, np.ndarray] = {}
        self._stream_last: Any = None

    def infer(self, frames: np.ndarray, frame_ids: Sequence[Hashable] | None = None) -> np.ndarray:
        spec = self.input_spec
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"infer expects (T, H, W, 3) RGB frames, got shape {frames.shape}")
        t, h, w, _ = frames.shape
        if (h, w) != (spec.height, spec.width):
            raise InputError(f"frames are {h}x{w}, the model works at {spec.height}x{spec.width}; resize first")
        longest = spec.max_frames if spec.dynamic_frames else spec.frames
        if t < 1 or (longest is not None and t > longest):
            raise InputError(f"window of {t} frames; this model accepts 1..{longest}{spec.window_limit_fix()}")
        lo, hi = spec.value_range
        if frames.dtype == np.uint8:
            x = frames.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
        else:
            x = frames.astype(np.float32, copy=False)
        n = t if spec.dynamic_frames else spec.frames
        if n > t:  # pad by repeating the last frame; its outputs are discarded
            x = np.concatenate([x, np.repeat(x[-1:], n - t, axis=0)], axis=0)
        batch = np.ascontiguousarray(x.transpose(0, 3, 1, 2)[None])
        if frame_ids is not None and self.streams:
            out = self._infer_streaming(batch[0], window_ids(frame_ids, t, n))
        elif frame_ids is not None and self.supports_reuse and self._reuses(n):
            out = self._infer_reusing(batch[0], window_ids(frame_ids, t, n))
        else:
            out = self._run(batch)
        return _checked_shape(np.asarray(out), n, spec)[:t]

    def _infer_reusing(self, frames: np.ndarray, ids: list[Hashable]) -> np.ndarray:
        """`(n, 3, H, W)` window with one identity per slot -> `(1, n, H, W)`, encoding new frames only."""
        cache = self.feature_cache
        new = cache.missing(ids)
        if new:
            first = {}
            for slot, i in enumerate(ids):
                first.setdefault(i, slot)
            feats = self._encode(np.ascontiguousarray(frames[[first[i] for i in new]]))
            for j, i in enumerate(new):
                cache.put(i, tuple(f[j : j + 1] for f in feats))
        out = self._decode(cache.get(ids, new))
        cache.retain(ids)
        return out

    def _infer_streaming(self, frames: np.ndarray, ids: list[Hashable]) -> np.ndarray:
        """Causal model: frames not seen before are the stream's next frames (in id order); each is
        inferred once, attending to the stream's earlier frames; seen frames keep their output."""
        new = list(dict.fromkeys(i for i in ids if i not in self._stream_out))
        last = self._stream_last
        if last is not None and any(isinstance(i, int) and i <= last for i in new):
            self.reset_stream()  # the ids restarted: a new stream that was not announced
            new = list(dict.fromkeys(ids))
        if all(isinstance(i, int) for i in new) and new != sorted(new):
            raise InputError(f"a stream's new frames must come in order, got ids {new}")
        if new:
            if self._stream is None:
                self._stream = self._new_stream()
            out = self._step(np.ascontiguousarray(frames[[ids.index(i) for i in new]]), self._stream)
            self._stream_out.update(zip(new, out, strict=True))
            self._stream_last = new[-1]
        self.feature_cache.misses += len(new)
        self.feature_cache.hits += len(set(ids)) - len(new)
        result = np.stack([self._stream_out[i] for i in ids])[None]
        keep = set(ids)
        for i in [i for i in self._stream_out if i not in keep]:
            del self._stream_out[i]
        return result

    def warmup(self, runs: int = 1) -> None:
        dummy = np.zeros((self.input_spec.frames, self.input_spec.height, self.input_spec.width, 3), np.uint8)
        for _ in range(runs):
            self.infer(dummy)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "reuse": self.supports_reuse, "streams": self.streams,
                **self.input_spec.to_dict()}  # fmt: skip

    def __enter__(self) -> DepthEngine:
        return self

    def __exit__(self, *exc: object) -> bool:
        self.close()
        return False


def _checked_shape(out: np.ndarray, n: int, spec: InputSpec) -> np.ndarray:
    """`out` as `(n, H, W)` float32 (fp16 and float64 outputs converted), or `ModelOutputError` naming both shapes:
    a reshape alone raised numpy's bare "cannot reshape array" for a half-resolution output, and silently
    scrambled an output of the right size in another layout (`(W, H)`) into garbage depths."""
    h, w = spec.height, spec.width
    if out.ndim < 3 or out.shape[-2:] != (h, w) or out.size != n * h * w:
        raise ModelOutputError(
            f"the model output shape {tuple(out.shape)}, its input spec declares {n} frames of {h}x{w} "
            f"((1, {n}, {h}, {w})): export the model at the resolution of its spec (or fix height/width in its .json)"
        )
    return out.astype(np.float32, copy=False).reshape(n, h, w)
