"""One rank of two (torchrun, gloo on CPU) fails while the other does not know: an exception in its
forward (CUDA out of memory), a disk that refuses its checkpoint, an unreadable held-out file in its
validation, a data loader that hangs, the OOM killer's SIGKILL, a NaN loss on that rank only. Every
rank ends within seconds (not the collective timeout) with one line naming the failing rank, what it
was doing and why, the run exits non-zero, and its last complete checkpoint is intact for `--resume`.
The faults are injected by `training_faults.py` (`FAULT=<kind>:<rank>:<step>`)."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import pytest
import yaml
from training_ranks import tiny_config
from training_support import PROG, REPO, error_line, one_error_before_training, rank_env, torchrun
from vdepth_training.trainer import latest_checkpoint


def _recipe(tmp_path: Path, *, validate: bool = False) -> list[str]:
    cfg = tiny_config("vda", tmp_path)
    cfg.pop("tiny")
    cfg["stages"] = [{**cfg["stages"][0], "steps": 6}]
    cfg["training"].update(checkpoint_every=2, keep_checkpoints=2, stall_timeout=5)
    if validate:
        toy = {"name": "held_out", "layout": "toy", "count": 2, "frames": 6, "height": 32, "width": 48, "seed": 7}
        cfg["data"]["validation"] = {"sources": [toy], "fixed_clips": True}
        cfg["training"].update(validate_every=2, validate_batches=2)
    path = tmp_path / "vda.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ["--config", str(path)]


def _faulty_run(tmp_path: Path, fault: str, recipe: list[str]) -> tuple[int, list[str], float]:
    """(exit code, our lines on stderr, seconds) of a two-rank run with `fault` injected."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "test" / "training_faults.py"), *recipe, "--output", str(tmp_path / "run")]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env={**rank_env(), "FAULT": fault}, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    seconds = time.monotonic() - t0
    stderr = proc.stderr.splitlines()
    assert not [ln for ln in stderr if ln.startswith("[rank")], proc.stderr[-4000:]  # no rank's traceback
    return proc.returncode, [ln for ln in stderr if ln.startswith(PROG)], seconds


@pytest.mark.parametrize(
    ("fault", "doing", "cause"),
    [
        ("raise:1:3", "rank 1 of 2 failed in step 3", "RuntimeError: CUDA out of memory"),
        ("stall:1:3", "rank 1 of 2 stalled", "waited 5 s for the batch of step 3"),
        pytest.param(
            "save:0:4", "rank 0 of 2 failed in saving checkpoint_4", "No space left on device", marks=pytest.mark.slow
        ),  # two launches (~50 s here): the failure, then --resume
        pytest.param(
            "save:1:4", "rank 1 of 2 failed in saving checkpoint_4", "No space left on device", marks=pytest.mark.slow
        ),  # rank 0's part (the model, the optimizer) was kept, and with it the full disk
        ("validate:0:4", "rank 0 of 2 failed in validation after step 4", "Input/output error"),
    ],
)
def test_one_ranks_failure_ends_both_with_one_line_naming_it(tmp_path: Path, fault: str, doing: str,
                                                             cause: str) -> None:  # fmt: skip
    """The failing rank's traceback and the other rank's gloo traceback ("Connection closed by
    peer", naming neither rank nor cause) were all the user got; an OSError of a full disk was a
    traceback too; a rank whose data loader hung left the others waiting in silence for the process
    group's timeout (30 min). Now the failing (or stalled, `training.stall_timeout`) rank says one
    line, the other one line naming it."""
    code, lines, seconds = _faulty_run(tmp_path, fault, _recipe(tmp_path, validate=fault.startswith("validate")))
    assert code != 0 and seconds < 300, (code, seconds)
    errors = [ln for ln in lines if ln.startswith(f"{PROG} error:")]
    stops = [ln for ln in lines if ln.startswith(f"{PROG} stopped after step")]
    assert len(errors) == 1 and doing in errors[0] and cause in errors[0], lines
    assert "--resume continues from checkpoint_2" in errors[0], errors
    assert len(stops) == 1 and doing in stops[0] and cause in stops[0], lines
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint_2"
    if fault.startswith("save"):  # the full disk freed: the run continues from its last checkpoint
        checkpoints = tmp_path / "run" / "checkpoints"
        assert sorted(p.name for p in checkpoints.iterdir() if not p.name.endswith(".partial")) == ["checkpoint_2"]
        # What filled the disk is gone: the main process removed the failed save. A rank still writing its
        # part when the main process's save failed may have created the folder again (accelerate's save_state
        # makes it on every rank) with its RNG state alone, a few KB, removed before the next save begins.
        left = [f.name for p in checkpoints.glob("*.partial") for f in p.rglob("*") if f.is_file()]
        assert all(re.fullmatch(r"random_states_[1-9]\d*\.pkl", name) for name in left), left
        out = torchrun(["-m", "vdepth_training.train", *_recipe(tmp_path), "--output", str(tmp_path / "run"),
                        "--resume"], timeout=300)  # fmt: skip
        assert "steps 3..6:" in out, out[-3000:]
        assert not list(checkpoints.glob("*.partial")), sorted(p.name for p in checkpoints.iterdir())


