"""`vdepth-eval`: the papers' video-depth protocol on real RGB-D video, model and baselines in one run.

For every sequence of every requested dataset it evaluates (see `metrics.py` for the protocol):

* `constant` and `row ramp` - trivial baselines (no model);
* `model offline` - `DepthPipeline.run_offline` (all windows, global affine solve);
* `model stream` - the causal pipeline (`push` + `flush`, what the live node publishes);
* `model per-frame` - the same engine on one frame at a time (T = 1), no stitching.

It writes `results.json` and `results.md` (table + goal checks) to `--out` and prints the table.

    vdepth-eval --datasets 7scenes hololens --out out/eval
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vdepth_ros.errors import ConfigError, ModelLoadError
from vdepth_ros.eval.datasets import DATASETS, EvalSequence, load_dataset
from vdepth_ros.eval.metrics import (
    DepthMetrics,
    constant_prediction,
    evaluate_metric,
    evaluate_per_frame_fit,
    evaluate_sequence,
    row_ramp_prediction,
)
from vdepth_ros.stream.depth import disparity_from_depth

log = logging.getLogger("vdepth.eval")

#: Frames per dataset in the default run (the issue's protocol: 7-Scenes 300, HoloLens 120).
DEFAULT_FRAMES = {"7scenes": 300, "hololens": 120}
#: GT subsampling per dataset (7-Scenes RGB and depth are not precisely registered: evaluate at half res).
DEFAULT_STRIDE = {"7scenes": 2, "hololens": 1, "kitti": 1, "nyu": 1}
BASELINES = ("constant", "row ramp")
POSE_ROW = "model stream + points triangulated with GT poses"
#: rows of metric output scored as they are (`metrics.evaluate_metric`), next to their protocol row
METRIC_SUFFIX = ", metric (no alignment)"


def _to_gt_grid(disp: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Output disparity (NaN invalid) -> GT grid (h, w), bilinear; NaN -> 0 (floored later)."""
    d = np.nan_to_num(np.asarray(disp, np.float32), nan=0.0)
    h, w = size
    if d.shape != (h, w):
        d = cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR)
    return d


def _frames(seq: EvalSequence, sparse_points: int = 0, pose_points: bool = False) -> Iterator[Any]:
    from vdepth_ros.pipeline import FrameInput
    from vdepth_ros.triangulate import PoseTriangulator

    step = round(1e9 / seq.fps)
    if pose_points and seq.poses is None:
        raise ConfigError(f"{seq.name} has no camera poses to triangulate with")
    tri = PoseTriangulator() if pose_points else None
    for i in range(seq.num_frames):
        if tri is not None:
            sparse = tri.push(seq.rgb[i], seq.poses[i], seq.rgb_intrinsics)
        else:
            sparse = sparse_gt_samples(seq, i, sparse_points) if sparse_points > 0 else None
        yield FrameInput(rgb=seq.rgb[i], stamp_ns=i * step, sparse_depth=sparse)


def sparse_gt_samples(seq: EvalSequence, index: int, points: int) -> np.ndarray:
    """A simulated sparse depth sensor: `points` GT depths of frame `index` at random valid GT pixels
    (seeded by the frame index, so every run draws the same ones), as an `(H, W)` float32 map at
    the RGB's resolution with NaN elsewhere (the `FrameInput.sparse_depth` format)."""
    gt = seq.depth[index]
    h, w = gt.shape
    H, W = seq.rgb.shape[1:3]
    ok = np.isfinite(gt) & (gt > 0) & (gt < seq.max_depth)
    if seq.mask is not None:
        ok &= np.asarray(seq.mask, bool)
    ys, xs = np.nonzero(ok)
    out = np.full((H, W), np.nan, np.float32)
    if ys.size == 0:
        return out
    pick = np.random.default_rng(index).choice(ys.size, size=min(points, ys.size), replace=False)
    # GT pixel centres -> RGB pixels (the GT grid may be a subsampled copy of the RGB's)
    u = np.clip(np.rint((xs[pick] + 0.5) * W / w - 0.5).astype(int), 0, W - 1)
    v = np.clip(np.rint((ys[pick] + 0.5) * H / h - 0.5).astype(int), 0, H - 1)
    out[v, u] = gt[ys[pick], xs[pick]]
    return out


