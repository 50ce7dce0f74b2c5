"""Output resolution and upsampling on the development set: accuracy at the model's resolution vs the
camera's, depth-edge accuracy per upsample method, their cost, and what range mode outputs.

Runs the real `DepthPipeline` (bundled default model unless `--model`, causal, as the node) on the
development set only: HoloLens (`../shared/evaldata`) and held-out renders of our generator (seeds
990001.., as `benchmarks/alignment_dev.py`). 7-Scenes, the acceptance set, is not offered.

Per sequence and output, the papers' protocol (`eval.metrics.evaluate_sequence`: one disparity affine
per sequence, AbsRel and δ1) and the depth-boundary F1 (`eval.metrics.boundary_f1`, Depth Pro's
occluding contours, on the aligned depth, mean over frames):

* "model": `output_resolution: model` (about the working resolution's pixel count, the camera's
  aspect), scored against the GT sampled at that resolution (nearest pixel centre);
* "input/<method>": `output_resolution: input`, the stream's working-resolution disparity upsampled
  by each `upsample_method` (one stream per sequence, so only the upsampler differs), scored at
  the GT's own (the camera's) resolution;
* "oracle/<method>": each method upsampling the GT's own disparity area-averaged to the working
  resolution (16 frames per sequence): the upsampler's effect without the model's own blur. The
  edge_aware constants (`resize.EDGE_SPREAD`, `EDGE_SIGMA`) were chosen on this oracle on the renders.

Then the cost of each method (median ms of `--repeats` calls) at 640x480 and 1280x720 from the
default model's working resolutions, and the values range mode (default near/far) publishes on each
sequence: finite / +Inf / -Inf / NaN fractions and the finite depth's 2nd-98th percentiles.

    .venv/bin/python benchmarks/upsample_dev.py --json out/upsample_dev.json          # ~4 min on 2 cores
    .venv/bin/python benchmarks/upsample_dev.py --quick                               # 2 renders, 32 frames
    .venv/bin/python benchmarks/upsample_dev.py --methods bilinear edge_snap --snap-ratios 0.1 0.2

`--snap-ratios` adds "edge_snap@R" rows: edge_snap with `resize.SNAP_RATIO` = R (how it was chosen).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alignment_dev import render_sequences

from vdepth_ros import resize
from vdepth_ros.config import PipelineConfig
from vdepth_ros.eval.datasets import EvalSequence, load_dataset
from vdepth_ros.eval.metrics import (
    aligned_depth,
    boundary_f1,
    evaluate_sequence,
    fit_disparity_affine,
    valid_mask,
)
from vdepth_ros.paths import default_model_dir, evaldata_dir
from vdepth_ros.pipeline import DepthPipeline, FrameInput
from vdepth_ros.resize import UPSAMPLE_METHODS, upsample
from vdepth_ros.runtime import create_engine
from vdepth_ros.runtime.engine import DepthEngine

#: the methods compared (main() sets them from --methods and --snap-ratios)
METHODS: list[str] = list(UPSAMPLE_METHODS)


@contextlib.contextmanager
def method_variant(name: str) -> Iterator[str]:
    """ "edge_snap@R" runs edge_snap with SNAP_RATIO R; yields the method name to pass on."""
    method, _, ratio = name.partition("@")
    if not ratio:
        yield method
        return
    defaults = resize.edge_snap_upsample.__kwdefaults__
    assert defaults is not None
    saved = defaults["ratio"]
    defaults["ratio"] = float(ratio)
    try:
        yield method
    finally:
        defaults["ratio"] = saved


class CachedEngine(DepthEngine):
    """Runs each distinct window once: every output setting sees the same windows, so the model
    output is computed once per sequence and only the post-processing differs between runs."""

    def __init__(self, inner: DepthEngine, cache: dict[bytes, np.ndarray] | None = None) -> None:
        super().__init__(inner.input_spec)
        self.inner, self.backend = inner, inner.backend
        self.cache = {} if cache is None else cache

    def _run(self, batch: np.ndarray) -> np.ndarray:
        key = batch.shape[-2:].__repr__().encode() + batch.tobytes()[::97]
        if key not in self.cache:
            self.cache[key] = self.inner._run(batch)
        return self.cache[key]

    def resolutions(self) -> list[tuple[int, int]] | None:
        return self.inner.resolutions()

    def at_resolution(self, height: int, width: int) -> DepthEngine:
        inner = self.inner.at_resolution(height, width)
        return self if inner is self.inner else CachedEngine(inner, self.cache)


def stitched(engine: DepthEngine, seq: EvalSequence) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame, the working-resolution disparity and the guide image exactly as the causal
    pipeline (output at the input resolution) hands them to the upsampler.

    Every method then upsamples the same stream. Separate pipeline runs per method were not
    comparable: their scores moved by up to 0.001 AbsRel with the runs' order, not the method."""
    import vdepth_ros.pipeline_output as output_module
    import vdepth_ros.pipeline_windows as windows_module

    calls: list[tuple[np.ndarray, np.ndarray]] = []
    real = output_module.upsample

    def capture(values: np.ndarray, height: int, width: int, method: str = "", guide: Any = None) -> np.ndarray:
        calls.append((np.array(values, dtype=np.float32), guide))
        return real(values, height, width, "bilinear", guide=guide)

    cfg = PipelineConfig(publish="final", cloud_stride=0, output_resolution="input", scale_source="none")
    pipe = DepthPipeline(cfg, engine)
    order: list[int] = []  # frame index of each upsampling call (one per published frame)
    output_module.upsample = windows_module.upsample = capture  # every place the pipeline upsamples
    try:
        for k in range(seq.num_frames):
            order += [f.index for f in pipe.push(FrameInput(rgb=seq.rgb[k], stamp_ns=round(k * 1e9 / seq.fps)))]
        order += [f.index for f in pipe.flush()]
    finally:
        output_module.upsample = windows_module.upsample = real
    by_index = dict(zip(order, calls, strict=True))
    return [by_index[k] for k in range(seq.num_frames)]


