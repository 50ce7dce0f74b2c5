"""Per-window latency: torch vs ONNX Runtime (CPU EP) on the same graph, shapes and threads.

For every model family, at its `tiny_config()` and at a realistic small config (where one can run
on a CPU), the family is exported to ONNX in a temp folder, then each backend runs
`DepthEngine.infer` on the same uint8 clip: warm-up runs, then `--runs` timed runs in this one
process, alternating torch and ORT run by run. Reported: median / min / max milliseconds per
window, the torch/ORT ratio (> 1 means ONNX Runtime is faster) and the max-abs difference between the two outputs.
Families whose module is not importable (not written yet) are reported as skipped.

    .venv/bin/python benchmarks/runtime_speed.py --threads 2 --runs 10 [--json] [--families vda dvd]
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: spinning workers on a shared, loaded machine make eager torch with
# 2 threads ~200x slower (measured); ORT's spinning is off too (OnnxRuntimeEngine default).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("runtime_speed")

# Realistic small configs: (description, constructor kwargs factory, (T, H, W)). Only families whose
# smallest released size runs on a CPU in seconds are listed; diffusion families (Wan 1.3B,
# SVD/SD-2 UNets) are GB-scale and reported as skipped for this config.
SMALL: dict[str, tuple[str, Callable[[], dict[str, Any]], tuple[int, int, int]]] = {}


def _vda_small() -> dict[str, Any]:
    from vdepth_ros.models.vda import VDA_PRESETS

    return {**VDA_PRESETS["vits"], "window": 8}


SMALL["vda"] = ("ViT-S (VDA-Small sizes, 28M params), window 8", _vda_small, (8, 224, 392))
# Why the other families have no CPU-sized realistic config.
NO_SMALL = {
    "gemdepth": "released only as ViT-L (plus GEM/ASTT blocks); no small size exists",
    "dvd": "Wan2.1-T2V-1.3B DiT + Wan VAE: GB-scale",
    "depthcrafter": "SVD UNet (1.5B) + VAE + CLIP, multi-step: GB-scale",
    "onestep": "SVD-UNet-sized student: GB-scale",
    "fiffdepth": "SD-2 UNet (865M) + VAE: GB-scale",
}


def _time_interleaved(fns: dict[str, Callable[[], Any]], runs: int, warmup: int) -> dict[str, list[float]]:
    """Warm up each, then alternate the backends run by run, so load changes on the shared
    machine hit both alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name].append((time.perf_counter() - t0) * 1000.0)
    return out


def _stats(ms: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "runs": len(ms)}


def bench_one(family: str, which: str, runs: int, warmup: int, threads: int) -> dict[str, Any]:
    """Export + time one (family, config); returns a result row (status ok/skipped/error)."""
    from vdepth_export.export_onnx import export_onnx
    from vdepth_export.parity import synthetic_clip

    from vdepth_ros.models import family_class
    from vdepth_ros.runtime.onnx_backend import OnnxRuntimeEngine
    from vdepth_ros.runtime.spec import InputSpec, spec_path_for
    from vdepth_ros.runtime.torch_backend import TorchEngine

    row: dict[str, Any] = {"family": family, "config": which}
    try:
        cls = family_class(family)
    except ImportError as err:
        return {**row, "status": "skipped", "reason": f"family module not importable yet: {err}"}
    import torch

    torch.manual_seed(0)
    if which == "tiny":
        model = cls(**cls.tiny_config()).eval()
        shape = tuple(cls.tiny_input_shape())
        row["description"] = "tiny_config()"
    else:
        if family not in SMALL:
            why = NO_SMALL.get(family, "no realistic config small enough for a 2-core CPU")
            return {**row, "status": "skipped", "reason": f"small: {why}"}
        desc, make, shape = SMALL[family]
        model = cls(**make()).eval()
        row["description"] = desc
    row["params"] = sum(p.numel() for p in model.parameters())
    t, h, w = shape
    row["shape"] = [1, t, 3, h, w]
    with tempfile.TemporaryDirectory(prefix=f"bench-{family}-") as tmp:
        t0 = time.perf_counter()
        res = export_onnx(model, Path(tmp) / "model.onnx", frames=t, height=h, width=w, parity=False)
        row["export_s"] = round(time.perf_counter() - t0, 2)
        row["exporter"] = res.exporter
        spec = InputSpec.load(spec_path_for(res.onnx_path))
        clip = synthetic_clip(t, h, w, seed=1)
        with (
            TorchEngine(model, spec, threads=threads) as te,
            OnnxRuntimeEngine(res.onnx_path, spec, providers=["cpu"], threads=threads) as oe,
        ):
            a, b = te.infer(clip), oe.infer(clip)
            row["max_abs_diff"] = float(np.abs(a - b).max())
            row["output_range"] = float(a.max() - a.min())
            fns = {"torch": lambda: te.infer(clip), "onnxruntime": lambda: oe.infer(clip)}
            ms = _time_interleaved(fns, runs, warmup)
            row["torch"], row["onnxruntime"] = _stats(ms["torch"]), _stats(ms["onnxruntime"])
            if row["output_range"] == 0:
                row["note"] = "constant output (random tiny weights): max_abs_diff says nothing here"
    row["ratio_torch_over_ort"] = row["torch"]["median_ms"] / row["onnxruntime"]["median_ms"]
    row["status"] = "ok"
    return row


def main(argv: list[str] | None = None) -> int:
    from vdepth_ros.models import MODEL_FAMILIES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", nargs="*", default=sorted(MODEL_FAMILIES))
    p.add_argument("--configs", nargs="*", default=["tiny", "small"], choices=["tiny", "small"])
    p.add_argument("--runs", type=int, default=10, help="timed runs per backend (median reported; >= 10)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    import onnxruntime
    import torch

    load_start = _loadavg()
    rows = []
    for fam in args.families:
        for which in args.configs:
            try:
                row = bench_one(fam, which, args.runs, args.warmup, args.threads)
            except Exception as err:  # report and go on with the other families
                row = {"family": fam, "config": which, "status": "error", "reason": f"{type(err).__name__}: {err}"}
            rows.append(row)
            if not args.json:
                _print_row(row)
    meta = {
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "ort_spinning": False,
        "load_average_start": load_start,
        "note": "latency of DepthEngine.infer per window (uint8 scaling + graph); ratio > 1: ORT faster",
    }
    meta["load_average_end"] = _loadavg()
    if args.json:
        print(json.dumps({"meta": meta, "results": rows}, indent=2))
    return 0


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _print_row(row: dict[str, Any]) -> None:
    head = f"{row['family']:<13}{row['config']:<6}"
    if row["status"] != "ok":
        print(f"{head} {row['status']}: {row['reason']}", flush=True)
        return
    print(
        f"{head} {row['shape']} {row['params'] / 1e6:.2f}M params ({row['exporter']} export {row['export_s']} s): "
        f"torch {row['torch']['median_ms']:.1f} ms, ORT {row['onnxruntime']['median_ms']:.1f} ms, "
        f"ratio {row['ratio_torch_over_ort']:.2f}, max|diff| {row['max_abs_diff']:.2e} "
        f"(range {row['output_range']:.3g})",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
