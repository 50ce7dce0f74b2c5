#!/usr/bin/env python3
"""vdepth-bag throughput and memory: frames/s per mode vs the recording rate, and peak RSS vs bag length.

    .venv/bin/python benchmarks/bag_throughput.py [--frames 300] [--rss-frames 300 3000] [--copy-input-topics] [--json]

1. Writes a `--frames` bag of `--width`x`--height` rgb8 Image + CameraInfo at `--rate` Hz (a temp dir).
2. Runs `vdepth-bag` in causal and offline mode with the bundled default model (or, when it is not
   installed yet, a LuminanceEngine-like stand-in at 64x48; the report says which) and reports
   frames/s and the ratio to the recording rate (goal: >= 1x real time at 30 Hz).
3. Peak RSS: a fresh process per (mode, length) processes a short and a 10x longer bag (JPEG
   CompressedImage, so the long bag stays small on disk) with `--rss-engine` (stand-in by default);
   memory bounded by the window means the two peaks are about equal. Anonymous and file-backed
   (offline mode's spill memmap, reclaimable page cache) peaks are reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from vdepth_ros.runtime.engine import DepthEngine  # noqa: E402
from vdepth_ros.runtime.spec import InputSpec  # noqa: E402


class StandInEngine(DepthEngine):
    """Disparity = 0.1 + luminance at 64x48 (same as test/fakes.py's LuminanceEngine): no model cost."""

    backend = "stand-in"

    def __init__(self) -> None:
        super().__init__(InputSpec(family="stand-in", frames=16, height=48, width=64, window=16, overlap=4))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return (0.1 + batch[:, :, 0] * 0.299 + batch[:, :, 1] * 0.587 + batch[:, :, 2] * 0.114).astype(np.float32)


def make_engine(kind: str) -> tuple[DepthEngine, str]:
    """`(engine, description)`: the default model if installed (kind auto/default), else the stand-in."""
    if kind in ("auto", "default"):
        from vdepth_ros.paths import default_model_dir

        model = default_model_dir()
        if (model / "config.json").is_file() or any(model.glob("*.onnx")):
            from vdepth_ros.runtime import create_engine

            engine = create_engine(str(model))
            s = engine.input_spec
            return engine, f"default model {model} ({engine.backend}, {s.family}, {s.frames}x{s.height}x{s.width})"
        if kind == "default":
            raise SystemExit(f"default model not found in {model}")
    return StandInEngine(), (
        "STAND-IN engine (luminance, 64x48, no network): the default model is not installed "
        "yet, so these numbers measure bag I/O + stitching only"
    )


def write_bag(path: Path, frames: int, width: int, height: int, rate: float, encoding: str, storage: str) -> float:
    from vdepth_ros.offline.synth import synthetic_frames, write_image_bag

    t0 = time.perf_counter()
    write_image_bag(path, synthetic_frames(frames, height, width), storage=storage, encoding=encoding, fps=rate)
    return time.perf_counter() - t0


class RssSampler(threading.Thread):
    """Peaks of anonymous (heap) and file-backed (mmap'ed files, e.g. the offline spill) resident memory,
    sampled from /proc/self/status every 20 ms (Linux); `peak_rss_mb` gives the total peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                key = line.split(":")[0]
                if key in self.peak:
                    self.peak[key] = max(self.peak[key], int(line.split()[1]))
        except OSError:
            pass

    def run(self) -> None:
        while not self._stop_event.wait(0.02):
            self.sample()

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.join()
        self.sample()
        return {
            "peak_anon_mb": round(self.peak["RssAnon"] / 1024.0, 1),
            "peak_file_mb": round(self.peak["RssFile"] / 1024.0, 1),
        }


def peak_rss_mb() -> float:
    """This process's peak RSS: `VmHWM` (Linux; per address space, so a fork+exec child does not inherit
    the parent's peak as `ru_maxrss` does), else `ru_maxrss`."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def run_once(
    bag: Path,
    out: Path,
    mode: str,
    engine_kind: str,
    extra_params: dict[str, Any] | None = None,
    copy_input_topics: bool = False,
) -> dict[str, Any]:
    from vdepth_ros.offline.bag import process_bag

    engine, desc = make_engine(engine_kind)
    params = {"scale_source": "range", **(extra_params or {})}
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    summary = process_bag(
        bag, out, params=params, engine=engine, mode=mode, storage="mcap", copy_input_topics=copy_input_topics
    )
    dt = time.perf_counter() - t0
    split = sampler.stop()
    return {
        "mode": mode,
        "frames": summary.frames_in,
        "frames_out": summary.frames_out,
        "seconds": round(dt, 3),
        "fps": round(summary.frames_in / dt, 2),
        "engine": desc,
        "peak_rss_mb": peak_rss_mb(),
        **split,
    }