def run(engine: DepthEngine, seq: EvalSequence, **params: Any) -> list[Any]:
    """The causal pipeline's final frames of `seq` with these parameters."""
    cfg = PipelineConfig(**{"publish": "final", "cloud_stride": 0, **params})
    pipe = DepthPipeline(cfg, engine)
    out: dict[int, Any] = {}
    for k in range(seq.num_frames):
        for f in pipe.push(FrameInput(rgb=seq.rgb[k], stamp_ns=round(k * 1e9 / seq.fps))):
            out[f.index] = f
    for f in pipe.flush():
        out[f.index] = f
    return [out[k] for k in range(seq.num_frames)]


def nearest(values: np.ndarray, h: int, w: int) -> np.ndarray:
    """GT sampled at pixel centres of an `h x w` grid (no mixing of depths across edges)."""
    H, W = values.shape[-2:]
    ys = np.minimum(((np.arange(h) + 0.5) * H / h).astype(int), H - 1)
    xs = np.minimum(((np.arange(w) + 0.5) * W / w).astype(int), W - 1)
    return values[..., ys[:, None], xs[None, :]]


def score(disp: np.ndarray, gt: np.ndarray, max_depth: float) -> dict[str, float]:
    m = evaluate_sequence(disp, gt, max_depth)
    valid = valid_mask(gt, max_depth)
    s, t = fit_disparity_affine(np.nan_to_num(disp, nan=1e-3), gt, valid)
    depth = aligned_depth(np.nan_to_num(disp, nan=1e-3), s, t, max_depth)
    f1 = [b for k in range(len(gt)) if (b := boundary_f1(depth[k], gt[k], valid[k])) is not None]
    return {"abs_rel": m.abs_rel, "delta1": m.delta1, "boundary_f1": float(np.mean(f1)) if f1 else float("nan")}


