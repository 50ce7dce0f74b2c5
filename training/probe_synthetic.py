"""Held-out synthetic probe of a training checkpoint: scale-and-shift-aligned AbsRel on clips the
training never saw, against the constant and row-ramp baselines (same metric code as `vdepth-eval`).

It answers "did the network learn the renders?" before anyone spends time on the real evaluation::

    python -m vdepth_training.probe_synthetic runs/default2/checkpoint.pt \\
        --config training/configs/default_v2_convstem.yaml

Clips: seeds 777001, 777002, 777005, 777011, 777013, 777020 (outside every training seed range),
8 frames at 120x160, run through the model at 168x224 as one window, compared at 120x160;
`--style rich` renders the same seeds in the "rich" style (`vdepth_training.data.synthetic.STYLES`).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

SEEDS: tuple[int, ...] = (777_001, 777_002, 777_005, 777_011, 777_013, 777_020)


def probe(checkpoint: str, config: str, height: int = 168, width: int = 224, style: str = "basic") -> dict[str, float]:
    """Mean AbsRel of the model, a constant map and a row ramp over `SEEDS` rendered in `style`."""
    import cv2
    from vdepth_training.data.synthetic import render_clip
    from vdepth_training.train_default import build_model, load_config

    from vdepth_ros.eval.metrics import constant_prediction, evaluate_sequence

    model = build_model(load_config(config))
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    model.eval()
    res: dict[str, list[float]] = {"model": [], "constant": [], "row_ramp": []}
    for seed in SEEDS:
        clip = render_clip(seed, frames=8, height=120, width=160, style=style)
        x = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in clip.rgb])
        x = x.astype(np.float32)
        if x.max() > 1.5:  # uint8 renders
            x /= 255.0
        with torch.no_grad():
            disp = model(torch.from_numpy(x).permute(0, 3, 1, 2)[None])[0].numpy()
        disp = np.stack([cv2.resize(d, (160, 120), interpolation=cv2.INTER_LINEAR) for d in disp])
        ramp = np.broadcast_to(np.linspace(0, 1, 120, dtype=np.float32)[None, :, None], clip.depth.shape)
        res["model"].append(evaluate_sequence(disp, clip.depth, 10.0).abs_rel)
        res["constant"].append(evaluate_sequence(constant_prediction(clip.depth.shape), clip.depth, 10.0).abs_rel)
        res["row_ramp"].append(evaluate_sequence(np.ascontiguousarray(ramp), clip.depth, 10.0).abs_rel)
    return {"step": int(state["step"]), **{k: round(float(np.mean(v)), 4) for k, v in res.items()}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="checkpoint.pt written by train_default")
    ap.add_argument("--config", default=None, help="the run's recipe YAML (default: the shipped default_v5_lite.yaml)")
    ap.add_argument("--style", default="basic", help="render style of the held-out clips (basic, rich)")
    args = ap.parse_args(argv)
    from vdepth_training.train_default import DEFAULT_CONFIG

    torch.set_num_threads(1)
    out = probe(args.checkpoint, args.config or str(DEFAULT_CONFIG), style=args.style)
    print(json.dumps({**out, "style": args.style}))


if __name__ == "__main__":
    main()
