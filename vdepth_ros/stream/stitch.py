"""Causal stitching of affine-ambiguous disparity windows into one consistent stream.

`Stitcher` fits each window to what is already output (chain: its overlap frames against the
accumulated, blended output, as DVD does; keyframe: its anchor and keyframe slots against their
stored aligned values, as VDA/GemDepth do; graph: `stream.graph.CausalGraphAligner`),
optionally clamps at 0 (the papers' post-processing), then crossfades linearly over the overlap.
Frames the next window will revise are *provisional*; the others, and the revised ones once
blended, are *final*. The offline path (`DepthPipeline.run_offline`) hands its solved affines in
(`affine=`) and its own crossfade rule (`crossfade=blend_weights`: every overlap frame a blend; the
stream's is the papers' `crossfade_weights`), so the rest of the stitching is the same in both
modes. Every window's agreement with the stream it continues is measured the same
way in every mode (`WindowHealth`: residual on the overlap, scale change).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vdepth_ros.errors import ConfigError
from vdepth_ros.stream.align import (
    DEFAULT_FIT_OPTIONS,
    IDENTITY,
    INVERTED,
    AffineFit,
    FitOptions,
    align_scale_shift,
    sample_valid,
)
from vdepth_ros.stream.graph import CausalGraphAligner
from vdepth_ros.stream.windows import Window

Alignment = Literal["chain_ls", "keyframe", "graph", "none"]
Status = Literal["provisional", "final"]


def crossfade_weights(n: int) -> np.ndarray:
    """Weight of the *new* window on each of `n` overlap frames: `linspace(0, 1, n)`.

    The first overlap frame is 100 % the old output and the last 100 % the new window
    (DVD `alpha = linspace(0, 1, O)`; DepthCrafter `w = linspace(0, 1, o)`).
    """
    return np.linspace(0.0, 1.0, n, dtype=np.float64)


def blend_weights(n: int) -> np.ndarray:
    """Weight of the *new* window on each of `n` overlap frames: `(i + 0.5) / n` (the offline rule).

    The papers' ramp, half a frame off its ends, so every overlap frame blends both windows'
    readings: `linspace(0, 1, n)` gives the first overlap frame wholly to the old window and the
    last wholly to the new one, which on the bundled 8/4 layout (2 overlap frames: 0 and 1) is a
    switch of window, not a blend (here 1/4 and 3/4), and on one overlap frame (an anchor layout
    of overlap 3) drops the new window's reading (here 1/2). `run_offline` stitches with it
    (`pipeline_offline.OFFLINE_CROSSFADE`); chosen on the development data against a bar written
    before the run (docs/alignment.md, "Blending every overlap frame offline").
    """
    return (np.arange(n, dtype=np.float64) + 0.5) / n


def blend(old: np.ndarray, new: np.ndarray, weight_new: float) -> np.ndarray:
    """`(1 - w) * old + w * new`; where one side is NaN the other is used. float32 `(H, W)`."""
    out = old + np.float32(weight_new) * (new - old)
    holes = np.isnan(out)
    if holes.any():
        out[holes] = np.where(np.isnan(old[holes]), new[holes], old[holes])
    return out


_HEALTH_POINTS = 16384  # pixels compared per window (an even stride over the overlap frames)


@dataclass(frozen=True)
class WindowHealth:
    """How well a window, once aligned, agrees with the stream it continues (any alignment mode).

    Compared on the overlap frames the window blends into, before blending: the stream's output
    so far against the aligned new window, on an even pixel subsample.

    Attributes:
        residual: robust (MAD) sigma of the difference, relative to the stream's median disparity
            there (0.02 = 2 %).
        scale_change: this window's scale over the previous window's (1 = unchanged raw scale).
        compared: pixels compared (0: nothing to compare, e.g. the first window of a stream).
    """

    residual: float = 0.0
    scale_change: float = 1.0
    compared: int = 0


NO_OVERLAP = WindowHealth()


def overlap_health(
    stream: list[np.ndarray],
    aligned: list[np.ndarray],
    scale_change: float = 1.0,
    fitted: list[np.ndarray] | None = None,
) -> WindowHealth:
    """`WindowHealth` of aligned frames against the stream's output of the same frames; with
    `fitted` (the same frames as the fit saw them), only pixels finite there are compared."""
    if not stream:
        return WindowHealth(scale_change=scale_change)
    step = max(1, len(stream) * stream[0].size // _HEALTH_POINTS)  # subsample before copying
    a = np.concatenate([np.ravel(f)[::step] for f in stream])
    b = np.concatenate([np.ravel(f)[::step] for f in aligned])
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0)
    if fitted is not None:
        ok &= np.isfinite(np.concatenate([np.ravel(f)[::step] for f in fitted]))
    if not ok.any():
        return WindowHealth(scale_change=scale_change)
    return WindowHealth(
        residual=1.4826 * float(np.median(np.abs(b[ok] - a[ok]))) / float(np.median(a[ok])),
        scale_change=scale_change,
        compared=int(np.count_nonzero(ok)),
    )


@dataclass
class StitchedFrame:
    """One output frame of the stitcher.

    Attributes:
        index: frame index.
        disparity: `(H, W)` float32 aligned disparity in the stream's canonical scale, NaN invalid.
        status: "provisional" (a later window will revise it) or "final".
        window: index of the newest window that contributed.
        fit: the alignment of that window.
        health: that window's agreement with the stream before it (`WindowHealth`).
    """

    index: int
    disparity: np.ndarray
    status: Status
    window: int
    fit: AffineFit
    health: WindowHealth = NO_OVERLAP


def mean_channels(frames: list[StitchedFrame]) -> list[StitchedFrame]:
    """Frames stitched with channels (`(C, H, W)` disparity) as their channel mean `(H, W)`, the
    others as they are: DVD averages its three decoded channels after stitching them."""
    return [
        dataclasses.replace(f, disparity=f.disparity.mean(axis=0, dtype=np.float32)) if f.disparity.ndim == 3 else f
        for f in frames
    ]


class Stitcher:
    """Causal stitcher (see module docstring).

    Args:
        alignment: "chain_ls", "keyframe", "graph" (the stitcher's own `CausalGraphAligner`, or
            the affines the caller passes, e.g. `GlobalAligner`'s offline) or "none" (metric models:
            crossfade only).
        options: fit options (method, robust weights, scale clip, subsampling).
        clamp_negative: set aligned values < 0 to 0 (DVD and VDA post-processing). The canonical
            frame's 0 is the segment's first window's, not infinity: content farther than
            anything that window saw maps below it, and clamping collapses it to one value.
            The pipeline sets it only in `inference: reference`; otherwise it clamps its relative
            `disparity` output after the metric conversion (`DepthPipeline`).
        anchor_refresh: keyframe mode only. The papers keep frame 0 as the anchor forever; with
            this on, when fewer than `anchor_min_inliers` of the anchor's pixels agree with the
            fit (the scene no longer looks like frame 0), the newest settled frame of the
            current window becomes the anchor. This departs from VDA/GemDepth and is off by default.
        anchor_min_inliers: threshold for `anchor_refresh`.
        graph_lag: graph mode only: earlier windows re-estimated with each new one
            (`CausalGraphAligner`).
        crossfade: the new window's weight on each of `n` overlap frames: `crossfade_weights`
            (the papers', the stream's) or `blend_weights` (offline).
    """

    def __init__(
        self,
        alignment: Alignment = "chain_ls",
        options: FitOptions = DEFAULT_FIT_OPTIONS,
        *,
        clamp_negative: bool = False,
        anchor_refresh: bool = False,
        anchor_min_inliers: float = 0.5,
        graph_lag: int = 8,
        crossfade: Callable[[int], np.ndarray] = crossfade_weights,
    ) -> None:
        if alignment not in ("chain_ls", "keyframe", "graph", "none"):
            raise ConfigError(f"alignment must be chain_ls|keyframe|graph|none, got {alignment!r}")
        self.alignment, self.options = alignment, options
        self.clamp_negative, self.crossfade = clamp_negative, crossfade
        self.anchor_refresh, self.anchor_min_inliers = anchor_refresh, float(anchor_min_inliers)
        self.graph = CausalGraphAligner(options, lag=graph_lag) if alignment == "graph" else None
        self.reset()

    def reset(self) -> None:
        """Forget all output (stream restart)."""
        self._tail: dict[int, StitchedFrame] = {}  # provisional frames, as output
        self._refs: dict[int, np.ndarray] = {}
        self._last_scale: float | None = None
        self._anchor: int | None = None
        self.last_fit: AffineFit = IDENTITY
        self._last_applied: AffineFit = IDENTITY  # the newest window's affine whose frames were stitched
        self.degenerate_fits = 0
        self.anchor_refreshes = 0
        if self.graph is not None:
            self.graph.reset()

    @property
    def anchor(self) -> int | None:
        """Current anchor frame (keyframe mode), or None."""
        return self._anchor

    @property
    def pending(self) -> set[int]:
        """Frames output as provisional and not yet settled."""
        return set(self._tail)

    # -- fitting ------------------------------------------------------------------------------
    def _fit(self, window: Window, disp: np.ndarray) -> AffineFit:
        if self.graph is not None:
            return self.graph.add(window, disp)  # copies the raw output before it is aligned in place
        if self.alignment == "none" or window.index == 0:
            return IDENTITY
        if self.alignment == "chain_ls":
            pos = [p for p in range(window.n_context, len(window.slots)) if window.slots[p] in self._tail]
            ref = [self._tail[window.slots[p]].disparity for p in pos]
        else:
            pos = [p for p in range(window.n_context) if window.slots[p] in self._refs]
            ref = [self._refs[window.slots[p]] for p in pos]
        if not pos:
            fit = AffineFit(degenerate=True, inlier_fraction=0.0, reason="no frames shared with the output so far")
        else:
            fit = align_scale_shift(disp[pos], np.stack(ref), options=self.options)
        return self._carried(fit) if fit.degenerate and INVERTED not in fit.reason else fit

    def _carried(self, fit: AffineFit) -> AffineFit:
        """A window that cannot be fitted (its shared frames NaN after a window of no depth, a blank wall)
        continues in the scale of the window before, as `graph` does: (1, 0) put it at the model's raw
        scale, a jump of the whole stream (chain_ls after an all-NaN window never found its way back)."""
        last = self._last_applied
        return dataclasses.replace(
            fit, scale=last.scale, shift=last.shift, reason=f"{fit.reason}; continues in the scale of the window before"
        )

    def _anchor_agrees(self, window: Window, disp: np.ndarray, fit: AffineFit) -> bool:
        """Fraction of anchor pixels within 3 sigma of the fit >= anchor_min_inliers."""
        if fit.degenerate or self._anchor is None or self._anchor not in self._refs:
            return True
        p = window.slots.index(self._anchor)
        c, r = sample_valid(disp[p], self._refs[self._anchor], None, self.options.max_points, self.options.pixels)
        if c.size == 0:
            return False
        ok = np.abs(r - (fit.scale * c + fit.shift)) <= 3.0 * max(fit.residual, 1e-12)
        return float(ok.mean()) >= self.anchor_min_inliers

    # -- stitching ----------------------------------------------------------------------------
    def add(
        self,
        window: Window,
        disparity: np.ndarray,
        affine: AffineFit | None = None,
        *,
        inplace: bool = False,
        fit_on: np.ndarray | None = None,
    ) -> list[StitchedFrame]:
        """Stitch one window's model output.

        Args:
            window: the scheduled window.
            disparity: `(len(window.slots)[+pad], H, W)` model output (padding outputs are cut), or
                `(..., C, H, W)` with C channels kept through the fit (over all channels' pixels),
                clamp and crossfade (DVD's reference; `mean_channels` for the output).
            affine: use this affine instead of fitting (offline mode: the smoother's).
            inplace: the caller hands `disparity` over (e.g. a fresh engine output): align it in
                place instead of allocating a new window array (saves ~60 % of the apply cost).
            fit_on: the same output as the fits and the fit health should see it, NaN where a
                frame shows no scene (`pipeline_types.fit_input`: a rectified image's lens border,
                where a model's made-up values follow no window's affine; past half the image
                they outvote the scene in a robust fit). Default: `disparity`. The stitched
                values keep the model's numbers there (the pipeline masks its outputs).

        Returns:
            Frames in increasing index order; settled frames as "final", frames the next window
            will revise as "provisional"; blended frames from the previous window come first.
        """
        n = len(window.slots)
        disp = np.asarray(disparity, dtype=np.float32)
        if disp.ndim not in (3, 4) or disp.shape[0] < n:
            raise ValueError(f"window {window.index} has {n} slots, got disparity of shape {disp.shape}")
        disp = disp[:n]
        seen = disp if fit_on is None else np.asarray(fit_on, dtype=np.float32)[:n]
        if seen.shape != disp.shape:
            raise ValueError(f"fit_on has shape {seen.shape}, the window's output {disp.shape}")
        fit = affine if affine is not None else self._fit(window, seen)
        if fit.degenerate:
            self.degenerate_fits += 1
        self.last_fit = fit
        refresh = (
            self.alignment == "keyframe"
            and affine is None
            and self.anchor_refresh
            and window.index > 0
            and not self._anchor_agrees(window, seen, fit)
        )
        own = inplace and disp.flags.writeable and disp.dtype == np.float32
        if INVERTED in fit.reason:  # near and far swapped against the stream: no affine of it is depth, no estimate
            disp = np.full(disp.shape, np.nan, np.float32)
            own = True
        else:
            self._last_applied = fit
        aligned = fit.apply(disp, out=disp if own else None)
        if self.clamp_negative:
            np.maximum(aligned, 0.0, out=aligned)  # NaN stays NaN

        out: list[StitchedFrame] = []
        out_pos = range(window.n_context, n)
        frames_here = {window.slots[p] for p in out_pos}
        # Provisional frames this window does not revise are settled as they are.
        for f in [f for f in self._tail if f not in frames_here]:
            sf = self._tail.pop(f)
            out.append(StitchedFrame(f, sf.disparity, "final", sf.window, sf.fit, sf.health))
        overlap = [p for p in out_pos if window.slots[p] in self._tail]
        change = 1.0 if self._last_scale is None else fit.scale / self._last_scale
        self._last_scale = fit.scale
        health = overlap_health(
            [self._tail[window.slots[p]].disparity for p in overlap],
            [aligned[p] for p in overlap],
            change,
            None if fit_on is None else [seen[p] for p in overlap],
        )
        weights = self.crossfade(len(overlap))
        first_prov = n - window.n_provisional if window.n_provisional else n
        new_tail: dict[int, StitchedFrame] = {}
        values: dict[int, np.ndarray] = {}
        k = 0
        settled = window.n_context + window.overlap  # before this slot: output by earlier windows
        for p in out_pos:
            f = window.slots[p]
            if p < settled and f not in self._tail:
                continue  # already final (a moved-back last window re-covers them): context only
            if k < len(overlap) and overlap[k] == p:
                value = blend(self._tail[f].disparity, aligned[p], float(weights[k]))
                k += 1
            else:
                value = aligned[p]  # a view: `aligned` is this call's own array
            values[f] = value
            status: Status = "provisional" if p >= first_prov else "final"
            frame = StitchedFrame(f, value, status, window.index, fit, health)
            if status == "provisional":
                new_tail[f] = frame
            out.append(frame)
        self._tail = new_tail

        if self.alignment == "keyframe" and affine is None:
            self._update_refs(window, values, refresh)
        return out

    def _update_refs(self, window: Window, values: dict[int, np.ndarray], refresh: bool) -> None:
        # References are copied: `values` are views into the whole window array.
        if self._anchor is None:
            self._anchor = window.slots[0]
            self._refs[self._anchor] = values[self._anchor].copy()
        elif refresh and window.new_frames:
            # The newest settled frame: most likely to share content with the windows to come.
            self._anchor = window.slots[max(window.n_context, len(window.slots) - window.n_provisional - 1)]
            self._refs = {self._anchor: values[self._anchor].copy()}
            self.anchor_refreshes += 1
        keep = {self._anchor: self._refs[self._anchor]}
        for f in window.next_context:
            keep[f] = values[f].copy() if f in values else self._refs[f]
        self._refs = keep

    def finish(self) -> list[StitchedFrame]:
        """End of stream: every provisional frame left becomes final, unchanged."""
        out = [StitchedFrame(f, sf.disparity, "final", sf.window, sf.fit, sf.health) for f, sf in self._tail.items()]
        self._tail = {}
        return out
