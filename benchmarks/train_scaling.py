"""Training step time with 1 process vs 2 processes (torchrun, DDP over gloo on CPU) at the same
global batch: 2 ranks x 1 micro-batch against 1 process x 2 accumulated micro-batches, with one
process at 1 thread and at 2 threads (the same cores as the two ranks).

It measures what data-parallel training costs and gains on this machine (gradient all-reduce,
process start-up excluded: the first step of each run is dropped), with a recipe's tiny config::

    .venv/bin/python benchmarks/train_scaling.py                 # vda tiny, 8 steps, 3 repeats
    .venv/bin/python benchmarks/train_scaling.py --quick         # 4 steps, 1 repeat
    .venv/bin/python benchmarks/train_scaling.py --recipe gemdepth --json out/train_scaling.json

Prints min/median/max step time per setting, the speed-up of each over 1 process x 1 thread
(ratio of median step times at equal global batch) and the load average (the machine is
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
    n = args.nproc
    settings = {"1 process x 1 thread": (1, 1), f"1 process x {n} threads": (1, n), f"{n} processes x 1 thread": (n, 1)}
    times: dict[str, list[float]] = {name: [] for name in settings}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        configs = {
            1: tiny_recipe(args.recipe, steps, folder, grad_accum=n),
            n: tiny_recipe(args.recipe, steps, folder, 1),
        }
        for k in range(repeats):  # settings alternate, so load changes hit all of them
            for i, (name, (nproc, threads)) in enumerate(settings.items()):
                times[name] += run(configs[nproc], folder / f"run{k}_{i}", nproc, threads)
                loads.append(os.getloadavg()[0])
    result = {name: stats(v) for name, v in times.items()}
    base = result["1 process x 1 thread"]["median"]
    speedup = {name: base / s["median"] for name, s in result.items()}
    report = {"recipe": args.recipe, "global_batch_micro_batches": n, "steps": steps, "repeats": repeats,
              "step_seconds": result, "speedup_vs_1x1": speedup, "load_average_1min": loads}  # fmt: skip
    for name, s in result.items():
        print(f"{name:>22}: step {s['median']:.3f} s median (min {s['min']:.3f}, max {s['max']:.3f}, n={s['n']}), "
              f"{speedup[name]:.2f}x")  # fmt: skip
    print(f"load average (1 min) during the runs: {', '.join(f'{x:.2f}' for x in loads)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
