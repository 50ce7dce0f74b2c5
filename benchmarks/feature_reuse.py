"""Exact reuse of overlap work: per-window time with and without it, same windows, same process.

For each configuration the same sequence of windows (the family's own schedule from
`stream.WindowScheduler`: VDA 32/10 keyframes, the bundled model 8/4) is run by two engines built
from the same model: one without frame ids (every frame of every window encoded), one with them
(`DepthEngine.infer(frame_ids=...)`: frames the previous window had are not encoded again). The two
engines alternate window by window, so load changes hit both. The first window (nothing to reuse) is
excluded; reported: min / median / max ms per window, the ratio of the medians (goal >= 1.2x for
VDA-S 32/10), the max-abs output difference relative to the output range (goal: <= 1e-5), and the
load average before and after.

    .venv/bin/python benchmarks/feature_reuse.py --quick            # bundled model (torch + ORT), ~1 min
    .venv/bin/python benchmarks/feature_reuse.py                    # + VDA-S 32/10 at 518x518, minutes
    .venv/bin/python benchmarks/feature_reuse.py --configs vda-s --height 518 --width 686 --windows 3
    .venv/bin/python benchmarks/feature_reuse.py --json

Configurations: `default` (the bundled vda_lite model, 8/4 at 160x224, torch and ONNX Runtime;
the ORT split graphs are exported to a temp folder when the model folder has none), `vda-s`
(VDA-Small sizes with random weights, 32/10, torch: random weights cost the same as trained ones)
and `stream` (per new frame: the bundled weights in a causal model run as a stream, one inference
per frame, against the windowed bundled model with reuse, both torch; latency only, the weights
were not trained causally).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see runtime_speed.py)

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

GOAL_RATIO = 1.2  # issue #29: exact reuse >= 1.2x per window for VDA-S 32/10
GOAL_DIFF = 1e-5  # relative to the output range


def schedule_windows(window: int, overlap: int, keyframes: tuple[int, ...] | None, count: int) -> list[list[int]]:
    """Slots (frame ids, padding as the last id) of the first `count` full windows of a stream."""
    from vdepth_ros.stream.windows import WindowScheduler

    sched = WindowScheduler(
        window, overlap, schedule="keyframe" if keyframes else "chain", keyframes=keyframes if keyframes else None
    )
    out: list[list[int]] = []
    while len(out) < count:
        sched.add_frame()
        while (w := sched.next_window()) is not None and len(out) < count:
            out.append(list(w.slots) + [w.slots[-1]] * w.pad)
    return out


def clip(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A moving textured clip (uint8): real-looking content is irrelevant to timing and exactness."""
    from vdepth_export.parity import synthetic_clip

    return synthetic_clip(n, height, width, seed)


def compare_engines(plain: Any, reuse: Any, windows: list[list[int]], frames: np.ndarray) -> dict[str, Any]:
    """Run each window on both engines (alternating); times of windows 1.. and the output difference."""
    t_plain: list[float] = []
    t_reuse: list[float] = []
    worst = 0.0
    reuse.reset_stream()
    for k, ids in enumerate(windows):
        x = frames[ids]
        t0 = time.perf_counter()
        a = plain.infer(x)
        t1 = time.perf_counter()
        b = reuse.infer(x, frame_ids=ids)
        t2 = time.perf_counter()
        if k > 0:
            t_plain.append(t1 - t0)
            t_reuse.append(t2 - t1)
        span = float(a.max() - a.min()) or 1.0
        worst = max(worst, float(np.abs(a - b).max()) / span)

    def stats(ts: list[float]) -> dict[str, float]:
        ms = [1000 * t for t in ts]
        return {"min_ms": round(min(ms), 1), "median_ms": round(statistics.median(ms), 1), "max_ms": round(max(ms), 1)}

    plain_s, reuse_s = stats(t_plain), stats(t_reuse)
    cache = reuse.feature_cache
    return {
        "windows_timed": len(t_plain),
        "uncached": plain_s,
        "reuse": reuse_s,
        "ratio_of_medians": round(plain_s["median_ms"] / reuse_s["median_ms"], 3),
        "frames_reused": cache.hits,
        "frames_encoded": cache.misses,
        "max_abs_diff_rel": worst,
    }