#: what the evaluation fixes whatever the params file says: relative output, no cloud, and the working
#: resolution's output resized bilinearly (the protocol's resize) straight to the camera's grid
EVAL_OVERRIDES: dict[str, Any] = {
    "scale_source": "none",
    "cloud_stride": 0,
    "output_resolution": "input",
    "upsample_method": "bilinear",
}


def make_pipeline(engine: Any, params: dict[str, Any] | None = None, base: dict[str, Any] | None = None) -> Any:
    """A `DepthPipeline` from the node's parameters, relative output, no cloud.

    Args:
        engine: the engine under evaluation.
        params: overrides on top of everything (e.g. `scale_source: sparse` for the sparse row).
        base: the node's flat parameters (`vdepth-eval --params`); default: the bundled
            `config/depth.yaml`, as the node, `vdepth-bag` and `vdepth-video` use.
    """
    from vdepth_ros.offline.runner import load_node_params
    from vdepth_ros.pipeline import DepthPipeline

    merged = dict(load_node_params() if base is None else base)
    merged.update(EVAL_OVERRIDES)
    merged.update(params or {})
    return DepthPipeline.from_dict(merged, engine=engine)


class NoMetricFitError(RuntimeError):
    """A metric row's sequence never got a metric fit (e.g. a camera that barely moves gives no
    triangulated points); the row is reported without it."""


def run_offline(
    engine: Any, seq: EvalSequence, params: dict[str, Any] | None = None, base: dict[str, Any] | None = None
) -> np.ndarray:
    """`(T, h, w)` disparity on the GT grid from `DepthPipeline.run_offline` (`make_pipeline` args)."""
    pipe = make_pipeline(engine, params, base)
    out = np.zeros(seq.depth.shape, np.float32)
    seen = np.zeros(seq.num_frames, bool)
    for f in pipe.run_offline(_frames(seq)):
        out[f.index] = _to_gt_grid(f.disparity, seq.gt_size)
        seen[f.index] = True
    if not seen.all():
        raise RuntimeError(f"run_offline returned {seen.sum()} of {seq.num_frames} frames")
    return out


def run_stream(
    engine: Any,
    seq: EvalSequence,
    params: dict[str, Any] | None = None,
    sparse_points: int = 0,
    base: dict[str, Any] | None = None,
    pose_points: bool = False,
) -> np.ndarray:
    """`(T, h, w)` disparity on the GT grid from the causal pipeline: the first output of each frame.

    With `sparse_points` > 0 the pipeline runs with `scale_source: sparse`, fed that many GT depths
    per frame (`sparse_gt_samples`), and the result is its metric output as inverse depth.

    With `pose_points` the sparse depths are instead triangulated from the images with the GT camera
    poses (`triangulate.PoseTriangulator`, as robot odometry would feed the node). Until the
    camera has moved enough for a first metric fit the pipeline outputs no depth; those first frames
    are scored with the first fit that follows (the only use of a later frame)."""
    metric = sparse_points > 0 or pose_points
    if metric:
        params = {**(params or {}), "scale_source": "sparse"}
    pipe = make_pipeline(engine, params, base)
    out = np.zeros(seq.depth.shape, np.float32)
    seen = np.zeros(seq.num_frames, bool)
    frames = []
    for fi in _frames(seq, sparse_points, pose_points):
        frames += pipe.push(fi)
    frames += pipe.flush()
    first_fit = next(((f.fit.metric_scale, f.fit.metric_shift) for f in frames if f.depth is not None), None)
    for f in frames:
        if not seen[f.index]:
            if metric:
                if f.depth is not None:
                    inv = np.nan_to_num(disparity_from_depth(f.depth), nan=0.0)
                elif pose_points and first_fit is not None:
                    inv = np.maximum(np.nan_to_num(first_fit[0] * f.disparity + first_fit[1], nan=0.0), 0.0)
                else:
                    raise NoMetricFitError(f"{seq.name}: no metric fit in any window (too few sparse points)")
                out[f.index] = _to_gt_grid(inv, seq.gt_size)
            else:
                out[f.index] = _to_gt_grid(f.disparity, seq.gt_size)
            seen[f.index] = True
    if not seen.all():
        raise RuntimeError(f"causal pipeline returned {seen.sum()} of {seq.num_frames} frames")
    return out


