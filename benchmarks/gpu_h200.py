"""One prepared GPU run (issue #29): the torch backend on CUDA, fp32 / fp16 / bf16, and the authors' VDA.

Measures, in one process and one run (results are written to `--out` as JSON after every section,
so a run cut short keeps what it measured):

* **VDA-S / B / L at 518** (VDA's own input size: 480x640 frames -> 518x686), windows of 32 with
  overlap 10 (the authors' schedule): the package's `DepthEngine` (torch, CUDA) with exact reuse
  of overlap frames and without, per precision: frames/s (new frames per second), latency per
  window and per new frame, peak GPU memory, and the output difference to fp32 on the same windows;
* **the authors' `infer_video_depth`** on the same frames with the same weights (fp32 and their
  default fp16 autocast; bf16 is not an option of theirs): frames/s end to end, and the latency of
  their model forward per window, with the fp32 output difference between their forward and ours;
* **DVD at 480x640, 45 frames** (Wan2.1-1.3B DiT + Wan VAE, random weights): latency per window,
  frames/s, peak memory, difference to fp32.

Random weights cost exactly what trained ones cost. On the GPU machine (see docs/performance.md):

    bash benchmarks/gpu_bundle.sh      # here: stages the diffusers wheel + the authors' VDA code
    # device run, carry [".gpu_bundle"]:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu_bundle/wheels/*.whl && \
      PYTHONPATH=/tmp/site:$PWD VDEPTH_REFERENCE_CODE=$PWD/.gpu_bundle/reference-code \
      python3 benchmarks/gpu_h200.py --out $OUT

Tried on the CPU at tiny sizes (`--device cpu --tiny`: VDA-S at input 70, two windows, the tiny DVD),
which the test suite runs; it has not run on a GPU in this project.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (CPU runs; see runtime_speed.py)

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # vs_authors_vda beside this file
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the package, uninstalled on the GPU machine

PRECISIONS = ("fp32", "fp16", "bf16")


class Clock:
    """Wall time with the device synchronised, and peak memory since `reset`."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch, self.cuda = torch, device.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset(self) -> None:
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float | None:
        return round(self.torch.cuda.max_memory_allocated() / 2**20, 1) if self.cuda else None


def _summary(seconds: list[float], new_frames: list[int]) -> dict[str, float]:
    ms = [1000 * s for s in seconds]
    return {
        "window_ms_median": round(statistics.median(ms), 2),
        "window_ms_min": round(min(ms), 2),
        "window_ms_max": round(max(ms), 2),
        "frames_per_s": round(sum(new_frames) / sum(seconds), 3),
        "ms_per_new_frame": round(sum(ms) / sum(new_frames), 3),
    }


def run_windows(
    engine: Any, frames: np.ndarray, windows: list[list[int]], clock: Clock, reuse: bool, repeats: bool = False
) -> tuple:
    """Every window through `engine` (frame ids when `reuse`); the first is warm-up. Returns
    (timing summary of windows 1.., outputs of every window). Frames/s counts the frames a window
    outputs for the first time (`repeats`: the same window again and again, all its frames)."""
    engine.reset_stream()
    seconds, new, outs, seen = [], [], [], set()
    for k, ids in enumerate(windows):
        content = [min(i, len(frames) - 1) for i in ids]
        clock.sync()
        t0 = time.perf_counter()
        out = engine.infer(frames[content], frame_ids=content if reuse else None)
        clock.sync()
        if k > 0:
            seconds.append(time.perf_counter() - t0)
            new.append(len(ids) if repeats else len(set(ids) - seen))
        seen |= set(ids)
        outs.append(out)
    return _summary(seconds, new), outs


def rel_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        span = float(y.max() - y.min()) or 1.0
        worst = max(worst, float(np.nanmax(np.abs(x.astype(np.float64) - y))) / span)
    return worst


