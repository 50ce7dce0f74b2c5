"""Every recipe on two ranks (torchrun, gloo on CPU), as deployed: identical parameters on both
ranks, equal to one process with the same global batch, exact resume after a stop and after a
kill, an exported model that loads, DeepSpeed ZeRO-2 through `accelerate launch`, and the
multi-node launch files rendered for 2 nodes x 8 GPUs.

One torchrun launch (`training_ranks.py`) trains every recipe's shortened tiny config, straight
and stopped-then-resumed, for all tests of this module (the launches dominate the time).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from training_ranks import SCHEDULES, tiny_config
from training_support import (  # noqa: F401 - fresh_accelerate: an autouse fixture
    REPO,
    assert_same_state,
    error_line,
    fresh_accelerate,
    one_error_before_training,
    rank_env,
    state_of,
    torchrun,
    uninterrupted_run,
    weights_at,
)
from vdepth_training.config import load_config
from vdepth_training.data.stream import ClipBatches, RankSampler
from vdepth_training.recipes import get_recipe
from vdepth_training.stages import plan_stages
from vdepth_training.torchrun import main as torchrun_main
from vdepth_training.trainer import Trainer

from vdepth_ros.errors import extra_hint

#: steps of the run the kill test stops (its stop must land mid-run on a fast machine too)
KILLED_RUN_STEPS = 16
RECIPES = ["vda", "gemdepth", "dvd", "fiffdepth", "depthcrafter", "onestep", "onestep_decoder", "default"]
#: recipes also trained in one process: DPT, LoRA, a paired pseudo-label stream, per-batch EDM
#: noise, per-batch augmentation and a continue stage
SINGLE_PROCESS_CHECKED = ("vda", "dvd", "fiffdepth", "depthcrafter", "default")


@pytest.fixture(scope="module")
def ranks(module_tmp: Path) -> tuple[Path, str]:
    """Two ranks train every recipe (straight, and stopped + resumed); returns (folder, output)."""
    pytest.importorskip("embreex")  # the default recipe renders its clips
    out = module_tmp
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(REPO / "test" / "training_ranks.py"), str(out), *RECIPES],
        cwd=REPO, env=rank_env(), capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    return out, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def straight(module_tmp: Path) -> Path:
    """The uninterrupted run the killed and the Ctrl-C'd runs here must end equal to (`uninterrupted_run`): the
    tiny VDA at a constant lr, whose first steps of a 400-step schedule are those of the 16-step run too."""
    import yaml

    cfg = _vda_steps(400, module_tmp)
    cfg["training"].update(keep_checkpoints=0)
    recipe = module_tmp / "straight.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    return uninterrupted_run(recipe, module_tmp / "straight", KILLED_RUN_STEPS)


def _vda_steps(steps: int, root: Path) -> dict:
    """The tiny VDA of `training_ranks.tiny_config` (4 clips, a checkpoint every step) with `steps` steps."""
    cfg = tiny_config("vda", root)
    cfg.pop("tiny")
    cfg["stages"] = [{**cfg["stages"][0], "steps": steps}]
    return cfg


def test_rank_streams_partition_one_stream() -> None:
    """Rank r of W takes batches p + m*W + r from stream position p: disjoint, and together exactly one
    stream, also from a position that is not a multiple of W (a run resumed on another number of ranks)."""
    for position in (6, 5):
        per_rank = [list(zip(range(5), RankSampler(position, r, 2), strict=False)) for r in range(2)]
        taken = sorted(b for rank in per_rank for _, b in rank)
        assert taken == list(range(position, position + 10))
    ds = tiny_config("vda", Path("/nonexistent"))
    recipe = get_recipe(ds)
    batches = recipe.batches(plan_stages(ds)[0])
    assert isinstance(batches, ClipBatches)
    keys = [tuple(batches[b]["key"][0].tolist()) for b in range(4)]
    assert len(set(keys)) > 1  # the ranks' first batches are different clips
    assert tuple(batches[1]["key"][0].tolist()) == keys[1]  # ... and a pure function of the index


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_statistics_of_the_ranks_compose_as_one_process(momentum: float | None) -> None:
    """The ranks' BatchNorm running statistics, each updated from the same start by its own batches
    (one rank twice: a recipe may run the model twice), composed in rank order (`running_stats.compose`)
    equal one process's that took the same batches in that order (DDP gave every rank rank 0's)."""
    from vdepth_training.running_stats import compose

    torch.manual_seed(0)
    start = torch.nn.BatchNorm1d(4, momentum=momentum)
    start.running_mean.uniform_(-1, 1)
    start.num_batches_tracked.fill_(3)
    batches = [[torch.randn(5, 4) * (r + 1) + r for _ in range(k)] for r, k in enumerate((1, 2, 1))]
    one = copy.deepcopy(start).train()
    ranks = [copy.deepcopy(start).train() for _ in batches]
    with torch.no_grad():
        for rank, own in zip(ranks, batches, strict=True):
            for x in own:
                one(x), rank(x)
    counts = [len(own) for own in batches]
    for name in ("running_mean", "running_var"):
        ends = [getattr(rank, name).double() for rank in ranks]
        got = compose(getattr(start, name).double(), 3, ends, counts, momentum)
        torch.testing.assert_close(got.float(), getattr(one, name), rtol=1e-6, atol=1e-6)
        assert not torch.allclose(ends[0].float(), getattr(one, name))  # rank 0's alone: what DDP kept


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_two_ranks_train_like_one_process_and_resume_exactly(name: str, ranks: tuple[Path, str]) -> None:
    from vdepth_ros.models import load_model

    out, log = ranks
    errors = sorted((out / name).glob("error*.txt"))
    assert not errors, errors[0].read_text()
    for rank in (0, 1):  # two processes really ran
        assert f"process {rank} of 2 (DistributedType.MULTI_CPU on cpu:0, {name.split('_')[0]})" in log
    straight = [state_of(out / name / "straight" / f"rank{r}.safetensors") for r in (0, 1)]
    assert_same_state(straight[0], straight[1], what="rank 0 vs rank 1")
    resumed = state_of(out / name / "resumed" / "rank0.safetensors")
    assert_same_state(straight[0], resumed, what=f"stopped at step {SCHEDULES[name][1]} and resumed")
    steps = sum(SCHEDULES[name][0])
    records = [json.loads(x) for x in (out / name / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, steps + 1))  # one writer: the main process
    kept = sorted(p.name for p in (out / name / "straight" / "checkpoints").iterdir())
    assert kept == [f"checkpoint_{s}" for s in range(max(1, steps - 1), steps + 1)]  # rotation keeps the last 2
    # the exported model loads, with the trained weights (LoRA merged for DVD)
    model = load_model(out / name / "straight" / "final")
    assert model.family == get_recipe(tiny_config(name, out)).build_model().family
    if name != "dvd":
        exported = {k: v.float() for k, v in state_of(out / name / "straight" / "final").items()}
        assert_same_state({k: straight[0][k] for k in exported}, exported, what="final/")
    # one process with the same global batch (2 accumulated micro-batches) trains the same model;
    # one thread as each rank had: another thread count sums in another order, and Adam turns the
    # last-bit differences of near-zero gradients into differences of the order of the lr. One
    # recipe per mechanism (the trainer's stream and step are recipe-agnostic; CI time is short).
    if name not in SINGLE_PROCESS_CHECKED:
        return
    threads = torch.get_num_threads()
    try:
        single = Trainer(tiny_config(name, out, grad_accum=2, threads=1), out / name / "single")
        single.fit()
    finally:
        torch.set_num_threads(threads)
    one = {k: v.detach().float() for k, v in single.model.state_dict().items()}
    assert_same_state(one, straight[0], rtol=1e-5, atol=1e-6, what="1 process x 2 micro-batches")


@pytest.mark.slow
def test_cli_killed_rank_group_resumes_exactly(tmp_path: Path, straight: Path) -> None:
    """`torchrun -m vdepth_training.train` killed (SIGKILL) after its first checkpoint, then
    started again with --resume, ends with the weights of the uninterrupted run."""
    import yaml

    # Long enough to be caught mid-run: the tiny VDA's 3 steps ended, and rotated checkpoint_1
    # away, between two looks on a fast machine.
    cfg = _vda_steps(KILLED_RUN_STEPS, tmp_path)
    recipe = tmp_path / "vda.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    train = ["-m", "vdepth_training.train", "--config", str(recipe)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *train,
           "--output", str(run)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=rank_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 900
    while not any((run / "checkpoints").glob("checkpoint_*/trainer_state.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint before the run ended"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, mid-run
    proc.wait(timeout=60)
    assert not (run / "final").exists(), "the run ended before it was killed"
    torchrun([*train, "--output", str(run), "--resume"])
    assert (run / "final").is_dir()
    assert_same_state(weights_at(straight, KILLED_RUN_STEPS), weights_at(run / "checkpoints", KILLED_RUN_STEPS),
                      what="killed and resumed")  # fmt: skip


@pytest.mark.slow
def test_zero2_two_ranks_resume_and_export(tmp_path: Path) -> None:
    """DeepSpeed ZeRO-2 through `accelerate launch` (the config the papers' 8-GPU runs use, on 2
    CPU processes): ranks agree, a stopped run resumes exactly, and the export after ZeRO loads."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install 'vdepth_ros[deepspeed]')")
    from vdepth_ros.models import load_model

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "training" / "configs" / "accelerate_zero2.yaml"), "--num_processes", "2",
           str(REPO / "test" / "training_ranks.py"), str(tmp_path), "vda"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=rank_env(), capture_output=True, text=True, timeout=1800)
    log = proc.stdout + proc.stderr
    errors = sorted((tmp_path / "vda").glob("error*.txt"))
    assert proc.returncode == 0 and not errors, errors[0].read_text() if errors else log[-6000:]
    for rank in (0, 1):
        assert f"process {rank} of 2 (DistributedType.DEEPSPEED" in log
    straight = [state_of(tmp_path / "vda" / "straight" / f"rank{r}.safetensors") for r in (0, 1)]
    assert_same_state(straight[0], straight[1], what="ZeRO-2 rank 0 vs rank 1")
    assert_same_state(straight[0], state_of(tmp_path / "vda" / "resumed" / "rank0.safetensors"), what="resumed")
    model = load_model(tmp_path / "vda" / "straight" / "final")
    exported = {k: v.float() for k, v in model.state_dict().items() if k in straight[0]}
    assert_same_state({k: straight[0][k] for k in exported}, exported, what="final/ after ZeRO")
    # the last ZeRO checkpoint folder (`pytorch_model/` shards) reads as the trained weights, as
    # training.init / --export-checkpoint / vdepth-export import read it (`load_state_dict_file`)
    from vdepth_training.trainer import latest_checkpoint

    zero = state_of(latest_checkpoint(tmp_path / "vda" / "straight"))
    assert_same_state(straight[0], {k: v.float() for k, v in zero.items()}, what="ZeRO checkpoint folder")


