"""How many VDA models built without weights start dead (an all-zero output, so no gradient), with
the output-conv bias PyTorch draws and with the package's `OUTPUT_BIAS_INIT` (vda.py's docstring).

    .venv/bin/python benchmarks/weightless_vda.py --seeds 10

For each seed, the tiny config and the shipped default recipe's model are built once; the bias
PyTorch drew is recorded as the head is built (the same random stream, so every other weight is the
same) and put back for the "drawn" column.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
import yaml

import vdepth_ros.models.dpt as dpt
from vdepth_ros.models.vda import VideoDepthAnything


class _RecordingHead(dpt.DepthAnythingDepthEstimationHead):
    """The transformers head, keeping the output-conv bias its construction drew."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.drawn_bias = self.conv3.bias.detach().clone()


def dead_fraction(config: dict[str, Any], seeds: int, size: tuple[int, int]) -> dict[str, float]:
    """Fraction of seeds whose output is 0 on every pixel, with the drawn bias and with the package's."""
    dead = {"drawn": 0, "package": 0}
    frames = torch.rand(1, 4, 3, *size, generator=torch.Generator().manual_seed(0))
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = VideoDepthAnything(**config).eval()
        head = model.head.head
        with torch.no_grad():
            dead["package"] += int(not (model(frames) > 0).any())
            head.conv3.bias.copy_(head.drawn_bias)
            dead["drawn"] += int(not (model(frames) > 0).any())
    return {k: v / seeds for k, v in dead.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10)
    args = p.parse_args(argv)
    from vdepth_training.config import DEFAULT_RECIPE

    dpt.DepthAnythingDepthEstimationHead = _RecordingHead  # the head class the DPT heads build
    configs = {
        "tiny": (VideoDepthAnything.tiny_config(), (28, 42)),
        "default recipe": (yaml.safe_load(DEFAULT_RECIPE.read_text())["model"]["config"], (112, 140)),
    }
    report = {name: dead_fraction(cfg, args.seeds, size) for name, (cfg, size) in configs.items()}
    print(json.dumps({"seeds": args.seeds, "dead_fraction": report}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