def vda_section(encoder: str, args: argparse.Namespace, clock: Clock) -> dict[str, Any]:
    """Ours (reuse on/off, each precision) and the authors' on one VDA size."""
    import vs_authors_vda as va

    from vdepth_ros.runtime import create_engine

    ours, theirs, vd = va.model_pair(encoder, device="cpu")
    frames = synthetic_frames(args.vda_frames, 480, 640)
    resized = va.resized_frames(vd, frames, args.input_size)
    h, w = resized.shape[1:3]
    windows = va.authors_windows(len(frames))
    out: dict[str, Any] = {"input": f"{len(frames)} frames 480x640 -> {h}x{w}", "windows": len(windows)}
    reference = None
    for precision in args.precisions:
        model = copy.deepcopy(ours)  # each engine casts its module: keep the fp32 weights intact
        clock.reset()
        engine = create_engine(model, backend="torch", precision=precision, device=args.device, frames=32,
                               height=h, width=w)  # fmt: skip
        reuse, outs = run_windows(engine, resized, windows, clock, reuse=True)
        plain, _ = run_windows(engine, resized, windows, clock, reuse=False)
        row = {"reuse": reuse, "no_reuse": plain, "peak_mib": clock.peak_mib(),
               "reuse_speedup": round(plain["window_ms_median"] / reuse["window_ms_median"], 3)}  # fmt: skip
        if precision == "fp32":
            reference = outs
        elif reference is not None:
            row["diff_to_fp32_rel"] = rel_diff(outs, reference)
        out[f"package_{precision}"] = row
        del engine, model
    out.update(authors_runs(theirs, frames, windows, reference, args, clock))
    return out


def authors_runs(theirs: Any, frames, windows, reference, args, clock: Clock) -> dict[str, Any]:
    """`infer_video_depth` in fp32 and with their fp16 autocast (after one warm-up call), their
    forward timed per window; in fp32 its outputs are compared with ours on the same windows."""
    import torch

    theirs = theirs.to(args.device)
    forward = theirs.forward
    times: list[float] = []
    outputs: list[np.ndarray] = []

    def timed(x: torch.Tensor) -> torch.Tensor:
        clock.sync()
        t0 = time.perf_counter()
        y = forward(x)
        clock.sync()
        times.append(time.perf_counter() - t0)
        outputs.append(y[0].detach().float().cpu().numpy())
        return y

    res: dict[str, Any] = {}
    theirs.forward = timed  # their loop calls self.forward(cur_input) once per window
    try:
        for precision in [p for p in ("fp32", "fp16") if p in args.precisions]:
            fp32 = precision == "fp32" or not args.device.startswith("cuda")  # their autocast is CUDA fp16
            clock.reset()
            seconds = []
            for _ in range(2):  # warm-up, then the timed call
                times.clear()
                outputs.clear()
                clock.sync()
                t0 = time.perf_counter()
                with torch.no_grad():
                    theirs.infer_video_depth(frames, 30, input_size=args.input_size, device=args.device, fp32=fp32)
                clock.sync()
                seconds.append(time.perf_counter() - t0)
            row = {"frames_per_s_end_to_end": round(len(frames) / seconds[-1], 3), "peak_mib": clock.peak_mib(),
                   "forward_ms_median": round(1000 * statistics.median(times), 2),
                   "autocast": "off (fp32)" if fp32 else "fp16"}  # fmt: skip
            if precision == "fp32" and reference is not None:
                row["forward_diff_to_package_rel"] = rel_diff(reference, list(outputs))
            res[f"authors_{precision}"] = row
    finally:
        del theirs.forward
    return res