def oracle(seq: EvalSequence, working: tuple[int, int], frames: int) -> dict[str, dict[str, float]]:
    """Each method upsampling a perfect working-resolution depth: the GT disparity area-averaged to
    the working resolution (what a model without blur of its own would output), scored at the
    camera's resolution. This isolates the upsampler from the model's own smoothness."""
    import cv2

    out: dict[str, dict[str, float]] = {}
    h, w = working
    picks = range(0, seq.num_frames, max(1, seq.num_frames // frames))
    for name in METHODS:
        f1s, rels = [], []
        for k in picks:
            gt = seq.depth[k]
            valid = valid_mask(gt, seq.max_depth)
            disp = np.where(valid, 1.0 / np.maximum(gt, 1e-3), 0.0).astype(np.float32)
            small = cv2.resize(disp, (w, h), interpolation=cv2.INTER_AREA)
            with method_variant(name) as method:
                up = upsample(small, *gt.shape, method, guide=seq.rgb[k])
            depth = 1.0 / np.maximum(up, 1e-3)
            if (b := boundary_f1(depth, gt, valid)) is not None:
                f1s.append(b)
            rels.append(float(np.mean(np.abs(depth[valid] - gt[valid]) / gt[valid])))
        out[name] = {"abs_rel": float(np.mean(rels)), "boundary_f1": float(np.mean(f1s)) if f1s else float("nan")}
    return out


def range_values(frames: list[Any]) -> dict[str, float]:
    d = np.stack([f.depth for f in frames])
    finite = d[np.isfinite(d)]
    lo, hi = np.percentile(finite, [2, 98]) if finite.size else (np.nan, np.nan)
    n = d.size
    return {
        "finite": float(finite.size / n),
        "+inf": float(np.count_nonzero(d == np.inf) / n),
        "-inf": float(np.count_nonzero(d == -np.inf) / n),
        "nan": float(np.count_nonzero(np.isnan(d)) / n),
        "p2_m": float(lo),
        "p98_m": float(hi),
    }


def evaluate(engine: DepthEngine, seq: EvalSequence) -> dict[str, Any]:
    res: dict[str, Any] = {"size": list(seq.depth.shape[1:])}
    frames = run(engine, seq, output_resolution="model", scale_source="none")
    disp = np.stack([f.disparity for f in frames])
    res["model_size"] = list(disp.shape[1:])
    res["model"] = score(disp, nearest(seq.depth, *disp.shape[1:]), seq.max_depth)
    stream = stitched(engine, seq)
    height, width = seq.depth.shape[1:]
    for name in METHODS:
        with method_variant(name) as method:
            up = np.stack([upsample(values, height, width, method, guide=guide) for values, guide in stream])
        res[f"input/{name}"] = score(up, seq.depth, seq.max_depth)
    res["range_mode"] = range_values(run(engine, seq, output_resolution="input", scale_source="range"))
    pipe = DepthPipeline(PipelineConfig(), engine)
    pipe.push(FrameInput(rgb=seq.rgb[0], stamp_ns=0))
    res["working_size"] = [pipe.height, pipe.width]
    res["oracle"] = oracle(seq, (pipe.height, pipe.width), frames=16)
    return res


def upsample_cost(repeats: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    out: dict[str, dict[str, float]] = {}
    for (h, w), (wh, ww) in (((480, 640), (160, 224)), ((720, 1280), (160, 288))):
        small = cv2_smooth(rng.random((wh, ww), dtype=np.float32))
        guide = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        for name in METHODS:
            ts = []
            with method_variant(name) as method:
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    upsample(small, h, w, method, guide=guide)
                    ts.append(1000 * (time.perf_counter() - t0))
            out.setdefault(f"{w}x{h}", {})[name] = round(statistics.median(ts), 2)
    return out


def cv2_smooth(x: np.ndarray) -> np.ndarray:
    """A depth-like map: smooth regions and steps (so edge_aware has edges to work on)."""
    import cv2

    x = cv2.GaussianBlur(x, (0, 0), 6)
    return np.where(x > np.median(x), 2.0 * x + 1.0, x).astype(np.float32)


def mean_over(results: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        f"oracle/{m}": {
            metric: round(float(np.nanmean([results[k]["oracle"][m][metric] for k in keys])), 4)
            for metric in ("abs_rel", "boundary_f1")
        }
        for m in METHODS
    }
    for output in ["model", *(f"input/{m}" for m in METHODS)]:
        out[output] = {
            metric: round(float(np.nanmean([results[k][output][metric] for k in keys])), 4)
            for metric in ("abs_rel", "delta1", "boundary_f1")
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("--renders", type=int, default=8, help="held-out renders (seeds 990001..)")
    ap.add_argument("--frames", type=int, default=64, help="frames per render")
    ap.add_argument("--hololens-frames", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=20, help="timing repeats per upsample method")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="2 renders of 32 frames, 48 HoloLens frames, 5 repeats")
    ap.add_argument("--methods", nargs="+", choices=UPSAMPLE_METHODS, default=list(UPSAMPLE_METHODS))
    ap.add_argument("--snap-ratios", nargs="*", type=float, default=[], help="edge_snap@R variants")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.renders, args.frames, args.hololens_frames, args.repeats = 2, 32, 48, 5
    METHODS[:] = [*args.methods, *(f"edge_snap@{r:g}" for r in args.snap_ratios)]
    t0 = time.perf_counter()
    seqs = render_sequences(args.renders, args.frames, 240, 320, "rich")
    root = evaldata_dir()
    if root is not None:
        seqs += load_dataset("hololens", root, frames=args.hololens_frames)
    base = create_engine(args.model, threads=args.threads)
    per_seq = {}
    for seq in seqs:
        per_seq[seq.name] = evaluate(CachedEngine(base), seq)
        print(f"{seq.name}: {json.dumps(per_seq[seq.name])}", file=sys.stderr, flush=True)
    renders = [k for k in per_seq if k.startswith("render/")]
    holo = [k for k in per_seq if k.startswith("hololens/")]
    report = {
        "model": args.model,
        "summary": {"renders": mean_over(per_seq, renders), **({"hololens": mean_over(per_seq, holo)} if holo else {})},
        "upsample_ms": upsample_cost(args.repeats),
        "sequences": per_seq,
        "load_average": os.getloadavg(),
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "benchmarks/upsample_dev.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
