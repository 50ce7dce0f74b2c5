"""Two ranks (torchrun, gloo on CPU) stopped the way clusters stop jobs: SIGTERM to the launcher
and every rank (SLURM's time limit or preemption), and SIGKILL in the middle of writing a
checkpoint. The run keeps its last complete checkpoint and `--resume` continues at its step to the
weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from training_ranks import tiny_config
from training_support import (  # noqa: F401 - fresh_accelerate: an autouse fixture
    PROG,
    REPO,
    assert_same_state,
    error_line,
    fresh_accelerate,
    one_error_before_training,
    rank_env,
    state_of,
    torchrun,
    train_here,
    uninterrupted_run,
    weights_at,
)
from vdepth_training.checkpoints import LOCK_NAME
from vdepth_training.trainer import latest_checkpoint


def _recipe(tmp_path: Path, steps: int, data: dict | None = None, **training: int) -> list[str]:
    cfg = tiny_config("vda", tmp_path)
    cfg.pop("tiny")
    cfg["stages"] = [{**cfg["stages"][0], "steps": steps}]
    cfg["training"].update(training)
    cfg["data"].update(data or {})
    path = tmp_path / "vda.yaml"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return ["--config", str(path)]


@pytest.fixture(scope="module")
def straight(module_tmp: Path) -> Path:
    """The uninterrupted run each stopped and resumed run here must end equal to (`uninterrupted_run`): the
    tiny VDA's lr is constant, so the first steps of its 400-step schedule are those of the 6-step run too."""
    recipe = _recipe(module_tmp, 400, checkpoint_every=1, keep_checkpoints=0)
    return uninterrupted_run(Path(recipe[1]), module_tmp / "straight", 10)  # past any step a test here resumes to