def test_deepspeed_requested_but_unusable_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`training.deepspeed` never falls back to plain data parallel in silence."""
    zero2 = str(REPO / "training" / "configs" / "deepspeed_zero2.json")
    cfg = load_config(
        REPO / "training" / "configs" / "vda.yaml", tiny=True, overrides={"training": {"deepspeed": zero2}}
    )
    for var in ("LOCAL_RANK", "WORLD_SIZE", "RANK", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="DeepSpeed"):
        Trainer(cfg, tmp_path).fit()
    monkeypatch.setattr("accelerate.utils.is_deepspeed_available", lambda: False)
    with pytest.raises(RuntimeError, match="not installed") as err:
        Trainer(cfg, tmp_path).fit()
    assert extra_hint("deepspeed") in str(err.value)  # the install's own command, as every missing extra
    assert not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.parametrize("name", RECIPES[:-1])
def test_recipes_freeze_exactly_the_parameters_their_forward_never_uses(name: str, tmp_path: Path) -> None:
    """After `configure_stage` every trainable parameter gets a gradient from one batch (DDP needs
    no `find_unused_parameters`), and each parameter the recipe freezes as unused really gets none."""
    cfg = tiny_config(name, tmp_path)
    recipe = get_recipe(cfg)
    torch.manual_seed(0)
    model = recipe.build_model()
    for stage in plan_stages(cfg):
        recipe.configure_stage(model, stage)
        recipe.start_stage(stage)
        unused = set(recipe.unused_parameters(model))
        named = dict(model.named_parameters())
        trainable = {n for n, p in named.items() if p.requires_grad}
        tops = {t.split(".")[0] for t in trainable}  # once, not once per parameter
        for n in unused & {n for n in named if n.split(".")[0] in tops}:
            named[n].requires_grad_(True)  # unfreeze to see that no gradient reaches them
        model.zero_grad(set_to_none=True)
        loss, _ = recipe.loss(model, recipe.batches(stage)[0], torch.Generator().manual_seed(0))
        loss.backward()
        missing = sorted(n for n in trainable if named[n].grad is None)
        assert not missing, f"{stage.name}: trainable but unused {missing[:8]}"
        reached = sorted(n for n in unused if named[n].requires_grad and named[n].grad is not None)
        assert not reached, f"{stage.name}: frozen as unused but used {reached[:8]}"


def test_launch_files_render_for_two_nodes_of_eight_gpus(tmp_path: Path) -> None:
    """The SLURM script starts one torchrun per node with the cluster's rendezvous, 8 processes
    per node and shared output and cache; the one-node script one torchrun for the node's GPUs.
    `srun`, `scontrol` and the Python running torchrun's module are stand-ins that record what they would have run
    (and the seconds torchrun would let the ranks save a checkpoint after a SIGTERM, 30 s before)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.jsonl"
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\nprintf 'gpu-a01\\ngpu-a02\\n'\n")
    (bin_dir / "srun").write_text(  # one task per node, as --ntasks-per-node=1 asks
        '#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\n'
        'for node in $(seq 0 $((SLURM_NNODES - 1))); do SLURM_NODEID=$node "$@"; done\n'
    )
    (bin_dir / "python").write_text(  # called as `$PYTHON -m vdepth_training.torchrun ARGS` (torchrun, one last line)
        '#!/usr/bin/env bash\n[[ "$1 $2" == "-m vdepth_training.torchrun" ]] || exit 3\nshift 2\n'
        f'{sys.executable} -c "import json, os, sys; '
        f"open('{calls}', 'a').write(json.dumps({{'node': os.environ.get('SLURM_NODEID'), "
        "'grace': os.environ.get('TORCH_ELASTIC_SHUTDOWN_TIMEOUT'), "
        f'\'args\': sys.argv[1:]}}) + chr(10))" "$@"\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**rank_env(), "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-a[01-02]",
           "SLURM_NNODES": "2", "SLURM_JOB_ID": "4242", "SLURM_GPUS_PER_NODE": "h100:8",
           "OUTPUT": "/shared/runs/dc", "CACHE": "/shared/cache/dc", "PYTHON": str(bin_dir / "python")}  # fmt: skip
    script = REPO / "training" / "launch" / "slurm.sbatch"
    subprocess.run(["bash", str(script), "training/configs/depthcrafter.yaml", "--deepspeed", "z.json"], cwd=REPO,
                   env=env, check=True)  # fmt: skip
    runs = [json.loads(x) for x in calls.read_text().splitlines()]
    assert [r["node"] for r in runs] == ["0", "1"]  # one launcher per node
    # torchrun kills its ranks 30 s after a SIGTERM unless told otherwise: the ranks get the 120 s of --signal
    assert [r["grace"] for r in runs] == ["110", "110"]
    # the rendezvous port is the job's (20000 + job id % 12000): two jobs sharing a node met at 29500, where the
    # second job's launchers joined the first's rendezvous and lost their ranks when it ended
    for r in runs:
        assert r["args"] == [
            "--nnodes", "2", "--nproc_per_node", "8", "--rdzv_id", "4242", "--rdzv_backend", "c10d",
            "--rdzv_endpoint", "gpu-a01:24242", "-m", "vdepth_training.train", "--config",
            "training/configs/depthcrafter.yaml", "--output", "/shared/runs/dc", "--latent-cache", "/shared/cache/dc",
            "--resume", "--deepspeed", "z.json",
        ]  # fmt: skip
    header = script.read_text()
    assert "#SBATCH --ntasks-per-node=1" in header and "#SBATCH --gpus-per-node=8" in header
    calls.unlink()
    subprocess.run(["bash", str(REPO / "training" / "launch" / "one_node.sh"), "training/configs/vda.yaml"],
                   cwd=REPO, env={**env, "GPUS": "8"}, check=True)  # fmt: skip
    [one] = [json.loads(x) for x in calls.read_text().splitlines()]
    assert one["grace"] == "300"
    assert one["args"] == ["--standalone", "--nproc_per_node", "8", "-m", "vdepth_training.train", "--config",
                           "training/configs/vda.yaml", "--resume"]  # fmt: skip