def test_a_rank_killed_by_the_oom_killer_ends_the_other_with_one_line(tmp_path: Path) -> None:
    """SIGKILL leaves the rank no word: the other rank said a gloo traceback ("Connection reset by
    peer"); now it says it stopped because another rank ended (torchrun's summary names that rank)."""
    code, lines, seconds = _faulty_run(tmp_path, "kill:1:3", _recipe(tmp_path))
    assert code != 0 and seconds < 300, (code, seconds)
    assert len(lines) == 1 and lines[0].startswith(f"{PROG} stopped after step 2 without a checkpoint"), lines
    assert "another rank ended" in lines[0], lines
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint_2"


def test_a_nan_loss_on_one_rank_stops_every_rank_at_the_same_step(tmp_path: Path) -> None:
    """A NaN loss on rank 1 only: rank 1 raised alone (FloatingPointError, "step 2" for the logged
    step 3) while rank 0 waited in the gradient reduction and died in a gloo traceback. Now the ranks
    compare their losses before the update and all stop with one line naming the step and the rank."""
    code, lines, seconds = _faulty_run(tmp_path, "nan:1:3", _recipe(tmp_path))
    assert code == 1 and seconds < 300, (code, seconds)
    assert len(lines) == 1 and lines[0].startswith(f"{PROG} error: non-finite loss in step 3 (rank 1: nan"), lines
    assert "checkpoint_2 is the last good checkpoint" in lines[0]
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint_2"


@pytest.mark.parametrize(
    ("fault", "rank_line", "other_line"),
    [
        ("start_raise:1:0", "error: rank 1 of 2 failed in building the model (RuntimeError: CUDA out of memory",
         "rank 1 of 2 failed in building the model (RuntimeError: CUDA out of memory"),
        ("start_kill:1:0", None, "stopped before training: another rank ended without a word on this node"),
    ],
)  # fmt: skip
def test_a_rank_ending_at_start_up_ends_the_other_with_one_line(tmp_path: Path, fault: str, rank_line: str | None,
                                                                other_line: str) -> None:  # fmt: skip
    """The exchanges between the process group's start and the first step (the ranks comparing their data,
    the barrier before building the model) were outside the handler that ends the ranks as one: a rank that
    ran out of memory building its model said a traceback, and the rank whose peer was killed while they
    compared their data said gloo's traceback ("Connection closed by peer") or nothing. Now each rank says
    one line: the failing one why, the other that it stopped before training and why."""
    code, lines, _ = _faulty_run(tmp_path, fault, _recipe(tmp_path))
    assert code != 0, (code, lines)
    errors = [ln for ln in lines if ln.startswith(f"{PROG} error:")]
    stops = [ln for ln in lines if ln.startswith(f"{PROG} stopped")]
    if rank_line is not None:
        assert len(errors) == 1 and errors[0].startswith(f"{PROG} {rank_line}"), lines
    else:
        assert not errors, lines
    assert len(stops) <= 1 and len(lines) == len(errors) + len(stops), lines  # at most one line each
    if stops:  # (the survivor may also be ended by torchrun's SIGTERM first: then it says so)
        assert other_line in stops[0] or "stopped before training: SIGTERM before training" in stops[0], stops
    assert stops or rank_line is not None, lines  # the survivor said why when no other rank did
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    # no checkpoint exists: no line may promise one to --resume (the stop line said "--resume continues
    # from the last complete checkpoint"); each says there is none and what starts the run again
    for line in lines:
        assert "--resume continues" not in line, lines
        assert line.endswith("no checkpoint was written, so there is nothing to resume: the same command starts "
                             "the run again from step 0"), lines  # fmt: skip