@pytest.mark.slow
def test_a_checkpoint_killed_while_written_keeps_the_last_complete_one(tmp_path: Path, straight: Path) -> None:
    """accelerate's rotation deleted the oldest checkpoint *before* writing the new one: a kill in
    the middle of a save (keep_checkpoints: 1) left no complete checkpoint, and `--resume` started
    again from step 0; with two kept, the resumed run deleted the last complete checkpoint and then
    crashed on the half-written folder ("Checkpoint directory ... already exists")."""
    recipe = _recipe(tmp_path, 6, checkpoint_every=1, keep_checkpoints=1)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "test" / "training_killed_in_save.py"), *recipe, "--output", str(run)]  # fmt: skip
    killed = subprocess.run(cmd, cwd=REPO, env={**rank_env(), "KILL_AT_SAVE": "4"}, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert not (run / "final").exists()
    last = latest_checkpoint(run)
    assert last is not None and last.name == "checkpoint_3", sorted(p.name for p in (run / "checkpoints").iterdir())
    # SIGTERM to one rank only (the launcher never sees it) after the last step, as the ranks compare their final
    # parameters: that rank died of it there and the other said to start the run again
    faults = [str(REPO / "test" / "training_faults.py"), *recipe]
    out = torchrun([*faults, "--output", str(run), "--resume"], env={**rank_env(), "FAULT": "sigterm:1:end"})
    assert "steps 4..6:" in out and f"model: {run / 'final'}" in out, out[-3000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint_6"]  # the killed save is gone
    assert (run / "final").is_dir()
    assert_same_state(weights_at(straight, 6), weights_at(run / "checkpoints", 6), what="killed in a save")


@pytest.mark.slow
def test_sigterm_as_slurm_sends_it_stops_both_ranks_with_a_checkpoint(tmp_path: Path, straight: Path) -> None:
    """SLURM ends a job (time limit, preemption, scancel) with SIGTERM to every process of the step,
    then SIGKILL; torchrun forwards SIGTERM to its ranks as well. The ranks used to die at once,
    losing every step since the last periodic checkpoint; now both finish the step, save one
    checkpoint at the same step and exit, and the requeued run (`--resume`) continues exactly. A second
    run on the folder while the first runs is refused."""
    recipe = _recipe(tmp_path, 400, checkpoint_every=0, num_workers=1)  # loader workers get the SIGTERM too
    base = ["-m", "vdepth_training.train", *recipe]
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *base,
           "--output", str(run)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=rank_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + 600
    while not (run / LOCK_NAME).is_file():
        assert proc.poll() is None and time.monotonic() < deadline, "the run never locked its folder"
        time.sleep(0.05)
    # the job started again on the same folder while it runs (a requeued job beside the running one, one_node.sh
    # in another terminal; both pass --resume): both trained from one checkpoint over each other's files
    second = subprocess.run([*cmd, "--resume"], cwd=REPO, env=rank_env(), capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    ours = [ln for ln in second.stderr.splitlines() if ln.startswith(PROG)]  # rank 0's, and rank 1's naming it
    assert second.returncode != 0 and ours and all("is in use by another run (pid" in ln for ln in ours), ours
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, "no third step"
        time.sleep(0.05)
    launcher = psutil.Process(proc.pid)
    for p in [launcher, *launcher.children(recursive=True)]:  # every process of the job step
        p.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=120)[0]
    stops = [ln.split("stopped after step ")[1].split()[0] for ln in log.splitlines() if "stopped after step" in ln]
    assert len(stops) == 1, log[-4000:]  # said once (by rank 0), not once per rank
    assert len([ln for ln in log.splitlines() if "SIGTERM: stopping after this step" in ln]) == 1, log[-4000:]
    step = int(stops[0])
    assert [p.name for p in (run / "checkpoints").iterdir()] == [f"checkpoint_{step}"]
    assert not (run / LOCK_NAME).exists()  # released: the folder holds what the run wrote only
    saved = {p.name for p in (run / "checkpoints" / f"checkpoint_{step}").iterdir()}
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= saved  # both ranks saved at that step
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == list(range(1, step + 1))
    torchrun([*base, "--output", str(run), "--resume", "--max-steps", str(step + 2)])
    if not (straight / f"checkpoint_{step + 2}").is_dir():  # (the run went on while the second one was refused)
        torchrun([*base, "--output", str(tmp_path / "straight"), "--max-steps", str(step + 2)])
        straight = tmp_path / "straight" / "checkpoints"
    assert_same_state(weights_at(straight, step + 2), weights_at(run / "checkpoints", step + 2),
                      what="stopped by SIGTERM and resumed")  # fmt: skip


@pytest.mark.slow
def test_overwrite_through_the_one_node_launcher_starts_the_run_again(tmp_path: Path) -> None:
    """one_node.sh always added --resume, which won over --overwrite: a changed config was refused
    with "... or --overwrite to start again" although --overwrite was given, and with the same
    config the old run continued. Now --overwrite starts again (two ranks, the launcher as shipped; the run it
    replaces trains here, in one process: resumed on two ranks, it would be refused too)."""
    recipe = _recipe(tmp_path, 3, checkpoint_every=1)
    run = tmp_path / "run"
    env = {**rank_env(), "GPUS": "2", "PYTHON": sys.executable}
    launch = ["bash", str(REPO / "training" / "launch" / "one_node.sh"), recipe[1], "--output", str(run)]
    train_here([*recipe, "--output", str(run), "--max-steps", "2"])
    cfg = yaml.safe_load(Path(recipe[1]).read_text())
    cfg["optimizer"]["lr"] = 1e-3  # another run in the same folder
    Path(recipe[1]).write_text(yaml.safe_dump(cfg))
    again = subprocess.run([*launch, "--overwrite"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "steps 1..3:" in again.stdout
    saved = json.loads((latest_checkpoint(run) / "trainer_config.json").read_text())
    assert saved["optimizer"]["lr"] == 1e-3
    both = subprocess.run(
        [sys.executable, "-m", "vdepth_training.train", *recipe, "--output", str(run), "--resume", "--overwrite"],
        cwd=REPO, env=rank_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1, both.stderr[-2000:]
    assert "pass one of them" in both.stderr


def test_slurm_job_overwrites_on_its_first_attempt_and_a_requeued_job_continues(tmp_path: Path) -> None:
    """sbatch ... --overwrite: the first attempt starts again; SLURM requeues a preempted job with
    the same arguments (SLURM_RESTART_COUNT 1), which must continue, not start again a second time."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\nprintf 'gpu-a01\\n'\n")
    (bin_dir / "srun").write_text('#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\n"$@"\n')
    (bin_dir / "python").write_text(
        f"#!/usr/bin/env bash\n{sys.executable} -c \"import json, sys; open('{calls}', 'a').write("
        'json.dumps(sys.argv[1:]) + chr(10))" "$@"\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**rank_env(), "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-a01",
           "SLURM_NNODES": "1", "SLURM_JOB_ID": "7", "PYTHON": str(bin_dir / "python")}  # fmt: skip
    script = ["bash", str(REPO / "training" / "launch" / "slurm.sbatch"), "training/configs/vda.yaml", "--overwrite"]
    for restarts in ("0", "1"):
        subprocess.run(script, cwd=REPO, env={**env, "SLURM_RESTART_COUNT": restarts}, check=True)
    first, requeued = (json.loads(x) for x in calls.read_text().splitlines())
    assert "--overwrite" in first and "--resume" not in first
    assert "--resume" in requeued and "--overwrite" not in requeued


@pytest.mark.slow
def test_resume_on_a_finished_run_without_checkpoints_keeps_its_model(tmp_path: Path) -> None:
    """The launchers always pass --resume. On a finished run without checkpoints (checkpoint_every
    0, or deleted to free the disk) it found nothing to resume and silently started a new run:
    metrics.jsonl emptied at once and final/ replaced at the end, with another config's model. The run
    here finishes as a job preempted in its last step (a requeued job then meets it)."""
    recipe = _recipe(tmp_path, 2, checkpoint_every=0)
    run = tmp_path / "run"
    train = ["-m", "vdepth_training.train", *recipe, "--output", str(run)]
    # the run finished as SLURM stops a job: SIGTERM to the launcher and every rank in its last step; the ranks
    # complete it (final/) and the launcher says so, exit code 0 (it said "stopped by SIGTERM", 143)
    launch = [sys.executable, "-m", "vdepth_training.torchrun", "--standalone", "--nproc_per_node=2",
              str(REPO / "test" / "training_faults.py"), *recipe, "--output", str(run)]  # fmt: skip
    done = subprocess.run(launch, cwd=REPO, env={**rank_env(), "FAULT": "sigterm_group:0:2"}, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0 and "the run is complete" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    assert "torchrun: SIGTERM came as the run ended: every rank completed it" in done.stderr, done.stderr[-3000:]
    assert not (run / "checkpoints").exists()
    model, metrics = state_of(run / "final"), (run / "metrics.jsonl").read_text()
    cfg = yaml.safe_load(Path(recipe[1]).read_text())
    cfg["optimizer"]["lr"] = 1e-3
    Path(recipe[1]).write_text(yaml.safe_dump(cfg))
    said = error_line(one_error_before_training([*train, "--resume"], timeout=600))  # once, not once per rank
    assert "--overwrite" in said, said
    assert_same_state(model, state_of(run / "final"), what="final/ of the finished run")
    assert (run / "metrics.jsonl").read_text() == metrics


def _batches_seen(folder: Path) -> list[tuple]:
    """The keys of the batches the ranks of a run under `training_batches_seen.py` read, ordered by
    their index in the stream when the run started at its beginning: rank r of W read batch i·W + r as its
    i-th (any number of micro-batches; a resumed run's are simply listed after)."""
    ranks = [[tuple(map(tuple, json.loads(x))) for x in p.read_text().splitlines()]
             for p in sorted(folder.glob("rank*.jsonl"))]  # fmt: skip
    return [keys[i] for i in range(max(map(len, ranks))) for keys in ranks if i < len(keys)]


@pytest.mark.slow
def test_a_run_resumes_on_another_number_of_ranks_with_the_same_global_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A requeued job on half the GPUs (and back): the ranks partition one batch stream, so with the
    global batch kept this continues the same run, but it was refused as a changed config ("processes:
    2 -> 1") unless --allow-config-change, which lets any other edit through as well. A config that
    states its global batch (`training.global_batch`, as the papers' recipes do) keeps it on any number
    of processes (grad_accum derived: 1 on two ranks, 2 on one), so the same file resumes on either, to
    the weights of the uninterrupted run; the same file without it trained another global batch on
    another number of GPUs, and its resume there is still refused, naming the grad_accum that would
    keep it, or (three ranks for a global batch of two, where none does) the numbers of processes that can.

    Allowed (--allow-config-change), another global batch read the stream at step x the new global batch:
    2 ranks' 2 steps resumed on 1 process read batches 2, 3 again (taken twice), 1 process's resumed on 2
    ranks of 2 micro-batches skipped batches 4-7. The checkpoint now records the stream position, so both
    read on from the first batch no step read: the clips the ranks read (`training_batches_seen.py`) are
    exactly those of the uninterrupted run, none skipped or read twice."""
    from vdepth_training.config import load_config
    from vdepth_training.trainer import Trainer

    from vdepth_ros.errors import ConfigError

    # every batch of the stream another clip (its key names it): of 2 x 37 starts x 43 crops, not the same 4 clips
    new_clips = {"fixed_clips": False, "sources": [{"name": "toy", "layout": "toy", "count": 2, "frames": 40,
                                                    "height": 32, "width": 96}]}  # fmt: skip
    fixed = _recipe(tmp_path / "fixed", 4, new_clips, global_batch=2)
    accum1 = _recipe(tmp_path / "a1", 4, new_clips, checkpoint_every=1)
    accum2 = _recipe(tmp_path / "a2", 4, new_clips, grad_accum=2)
    train, recorder = ["-m", "vdepth_training.train"], [str(REPO / "test" / "training_batches_seen.py")]

    def recorded(name: str) -> dict[str, str]:
        (tmp_path / "seen" / name).mkdir(parents=True)
        return {**rank_env(), "BATCHES_SEEN": str(tmp_path / "seen" / name)}

    straight = torchrun([*recorder, *fixed, "--output", str(tmp_path / "straight")], env=recorded("straight"))
    assert "global batch 2: batch_size 1 x grad_accum 1 x 2 process(es)" in straight, straight[-3000:]
    want, stream = state_of(tmp_path / "straight" / "final"), _batches_seen(tmp_path / "seen" / "straight")
    assert len(stream) == len(set(stream)) == 8  # 4 steps of 2 batches: 8 clips
    two_to_one, one_to_two = tmp_path / "two_to_one", tmp_path / "one_to_two"
    torchrun([*recorder, *accum1, "--output", str(two_to_one), "--max-steps", "2"], env=recorded("two_to_one"))
    # refused on 1 process, naming the grad_accum that keeps the global batch, and on 3 ranks, where none does,
    # the numbers of processes that can (the lines each process of such a launch says, compared in this one)
    for processes, said in (("1", "training.grad_accum: 2 keeps it"), ("3", "no grad_accum keeps it on 3 processes: "
                            "resume on 1 with training.grad_accum: 2 or 2 with training.grad_accum: 1")):  # fmt: skip
        monkeypatch.setenv("WORLD_SIZE", processes)
        with pytest.raises(ConfigError) as refused:
            Trainer(load_config(Path(accum1[1])), two_to_one)._check_resumed_config(
                latest_checkpoint(two_to_one), False
            )
        assert said in str(refused.value), refused.value
    monkeypatch.delenv("WORLD_SIZE")
    shutil.copytree(two_to_one, tmp_path / "two_to_one_batch1")
    single = subprocess.run([sys.executable, *train, *fixed, "--output", str(two_to_one), "--resume"], cwd=REPO,
                            env=rank_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert single.returncode == 0 and "steps 3..4:" in single.stdout, single.stderr[-3000:]
    assert "global batch 2: batch_size 1 x grad_accum 2 x 1 process(es)" in single.stdout, single.stdout[-3000:]
    assert_same_state(want, state_of(two_to_one / "final"), rtol=1e-5, atol=1e-6, what="2 ranks -> 1 process")
    # allowed, a global batch of 1 on one process: its steps 3 and 4 read batches 4 and 5
    batch1 = subprocess.run([sys.executable, *recorder, *accum1, "--output", str(tmp_path / "two_to_one_batch1"),
                             "--resume", "--allow-config-change"], cwd=REPO, env=recorded("two_to_one_batch1"),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert batch1.returncode == 0 and "steps 3..4:" in batch1.stdout, batch1.stderr[-3000:]
    read = _batches_seen(tmp_path / "seen" / "two_to_one") + _batches_seen(tmp_path / "seen" / "two_to_one_batch1")
    assert sorted(read) == sorted(stream[:6]), "2 ranks -> 1 process, another global batch: skipped or read twice"
    assert "the batch stream goes on at batch 4 (sample 4)" in batch1.stdout, batch1.stdout[-3000:]
    first = subprocess.run([sys.executable, *recorder, *fixed, "--output", str(one_to_two), "--max-steps", "2"],
                           cwd=REPO, env=recorded("one_to_two"), capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    shutil.copytree(one_to_two, tmp_path / "one_to_two_batch4")
    assert "steps 3..4:" in torchrun([*train, *fixed, "--output", str(one_to_two), "--resume"])
    assert_same_state(want, state_of(one_to_two / "final"), rtol=1e-5, atol=1e-6, what="1 process -> 2 ranks")
    # allowed, a global batch of 4 on two ranks (2 micro-batches each): its step 3 reads batches 4-7
    torchrun([*recorder, *accum2, "--output", str(tmp_path / "one_to_two_batch4"), "--resume", "--allow-config-change",
              "--max-steps", "3"], env=recorded("one_to_two_batch4"))  # fmt: skip
    read = _batches_seen(tmp_path / "seen" / "one_to_two") + _batches_seen(tmp_path / "seen" / "one_to_two_batch4")
    assert sorted(read) == sorted(stream), "1 process -> 2 ranks, another global batch: skipped or read twice"


def test_damaged_files_of_a_users_folder_are_skipped_and_counted_alike_on_both_ranks(tmp_path: Path) -> None:
    """A depth file cut short (an interrupted copy) is found only when a rank draws it, after the
    checks at start-up. That ended both ranks (a traceback, later one line naming the file), and the
    resumed run met the same clip again: a few damaged files in a large folder stopped training for
    good. Now the clip is drawn again (a pure function of its index: every rank and a resumed run
    skip alike, each rank still takes one batch per micro-step), the file is named in a warning, and
    the skipped clips are counted in metrics.jsonl and the summary; the ranks end with identical
    parameters and the same count as one process with grad_accum 2. The file is named once: each rank's
    loader worker named it, per clip of it that it met."""
    import numpy as np
    from vdepth_training.data.sequence import Sequence, write_sequence

    rng = np.random.default_rng(0)
    for i in range(2):  # both ranks draw clips of seq1
        write_sequence(tmp_path / "mine" / f"seq{i}", Sequence(
            rgb=rng.integers(0, 256, (6, 32, 48, 3), dtype=np.uint8),
            target=rng.uniform(1, 5, (6, 32, 48)).astype(np.float32), valid=np.ones((6, 32, 48), bool)))  # fmt: skip
    damaged = tmp_path / "mine" / "seq1" / "target" / "000003.npy"
    damaged.write_bytes(damaged.read_bytes()[:100])
    cfg = tiny_config("vda", tmp_path)
    cfg.pop("tiny")
    cfg["data"]["sources"] = [{"name": "mine", "layout": "sequence", "root": str(tmp_path / "mine")}]
    cfg["stages"] = [{**cfg["stages"][0], "steps": 8}]
    cfg["training"].update(num_workers=2, checkpoint_every=0)
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    train = ["-m", "vdepth_training.train", "--config", str(recipe)]
    log = torchrun([*train, "--output", str(tmp_path / "run")])
    warned = [ln for ln in log.splitlines() if f"{damaged} is damaged" in ln and "drawn again" in ln]
    assert len(warned) == 1, log[-4000:]  # once, not by every rank and loader worker (nor per clip) that met it
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    skipped = sum(m.get("data/skipped", 0) for m in metrics)
    assert skipped > 0 and f"; {skipped} clips skipped for damaged files" in log, log[-3000:]
    cfg["training"]["grad_accum"] = 2
    recipe.write_text(yaml.safe_dump(cfg))
    one = subprocess.run([sys.executable, *train, "--output", str(tmp_path / "one")], cwd=REPO, env=rank_env(),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert one.returncode == 0 and f"; {skipped} clips skipped" in one.stdout, one.stdout[-2000:] + one.stderr[-2000:]
    assert_same_state(state_of(tmp_path / "run" / "final"), state_of(tmp_path / "one" / "final"), rtol=1e-5,
                      atol=1e-6, what="2 ranks vs 1 process over damaged files")  # fmt: skip


@pytest.mark.slow
def test_a_preemption_save_longer_than_torchruns_grace_is_warned_and_keeps_the_last_checkpoint(
    tmp_path: Path, straight: Path
) -> None:
    """torchrun SIGKILLs its ranks 30 s after forwarding a SIGTERM (`--shutdown-timeout`, here 2 s,
    which the ranks read from torchrun's command line); a step and a save that take longer (here 3 s:
    a large model on a slow disk) are killed in the save. Nothing said so before a preemption lost the
    steps since the last periodic checkpoint: now the first periodic save that outlasts the window is
    one warning (rank 0) naming the window, where it comes from and the variable that widens it. The
    save killed by the launcher leaves the last complete checkpoint, which resumes to the weights of an
    uninterrupted run."""
    recipe = _recipe(tmp_path, 400, checkpoint_every=2, keep_checkpoints=2)
    run, log_file = tmp_path / "run", tmp_path / "launch.log"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--shutdown-timeout=2",
           str(REPO / "test" / "training_faults.py"), *recipe, "--output", str(run)]  # fmt: skip
    env = {
        **rank_env(),
        "FAULT": "slow_save:0:1",
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "30",
    }  # the flag wins, as in torchrun
    with log_file.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 600
        while latest_checkpoint(run) is None or len((run / "metrics.jsonl").read_text().splitlines()) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, log_file.read_text()[-4000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # to torchrun, which forwards it and kills after its window
        proc.wait(timeout=120)
    log = log_file.read_text()
    warned = [ln for ln in log.splitlines() if "longer than the 2 s (--shutdown-timeout) torchrun waits after" in ln]
    assert len(warned) == 1 and "TORCH_ELASTIC_SHUTDOWN_TIMEOUT=" in warned[0], log[-4000:]
    assert "forcefully exiting via 9" in log, log[-4000:]  # the launcher killed the ranks in their save
    last = latest_checkpoint(run)
    assert last is not None and not (run / "final").exists()
    assert [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".partial")], "the killed save"
    step = int(last.name.split("_")[1]) + 1
    base = ["-m", "vdepth_training.train", *recipe, "--max-steps", str(step)]
    assert f"steps {step}..{step}:" in torchrun([*base, "--output", str(run), "--resume"])
    assert_same_state(weights_at(straight, step), weights_at(run / "checkpoints", step),
                      what="killed in its preemption save and resumed")  # fmt: skip