def test_a_rendezvous_port_in_use_on_this_node_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m vdepth_training.torchrun`: a launcher that is to serve its rendezvous on a port another process
    listens on (another job's launcher on a shared node: the SLURM script's port was 29500 for every job) joined that
    process's store, c10d silently (its ranks were killed when the other job ended), static with a traceback. Now
    one line naming the port and the fix, exit code 2, before any rank starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("", 0))
        other.listen()
        port = other.getsockname()[1]
        for launch in (["--rdzv_id", "job2", "--rdzv_backend", "c10d", "--rdzv_endpoint", f"localhost:{port}"],
                       ["--master_port", str(port)]):  # fmt: skip
            code = torchrun_main(["--nnodes", "1", "--nproc_per_node", "1", *launch, str(tmp_path / "never.py")])
            err = capsys.readouterr().err
            assert code == 2 and len(err.strip().splitlines()) == 1, err[-2000:]
            assert f"port {port} is in use" in err and "MASTER_PORT=" in err, err
        # a c10d launch of two nodes, both on this machine: the second joins the first's store (it was refused, and
        # the first node's launcher waited for it: test_training_rank_faults' two-node tests hung)
        from torch.distributed.run import parse_args
        from vdepth_training.torchrun import _rendezvous_port_taken

        two_nodes = ["--nnodes", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "x.py"]
        assert _rendezvous_port_taken(parse_args(two_nodes)) is None


def test_the_one_node_launcher_runs_without_torchrun_on_the_path(tmp_path: Path) -> None:
    """training/README.md's `training/launch/one_node.sh training/configs/vda.yaml --output runs/vda`, after
    `make install` and without an activated environment: it ran `torchrun`, which is only in .venv/bin, so
    the user saw `exec: torchrun: not found`. It now runs torchrun's module with the repository's Python."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)  # where the repository has no .venv
    env = {k: v for k, v in rank_env().items() if k != "PYTHON"}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", GPUS="1")
    r = subprocess.run(["bash", str(REPO / "training" / "launch" / "one_node.sh"), "training/configs/vda.yaml",
                        "--output", str(tmp_path / "run"), "--help"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--export-checkpoint" in r.stdout  # vdepth_training.train's own help, through the launcher


@pytest.mark.slow
def test_ctrl_c_stops_both_ranks_at_one_step_with_one_checkpoint(tmp_path: Path, straight: Path) -> None:
    """Ctrl-C (SIGINT to the launcher and both ranks, as a terminal sends it; torchrun forwards a
    second one) used to raise KeyboardInterrupt wherever each rank was, losing the steps since the
    last periodic checkpoint. Now both ranks agree on one step, save one checkpoint and stop; the
    resumed run equals an uninterrupted one."""
    import yaml

    cfg = _vda_steps(400, tmp_path)
    cfg["training"].update(checkpoint_every=0)
    recipe = tmp_path / "vda.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    base = ["-m", "vdepth_training.train", "--config", str(recipe)]
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *base,
           "--output", str(run)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=rank_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + 600
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, "no third step"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    log = proc.communicate(timeout=120)[0]
    stops = [
        line.split("stopped after step ")[1].split()[0] for line in log.splitlines() if "stopped after step" in line
    ]
    assert len(stops) == 1, log[-4000:]  # said once (by rank 0), not once per rank; both ranks saved below
    assert len([line for line in log.splitlines() if "Ctrl-C: stopping after this step" in line]) == 1, log[-4000:]
    step = int(stops[0])
    assert [p.name for p in (run / "checkpoints").iterdir()] == [f"checkpoint_{step}"]
    assert {f"random_states_{r}.pkl" for r in (0, 1)} <= {
        p.name for p in (run / "checkpoints" / f"checkpoint_{step}").iterdir()
    }
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == list(range(1, step + 1))
    torchrun([*base, "--output", str(run), "--resume", "--max-steps", str(step + 2)])
    assert_same_state(weights_at(straight, step + 2), weights_at(run / "checkpoints", step + 2),
                      what="interrupted by Ctrl-C and resumed")  # fmt: skip
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == list(range(1, step + 3))


@pytest.mark.slow
def test_launched_ranks_exit_0_after_a_complete_run(tmp_path: Path) -> None:
    """Two-rank dvd runs used to abort at interpreter exit in about 2 of 5 launches ("terminate
    called without an active exception": a gloo worker destroying the last collective's work
    needed the GIL during finalization), so torchrun exited 1 after a complete run. Two launches here
    (both passing with a probability of about 0.36 under that fault, four 0.13); every other torchrun
    launch of the suite fails its test on a non-zero exit too (`training_support.torchrun`), so the suite
    as a whole still launches many times (each launch here took 7 s on a quiet machine, 20-45 s loaded)."""
    for i in range(2):
        torchrun(["-m", "vdepth_training.train", "--config", str(REPO / "training" / "configs" / "dvd.yaml"),
                  "--tiny", "--output", str(tmp_path / f"run{i}"), "--max-steps", "2"])  # fmt: skip
        assert (tmp_path / f"run{i}" / "checkpoints" / "checkpoint_2" / "trainer_state.json").is_file()


def _rank1_reads(tmp_path: Path, cfg: dict) -> Path:
    """A training script for torchrun whose rank 1 reads `cfg` (written beside it) instead of `--config`: the
    second node's own copy of the config."""
    import yaml

    other = tmp_path / "rank1.yaml"
    other.write_text(yaml.safe_dump(cfg))
    script = tmp_path / "rank1_reads_its_own_config.py"
    script.write_text(
        "import os, sys\n"
        "import vdepth_training.train as train\n"
        "argv = sys.argv[1:]\n"
        f"if os.environ['RANK'] == '1':\n    argv[argv.index('--config') + 1] = {str(other)!r}\n"
        "train._exit_without_finalizing(train.main(argv))\n"
    )
    return script


def _users_folder(root: Path, count: int) -> Path:
    """A vda recipe (4 steps, a checkpoint each) on a folder of `count` sequences of the user's; returns the recipe."""
    import numpy as np
    import yaml
    from vdepth_training.data.sequence import Sequence, write_sequence

    rng = np.random.default_rng(0)
    for i in range(count):
        write_sequence(root / "mine" / f"seq{i}", Sequence(
            rgb=rng.integers(0, 256, (6, 32, 48, 3), dtype=np.uint8),
            target=rng.uniform(1, 5, (6, 32, 48)).astype(np.float32), valid=np.ones((6, 32, 48), bool)))  # fmt: skip
    cfg = tiny_config("vda", root)
    cfg.pop("tiny")
    cfg["data"]["sources"] = [{"name": "mine", "layout": "sequence", "root": str(root / "mine")}]
    cfg["stages"] = [{**cfg["stages"][0], "steps": 4}]
    recipe = root / "mine.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    return recipe


def test_two_ranks_resume_on_a_changed_config_or_changed_data_is_refused_unless_allowed(tmp_path: Path) -> None:
    """What `--resume` is held to, on one two-rank run resumed five times (each refusal a launch that stops at
    start-up; one run, not one per change, for the suite's time):
    - an edited config (another learning rate, crop size, loss weight...) went on in silence: the result was
      neither the old run nor the new one. Now it is refused before any rank builds anything, naming what
      changed; settings that change nothing computed (logging, checkpoint frequency, gradient checkpointing)
      may change; --allow-config-change continues with one warning. So is resuming the two ranks' run in one
      process (another global batch), which used to go on in silence;
    - sequences added to (or removed from) the data folder went on in silence: a stream index's clip is a
      function of the folder's listing, so the resumed steps drew other clips than the saved run's;
    - a sequence exported again (other depth, the same file names and frame count) went on in silence too:
      the listing held names and lengths only, so the resumed steps learnt other targets. Now each checkpoint
      also holds a digest of each sequence's files, and changed data are refused, naming the sequences,
      unless --allow-data-change (then one warning; --allow-config-change accepts changed data too)."""
    import numpy as np
    import yaml

    recipe, run = _users_folder(tmp_path, 3), tmp_path / "run"
    base = ["-m", "vdepth_training.train", "--config", str(recipe), "--output", str(run)]
    torchrun([*base, "--max-steps", "2"])
    mine = tmp_path / "mine"
    shutil.copytree(mine / "seq0", mine / "seq3")  # a new recording copied in
    shutil.move(mine / "seq1", tmp_path / "seq1")  # one moved away
    for target in sorted((mine / "seq2" / "target").glob("*.npy")):  # exported again: same shape, size, names
        np.save(target, np.load(target) * 2.0)
    proc = one_error_before_training([*base, "--resume"])
    assert "the data differ from those checkpoint_2 was saved with (stage 'finetune' data.sources['mine']: " \
        "1 sequence(s) added (seq3), 1 removed (seq1), 1 with other files under the same names (seq2))" \
        in error_line(proc), error_line(proc)  # fmt: skip
    assert "--allow-data-change" in error_line(proc) and "process 0 of 2" not in proc.stdout  # before anything built

    cfg = yaml.safe_load(recipe.read_text())
    original = recipe.read_text()
    cfg["optimizer"]["lr"] = 1e-2
    cfg["training"].update(log_every=5, gradient_checkpointing=True)  # less memory, the same result
    recipe.write_text(yaml.safe_dump(cfg))
    error = error_line(one_error_before_training([*base, "--resume", "--allow-data-change"]))  # data, not config
    assert "the config differs from the one checkpoint_2 was saved with (optimizer.lr: 0.0003 -> 0.01)" in error, error
    # one process resuming the two ranks' run would train on another global batch and stream: refused too
    before = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    proc = subprocess.run([sys.executable, *base, "--resume"], cwd=REPO, env=rank_env(), capture_output=True, text=True)
    assert proc.returncode == 2 and "processes: 2 -> 1 (the global batch" in proc.stderr, proc.stderr[-3000:]
    assert "training.grad_accum: 2 keeps it" in proc.stderr  # the fix, named
    assert {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == before  # nothing touched

    recipe.write_text(original)  # the config as saved: --allow-data-change continues on the data as they are
    out = torchrun([*base, "--resume", "--allow-data-change", "--max-steps", "3"])
    assert out.count("on changed data: stage 'finetune' data.sources['mine']: 1 sequence(s) added") == 1, out[-3000:]
    assert "with a changed config" not in out and "steps 3..3:" in out
    recipe.write_text(yaml.safe_dump(cfg))
    shutil.move(mine / "seq3", tmp_path / "seq3")  # and the data changed again: --allow-config-change takes both
    out = torchrun([*base, "--resume", "--allow-config-change"])
    assert "resuming" in out and out.count("with a changed config: optimizer.lr: 0.0003 -> 0.01") == 1, out[-3000:]
    assert out.count("on changed data: stage 'finetune' data.sources['mine']: 1 removed (seq3)") == 1, out[-3000:]
    assert out.count(f"model: {run / 'final'}") == 1  # the result is printed once, not by every rank
    assert "steps 4..4:" in out and (run / "final").is_dir()
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    saved = json.loads((run / "checkpoints" / "checkpoint_4" / "trainer_data.json").read_text())
    assert saved["stage 'finetune' data.sources['mine']"] == {"seq0": 6, "seq2": 6}


def test_two_ranks_on_a_users_folder_with_a_missing_depth_file_stop_before_training_each_saying_its_own(
    tmp_path: Path,
) -> None:
    """A user's sequence folder with one frame's depth missing trained until a rank drew that frame
    (hours into a real run), then ended in a FileNotFoundError on that rank and gloo's "connection
    closed by peer" on the other. Now the ranks stop before building the model with one line naming
    the sequence, the frame and the format. A line every rank of a node says alike is printed once
    (`test_two_ranks_read_scientific_notation...`), but one naming a rank's own input, as here a node's
    own copy of the data lacking another frame, is printed by each rank that meets it."""
    import yaml

    recipe = _users_folder(tmp_path, 3)
    shutil.copytree(tmp_path / "mine", tmp_path / "node_copy")  # rank 1's node: its own copy of the data
    (tmp_path / "mine" / "seq1" / "target" / "000003.npy").unlink()
    (tmp_path / "node_copy" / "seq1" / "target" / "000004.npy").unlink()
    cfg = yaml.safe_load(recipe.read_text())
    cfg["data"]["sources"][0]["root"] = str(tmp_path / "node_copy")
    script = _rank1_reads(tmp_path, cfg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           "--config", str(recipe), "--output", str(tmp_path / "run")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=rank_env(), capture_output=True, text=True, timeout=300)
    errors = sorted(line for line in proc.stderr.splitlines() if line.startswith("python -m vdepth_training.train:"))
    assert proc.returncode != 0 and len(errors) == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    for error, frame in zip(errors, ("000003", "000004"), strict=True):  # (the two roots sort as the ranks)
        assert error.startswith("python -m vdepth_training.train: error: "), errors
        assert f"seq1: 1 of 6 frames have no depth (target/{frame}.npy)" in error, errors
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # no step ran
    assert "process 0 of 2" not in proc.stdout  # found before the ranks built their accelerator and model


def test_ranks_that_see_different_data_stop_before_training(tmp_path: Path) -> None:
    """A node whose copy of the data lacks a sequence (an rsync cut short, another version mounted)
    trained in silence: each rank drew the clips of its own listing, so the ranks' shares of a batch
    came from different streams. Now the ranks compare their listings after they meet and stop with
    one line naming the rank and what its data lack."""
    recipe = _users_folder(tmp_path, 3)
    script = tmp_path / "rank1_lacks_seq2.py"
    script.write_text(
        "import os, sys\n"
        "from vdepth_training.data import layouts\n"
        "import vdepth_training.train as train\n"
        "found = layouts.LAYOUTS['sequence']\n"
        "def rank1_copy(root, **kw):  # rank 1's node: its copy of the folder lacks seq2\n"
        "    return [s for s in found(root, **kw) if os.environ['RANK'] == '0' or s.directory.name != 'seq2']\n"
        "layouts.LAYOUTS['sequence'] = rank1_copy\n"
        "code = train.main(sys.argv[1:])\n"
        "train._exit_without_finalizing(code)\n"
    )
    error = error_line(
        one_error_before_training([str(script), "--config", str(recipe), "--output", str(tmp_path / "run")])
    )
    assert "the ranks see different data (rank 1 of 2: stage 'finetune' data.sources['mine']: 1 removed (seq2), " \
        "against rank 0's)" in error, error  # fmt: skip


def test_ranks_that_read_different_configs_stop_before_training(tmp_path: Path) -> None:
    """Each rank reads its own copy of the config: a node whose copy says another grad_accum (or batch
    size, or number of steps) hung both ranks (its exchanges come at other moments) until the collective
    timeout, 30 min. Now the ranks compare their configs with their data and stop with one line naming
    the rank and the keys; a data folder at another path on that node (`root`) is no difference."""
    import yaml

    recipe = _users_folder(tmp_path, 2)
    cfg = yaml.safe_load(recipe.read_text())
    shutil.copytree(tmp_path / "mine", tmp_path / "node_copy")  # rank 1's node: its own copy of the data
    cfg["data"]["sources"][0]["root"] = str(tmp_path / "node_copy")
    cfg["training"].update(grad_accum=2, num_workers=1)  # (num_workers leaves the steps alone)
    script = _rank1_reads(tmp_path, cfg)
    args = [str(script), "--config", str(recipe), "--output", str(tmp_path / "run")]
    error = error_line(one_error_before_training(args, timeout=600))
    assert "the ranks run different configs (rank 1 of 2: training.grad_accum: 1 -> 2, against rank 0's)" \
        in error, error  # fmt: skip


def test_two_ranks_read_scientific_notation_as_numbers_and_refuse_a_wrong_type_in_one_line(tmp_path: Path) -> None:
    """PyYAML reads `1e-4` (no dot) as a string: `betas: [9e-1, 999e-3]` ended both ranks in AdamW's
    TypeError and `checkpoint_every: 1e3` in int()'s ValueError, after the model was built. Now a
    recipe's scientific notation is the number it reads as (it trains, and its checkpoint holds
    numbers), and a value of the wrong type stops the ranks before anything is built with one line
    naming the key and the fix."""
    import yaml

    cfg = load_config(REPO / "training" / "configs" / "vda.yaml", tiny=True)
    for key in ("tiny", "optimizer", "training"):
        cfg.pop(key)
    cfg["stages"] = [{**cfg["stages"][0], "steps": 2, "lr": 2e-4}]
    cfg["data"].update(num_samples=4, sources=[{**s, "count": 2} for s in cfg["data"]["sources"]])
    text = yaml.safe_dump(cfg).replace("lr: 0.0002", "lr: 2e-4")
    assert "lr: 2e-4" in text
    optimizer = "optimizer: {lr: 3e-4, betas: [9e-1, 999e-3], eps: 1e-8, weight_decay: 1e-2}\n"
    training = "training: {mixed_precision: 'no', checkpoint_every: 1, log_every: 1, threads: 1}\n"
    recipe, run = tmp_path / "mine.yaml", tmp_path / "run"
    recipe.write_text(text + optimizer + training)
    torchrun(["-m", "vdepth_training.train", "--config", str(recipe), "--output", str(run)])
    assert (run / "final").is_dir()
    saved = json.loads((run / "checkpoints" / "checkpoint_2" / "trainer_config.json").read_text())
    assert saved["optimizer"]["betas"] == [0.9, 0.999] and saved["optimizer"]["lr"] == 3e-4
    assert saved["stages"][0]["lr"] == 2e-4 and saved["optimizer"]["weight_decay"] == 0.01

    # a mistake every rank meets in the same words: one line (it was printed once per rank: 8 copies under
    # `torchrun --nproc_per_node=8`), before any rank built anything
    recipe.write_text(text + optimizer + training.replace("checkpoint_every: 1", "checkpoint_every: 1e3"))
    proc = one_error_before_training(["-m", "vdepth_training.train", "--config", str(recipe), "--output",
                                      str(tmp_path / "run2")])  # fmt: skip
    assert error_line(proc).endswith(
        "training.checkpoint_every must be an integer, got 1000.0 (write 1000, without a decimal point)"
    )
    assert "ValueError" not in proc.stderr and "process 0 of 2" not in proc.stdout  # before any rank built anything
    assert not (tmp_path / "run2").exists()


def test_validation_on_two_ranks_equals_one_process(tmp_path: Path) -> None:
    """Validation during training did not exist: a user training on their own data saw only the
    training loss. `training.validate_every` runs the recipe's loss on held-out data
    (`data.validation`); 3 batches on 2 ranks (one rank gets one more) neither hangs nor differs
    from one process with the same global batch. The ranks accumulate 2 micro-batches (DDP's no_sync on
    the first): their weights equal one process's with 4."""
    import yaml
    from vdepth_training.train import main as train_main

    cfg = load_config(REPO / "training" / "configs" / "vda.yaml", tiny=True)
    cfg.pop("tiny")
    cfg["stages"] = [{**cfg["stages"][0], "steps": 2}]
    toy = {"name": "held_out", "layout": "toy", "count": 2, "frames": 6, "height": 32, "width": 48, "seed": 7}
    cfg["data"].update(num_samples=4, sources=[{**s, "count": 2} for s in cfg["data"]["sources"]],
                       validation={"sources": [toy], "fixed_clips": True})  # fmt: skip
    cfg["training"].update(validate_every=1, validate_batches=3, grad_accum=2)
    # Adam with eps >> |grad| steps like SGD (lr x grad): a wrong gradient scale shows, and summation-order
    # differences are not amplified to the lr as near-zero gradients under eps 1e-8 are
    cfg["optimizer"].update(lr=0.3, lr_new=0.3, eps=1.0)
    two, one = tmp_path / "two.yaml", tmp_path / "one.yaml"
    two.write_text(yaml.safe_dump(cfg))
    cfg["training"].update(grad_accum=4, threads=1)  # one thread, as each rank has (rank_env)
    one.write_text(yaml.safe_dump(cfg))
    base = ["-m", "vdepth_training.train", "--output"]
    torchrun([*base, str(tmp_path / "run2"), "--config", str(two)], timeout=300)
    threads = torch.get_num_threads()
    try:  # the one-process reference runs here, without a launch
        assert train_main([*base[2:], str(tmp_path / "run1"), "--config", str(one)]) == 0
    finally:
        torch.set_num_threads(threads)

    def validations(run: str) -> list[tuple[int, float]]:
        records = [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["val/loss"]) for r in records if "val/loss" in r]

    got, want = validations("run2"), validations("run1")
    assert [s for s, _ in got] == [1, 2] and [s for s, _ in want] == [1, 2]
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(b)), (got, want)
    # 7 of 177k weights (~0.1) differ by 1e-6..2e-6 (summation order, through a step of lr 0.3); the ranks
    # stepping at every micro-batch (accumulation broken) fail at step 1's val/loss already (3.31 vs 2.91)
    assert_same_state(state_of(tmp_path / "run1" / "final"), state_of(tmp_path / "run2" / "final"), rtol=1e-5,
                      atol=1e-5, what="2 ranks x 2 micro-batches vs 1 process x 4")  # fmt: skip


def test_export_checkpoint_under_torchrun_writes_one_model(tmp_path: Path) -> None:
    """`--export-checkpoint` in a launched run (the training command with the flag added) had
    every rank write `<output>/export`: the second rank found the first one's export and failed."""
    from vdepth_training.train import main

    base = ["-m", "vdepth_training.train", "--config", str(REPO / "training" / "configs" / "vda.yaml"), "--tiny",
            "--output", str(tmp_path / "run")]  # fmt: skip
    assert main([*base[2:], "--max-steps", "1"]) == 0  # any checkpoint: trained here, without a launch
    out = torchrun([*base, "--export-checkpoint", str(tmp_path / "run" / "checkpoints" / "checkpoint_1")])
    assert out.count(f"model: {tmp_path / 'run' / 'export'}") == 1
    assert sorted(p.name for p in (tmp_path / "run" / "export").iterdir()) == ["config.json", "model.safetensors"]


def test_fiffdepth_labels_real_images_on_the_fly_on_two_ranks(tmp_path: Path) -> None:
    """FiffDepth's t = -1 stream with a labelling model folder (trained at its own small size) on
    two ranks: both ranks label their real images at the labeller's working size through one shared
    latent cache, train identically, and finish. A labeller replaced by another model between the save
    and `--resume` (the same folder, pulled or trained again) went on in silence, the resumed steps
    learning other labels: a checkpoint holds only the trained model. Now the resume is refused,
    naming the folder, unless --allow-config-change."""
    import cv2
    import numpy as np
    import yaml

    from vdepth_ros.models import build_model, family_class

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(images / f"{i}.png"), rng.integers(0, 255, (120, 168, 3), dtype=np.uint8))
    labeller = build_model("vda", **family_class("vda").tiny_config())
    labeller.trained = {"sizes": [[28, 42]], "clip_length": [1, 1], "recipe": "vda"}
    labeller.save_pretrained(tmp_path / "labeller")
    cfg = yaml.safe_load((REPO / "training" / "configs" / "fiffdepth.yaml").read_text())
    cfg["tiny"]["data"]["pseudo"] = {"sources": [{"name": "real", "layout": "images", "root": str(images)}],
                                     "model": str(tmp_path / "labeller")}  # fmt: skip
    cfg["tiny"]["data"]["num_samples"] = 4
    cfg["tiny"]["stages"][0]["steps"] = 2
    cfg["tiny"]["training"].update(latent_cache=str(tmp_path / "cache"), threads=1)
    recipe, run = tmp_path / "fiff.yaml", tmp_path / "run"
    recipe.write_text(yaml.safe_dump(cfg))
    base = ["-m", "vdepth_training.train", "--config", str(recipe), "--tiny", "--output", str(run)]
    torchrun([*base, "--max-steps", "1"])
    torch.manual_seed(1)  # another labeller in the same folder
    shutil.rmtree(tmp_path / "labeller")
    build_model("vda", **family_class("vda").tiny_config()).save_pretrained(tmp_path / "labeller")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *base, "--resume"]
    proc = subprocess.run(cmd, cwd=REPO, env=rank_env(), capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("python -m vdepth_training.train: error")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"stage 'unet' data.pseudo.model {tmp_path / 'labeller'}: another model there" in errors[0], errors[0]
    torchrun([*base, "--resume", "--allow-config-change"])
    assert (run / "final").is_dir()
    assert any(p.name.startswith("fiff_pseudo@") for p in (tmp_path / "cache").iterdir())


def test_lines_every_rank_would_say_alike_are_said_once(tmp_path: Path) -> None:
    """Under torchrun each rank said `initialised from <init>` (training.init: every rank loads the same
    file), and `--cache-only` printed each rank's own share (`cached 2 batches` twice, neither the
    total). Now rank 0 says each once, the cache count being the ranks' total. On CPU ranks the ranks
    did not split the cache at all (accelerate started no process group: each rank filled all 5 batches
    and the line said 5); split, an epoch of 5 batches on 2 ranks would be 3 each, the sixth a batch of
    the next epoch (with `fixed_clips` the first one again). Now 3 + 2."""
    import yaml

    cfg = tiny_config("dvd", tmp_path)
    cfg.pop("tiny")
    cfg["data"]["num_samples"] = 5
    torch.manual_seed(int(cfg["training"]["seed"]))
    Trainer(cfg, tmp_path / "unused").recipe.build_model().save_pretrained(tmp_path / "init")
    cfg["training"].update(init=str(tmp_path / "init"), latent_cache=str(tmp_path / "cache"))
    recipe = tmp_path / "dvd.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    log = torchrun(["-m", "vdepth_training.train", "--config", str(recipe), "--output", str(tmp_path / "run"),
                    "--cache-only"], timeout=600)  # fmt: skip
    lines = log.splitlines()
    assert len([ln for ln in lines if f"initialised from {tmp_path / 'init'}" in ln]) == 1, log[-3000:]
    assert [ln for ln in lines if ln.startswith("cached ")] == [
        f"cached 5 batches in {tmp_path / 'cache'} (3 + 2 on 2 processes)"
    ], log