def _default_engines(backend: str, threads: int, tmp: Path) -> tuple[Any, Any, str]:
    from vdepth_ros.paths import default_model_dir
    from vdepth_ros.runtime import create_engine
    from vdepth_ros.runtime.reuse import split_files_for

    folder = default_model_dir()
    if backend == "torch":
        plain = create_engine(str(folder), backend="torch", threads=threads, reuse=False)
        return plain, create_engine(str(folder), backend="torch", threads=threads), "torch"
    if not split_files_for(folder / "model.onnx").exist():  # export the split graphs beside a copy
        from vdepth_export.export_split import export_split_onnx

        copy = tmp / "default"
        shutil.copytree(folder, copy)
        export_split_onnx(copy, copy / "model.onnx", parity=False, weights_fp16=True)
        folder = copy
    plain = create_engine(str(folder), backend="onnxruntime", threads=threads, reuse=False)
    return plain, create_engine(str(folder), backend="onnxruntime", threads=threads), "onnxruntime"


def run_config(name: str, args: argparse.Namespace, count: int, tmp: Path) -> list[dict[str, Any]]:
    from vdepth_ros.runtime import create_engine

    results = []
    if name == "default":
        for backend in args.backends:
            plain, reuse, label = _default_engines(backend, args.threads, tmp)
            spec = plain.input_spec
            windows = schedule_windows(spec.window, spec.overlap, spec.keyframes, count)
            frames = clip(max(max(w) for w in windows) + 1, spec.height, spec.width)
            plain.warmup()
            reuse.warmup()
            res = compare_engines(plain, reuse, windows, frames)
            results.append({"config": f"default vda_lite {spec.window}/{spec.overlap} {spec.height}x{spec.width}",
                            "backend": label, **res})  # fmt: skip
    elif name == "stream":
        results.append(stream_vs_windows(args, count, tmp))
    elif name == "vda-s":
        import torch

        from vdepth_ros.models.vda import VideoDepthAnything

        torch.manual_seed(0)
        model = VideoDepthAnything.preset("vits").eval()  # random weights: same cost as the released ones
        opts = {"frames": 32, "height": args.height, "width": args.width, "threads": args.threads}
        plain = create_engine(model, backend="torch", reuse=False, **opts)
        reuse = create_engine(model, backend="torch", **opts)
        spec = plain.input_spec
        windows = schedule_windows(spec.window, spec.overlap, spec.keyframes, count)
        frames = clip(max(max(w) for w in windows) + 1, spec.height, spec.width)
        res = compare_engines(plain, reuse, windows, frames)
        label = f"VDA-S 32/10 {args.height}x{args.width} (random weights)"
        results.append({"config": label, "backend": "torch", **res})
    return results