def test_sigterm_while_a_rank_waits_in_a_start_up_exchange_is_said_at_once(tmp_path: Path) -> None:
    """The scheduler's SIGTERM (to torchrun, which forwards it to its ranks) while rank 0 waits for rank 1 in a
    start-up exchange (comparing their data; rank 1 held by a hung disk): Python runs a signal handler only when
    the exchange returns, so rank 0 said nothing until torchrun killed it after its grace (here 60 s), and the
    run ended without a line. Now a thread woken by the signal says rank 0's line and ends it at once. (Rank 1,
    ignoring SIGTERM, would keep its launcher to the end of the grace: the test ends the launch once rank 0
    ended, not 60 s later.)"""
    ready = tmp_path / "rank0_in_exchange"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "test" / "training_faults.py"), *_recipe(tmp_path), "--output",
           str(tmp_path / "run")]  # fmt: skip
    env = {**rank_env(), "FAULT": "start_hold:1:0", "FAULT_READY": str(ready), "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "60"}
    launcher = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[1][-3000:]
            time.sleep(0.2)
        time.sleep(2.0)  # rank 0 is now blocked in the exchange, waiting for rank 1
        rank0 = psutil.Process(int(ready.read_text()))
        launcher.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        rank0.wait(timeout=120)  # (torchrun would have killed it, without a word, 60 s after the SIGTERM)
        assert time.monotonic() - signalled < 60, "rank 0 ended only with the launcher's grace"
    finally:
        kill_launches(launcher)
    stderr = launcher.communicate(timeout=60)[1]
    lines = [ln for ln in stderr.splitlines() if ln.startswith(PROG)]
    assert len(lines) == 1, stderr[-4000:]
    assert lines[0].startswith(f"{PROG} stopped before training: SIGTERM before training: from the launcher"), lines
    assert lines[0].endswith("no checkpoint was written, so there is nothing to resume: the same command starts "
                             "the run again from step 0"), lines  # fmt: skip
    assert not [ln for ln in stderr.splitlines() if ln.startswith("[rank")], stderr[-4000:]  # no traceback


def test_ranks_that_diverged_end_with_one_line(tmp_path: Path) -> None:
    """Ranks whose parameters differ at the end (here rank 1's weights moved after step 6) ended in a
    RuntimeError traceback on every rank; now one line says so and which weights were written."""
    code, lines, _ = _faulty_run(tmp_path, "diverge:1:6", _recipe(tmp_path))
    assert code == 1, (code, lines)
    assert len(lines) == 1 and "the ranks ended with different parameters" in lines[0], lines


def test_a_rank_that_hangs_in_its_step_is_named_by_the_others(tmp_path: Path) -> None:
    """A rank stuck in its step (a kernel, a lock; not its data, which `stall_timeout` watches) left the
    others waiting in their next exchange for the process group's timeout (30 min on gloo, not
    settable), after which they said "another rank ended without a word", which none had. Now
    `training.collective_timeout` sets that wait, and the ranks that waited name the one that hung
    and what it was doing; the launcher then ends it (here after 3 s)."""
    recipe = _recipe(tmp_path)
    cfg = yaml.safe_load(Path(recipe[1]).read_text())
    cfg["training"]["collective_timeout"] = 5
    Path(recipe[1]).write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "test" / "training_faults.py"), *recipe, "--output", str(tmp_path / "run")]  # fmt: skip
    env = {**rank_env(), "FAULT": "hang:1:3", "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "3"}
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(PROG)]
    assert proc.returncode != 0 and time.monotonic() - t0 < 200, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"{PROG} stopped after step 2 without a checkpoint: rank 1 of 2, "
                                                   "in step 3 for "), lines  # fmt: skip
    assert "did not join the other ranks within 5 s (training.collective_timeout)" in lines[0], lines
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint_2"


