"""Helpers shared by the training tests: fresh accelerate state, tiny configs, rank launchers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "training" / "configs"


@pytest.fixture(autouse=True)
def fresh_accelerate() -> None:
    """accelerate's process state is a singleton that refuses a second precision; a test process
    trains several configs in a row (a launched run is one process per rank and never needs this).
    Resetting it uses accelerate's private `_reset_state`, as accelerate's own test utilities do."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def rank_env(threads: int = 1) -> dict[str, str]:
    """Environment of a launched run: one thread per rank on the 2-core machine, no hub."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "LOCAL_RANK", "RANK", "WORLD_SIZE"))}
    env.update(OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def torchrun(args: list[str], *, nproc: int = 2, timeout: float = 900, env: dict[str, str] | None = None) -> str:
    """`torchrun --standalone --nproc_per_node N <args>` (a free rendezvous port per call); returns
    the combined output, and fails the test with it when the run fails."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env or rank_env(), capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-6000:]}")
    return out


def train_here(args: list[str]) -> None:
    """`python -m vdepth_training.train ARGS` in this process, for a run a test needs only as its starting point
    (a launch's start-up is most of a tiny run's time); this process's torch threads are kept."""
    from vdepth_training.train import main

    threads = torch.get_num_threads()
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)


#: how the training CLI's lines begin on stderr (`ranks.PROG`)
PROG = "python -m vdepth_training.train:"


def one_error_before_training(args: list[str], *, nproc: int = 2, timeout: float = 300,
                              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`torchrun --standalone --nproc_per_node N <args>` (the training module's arguments, or a script's that
    wraps it) for a run that must stop at start-up: the finished process, after checking that it failed with
    exactly one line of ours on stderr, an error (said once, not once per rank, and shown in torchrun's summary of
    the failure), and that the files under its
    `--output` are as they were (no step ran; a refused `--resume` touched nothing)."""
    output = Path(args[args.index("--output") + 1]) if "--output" in args else None

    def files() -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in sorted(output.rglob("*")) if p.is_file()} if output else {}

    before = files()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env or rank_env(), capture_output=True, text=True, timeout=timeout)
    ours = [line for line in proc.stderr.splitlines() if line.startswith(PROG)]
    assert proc.returncode != 0 and len(ours) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ours[0].startswith(f"{PROG} error: "), ours
    # torchrun's failure summary shows that line (the rank's error file), not "To enable traceback see: ..."
    assert f"traceback : {ours[0]}" in proc.stderr, proc.stderr[-3000:]
    assert files() == before, "files under --output changed"
    return proc


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a run checked by `one_error_before_training`."""
    return next(line for line in proc.stderr.splitlines() if line.startswith(f"{PROG} error: "))


def uninterrupted_run(recipe: Path, output: Path, steps: int) -> Path:
    """Two ranks run `recipe` for `steps` steps (`--max-steps`) with a checkpoint at every one; returns its
    checkpoints folder (`weights_at`). One launch serves every stopped-and-resumed run of a module on that model
    and data (one each before): at a constant lr the first steps of any number of steps are the same."""
    torchrun(["-m", "vdepth_training.train", "--config", str(recipe), "--output", str(output), "--max-steps",
              str(steps)])  # fmt: skip
    return output / "checkpoints"


def weights_at(checkpoints: Path, step: int) -> dict[str, torch.Tensor]:
    """The model weights of `checkpoints/checkpoint_<step>` (a run's checkpoint or `uninterrupted_run`'s)."""
    assert (checkpoints / f"checkpoint_{step}").is_dir(), f"{checkpoints} has no checkpoint_{step}"
    return state_of(checkpoints / f"checkpoint_{step}" / "model.safetensors")


def state_of(path: Path) -> dict[str, torch.Tensor]:
    from vdepth_ros.models import load_state_dict_file

    return load_state_dict_file(path)


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], *, rtol: float = 0.0, atol: float = 0.0,
                      what: str = "") -> None:  # fmt: skip
    assert a.keys() == b.keys(), what
    for k in a:
        if rtol == 0 and atol == 0:
            assert torch.equal(a[k], b[k]), f"{what}: {k}"
        else:
            torch.testing.assert_close(
                a[k].float(), b[k].float(), rtol=rtol, atol=atol, msg=lambda m, k=k: f"{what} {k}: {m}"
            )


def tiny(name: str, **over: Any) -> dict[str, Any]:
    from vdepth_training.config import load_config

    return load_config(CONFIGS / f"{name}.yaml", tiny=True, overrides=over or None)
