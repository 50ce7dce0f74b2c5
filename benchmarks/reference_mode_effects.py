"""Measured effect of each remaining step of the `reference` inference mode (docs/models.md).

Random weights and the authors' code (`../shared/reference-code`), so the numbers say how far a
step moves the output, not how accurate it is:

* **vda_stitch_order**: `DepthPipeline` (reference mode) against `infer_video_depth` on HoloLens
  frames, with each window upsampled before stitching (the authors' order, the mode's default) and
  after (the package's order): max per-frame relative difference.
* **dvd_last_window**: the authors' `generate_depth_sliced` against the stream's three-channel
  stitching on the same synthetic window outputs (per-window, per-channel affines 0.6-1.8x) for a
  video whose last window the authors move back: frames before the last window / the last window's.
* **dvd_mean_only**: `DepthPipeline` with a tiny random DVD stitching the three channels (reference)
  against stitching their mean (what an exported graph gives).

    .venv/bin/python benchmarks/reference_mode_effects.py --quick    # 40 VDA frames at 112
    .venv/bin/python benchmarks/reference_mode_effects.py            # 80 frames
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))  # the tests' loaders of the authors' code (stubs, ast)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def vda_stitch_order(frames: int, input_size: int) -> dict[str, float]:
    from reference_code import randomize_, reference_import
    from test_parity_vda_e2e import _hololens_frames

    from vdepth_ros.models.vda import VideoDepthAnything
    from vdepth_ros.pipeline import DepthPipeline, FrameInput, PipelineConfig
    from vdepth_ros.runtime import create_engine

    rgb = _hololens_frames(frames)
    with reference_import("video-depth-anything"), tempfile.TemporaryDirectory() as tmp:
        from video_depth_anything.video_depth import VideoDepthAnything as Authors

        authors = randomize_(Authors(encoder="vits", features=64, out_channels=[48, 96, 192, 384]).eval(), seed=0)
        torch.save(authors.state_dict(), Path(tmp) / "vda.pth")
        with torch.no_grad():
            theirs, _ = authors.infer_video_depth(rgb, 30, input_size=input_size, device="cpu", fp32=True)
        VideoDepthAnything.from_released(Path(tmp) / "vda.pth", encoder="vits").save_pretrained(Path(tmp) / "m")
        engine = create_engine(str(Path(tmp) / "m"), backend="torch")
    result = {}
    for order in ("before", "after"):
        config = PipelineConfig(working_short_side=input_size, publish="final", scale_source="none")
        pipe = DepthPipeline(config, engine=engine)
        pipe._stitch_output = order == "before"  # the one step this measures
        out = [f for i, f in enumerate(rgb) for f in pipe.push(FrameInput(rgb=f, stamp_ns=i))] + pipe.flush()
        result[f"upsample_{order}_stitching"] = _relative(np.stack([f.disparity for f in out]), theirs)
    return result


def dvd_last_window() -> dict[str, float]:
    from test_parity_dvd_stitch import _stitch_both

    ours, theirs, last = _stitch_both(61, 21, 5)
    before, after = _relative(ours[:last], theirs[:last]), _relative(ours[last:], theirs[last:])
    return {"before_last_window": before, "last_window": after}


def dvd_mean_only() -> dict[str, float]:
    from vdepth_ros.models.dvd import DVD
    from vdepth_ros.offline.synth import synthetic_frames
    from vdepth_ros.pipeline import DepthPipeline, FrameInput, PipelineConfig
    from vdepth_ros.runtime import create_engine

    torch.manual_seed(0)
    model = DVD(**DVD.tiny_config()).eval()
    _, h, w = DVD.tiny_input_shape()
    rgb = list(synthetic_frames(33, h, w))
    outs = []
    for channels in (True, False):
        pipe = DepthPipeline(PipelineConfig(scale_source="none", publish="final"), create_engine(model, "torch"))
        pipe._channels = channels
        out = [f for i, f in enumerate(rgb) for f in pipe.push(FrameInput(rgb=f, stamp_ns=i))] + pipe.flush()
        outs.append(np.stack([f.disparity for f in out]))
    return {"mean_only_vs_three_channels": _relative(outs[1], outs[0])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="40 VDA frames (2 stitches) instead of 80")
    ap.add_argument("--input-size", type=int, default=112)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    load_before = os.getloadavg()
    report = {
        "vda_stitch_order": vda_stitch_order(40 if args.quick else 80, args.input_size),
        "dvd_last_window": dvd_last_window(),
        "dvd_mean_only": dvd_mean_only(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