def test_the_grace_warning_reads_torchruns_shutdown_timeout_flag(tmp_path: Path) -> None:
    """`torchrun --shutdown-timeout 7` is not passed on to the ranks (only the variables are), so a rank
    took torchrun's 30 s for the window it warns about (and a SIGTERM's line named 30 s). Now each rank
    reads the flag from its launcher's command line and names where the number comes from."""
    probe = tmp_path / "probe.py"  # each rank writes what it reads (their stdout lines interleave)
    # and the module loads no torch (its helpers import it where needed): with torch, each rank of the
    # 4 launches spent 1 s more importing it (the test took 18-21 s, 10-12 s without, at load 3)
    probe.write_text("import os, sys\nfrom vdepth_training.ranks import launcher_grace_seconds as grace\n"
                     "assert 'torch' not in sys.modules, 'vdepth_training.ranks imported torch'\n"
                     "open(f\"{sys.argv[1]}/rank{os.environ['RANK']}\", 'w').write(repr(grace()))\n")  # fmt: skip
    env = {k: v for k, v in rank_env().items() if "SHUTDOWN_TIMEOUT" not in k}

    def ranks_read(flag: list[str], **extra: str) -> list[str]:
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        out.mkdir()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *flag,
               str(probe), str(out)]  # fmt: skip
        subprocess.run(cmd, cwd=REPO, env={**env, **extra}, capture_output=True, timeout=120, check=True)
        return [(out / f"rank{r}").read_text() for r in range(2)]

    assert ranks_read(["--shutdown-timeout", "7"]) == ["(7.0, '--shutdown-timeout')"] * 2
    assert (
        ranks_read(["--shutdown_timeout=8"], TORCH_ELASTIC_SHUTDOWN_TIMEOUT="9") == ["(8.0, '--shutdown-timeout')"] * 2
    )
    assert ranks_read([]) == ['(30.0, "torchrun\'s default")'] * 2
    assert ranks_read([], TORCH_ELASTIC_SHUTDOWN_TIMEOUT="9") == ["(9.0, 'TORCH_ELASTIC_SHUTDOWN_TIMEOUT')"] * 2