def run_per_frame(engine: Any, seq: EvalSequence) -> np.ndarray:
    """`(T, h, w)` disparity on the GT grid, the engine run on one frame at a time (no stitching)."""
    spec = engine.input_spec
    out = np.zeros(seq.depth.shape, np.float32)
    for i in range(seq.num_frames):
        rgb = cv2.resize(seq.rgb[i], (spec.width, spec.height), interpolation=cv2.INTER_AREA)
        out[i] = _to_gt_grid(engine.infer(rgb[None])[0], seq.gt_size)
    return out


def _single_frame_engine(model_dir: Path, engine: Any) -> Any:
    """The same weights with a one-frame window (torch, exact T = 1) when the folder has them; else
    `engine` itself (which pads a single frame by repetition)."""
    if not (Path(model_dir) / "config.json").is_file():
        return engine
    from vdepth_ros.runtime import create_engine

    spec = engine.input_spec
    try:
        return create_engine(str(model_dir), backend="torch", frames=1, height=spec.height, width=spec.width)
    except Exception as err:  # e.g. torch missing: fall back to padding
        log.warning("no T=1 torch engine (%s); per-frame runs pad one frame to the window", err)
        return engine


def measure_engine_fps(engine: Any, repeats: int = 3) -> dict[str, float]:
    """Amortised frames/s of full windows: (window - overlap) new frames per `infer` call (median)."""
    spec = engine.input_spec
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (spec.frames, spec.height, spec.width, 3), dtype=np.uint8)
    engine.infer(x)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine.infer(x)
        times.append(time.perf_counter() - t0)
    sec = float(np.median(times))
    new = max(1, int(spec.window) - int(spec.overlap))
    return {"window_s": sec, "frames_per_window": float(spec.frames), "new_frames": float(new), "fps": new / sec}


