"""SIGTERM to a DeepSpeed ZeRO-2 run mid-steps, as a user meets it (training/README.md, "SIGTERM").

Starts `accelerate launch --config_file training/configs/accelerate_zero2.yaml --num_processes 2` (two CPU
ranks, the committed config) on the tiny VDA recipe, waits for its third step (the ranks are then in
ZeRO-2's gradient reduce-scatter and parameter all-gather most of the time), sends SIGTERM to the launcher
(`--to launcher`: `scancel`, a preemption) or to every process of the launch (`--to all`: SLURM's time
limit), and prints what the user sees: the lines of ours, the checkpoints left and the launcher's exit code.

    .venv/bin/python benchmarks/zero2_sigterm.py [--to launcher|all] [--delay 0.1]

The first DeepSpeed start of a checkout JIT-builds DeepSpeed's shared-memory op (~1 min on 2 cores), under a
lock in ~/.cache/torch_extensions that every checkout of the machine shares.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from vdepth_training.config import load_config

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--to", choices=("launcher", "all"), default="launcher")
    p.add_argument("--delay", type=float, default=0.0, help="seconds after the third step's record")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cfg = load_config(REPO / "training" / "configs" / "vda.yaml", tiny=True)
        cfg.pop("tiny")
        cfg["stages"] = [{**cfg["stages"][0], "steps": 400}]
        cfg["training"].update(checkpoint_every=0, log_every=1)
        cfg["data"].update(num_samples=4, sources=[{**s, "count": 2} for s in cfg["data"]["sources"]])
        (tmp / "vda.yaml").write_text(yaml.safe_dump(cfg))
        run, log = tmp / "run", tmp / "log"
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "training" / "configs" / "accelerate_zero2.yaml"), "--num_processes", "2", "-m",
               "vdepth_training.train", "--config", str(tmp / "vda.yaml"), "--output", str(run)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        with log.open("w") as out:
            proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        metrics = run / "metrics.jsonl"
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
            if proc.poll() is not None:
                sys.exit(log.read_text()[-5000:])
            time.sleep(0.05)
        time.sleep(args.delay)
        if args.to == "launcher":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        t0 = time.monotonic()
        code = proc.wait(timeout=600)
        ours = [ln for ln in log.read_text().splitlines() if "SIGTERM" in ln or "stopped" in ln or "interrupted" in ln
                or "python -m vdepth_training.train:" in ln]  # fmt: skip
        print("\n".join(ours))
        kept = sorted(p.name for p in (run / "checkpoints").iterdir()) if (run / "checkpoints").is_dir() else []
        print(f"launcher exit code {code} {time.monotonic() - t0:.1f} s after the signal; checkpoints: {kept}")


if __name__ == "__main__":
    main()