def test_more_processes_than_gpus_on_a_node_is_one_line_before_anything_is_built(tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2` on a node with one GPU (or CUDA_VISIBLE_DEVICES naming fewer GPUs
    than the launch has processes): rank 1 failed at start-up in CUDA's "invalid device ordinal", a
    traceback, while rank 0 built its model and waited for it. Now every rank of the node stops before
    anything is built, with one line naming the GPUs it has and the launcher setting that fixes it.
    (No GPU here: the ranks are told the node has one.)"""
    script = tmp_path / "one_gpu_node.py"
    script.write_text(
        "import os, sys, torch\n"
        "torch.cuda.is_available = lambda: True  # the node has one GPU\n"
        "torch.cuda.device_count = lambda: 1\n"
        "import vdepth_training.train as train\n"
        "train._exit_without_finalizing(train.main(sys.argv[1:]))\n"
    )
    proc = one_error_before_training([str(script), *_recipe(tmp_path), "--output", str(tmp_path / "run")],
                                     env={**rank_env(), "CUDA_VISIBLE_DEVICES": "0"})  # fmt: skip
    error = error_line(proc)
    assert "started 2 processes on this node but it has 1 GPU(s) (CUDA_VISIBLE_DEVICES=0)" in error, error
    assert "--nproc_per_node 1" in error
    assert "process 0 of 2" not in proc.stdout and not (tmp_path / "run").exists()  # nothing built or written


@contextmanager
def _two_nodes(
    tmp_path: Path,
    args: list[str],
    first_env: dict[str, str],
    second_env: dict[str, str],
    launcher: str = "torch.distributed.run",
) -> Iterator[tuple[subprocess.Popen, subprocess.Popen, list[Path]]]:
    """Two torchrun agents (`launcher`: torchrun's module, or `vdepth_training.torchrun` as slurm.sbatch runs it)
    meeting at a c10d rendezvous (two nodes of one process each) running `args`: the first hosts the rendezvous
    and the launch's store; yields them and their logs (first.log, second.log)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", launcher, "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
           f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=two_nodes", *args]  # fmt: skip
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    with logs[0].open("w") as first_log, logs[1].open("w") as second_log:
        first = subprocess.Popen(cmd, cwd=REPO, env=first_env, stdout=first_log, stderr=subprocess.STDOUT)
        for _ in range(300):  # the first node's agent hosts the rendezvous: the second joins it
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        second = subprocess.Popen(cmd, cwd=REPO, env=second_env, stdout=second_log, stderr=subprocess.STDOUT)
        try:
            yield first, second, logs
        finally:
            kill_launches(first, second)


def kill_launches(*launchers: subprocess.Popen) -> None:
    """SIGKILL the launchers still running and their ranks (a node lost; a failed test leaves none behind)."""
    for proc in launchers:
        if proc.poll() is None:
            with suppress(psutil.NoSuchProcess):
                for p in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
                    with suppress(psutil.NoSuchProcess):
                        p.kill()
            proc.wait(timeout=60)


@pytest.mark.parametrize(("without_data", "cache_only"), [("second", False), ("first", False), ("second", True)])
def test_a_rank_that_cannot_start_on_another_node_ends_the_others_at_once(tmp_path: Path, without_data: str,
                                                                          cache_only: bool) -> None:  # fmt: skip
    """Two nodes (two torchrun agents meeting at a c10d rendezvous, one process each): one node's rank
    cannot start (its copy of the data is not mounted). On one node torchrun ends the other ranks; across
    nodes nothing did: the other node's rank waited for it in the process group's start for its timeout
    (30 min by default, here training.collective_timeout 60 s), in silence. Now it ends within seconds,
    with one line naming the rank that could not start and why. The first node hosts the launch's store
    (torchrun's rendezvous): when its rank could not start, its agent ended with it and the second
    node's rank, reaching for the store, ended in a traceback (DistNetworkError) or in silence (its
    launcher's SIGTERM). `--cache-only` did not tell the other nodes at all: they waited for the process
    group's timeout. The launchers are slurm.sbatch's (`vdepth_training.torchrun`): a second node's plain
    torchrun that polled the store after the first node's launcher ended and before its own rank did ended in its
    `RendezvousConnectionError` traceback."""
    cfg = yaml.safe_load(Path(_recipe(tmp_path)[1]).read_text())
    cfg["training"]["collective_timeout"] = 60
    recipe = tmp_path / "vda.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    script = tmp_path / "node_without_data.py"
    script.write_text(
        "import os, sys, time\n"
        "from vdepth_ros.errors import ConfigError\n"
        "from vdepth_training.recipes.base import Recipe\n"
        "import vdepth_training.train as train\n"
        "opened = Recipe.open_data\n"
        "def open_data(self, stage):\n"
        "    if os.environ.get('NODE_WITHOUT_DATA'):\n"
        "        raise ConfigError('no sequence folders found under /data/mine (not mounted on this node)')\n"
        "    time.sleep(float(os.environ.get('LISTING_SECONDS', '0')))  # a large folder on a network disk\n"
        "    opened(self, stage)\n"
        "Recipe.open_data = open_data\n"
        "train._exit_without_finalizing(train.main(sys.argv[1:]))\n"
    )
    args = [str(script), "--config", str(recipe), "--output", str(tmp_path / "run")]
    if cache_only:
        args += ["--latent-cache", str(tmp_path / "cache"), "--cache-only"]
    first_env, second_env = rank_env(), {**rank_env(), "NODE_WITHOUT_DATA": "1"}
    if without_data == "first":  # the other node is still listing its data when the first one fails
        first_env, second_env = second_env, {**first_env, "LISTING_SECONDS": "5"}
    with _two_nodes(tmp_path, args, first_env, second_env, "vdepth_training.torchrun") as (first, second, logs):
        failing, other = (second, first) if without_data == "second" else (first, second)
        failing.wait(timeout=300)
        other.wait(timeout=300)
    out = logs[1 if without_data == "first" else 0].read_text()
    said = [ln for ln in out.splitlines() if ln.startswith(PROG)]
    assert other.returncode != 0 and len(said) == 1, out[-4000:]
    told = re.search(r"error: rank [01] of 2 could not start: no sequence folders found under /data/mine \(not "
                     r"mounted on this node\); the other ranks stop before training", said[0])  # fmt: skip
    # (the failing rank waits up to 20 s for the others to read why before its launcher, the store's, ends;
    # a rank that took longer to start on a loaded machine names the store instead)
    store_gone = without_data == "first" and "stopped before training: the launch's store at" in said[0]
    assert told or store_gone, said[0]
    assert not re.search(r"Error: |File .*(vdepth|training/)", out), out[-4000:]
    last = out.splitlines()[-1]  # the launcher's line, where a plain torchrun's traceback could end the log
    assert last.startswith("torchrun: rank ") and last.endswith(f": {said[0]}"), out[-3000:]


def test_the_first_node_lost_mid_run_is_named_by_the_others(tmp_path: Path) -> None:
    """The first node lost mid-run (its torchrun, which serves the launch's store, and its rank killed: power,
    network): the other node's rank said "another rank ended without a word on this node", which none on its
    node had, beside its launcher's traceback. Now it says the launch's store cannot be reached, as that
    launcher ended; the last complete checkpoint is kept. Its launcher, as slurm.sbatch runs it
    (`vdepth_training.torchrun`), ends the node's log with that line and the rank's exit code, where torchrun's
    own traceback and failure table followed it, and c10d's warnings of the rank and of its launcher, each with
    some 30 C++ frames, surrounded it (the node's log: 101 lines, now 6). Here the rank is in a long step
    (`long_step`) when the node is lost, so its launcher sees the store gone before its rank ends: that launcher
    then raised torchrun's `RendezvousConnectionError`, a traceback, in place of the rank's line (the other
    order, the rank first: `test_a_rank_names_the_store_lost_after_its_peer`)."""
    cfg = yaml.safe_load(Path(_recipe(tmp_path)[1]).read_text())
    cfg["stages"][0]["steps"] = 400
    recipe = tmp_path / "vda.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    ready = tmp_path / "rank1_in_long_step"
    args = [str(REPO / "test" / "training_faults.py"), "--config", str(recipe), "--output", str(tmp_path / "run")]
    env = {**rank_env(), "FAULT": "long_step:1:3", "FAULT_READY": str(ready)}
    with _two_nodes(tmp_path, args, env, env, "vdepth_training.torchrun") as (first, second, logs):
        deadline = time.monotonic() + 600
        while not ready.exists():
            assert second.poll() is None and time.monotonic() < deadline, logs[1].read_text()[-3000:]
            time.sleep(0.05)
        kill_launches(first)  # the first node is lost
        second.wait(timeout=300)
    out = logs[1].read_text()
    said = [ln for ln in out.splitlines() if ln.startswith(PROG)]
    assert second.returncode != 0 and len(said) == 1, out[-4000:]
    assert said[0].startswith(f"{PROG} stopped after step") and "the launch's store at " in said[0], said
    assert "cannot be reached: that launcher ended" in said[0], said
    assert out.splitlines()[-1] == f"torchrun: rank 1 exited with code 143: {said[0]}", out[-3000:]
    assert second.returncode == 143 and "Traceback" not in out and "frame #" not in out, out[-3000:]  # no C++ frames
    assert latest_checkpoint(tmp_path / "run") is not None


def test_a_rank_names_the_store_lost_after_its_peer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node lost takes its rank and its launcher, the store's host, at once, but the other node's rank sees its
    peer's connection closed and the store's refused one after the other. Seen in that order, it asked for the
    store once, found it still there and said "another rank ended without a word on this node" (the first-node
    test failed so 5 of 6 runs next to two busy loops). Now a rank of a launch on several nodes waits a little for
    the store's loss; on one node (its own launcher serves the store) it does not wait."""
    import threading

    from vdepth_training import ranks

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    for name in ("TORCHELASTIC_ERROR_FILE", "TORCHELASTIC_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)  # no notes of this node's ranks: the peer said nothing here
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(ranks, "_start_store", [object()])  # the launch has a store (torchrun's agent's)
    peer_gone = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer")

    def said(local_world: str) -> str:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world)
        with pytest.raises(ranks.StoppedWithoutCheckpointError) as stopped:
            ranks.end_rank(peer_gone, rank=1, world=2, doing="step 3", step=2, stop_requested=False,
                           collective_timeout=None, output_dir=tmp_path)  # fmt: skip
        return str(stopped.value)

    t0 = time.monotonic()  # one node: the store stays up (its launcher waits for this rank), no wait
    assert "another rank ended without a word on this node" in said("2") and time.monotonic() - t0 < 1.0
    closing = threading.Timer(0.5, server.close)  # two nodes: the first one's launcher is seen gone 0.5 s later
    closing.start()
    try:
        line = said("1")
    finally:
        closing.cancel()
        server.close()
    assert f"another rank ended without a word, and the launch's store at 127.0.0.1:{port}" in line, line
    assert "cannot be reached: that launcher ended" in line, line


def test_the_resume_advice_of_a_stop_line_is_what_the_output_folder_accepts(tmp_path: Path) -> None:
    """A stop line's advice (`resume_hint`) for a run without a checkpoint names a command that starts it again:
    the same command for an empty output folder, `--resume` (or `--overwrite`) where the run left its metrics
    (the same command refuses them), `--overwrite` where a finished model is left (`--resume` refuses it)."""
    from vdepth_training.checkpoints import STATE_NAME, resume_hint
    from vdepth_training.trainer import Trainer

    from vdepth_ros.offline.errors import OutputExistsError

    cfg = yaml.safe_load(Path(_recipe(tmp_path)[1]).read_text())
    out = tmp_path / "run"
    trainer = Trainer(cfg, out)
    assert resume_hint(out).endswith("the same command starts the run again from step 0")
    trainer._check_output(resume=False, overwrite=False)
    assert out.is_dir()  # (made to hold the run's lock, `checkpoints.hold_output`)
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    assert resume_hint(out).endswith(": --resume (or --overwrite) starts the run again from step 0")
    with pytest.raises(OutputExistsError):
        trainer._check_output(resume=False, overwrite=False)
    trainer._check_output(resume=True, overwrite=False)
    (out / "final").mkdir()
    assert resume_hint(out).endswith(": --overwrite starts the run again (replacing its final/ model)")
    with pytest.raises(OutputExistsError):
        trainer._check_output(resume=True, overwrite=False)
    checkpoint = out / "checkpoints" / "checkpoint_2"
    checkpoint.mkdir(parents=True)
    (checkpoint / STATE_NAME).write_text("{}")
    assert resume_hint(out) == "--resume continues from checkpoint_2"