def evaluate(
    datasets: list[str],
    evaldata: Path,
    *,
    model: str | None = None,
    backend: str = "auto",
    frames: dict[str, int] | None = None,
    stream: bool = True,
    per_frame: bool = True,
    with_model: bool = True,
    threads: int | None = None,
    size: tuple[int, int] | None = None,
    per_frame_fit: bool = False,
    sparse_points: int = 0,
    params_file: str | Path | None = None,
    pose_points: bool = False,
) -> dict[str, Any]:
    """Run the evaluation; returns the JSON-able results dict (see `write_report`).

    `sparse_points` > 0 adds the row "model stream + N sparse GT points": the causal pipeline with
    `scale_source: sparse` fed N GT depths per frame, as a sparse depth sensor would (not a goal row).
    `pose_points` adds "model stream + points triangulated with GT poses": the same, fed depths
    triangulated from the video with the GT camera poses, as robot odometry would (not a goal row).
    Each of the two also gets a row "..., metric (no alignment)": its metric output scored as it is,
    without the per-sequence fit (`metrics.evaluate_metric`).

    `size` (H, W) sets the model's working resolution; only the torch backend can change it (an
    exported graph has a fixed size), so it requires `backend="torch"`. `per_frame_fit` adds the
    diagnostic row "model offline, affine per frame" (`evaluate_per_frame_fit`; same predictions).
    `params_file` is the node parameter YAML the offline and stream runs use (default: the bundled
    `config/depth.yaml`), e.g. to score another `alignment`.
    """
    if size is not None and backend != "torch":
        raise ConfigError(
            f"a working size needs the torch backend (exported graphs have a fixed size), got {backend!r}"
        )
    from vdepth_ros.offline.runner import default_params_path, load_node_params

    node_params = load_node_params(params_file)  # ConfigError on a bad file, before any work
    engine = single = None
    results: dict[str, Any] = {"datasets": {}, "meta": {"model": None, "backend": None}}
    results["meta"]["params_file"] = str(params_file) if params_file else str(default_params_path())
    if with_model:
        from vdepth_ros.paths import default_model_dir
        from vdepth_ros.runtime import create_engine
        from vdepth_ros.runtime.registry import resolve_model

        mdir = Path(resolve_model(model)) if model else default_model_dir()
        opts: dict[str, Any] = {"threads": threads} if threads else {}
        if size is not None:
            opts.update(height=int(size[0]), width=int(size[1]))
        engine = create_engine(str(mdir), backend=backend, **opts)
        results["meta"].update({"model": str(mdir), "backend": engine.backend, "spec": engine.input_spec.to_dict()})
        results["meta"]["speed"] = measure_engine_fps(engine)
        single = _single_frame_engine(mdir, engine)
        results["meta"]["per_frame_engine"] = f"{single.backend}, T={single.input_spec.frames}"
        results["meta"]["pipeline"] = make_pipeline(engine, base=node_params).schedule
    results["meta"]["machine"] = {"cpu_count": __import__("os").cpu_count(), "python": platform.python_version()}
    frames = {**DEFAULT_FRAMES, **(frames or {})}
    for name in datasets:
        kwargs: dict[str, Any] = {"stride": DEFAULT_STRIDE.get(name, 1)}
        if name in frames:
            kwargs["frames"] = frames[name]
        seqs = load_dataset(name, evaldata, **kwargs)
        rows: dict[str, list[DepthMetrics]] = {}
        timing: dict[str, float] = {}
        notes: list[str] = []

        def add(method: str, m: DepthMetrics, rows: dict[str, list[DepthMetrics]] = rows) -> None:
            rows.setdefault(method, []).append(m)

        for seq in seqs:
            log.info("%s: %d frames, GT %s", seq.name, seq.num_frames, seq.gt_size)
            kw = {"intrinsics": seq.intrinsics, "poses": seq.poses, "mask": None}
            mask = None if seq.mask is None else np.broadcast_to(seq.mask, seq.depth.shape)
            kw["mask"] = mask
            add("constant", evaluate_sequence(constant_prediction(seq.depth.shape), seq.depth, seq.max_depth, **kw))
            add("row ramp", evaluate_sequence(row_ramp_prediction(seq.depth.shape), seq.depth, seq.max_depth, **kw))
            if engine is None:
                continue
            t0 = time.perf_counter()
            offline = run_offline(engine, seq, base=node_params)
            add("model offline", evaluate_sequence(offline, seq.depth, seq.max_depth, **kw))
            timing["offline_s"] = timing.get("offline_s", 0.0) + time.perf_counter() - t0
            if per_frame_fit:
                m = evaluate_per_frame_fit(offline, seq.depth, seq.max_depth, mask=mask)
                add("model offline, affine per frame", m)
            if stream:
                t0 = time.perf_counter()
                disp = run_stream(engine, seq, base=node_params)
                add("model stream", evaluate_sequence(disp, seq.depth, seq.max_depth, **kw))
                timing["stream_s"] = timing.get("stream_s", 0.0) + time.perf_counter() - t0
            if sparse_points > 0:
                disp = run_stream(engine, seq, sparse_points=sparse_points, base=node_params)
                row = f"model stream + {sparse_points} sparse GT points"
                add(row, evaluate_sequence(disp, seq.depth, seq.max_depth, **kw))
                add(f"{row}{METRIC_SUFFIX}", evaluate_metric(disp, seq.depth, seq.max_depth, mask=mask))
            if pose_points and seq.poses is not None:
                try:
                    disp = run_stream(engine, seq, pose_points=True, base=node_params)
                except NoMetricFitError as err:
                    notes.append(f"{POSE_ROW}: {err}; the row averages the other sequences")
                    log.warning("%s", err)
                else:
                    add(POSE_ROW, evaluate_sequence(disp, seq.depth, seq.max_depth, **kw))
                    add(f"{POSE_ROW}{METRIC_SUFFIX}", evaluate_metric(disp, seq.depth, seq.max_depth, mask=mask))
            if per_frame:
                t0 = time.perf_counter()
                add(
                    "model per-frame (T=1)",
                    evaluate_sequence(run_per_frame(single, seq), seq.depth, seq.max_depth, **kw),
                )
                timing["per_frame_s"] = timing.get("per_frame_s", 0.0) + time.perf_counter() - t0
        total_frames = sum(s.num_frames for s in seqs)
        results["datasets"][name] = {
            "sequences": [s.name for s in seqs],
            "frames": total_frames,
            "stride": kwargs["stride"],
            "methods": {k: _mean(v) for k, v in rows.items()},
            "timing": {
                **timing,
                **({"offline_fps": total_frames / timing["offline_s"]} if "offline_s" in timing else {}),
            },
        }
        results["datasets"][name]["goals"] = goals(results["datasets"][name]["methods"])
        if notes:
            results["datasets"][name]["notes"] = notes
    return results