def child_run(bag: Path, mode: str, engine_kind: str, copy_input_topics: bool = False) -> dict[str, Any]:
    """Process `bag` in a fresh interpreter so its peak RSS is this run's alone."""
    with tempfile.TemporaryDirectory(dir=bag.parent) as tmp:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            str(bag),
            str(Path(tmp) / "out"),
            mode,
            "--engine",
            engine_kind,
            *(["--copy-input-topics"] if copy_input_topics else []),
        ]
        res = subprocess.run(
            cmd,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
        )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=300, help="throughput bag length (default 300)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--rate", type=float, default=30.0, help="recording rate in Hz (default 30)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--modes", nargs="+", default=["causal", "offline"], choices=("causal", "offline"))
    p.add_argument(
        "--rss-frames",
        type=int,
        nargs=2,
        default=[300, 3000],
        metavar=("SHORT", "LONG"),
        help="bag lengths for the peak-RSS comparison (default 300 3000); 0 0 skips it",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "default", "stand-in"),
        default="auto",
        help="throughput engine: auto = the default model if installed, else the stand-in",
    )
    p.add_argument(
        "--rss-engine",
        choices=("auto", "default", "stand-in"),
        default="stand-in",
        help="engine of the RSS runs (default stand-in: a model's memory is constant, the question is "
        "whether memory grows with the bag length, and 2x3000 frames through a model take long)",
    )
    p.add_argument(
        "--copy-input-topics",
        action="store_true",
        help="the runs copy the input's messages into the output too (vdepth-bag --copy-input-topics)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--child", nargs=3, metavar=("BAG", "OUT", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        bag, out, mode = args.child
        print(json.dumps(run_once(Path(bag), Path(out), mode, args.engine, copy_input_topics=args.copy_input_topics)))
        return 0

    report: dict[str, Any] = {
        "frames": args.frames,
        "size": [args.width, args.height],
        "rate_hz": args.rate,
        "storage": args.storage,
        "throughput": [],
        "rss": [],
    }
    with tempfile.TemporaryDirectory(prefix="vdepth-bench-") as tmpdir:
        tmp = Path(tmpdir)
        bag = tmp / "bag"
        report["write_seconds"] = round(
            write_bag(bag, args.frames, args.width, args.height, args.rate, "rgb8", args.storage), 2
        )
        report["input_bag_mb"] = round(sum(f.stat().st_size for f in bag.iterdir()) / 1e6, 1)
        for mode in args.modes:
            r = run_once(bag, tmp / f"out_{mode}", mode, args.engine, copy_input_topics=args.copy_input_topics)
            r["realtime_ratio"] = round(r["fps"] / args.rate, 2)
            report["throughput"].append(r)
            report["engine"] = r["engine"]
            if not args.json:
                print(
                    f"{mode:8s} {r['frames']} frames in {r['seconds']:.2f} s = {r['fps']:.1f} frames/s "
                    f"= {r['realtime_ratio']:.2f}x real time at {args.rate:g} Hz",
                    flush=True,
                )
        short, long = args.rss_frames
        if short > 0 and long > 0:
            for n in (short, long):
                rbag = tmp / f"rss_{n}"
                write_bag(rbag, n, args.width, args.height, args.rate, "jpeg", args.storage)
                for mode in args.modes:
                    r = child_run(rbag, mode, args.rss_engine, args.copy_input_topics)
                    keys = ("mode", "frames", "peak_rss_mb", "peak_anon_mb", "peak_file_mb", "fps", "engine")
                    report["rss"].append({k: r[k] for k in keys})
                    if not args.json:
                        print(
                            f"peak RSS {mode:8s} {n:6d} frames: {r['peak_rss_mb']:.0f} MB (anonymous "
                            f"{r['peak_anon_mb']:.0f} MB, file-backed {r['peak_file_mb']:.0f} MB; "
                            f"{r['fps']:.1f} frames/s)",
                            flush=True,
                        )
            for mode in args.modes:
                a = next(r for r in report["rss"] if r["mode"] == mode and r["frames"] == short)
                b = next(r for r in report["rss"] if r["mode"] == mode and r["frames"] == long)
                report.setdefault("rss_growth_mb", {})[mode] = round(b["peak_rss_mb"] - a["peak_rss_mb"], 1)
                report.setdefault("anon_growth_mb", {})[mode] = round(b["peak_anon_mb"] - a["peak_anon_mb"], 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"engine: {report.get('engine')}")
        if "rss_growth_mb" in report:
            print(
                "peak RSS growth short -> long bag (MB): "
                + ", ".join(
                    f"{m} {g:+.0f} (anonymous {report['anon_growth_mb'][m]:+.0f})"
                    for m, g in report["rss_growth_mb"].items()
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