def dvd_section(args: argparse.Namespace, clock: Clock) -> dict[str, Any]:
    import torch

    from vdepth_ros.models.dvd import DVD
    from vdepth_ros.runtime import create_engine

    torch.manual_seed(0)
    cfg = DVD.tiny_config() if args.tiny else {}
    t, h, w = (9, 32, 48) if args.tiny else (45, 480, 640)
    base = DVD(**cfg).eval()
    frames = synthetic_frames(2 * t, h, w)
    windows = [list(range(t))] * (1 + args.dvd_repeats)  # warm-up + timed repeats of one window
    params = round(sum(p.numel() for p in base.parameters()) / 1e6, 1)
    out: dict[str, Any] = {"input": f"{t} frames {h}x{w}", "params_m": params}
    reference = None
    for precision in args.precisions:
        model = copy.deepcopy(base)
        clock.reset()
        engine = create_engine(model, backend="torch", precision=precision, device=args.device, frames=t,
                               height=h, width=w)  # fmt: skip
        timing, outs = run_windows(engine, frames, windows, clock, reuse=False, repeats=True)
        row = {**timing, "peak_mib": clock.peak_mib()}
        if precision == "fp32":
            reference = outs
        elif reference is not None:
            row["diff_to_fp32_rel"] = rel_diff(outs, reference)
        out[f"package_{precision}"] = row
        del engine, model
    return out


def synthetic_frames(n: int, height: int, width: int) -> np.ndarray:
    """A moving textured clip (uint8 RGB): content does not change the cost."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 10, (height, width, 3)).astype(np.float32)
    out = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        base = 127 + 90 * np.sin(0.05 * (xx + 3 * t))[..., None] * np.cos(0.07 * yy)[..., None] * [1, 0.8, 0.6]
        out[t] = np.clip(base + noise, 0, 255).astype(np.uint8)
    return out


def environment(device: str) -> dict[str, Any]:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
           "loadavg": os.getloadavg(), "cpu_count": os.cpu_count()}  # fmt: skip
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="CPU check: VDA-S at input 70, 2 windows, the tiny DVD")
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_results"), help="folder for gpu_h200.json")
    ap.add_argument("--sections", nargs="+", default=["vits", "vitb", "vitl", "dvd"])
    ap.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    ap.add_argument("--input-size", type=int, default=None, help="VDA input size (518; --tiny 70)")
    ap.add_argument("--vda-frames", type=int, default=None, help="frames per VDA clip (76 = 4 windows of 32/10)")
    ap.add_argument("--dvd-repeats", type=int, default=None, help="timed repeats of the DVD window (2)")
    ap.add_argument("--budget-s", type=float, default=480.0, help="skip sections that start after this")
    args = ap.parse_args(argv)
    tiny = {"input_size": 70, "vda_frames": 54, "dvd_repeats": 1}
    full = {"input_size": 518, "vda_frames": 76, "dvd_repeats": 2}
    for key, value in (tiny if args.tiny else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.tiny:
        args.sections = [s for s in args.sections if s in ("vits", "dvd")]
    import torch

    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32: parity is measured against it
        torch.backends.cudnn.allow_tf32 = False
    else:
        torch.set_num_threads(min(4, os.cpu_count() or 1))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"command": " ".join(sys.argv), "environment": environment(args.device), "sections": {}}
    clock = Clock(args.device)
    start = time.perf_counter()
    for section in args.sections:
        if time.perf_counter() - start > args.budget_s:
            report["sections"][section] = {"skipped": f"time budget of {args.budget_s:g} s spent"}
            continue
        t0 = time.perf_counter()
        try:
            result = dvd_section(args, clock) if section == "dvd" else vda_section(section, args, clock)
        except Exception as err:  # keep what the other sections measured
            result = {"error": f"{type(err).__name__}: {str(err)[:400]}"}
        result["section_seconds"] = round(time.perf_counter() - t0, 1)
        report["sections"][section] = result
        (out_dir / "gpu_h200.json").write_text(json.dumps(report, indent=2))
        print(f"{section}: {json.dumps(result)}", flush=True)
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    (out_dir / "gpu_h200.json").write_text(json.dumps(report, indent=2))
    return 0 if all("error" not in r for r in report["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