def _mean(ms: list[DepthMetrics]) -> dict[str, Any]:
    """Mean over sequences (the papers average per-video metrics)."""
    taes = [m.tae for m in ms if m.tae is not None]
    gains = [m.nearness_gain for m in ms if m.nearness_gain is not None]
    return {
        "abs_rel": float(np.mean([m.abs_rel for m in ms])),
        "delta1": float(np.mean([m.delta1 for m in ms])),
        "tae": float(np.mean(taes)) if taes else None,
        "nearness_gain": float(np.mean(gains)) if gains else None,
        "sequences": len(ms),
        "frames": int(sum(m.frames for m in ms)),
    }


def goals(methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's acceptance checks (each with the numbers it compares)."""
    out: dict[str, Any] = {}
    trivial = {k: methods[k]["abs_rel"] for k in BASELINES if k in methods}
    model = methods.get("model offline")
    if model and trivial:
        best = min(trivial.values())
        red = 1 - model["abs_rel"] / best
        out["abs_rel_30pct_below_best_trivial"] = {
            "model": model["abs_rel"],
            "best_trivial": best,
            "reduction": red,
            "pass": bool(red >= 0.30),
        }
    pf = methods.get("model per-frame (T=1)")
    if model and pf and model["tae"] is not None and pf["tae"] is not None:
        out["tae_windowed_below_per_frame"] = {
            "windowed": model["tae"],
            "per_frame": pf["tae"],
            "pass": bool(model["tae"] < pf["tae"]),
        }
    st = methods.get("model stream")
    if model and st:
        gap = abs(st["delta1"] - model["delta1"])
        out["stream_offline_delta1_gap"] = {
            "stream": st["delta1"],
            "offline": model["delta1"],
            "gap": gap,
            "pass": bool(gap <= 0.005),
        }
    return out


def markdown(results: dict[str, Any]) -> str:
    """The results as a markdown table + goal lines."""
    lines = [
        "| dataset | frames | method | AbsRel ↓ | δ1 ↑ | TAE ×100 ↓ | nearness gain (→1) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in results["datasets"].items():
        for method, m in d["methods"].items():
            tae = "–" if m["tae"] is None else f"{m['tae']:.3f}"
            gain = "–" if m.get("nearness_gain") is None else f"{m['nearness_gain']:.2f}"
            lines.append(
                f"| {name} | {d['frames']} | {method} | {m['abs_rel']:.3f} | {m['delta1']:.3f} | {tae} | {gain} |"
            )
    lines.append("")
    for name, d in results["datasets"].items():
        lines += [f"- {name} · note: {n}" for n in d.get("notes", [])]
        for goal, g in d.get("goals", {}).items():
            vals = ", ".join(f"{k}={v:.4f}" for k, v in g.items() if isinstance(v, float))
            lines.append(f"- {name} · {goal}: {'PASS' if g['pass'] else 'FAIL'} ({vals})")
    speed = results["meta"].get("speed")
    if speed:
        spec = results["meta"].get("spec", {})
        lines.append(
            f"- speed ({results['meta']['backend']}, {spec.get('frames')}×{spec.get('height')}×{spec.get('width')}): "
            f"{speed['window_s']:.3f} s per window, {speed['fps']:.1f} new frames/s amortised"
        )
    pipe = results["meta"].get("pipeline")
    if pipe:
        params = Path(results["meta"].get("params_file", "")).name
        lines.append(
            f"- offline and stream runs: alignment {pipe['alignment']}, {pipe['schedule']} windows "
            f"{pipe['window']}/{pipe['overlap']}, publish first output, params {params}"
        )
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    j = out / "results.json"
    j.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    md = out / "results.md"
    md.write_text(markdown(results))
    return j, md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vdepth-eval", description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["7scenes", "hololens"], choices=sorted(DATASETS))
    ap.add_argument("--evaldata", default=None, help="evaldata root (default: ../shared/evaldata)")
    ap.add_argument(
        "--model", default=None, help="model folder or pulled release name (default: the bundled default model)"
    )
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="model working resolution (torch backend only; default: the exported graph's)",
    )
    ap.add_argument("--frames", type=int, default=None, help="frames per video dataset (default 300 / 120)")
    ap.add_argument("--no-stream", action="store_true", help="skip the causal run")
    ap.add_argument("--no-per-frame", action="store_true", help="skip the T=1 run")
    ap.add_argument(
        "--per-frame-fit",
        action="store_true",
        help="add a diagnostic row: the offline run scored with one affine per frame (how much of the "
        "error is scale drift across frames)",
    )
    ap.add_argument(
        "--sparse-points",
        type=int,
        default=0,
        metavar="N",
        help="add a row: the causal pipeline with scale_source 'sparse' fed N ground-truth depths per frame "
        "(a simulated sparse depth sensor; not one of the goals)",
    )
    ap.add_argument(
        "--pose-points",
        action="store_true",
        help="add a row: the causal pipeline with scale_source 'sparse' fed depths triangulated from the video "
        "with the ground-truth camera poses (simulated robot odometry; not one of the goals)",
    )
    ap.add_argument(
        "--params",
        default=None,
        help="node parameter YAML for the offline and stream runs (default: the bundled config/depth.yaml; "
        "scale_source, cloud_stride, output_resolution and upsample_method are fixed by the evaluation)",
    )
    ap.add_argument("--baselines-only", action="store_true", help="trivial baselines only (no model)")
    ap.add_argument("--out", default="out/eval")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from vdepth_ros.blas import limit_blas_threads_for_tool
    from vdepth_ros.paths import evaldata_dir

    limit_blas_threads_for_tool()  # numpy's spinning OpenBLAS pool slows stitching: vdepth_ros/blas.py

    root = Path(args.evaldata) if args.evaldata else evaldata_dir()
    if root is None or not root.is_dir():
        ap.error("evaluation data not found: pass --evaldata or set VDEPTH_EVALDATA (never copied into the repo)")
    frames = {d: args.frames for d in DEFAULT_FRAMES} if args.frames else None
    try:
        results = evaluate(
            args.datasets,
            root,
            model=args.model,
            backend=args.backend,
            frames=frames,
            stream=not args.no_stream,
            per_frame=not args.no_per_frame,
            with_model=not args.baselines_only,
            threads=args.threads,
            size=tuple(args.size) if args.size else None,
            per_frame_fit=args.per_frame_fit,
            sparse_points=max(0, args.sparse_points),
            params_file=args.params,
            pose_points=args.pose_points,
        )
    except (ConfigError, ModelLoadError) as err:  # --size with an exported graph; a release not pulled yet
        ap.error(str(err))
    _, md = write_report(results, Path(args.out))
    print(md.read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
