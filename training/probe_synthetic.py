"""Held-out synthetic probe of a training checkpoint: scale-and-shift-aligned AbsRel on clips the
training never saw, against the constant and row-ramp baselines (same metric code as `vdepth-eval`).

It answers "did the network learn the renders?" before anyone spends time on the real evaluation::

    python -m vdepth_training.probe_synthetic runs/default2/checkpoints/checkpoint_4500 \\
        --config training/configs/default_v2_convstem.yaml

The checkpoint may be any weights `vdepth_ros.models.load_state_dict_file` reads (a checkpoint folder, a model
folder such as `<run>/final`, or a former `train_default` `checkpoint.pt`).

Clips: seeds 777001, 777002, 777005, 777011, 777013, 777020 (outside every training seed range),
8 frames at 120x160, run through the model at 168x224 as one window, compared at 120x160;
`--style rich` renders the same seeds in the "rich" style (`vdepth_training.data.synthetic.STYLES`).
`--frame-step N` keeps every N-th frame of a longer render (faster camera motion, so the scene
gets nearer or farther within the window); `model_nearness_gain` is the mean `nearness_gain` of
the model (1 = its window follows that change, 0 = it keeps one scale).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from vdepth_ros.paths import expand_home

SEEDS: tuple[int, ...] = (777_001, 777_002, 777_005, 777_011, 777_013, 777_020)


def probe(
    checkpoint: str, config: str, height: int = 168, width: int = 224, style: str = "basic", frame_step: int = 1
) -> dict[str, float | None]:
    """Mean AbsRel of the model, a constant map and a row ramp over `SEEDS` rendered in `style`,
    and the model's mean nearness gain (over the clips where it is defined)."""
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")
    import cv2
    from vdepth_training.config import build_family_model, load_config
    from vdepth_training.data.synthetic import render_clip

    from vdepth_ros.eval.metrics import constant_prediction, evaluate_sequence
    from vdepth_ros.models import load_state_dict_file

    model = build_family_model(load_config(config))
    model.load_state_dict(load_state_dict_file(checkpoint))
    model.eval()
    res: dict[str, list[float]] = {"model": [], "constant": [], "row_ramp": [], "model_nearness_gain": []}
    for seed in SEEDS:
        clip = render_clip(seed, frames=7 * frame_step + 1, height=120, width=160, style=style)
        rgb, depth = clip.rgb[::frame_step], clip.depth[::frame_step]
        x = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in rgb])
        x = x.astype(np.float32)
        if x.max() > 1.5:  # uint8 renders
            x /= 255.0
        with torch.no_grad():
            disp = model(torch.from_numpy(x).permute(0, 3, 1, 2)[None])[0].numpy()
        disp = np.stack([cv2.resize(d, (160, 120), interpolation=cv2.INTER_LINEAR) for d in disp])
        ramp = np.broadcast_to(np.linspace(0, 1, 120, dtype=np.float32)[None, :, None], depth.shape)
        m = evaluate_sequence(disp, depth, 10.0)
        res["model"].append(m.abs_rel)
        if m.nearness_gain is not None:
            res["model_nearness_gain"].append(m.nearness_gain)
        res["constant"].append(evaluate_sequence(constant_prediction(depth.shape), depth, 10.0).abs_rel)
        res["row_ramp"].append(evaluate_sequence(np.ascontiguousarray(ramp), depth, 10.0).abs_rel)
    out: dict[str, float | None] = {"step": checkpoint_step(checkpoint)}
    for k, v in res.items():
        out[k] = round(float(np.mean(v)), 4) if v else None  # None: no clip defines it
    return out


def checkpoint_step(checkpoint: str) -> int | None:
    """The global step a checkpoint was taken at (None for a model folder)."""
    path = Path(checkpoint)
    if (path / "trainer_state.json").is_file():
        return int(json.loads((path / "trainer_state.json").read_text())["global_step"])
    if path.suffix == ".pt":
        return int(torch.load(path, map_location="cpu", weights_only=True)["step"])
    return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="a checkpoint folder of the run (or its final/ model folder)")
    ap.add_argument("--config", default=None, help="the run's recipe YAML (default: the shipped default_v7.yaml)")
    ap.add_argument("--style", default="basic", help="render style of the held-out clips (basic, rich)")
    ap.add_argument("--frame-step", type=int, default=1, help="keep every N-th rendered frame (faster motion)")
    args = ap.parse_args(argv)
    expand_home(args)
    from vdepth_training.config import DEFAULT_RECIPE

    torch.set_num_threads(1)
    from vdepth_ros.offline.runner import stdout_for_results

    with stdout_for_results():  # stdout: the JSON alone, whatever the libraries print
        out = probe(args.checkpoint, args.config or str(DEFAULT_RECIPE), style=args.style, frame_step=args.frame_step)
    print(json.dumps({**out, "style": args.style, "frame_step": args.frame_step}))


if __name__ == "__main__":
    main()
