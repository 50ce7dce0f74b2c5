"""`DepthPipeline`'s way out: which stitched frames the `publish` policy outputs now (`_select`), and
each output `DepthFrame` (`_depth_frame`): disparity upsampled to the output resolution, NaN outside
the lens's view, turned back to the camera's pixels (`image_rotation`), metric depth (REP 118) and
the organized cloud, then the relative disparity clamped at 0 (`pipeline.py`'s docstring: negative
disparity), read-only arrays, with its `FitInfo`.

A mixin of `DepthPipeline` (`pipeline.py`, which sets the attributes these steps read: `config`,
`scale_source`, `depth_limits`, `cloud`, `stats`, `_records`, `_last_emitted`, `_index_base`, `_turns`,
`_output_so_far`).
"""

from __future__ import annotations

import time

import numpy as np

from vdepth_ros.pipeline_input import _turned
from vdepth_ros.pipeline_types import DepthFrame, FitInfo, _Record
from vdepth_ros.resize import upsample
from vdepth_ros.stream.align import AffineFit
from vdepth_ros.stream.depth import depth_from_disparity
from vdepth_ros.stream.stitch import StitchedFrame


def _readonly(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    v = a.view()
    v.flags.writeable = False
    return v


class OutputSteps:
    """Frames out: `_select`, `_depth_frame`, `_fit_info` (module docstring)."""

    def _select(self, stitched: list[StitchedFrame]) -> list[DepthFrame]:
        policy = self.config.publish
        out = []
        for sf in stitched:
            if policy == "provisional":
                emit = sf.index > self._last_emitted
            elif policy == "final":
                emit = sf.status == "final"
            else:
                emit = True
            if emit:
                out.append(self._depth_frame(sf))
                if self._output_so_far is not None:  # (kept should a later frame of the step fail)
                    self._output_so_far.append(out[-1])
            self._last_emitted = max(self._last_emitted, sf.index) if emit else self._last_emitted
        return out

    def _depth_frame(self, sf: StitchedFrame, record: _Record | None = None) -> DepthFrame:
        t0 = time.perf_counter()
        rec = record if record is not None else self._records[sf.index]
        rgb = rec.rgb_out
        assert rgb is not None
        h, w = rgb.shape[:2]
        disp = upsample(sf.disparity, h, w, self.config.upsample_method, guide=rgb)
        if rec.valid_out is not None:  # outside the lens's view: no estimate (REP 118 NaN), no cloud point
            if np.may_share_memory(disp, sf.disparity):
                disp = disp.copy()
            disp[~rec.valid_out] = np.nan
        if self._turns:  # back to the camera's pixels (`image_rotation`): the camera is the camera's own
            disp, rgb = _turned(disp, -self._turns), _turned(rgb, -self._turns)
            h, w = rgb.shape[:2]
        camera = rec.camera.scaled(w, h) if rec.camera is not None else None
        metric = self.scale_source.current
        depth = points = colors = None
        if metric is not None:
            near, far = self.depth_limits
            depth = depth_from_disparity(disp, metric.scale, metric.shift, min_depth=near, max_depth=far)
        elif self.scale_source.kind == "range" and not np.isfinite(disp).any():
            # nothing in it carries depth (a covered lens, a collapsed prediction: NaN, `WindowSteps._usable`), so
            # no range mapping can be decided from it: its depth is "no estimate" everywhere (REP 118 NaN), as
            # every such pixel's is later, so /depth and /points go on at the camera's rate instead of stopping
            depth = np.full(disp.shape, np.nan, np.float32)
        if depth is not None and camera is not None and self.cloud is not None:
            points, colors = self.cloud.build(depth, camera, rgb if self.config.cloud_colors else None)
        # relative output only, after the metric conversion (NaN stays); never in the stitcher's
        # own array (at the working size `upsample` returns it, and provisional frames are blended later)
        disp = np.maximum(disp, 0.0, out=None if np.may_share_memory(disp, sf.disparity) else disp)
        fit = self._fit_info(sf, metric)
        self.stats.frames_out += 1
        self.stats.last_fit = fit
        self.stats.post_seconds += time.perf_counter() - t0
        return DepthFrame(
            index=self._index_base + sf.index,
            stamp_ns=rec.stamp_ns,
            meta=rec.meta,
            status=sf.status,
            disparity=_readonly(disp),
            depth=_readonly(depth),
            camera=camera,
            points=_readonly(points),
            colors=_readonly(colors),
            fit=fit,
            rgb=_readonly(rgb),
        )

    def _fit_info(self, sf: StitchedFrame, metric: AffineFit | None) -> FitInfo:
        fit, health = sf.fit, sf.health
        coverage = getattr(self.scale_source, "coverage", None) if metric is not None else None
        near, far = (None, None) if coverage is None else coverage
        return FitInfo(
            scale=fit.scale,
            shift=fit.shift,
            residual=health.residual,
            inlier_fraction=fit.inlier_fraction,
            degenerate=fit.degenerate,
            scale_source=self.scale_source.kind,
            window=sf.window,
            metric_scale=None if metric is None else metric.scale,
            metric_shift=None if metric is None else metric.shift,
            reason=fit.reason,
            scale_change=health.scale_change,
            metric_samples_near=near,
            metric_samples_far=far,
            metric_extrapolated=None if coverage is None else getattr(self.scale_source, "extrapolated", None),
        )
