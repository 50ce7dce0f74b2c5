"""Training step time with 1 process vs 2 processes (torchrun, DDP over gloo on CPU) at the same
global batch: 2 ranks x 1 micro-batch against 1 process x 2 accumulated micro-batches, the same
threads in all (1 process x 2 threads, 2 processes x 1 thread).

It measures what data-parallel training costs and gains on this machine (gradient all-reduce,
process start-up excluded: the first step of each run is dropped), with a recipe's tiny config::

    .venv/bin/python benchmarks/train_scaling.py                 # vda tiny, 8 steps, 3 repeats
    .venv/bin/python benchmarks/train_scaling.py --quick         # 4 steps, 1 repeat
    .venv/bin/python benchmarks/train_scaling.py --recipe gemdepth --json out/train_scaling.json

Prints min/median/max step time per setting, the speed-up of 2 processes (median 1-process step
time / median 2-process step time at equal global batch) and the load average (the machine is
shared: compare ratios from one run, not absolute times across runs). On a GPU node the same
script with `--nproc 8` measures the 8-GPU step (`--device-count` is not needed: torchrun places
one process per GPU when CUDA is present).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def tiny_recipe(recipe: str, steps: int, folder: Path, grad_accum: int) -> Path:
    """The recipe's tiny config on 4 fixed clips, one stage of `steps`, no checkpoints."""
    from vdepth_training.config import load_config

    cfg = load_config(REPO / "training" / "configs" / f"{recipe}.yaml", tiny=True)
    cfg.pop("tiny")
    cfg["data"]["num_samples"] = 4
    cfg["data"]["sources"] = [{**s, "count": 2} for s in cfg["data"]["sources"]]
    cfg["stages"] = [{**cfg["stages"][0], "steps": steps}]
    cfg["training"].update(grad_accum=grad_accum, checkpoint_every=0, log_every=1000)
    path = folder / f"{recipe}_accum{grad_accum}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(config: Path, out: Path, nproc: int, threads: int) -> list[float]:
    """Step times (s) of one run, its first step dropped (start-up, lazy initialisation)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    train = ["-m", "vdepth_training.train", "--config", str(config), "--output", str(out)]
    if nproc == 1:
        cmd = [sys.executable, *train]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *train]
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, text=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["seconds"] for r in records[1:]]


def stats(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="vda", help="a config of training/configs with a tiny section")
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    ap.add_argument("--repeats", type=int, default=3, help="runs per setting, alternating the settings")
    ap.add_argument("--nproc", type=int, default=2, help="processes of the data-parallel run")
    ap.add_argument("--quick", action="store_true", help="4 steps, 1 repeat")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    steps, repeats = (4, 1) if args.quick else (args.steps, args.repeats)
    times: dict[str, list[float]] = {"1 process": [], f"{args.nproc} processes": []}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        single = tiny_recipe(args.recipe, steps, folder, grad_accum=args.nproc)
        multi = tiny_recipe(args.recipe, steps, folder, grad_accum=1)
        for k in range(repeats):
            times["1 process"] += run(single, folder / f"one{k}", 1, args.nproc)
            times[f"{args.nproc} processes"] += run(multi, folder / f"many{k}", args.nproc, 1)
            loads.append(os.getloadavg()[0])
    result = {name: stats(v) for name, v in times.items()}
    speedup = result["1 process"]["median"] / result[f"{args.nproc} processes"]["median"]
    report = {"recipe": args.recipe, "global_batch_micro_batches": args.nproc, "steps": steps, "repeats": repeats,
              "step_seconds": result, "speedup_median": speedup, "load_average_1min": loads}  # fmt: skip
    for name, s in result.items():
        print(f"{name:>12}: step {s['median']:.3f} s median (min {s['min']:.3f}, max {s['max']:.3f}, n={s['n']})")
    print(f"speed-up of {args.nproc} processes at equal global batch: {speedup:.2f}x")
    print(f"load average (1 min) during the runs: {', '.join(f'{x:.2f}' for x in loads)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