def stream_vs_windows(args: argparse.Namespace, count: int, tmp: Path) -> dict[str, Any]:
    """ms per new frame: causal stream steps vs windows of the windowed model (reuse on), alternating."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from latency_goals import streaming_model

    from vdepth_ros.paths import default_model_dir
    from vdepth_ros.runtime import create_engine

    windowed = create_engine(str(default_model_dir()), backend="torch", threads=args.threads)
    stream = create_engine(str(streaming_model(tmp)), backend="torch", threads=args.threads)
    spec = windowed.input_spec
    windows = schedule_windows(spec.window, spec.overlap, spec.keyframes, count)
    frames = clip(max(max(w) for w in windows) + 1, spec.height, spec.width)
    per_window, per_step, seen = [], [], set()
    step = 0
    for k, ids in enumerate(windows):
        new = sorted(set(ids) - seen)
        seen |= set(ids)
        t0 = time.perf_counter()
        windowed.infer(frames[ids], frame_ids=ids)
        t1 = time.perf_counter()
        for i in new:  # the same new frames, one stream step each
            stream.infer(frames[[max(0, i - 1), i]], frame_ids=[max(0, i - 1), i])
        t2 = time.perf_counter()
        if k > 0:
            per_window.append((t1 - t0) / len(new))
            per_step.append((t2 - t1) / len(new))
            step += len(new)
    med_w, med_s = statistics.median(per_window) * 1000, statistics.median(per_step) * 1000
    return {
        "config": f"stream (causal, context 8) vs windowed 8/4 with reuse, {spec.height}x{spec.width}",
        "backend": "torch", "windows_timed": len(per_window), "frames_timed": step,
        "windowed_ms_per_new_frame": round(med_w, 1), "stream_ms_per_frame": round(med_s, 1),
        "ratio_of_medians": round(med_w / med_s, 3),
        "windowed_min_max_ms": [round(1000 * min(per_window), 1), round(1000 * max(per_window), 1)],
        "stream_min_max_ms": [round(1000 * min(per_step), 1), round(1000 * max(per_step), 1)],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", choices=["default", "stream", "vda-s"], default=None)
    ap.add_argument("--backends", nargs="+", choices=["torch", "onnxruntime"], default=["torch", "onnxruntime"])
    ap.add_argument("--quick", action="store_true", help="the bundled model only, few windows")
    ap.add_argument("--windows", type=int, default=None, help="windows per configuration (first one untimed)")
    ap.add_argument("--height", type=int, default=518)
    ap.add_argument("--width", type=int, default=518)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    configs = args.configs or (["default", "stream"] if args.quick else ["default", "stream", "vda-s"])
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vdepth-reuse-") as tmp:
        for name in configs:
            count = args.windows or (6 if args.quick else (4 if name == "vda-s" else 12))
            results += run_config(name, args, count, Path(tmp))
    for r in results:
        if "max_abs_diff_rel" not in r:  # the stream comparison: a cost, no exactness goal
            continue
        r["goal_exact"] = r["max_abs_diff_rel"] <= GOAL_DIFF
        if r["config"].startswith("VDA-S"):
            r["goal_ratio"] = r["ratio_of_medians"] >= GOAL_RATIO
    report = {"results": results, "threads": args.threads, "loadavg_before": load_before,
              "loadavg_after": os.getloadavg(), "cpu_count": os.cpu_count()}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for r in results:
        if "stream_ms_per_frame" in r:
            print(
                f"{r['config']} [{r['backend']}], {r['frames_timed']} frames: windowed "
                f"{r['windowed_ms_per_new_frame']} ms per new frame (min/max {r['windowed_min_max_ms']}), "
                f"stream {r['stream_ms_per_frame']} ms per frame (min/max {r['stream_min_max_ms']}) "
                f"-> {r['ratio_of_medians']}x"
            )
            continue
        u, c = r["uncached"], r["reuse"]
        goal = f", goal >= {GOAL_RATIO}x: {'PASS' if r['goal_ratio'] else 'FAIL'}" if "goal_ratio" in r else ""
        print(
            f"{r['config']} [{r['backend']}], {r['windows_timed']} windows: uncached {u['median_ms']} ms "
            f"(min {u['min_ms']}, max {u['max_ms']}), reuse {c['median_ms']} ms (min {c['min_ms']}, max {c['max_ms']})"
            f" -> {r['ratio_of_medians']}x{goal}; {r['frames_reused']} frames reused, {r['frames_encoded']} encoded;"
            f" max diff {r['max_abs_diff_rel']:.2g} of the range ({'PASS' if r['goal_exact'] else 'FAIL'} <= 1e-5)"
        )
    print(f"load average {load_before} before, {report['loadavg_after']} after, {report['cpu_count']} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
