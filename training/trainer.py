"""Recipe-agnostic multi-stage trainer on `accelerate`: one process, DDP or DeepSpeed ZeRO-2, one
GPU or several nodes, CPU (gloo) included.

Launch with plain `python`, `torchrun` or `accelerate launch` (see training/README.md and
`training/launch/`). Per optimizer step every rank runs `grad_accum` micro-batches; the loss is
computed inside the wrapped module's forward (`recipes.TrainingStep`), so DDP and DeepSpeed reduce
exactly the gradients of the parameters a stage trains (never-used ones are frozen by the recipe,
`Recipe.unused_parameters`).

The step loop is `steps.py` (its data stream), a run's folder and checkpoints `checkpoints.py`, what the
ranks tell each other and how one rank's failure ends the others `ranks.py`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import nn
from vdepth_training.checkpoints import (
    CONFIG_NAME,
    DATA_NAME,
    FINAL_NAME,
    PARTIAL_SUFFIX,
    RESUMABLE_CHANGES,
    RUN_FILES,
    STATE_NAME,
    TrainingProgress,
    check_run_outputs,
    complete_checkpoints,
    data_changes,
    latest_checkpoint,
    rotate_checkpoints,
    truncate_metrics,
)
from vdepth_training.config import build_optimizer, check_keys, crop_sizes, trained_record
from vdepth_training.data.stream import rank_loader
from vdepth_training.ranks import (
    StoppedWithoutCheckpointError,
    TrainingFailedError,
    check_gpus_per_node,
    end_rank,
    late_rank,
    launch_folder,
    launcher_grace_seconds,
    leave_failure_note,
    note_doing,
    tell_start_failed,
    wait_for_ranks_to_start,
)
from vdepth_training.recipes import Recipe, TrainingStep, get_recipe
from vdepth_training.stages import Stage, plan_stages
from vdepth_training.steps import StepLoop, batch_generator, take_skipped
from vdepth_training.weights import STEP_PREFIX, load_init_weights

from vdepth_ros.errors import ConfigError
from vdepth_ros.models.base import load_state_checked, load_state_dict_file
from vdepth_ros.offline.atomic import AtomicOutput, check_output_path
from vdepth_ros.offline.errors import OutputExistsError
from vdepth_ros.paths import not_a_model_folder
from vdepth_ros.runtime.shapes import round_to_multiple
from vdepth_ros.values import misread_number

log = logging.getLogger("vdepth_training")


def enable_gradient_checkpointing(model: nn.Module) -> int:
    """Turn on activation checkpointing in every submodule that supports it (diffusers
    `enable_gradient_checkpointing`; transformers `gradient_checkpointing_enable`); returns how
    many modules were switched."""
    count = 0
    for module in model.modules():
        if module is model:
            continue
        if hasattr(module, "enable_gradient_checkpointing") and getattr(
            module, "_supports_gradient_checkpointing", True
        ):
            try:
                module.enable_gradient_checkpointing()
                count += 1
            except (ValueError, AttributeError):
                pass
        elif getattr(module, "supports_gradient_checkpointing", False):
            enable = getattr(module, "activation_checkpointing_enable", None) or getattr(
                module, "gradient_checkpointing_enable", None
            )
            if enable is not None:
                enable()
                count += 1
    return count


def _wants_deepspeed(train_cfg: dict[str, Any]) -> bool:
    """Does the run use DeepSpeed (`training.deepspeed`, or `accelerate launch` configured for it)?"""
    return bool(train_cfg.get("deepspeed")) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def segments(plan: list[Stage]) -> list[list[Stage]]:
    """Stages grouped by the optimizer they share (a restart stage opens a segment)."""
    out: list[list[Stage]] = []
    for stage in plan:
        if stage.restart:
            out.append([])
        out[-1].append(stage)
    return out


class Trainer(StepLoop):
    """Run a config's stages.

    Args:
        cfg: loaded config (`config.load_config`).
        output_dir: where metrics, checkpoints and the final model go.
        recipe: override the recipe built from `cfg["recipe"]`.
    """

    def __init__(self, cfg: dict[str, Any], output_dir: str | Path, recipe: Recipe | None = None) -> None:
        self.cfg = cfg
        self.output_dir = Path(output_dir)
        if recipe is not None:
            check_keys(cfg, recipe.config_keys(), recipe.value_types())
        self.recipe = recipe or get_recipe(cfg)  # refuses unknown keys before anything is built
        self.recipe.output_dir = self.output_dir
        self.train_cfg = cfg["training"]
        self.plan = plan_stages(cfg, self.recipe.stage_keys)
        held_out = any(st.cfg["data"].get("validation") for st in self.plan)
        if int(self.train_cfg.get("validate_every") or 0) and not held_out:
            raise ConfigError("training.validate_every needs data.validation: the held-out data (e.g. its sources)")
        self.history: list[dict[str, Any]] = []
        self.model: nn.Module | None = None
        self._saved_step = -1
        self.interrupted = False  # set by SIGINT (Ctrl-C) or SIGTERM during the steps: stop, checkpointed
        self._stop_requested = False
        self._doing_now = "start-up"
        self._waiting: tuple[float, str] | None = None  # (since, what) while the step waits for its batch
        self._save_seconds = self._step_seconds = 0.0  # the last save's and step's duration
        self._warned_grace = False  # said that a step and a save outlast the launcher's grace after SIGTERM
        self._data: dict[str, dict[str, int]] = {}  # what the sources draw from (`Recipe.data_listing`)

    @property
    def _doing(self) -> str:
        """What the run does now (`step 3`, `saving checkpoint_4`): a failure names it, and under a
        launcher the other ranks of the node read it (`note_doing`) when this rank hangs."""
        return self._doing_now

    @_doing.setter
    def _doing(self, doing: str) -> None:
        self._doing_now = doing
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            note_doing(int(os.environ.get("RANK", "0")), doing)

    # -- the run ------------------------------------------------------------------------------
    def fit(
        self,
        *,
        resume: bool = False,
        max_steps: int | None = None,
        overwrite: bool = False,
        allow_config_change: bool = False,
    ) -> list[dict[str, Any]]:
        """Train every stage (or stop, checkpointed, after `max_steps` global steps or at a Ctrl-C or
        SIGTERM, `interrupted`); returns the step records (the same on every rank).

        Args:
            resume: continue from the latest checkpoint in `output_dir` (fresh start if none).
            max_steps: stop early once this many global steps are done.
            overwrite: start afresh in an `output_dir` that holds a run (its metrics, checkpoints
                and final model are deleted first).
            allow_config_change: resume although the config differs from the checkpoint's (the
                differences are logged as a warning); otherwise that is an error.

        Raises:
            OutputExistsError: `output_dir` holds a run and neither `resume` nor `overwrite` is set, or
                `resume` finds a finished run (`final/`) without a checkpoint (it would start again).
            ConfigError: `resume` with a config that differs from the checkpoint's (beyond
                `RESUMABLE_CHANGES`) and not `allow_config_change`.
        """
        try:  # what one rank meets alone (its node's data, its GPUs) ends every rank, on any node
            existing = self._check_output(resume=resume, overwrite=overwrite)
            check_gpus_per_node()
            self._open_data(resume=resume, allow_config_change=allow_config_change)
        except Exception as err:
            tell_start_failed(err)
            raise
        wait_for_ranks_to_start(self.train_cfg.get("collective_timeout"))
        # 1. accelerator, counters, model
        acc = self._accelerator()
        self._check_ranks_see_same_data(acc)
        if existing and overwrite and not resume and acc.is_main_process:
            for name in existing:
                path = self.output_dir / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        acc.wait_for_everyone()
        progress = TrainingProgress()
        acc.register_for_checkpointing(progress)
        ckpt = latest_checkpoint(self.output_dir) if resume else None
        if resume and acc.is_main_process:
            truncate_metrics(self.output_dir, json.loads((ckpt / STATE_NAME).read_text())["global_step"] if ckpt else 0)
        model = self._build_model(init=ckpt is None)
        # 2. where to start and where to stop
        start = json.loads((ckpt / STATE_NAME).read_text()) if ckpt else progress.state_dict()
        start.pop("processes", None)  # the counters only (the process count was checked above)
        end = self.plan[-1].end if not self.train_cfg.get("stop_at") else int(self.train_cfg["stop_at"])
        stop = end if max_steps is None else min(end, max_steps)
        # 3. the segments of stages that share an optimizer, from the resume point on
        with self._stop_on_signals(), self._watch_for_stalls(acc):
            try:
                for segment in segments(self.plan):
                    if segment[-1].index < start["stage"] or progress.global_step >= stop:
                        continue
                    model = self._run_segment(acc, model, segment, progress, ckpt, start, stop, end)
                    ckpt = None  # loaded into the first segment run
                    if self.interrupted:
                        break
            except Exception as err:
                if acc.num_processes > 1 and not isinstance(err, TrainingFailedError):
                    end_rank(
                        err,
                        rank=acc.process_index,
                        world=acc.num_processes,
                        doing=self._doing,
                        step=progress.global_step,
                        stop_requested=self._stop_requested,
                        collective_timeout=self.train_cfg.get("collective_timeout"),
                        output_dir=self.output_dir,
                    )
                raise
        self._check_ranks_agree(acc, model)
        for tracker in acc.trackers:  # not `end_training`: it ends the process group, which outlives one fit
            tracker.finish()
        self.model = model
        return self.history

    def _open_data(self, *, resume: bool, allow_config_change: bool) -> None:
        """Open the data of the stages to run (`Recipe.open_data`: a mistake in the data fails here, before
        the model is built) and list it; with `resume`, first refuse a changed config, then changed data."""
        first_stage = 0
        if (found := latest_checkpoint(self.output_dir) if resume else None) is not None:
            self._check_resumed_config(found, allow_config_change)
            first_stage = int(json.loads((found / STATE_NAME).read_text())["stage"])
        for stage in self.plan[first_stage:]:
            self.recipe.open_data(stage)
        self._data = {k: v for st in self.plan[first_stage:] for k, v in self.recipe.data_listing(st).items()}
        if found is not None:
            self._check_resumed_data(found, allow_config_change)

    def _check_output(self, *, resume: bool, overwrite: bool) -> list[str]:
        """The `RUN_FILES` in `output_dir`, after refusing (OutputExistsError) to start a run over
        them without `overwrite`, or to delete what a run did not write."""
        existing = [name for name in RUN_FILES if (self.output_dir / name).exists()]
        if existing and not resume and not overwrite:
            raise OutputExistsError(
                f"{self.output_dir} already holds a run ({', '.join(existing)}): pass --resume to continue it, "
                "--overwrite to start it again, or choose another --output"
            )
        if overwrite and not resume:  # only what a run wrote is deleted, never a file or folder of the user's
            check_run_outputs(self.output_dir, existing)
        if resume and FINAL_NAME in existing and latest_checkpoint(self.output_dir) is None:
            raise OutputExistsError(  # a finished run whose checkpoints are gone (or never written) would restart
                f"{self.output_dir} holds a finished run ({FINAL_NAME}/) and no checkpoint to resume: --overwrite "
                "starts it again (replacing its model), or choose another --output"
            )
        return existing

    def _run_segment(
        self,
        acc: Any,
        model: nn.Module,
        segment: list[Stage],
        progress: TrainingProgress,
        ckpt: Path | None,
        start: dict[str, int],
        stop: int,
        end: int,
    ) -> nn.Module:
        """Train the stages of one optimizer segment from `progress` on (after loading `ckpt` into
        it); export at the end of the run, checkpoint at an early stop. Returns the unwrapped model."""
        self._doing = f"preparing stage {segment[0].name}"
        wrapped, optimizer = self._prepare(acc, model, segment[0])
        if ckpt is not None:
            self._doing = f"loading {ckpt}"
            acc.load_state(str(ckpt))
            assert progress.state_dict() == start, (progress.state_dict(), start)
            self._saved_step = progress.global_step
        for stage in [st for st in segment if st.index >= progress.stage]:
            if progress.stage != stage.index:
                progress.stage, progress.stage_step = stage.index, 0
            self._run_stage(acc, wrapped, optimizer, stage, progress, stop)
            if progress.global_step >= stop or self.interrupted:
                break
        # 4. the end of the run (export) or an early stop (checkpoint)
        if progress.global_step >= end:
            self._export_final(acc, wrapped)
        elif progress.global_step >= stop or self.interrupted:
            self._save(acc, progress)
        if self.interrupted and acc.is_main_process:
            log.warning(
                "interrupted: stopped after step %d with a checkpoint; --resume continues", progress.global_step
            )
        model = acc.unwrap_model(wrapped).model
        acc.free_memory(wrapped, optimizer)
        return model

    def _accelerator(self) -> Any:
        """The `Accelerator`: DeepSpeed when `training.deepspeed` or `accelerate launch` asks for it
        (an error if it cannot run), gloo between CPU processes, automatic checkpoint naming."""
        from accelerate import Accelerator
        from accelerate.utils import (
            DeepSpeedPlugin,
            DistributedDataParallelKwargs,
            DistributedType,
            InitProcessGroupKwargs,
            ProjectConfiguration,
            is_deepspeed_available,
        )

        tc = self.train_cfg
        if tc.get("threads"):
            torch.set_num_threads(int(tc["threads"]))
        ds_file = tc.get("deepspeed")
        want_ds = _wants_deepspeed(tc)
        if want_ds and not is_deepspeed_available():
            raise RuntimeError("DeepSpeed was requested but is not installed: pip install 'vdepth_ros[deepspeed]'")
        if want_ds and "LOCAL_RANK" not in os.environ:
            raise RuntimeError("DeepSpeed was requested but no launcher started this process: run it under torchrun "
                               "or `accelerate launch` (training/README.md), one process per GPU")  # fmt: skip
        cuda = torch.cuda.is_available()
        handlers: list[Any] = [DistributedDataParallelKwargs(find_unused_parameters=bool(tc["find_unused_parameters"]))]
        seconds = tc.get("collective_timeout")
        timeout = {"timeout": timedelta(seconds=float(seconds))} if seconds else {}
        if not cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # CPU ranks (DeepSpeed too) talk over gloo
            handlers.append(InitProcessGroupKwargs(backend="gloo", **timeout))
        elif timeout:
            handlers.append(InitProcessGroupKwargs(**timeout))
        # checkpoints are named and rotated by `_save` (accelerate's rotation deletes before it writes)
        project = ProjectConfiguration(project_dir=str(self.output_dir), logging_dir=str(self.output_dir))
        acc = Accelerator(
            cpu=not cuda and not want_ds,  # `cpu=True` would turn DeepSpeed off
            mixed_precision=tc["mixed_precision"],
            gradient_accumulation_steps=int(tc["grad_accum"]),
            deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=str(ds_file)) if ds_file else None,
            log_with=tc.get("log_with"),
            project_config=project,
            kwargs_handlers=handlers,
            step_scheduler_with_optimizer=False,
        )
        if want_ds and acc.distributed_type != DistributedType.DEEPSPEED:
            raise RuntimeError(f"DeepSpeed was requested but accelerate runs {acc.distributed_type}; launch with "
                               "torchrun or `accelerate launch` so that every rank sets LOCAL_RANK")  # fmt: skip
        if acc.distributed_type == DistributedType.DEEPSPEED:
            # No loader goes through `prepare` (the stream is partitioned by rank), so DeepSpeed's
            # "auto" micro-batch size and clipping are filled in here.
            ds_cfg = acc.state.deepspeed_plugin.deepspeed_config
            ds_cfg["train_micro_batch_size_per_gpu"] = int(tc["batch_size"])
            if ds_cfg.get("gradient_clipping") == "auto":
                ds_cfg["gradient_clipping"] = float(self.cfg["optimizer"].get("grad_clip") or 0.0)
        if tc.get("log_with"):
            acc.init_trackers("vdepth_training", config={"recipe": self.cfg["recipe"]})
        log.info("process %d of %d (%s on %s, %s)", acc.process_index, acc.num_processes, acc.distributed_type,
                 acc.device, self.cfg["recipe"])  # fmt: skip
        return acc

    @staticmethod
    def _check_ranks_agree(acc: Any, model: nn.Module) -> None:
        """Data-parallel ranks must end with identical parameters: compare a digest of every
        parameter's bytes across the ranks (a silent divergence would otherwise surface as a
        model that depends on which rank saved it)."""
        if acc.num_processes == 1:
            return
        digest = hashlib.blake2b(digest_size=8)
        for name, p in model.named_parameters():
            digest.update(name.encode())
            digest.update(p.detach().float().cpu().contiguous().numpy().tobytes())
        mine = int.from_bytes(digest.digest(), "little") & ((1 << 62) - 1)
        digests = acc.gather(torch.tensor([mine], dtype=torch.int64, device=acc.device)).tolist()
        if len(set(digests)) != 1:
            raise TrainingFailedError(  # the same line on every rank (said once per node)
                f"the ranks ended with different parameters (digests {digests}): they diverged, e.g. by a computation "
                "that depends on the rank; the model written holds the main process's weights"
            )
        if acc.is_main_process:  # the same line on every rank: said once
            log.info("parameters identical on all %d ranks (digest %016x)", acc.num_processes, mine)

    def _build_model(self, *, init: bool) -> nn.Module:
        torch.manual_seed(int(self.train_cfg["seed"]))
        model = self.recipe.build_model()
        self._note_crop_sizes(model)
        if init and self.train_cfg.get("init"):  # fine-tuning: another run's weights, fresh optimizer
            init_state = load_state_dict_file(self.train_cfg["init"])
            load_init_weights(model, init_state, self.train_cfg.get("init_new_modules") or ())
            if int(os.environ.get("RANK", "0")) == 0:  # every rank loads the same file: said once
                log.info("initialised from %s", self.train_cfg["init"])
        if self.train_cfg.get("gradient_checkpointing"):
            enable_gradient_checkpointing(model)
        return model

    def _note_crop_sizes(self, model: nn.Module) -> None:
        """One warning (main process) for crops that are not a multiple of the family's stride: a
        ViT's patch grid drops their last rows and columns, and no engine runs the model at that size
        (the model folder's default is the nearest one it runs, `runtime.shapes.trained_resolution`)."""
        m = int(getattr(model.input_constraints, "multiple_of", 1) or 1)
        odd = sorted({(h, w) for st in self.plan for h, w in crop_sizes(st.cfg["data"]) if h % m or w % m})
        if odd and int(os.environ.get("RANK", "0")) == 0:
            h, w = odd[0]
            log.warning(
                "crop %dx%d (data.size / data.aspects) is not a multiple of %d for family %r: a patch grid sees part "
                "of each crop, and engines run the model at %dx%d; a multiple of %d trains what deploys",
                h, w, m, model.family, round_to_multiple(h, m), round_to_multiple(w, m), m,
            )  # fmt: skip

    def _prepare(self, acc: Any, model: nn.Module, stage: Stage) -> tuple[nn.Module, Any]:
        """A segment's optimizer over the stage's trainable parameters, prepared with the model."""
        groups = self.recipe.configure_stage(model, stage)
        optimizer = build_optimizer(groups, {**self.cfg["optimizer"], "lr": float(stage.spec["lr"])})
        return acc.prepare(TrainingStep(self.recipe, model), optimizer)

    @contextmanager
    def _watch_for_stalls(self, acc: Any) -> Iterator[None]:
        """On a rank of several, end the run when this rank has waited `training.stall_timeout`
        seconds for one batch (a loader hung on a network disk, a worker stuck): the other ranks
        would wait in their next collective for the process group's timeout (30 min) without a word.
        A thread watches the wait; the main thread, blocked in the loader, cannot. The rank leaves its
        note for the others, says one line (exit code 1) and exits; the others then end as after any
        rank's failure. Only the wait for data is timed: a long step, save or rendering is not a stall."""
        timeout = float(self.train_cfg.get("stall_timeout") or 0)
        if acc.num_processes == 1 or timeout <= 0:
            yield
            return
        done = threading.Event()

        def watch() -> None:
            while not done.wait(min(5.0, timeout / 4)):
                waiting = self._waiting
                if waiting is None or time.monotonic() - waiting[0] < timeout:
                    continue
                what = (f"rank {acc.process_index} of {acc.num_processes} stalled: it waited {timeout:.0f} s for "
                        f"{waiting[1]} (its data loader: a hung disk or worker?; training.stall_timeout)")  # fmt: skip
                leave_failure_note(acc.process_index, what)
                last = latest_checkpoint(self.output_dir)
                resume = f"--resume continues from {last.name}" if last else "no checkpoint was written"
                log.error("%s", what)
                print(f"python -m vdepth_training.train: error: {what}; the other ranks stop, {resume}",
                      file=sys.stderr, flush=True)  # fmt: skip
                sys.stdout.flush()
                os._exit(1)  # the main thread is blocked in the loader: nothing else ends it

        thread = threading.Thread(target=watch, name="vdepth-stall-watch", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """While the steps and their checkpoints run, a first SIGINT (Ctrl-C) or SIGTERM (what
        SLURM sends at a time limit or a preemption, what torchrun forwards to its ranks) asks to
        stop after the current step: the ranks agree on it through the step's reduction (`_step`),
        so all stop at the same step and save one checkpoint. A repeat of SIGINT within 2 s is the
        same Ctrl-C forwarded by torchrun to its ranks; a later one aborts at once
        (KeyboardInterrupt). A repeated SIGTERM (SLURM signals every process of the step, torchrun
        forwards it again) never interrupts the checkpoint. Only where Python's own handlers are in place."""
        ours = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        ours = {sig: default for sig, default in ours.items() if signal.getsignal(sig) is default}
        first: list[float] = []

        def handler(signum: int, frame: Any) -> None:
            now = time.monotonic()
            if first and signum == signal.SIGINT and now - first[0] > 2.0:
                raise KeyboardInterrupt
            if not first:
                first.append(now)
                self._stop_requested = True
                if int(os.environ.get("RANK", "0")) != 0:  # every rank gets it: rank 0 says it once
                    return
                again = " (Ctrl-C again to abort at once)" if signum == signal.SIGINT else ""
                name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
                grace = launcher_grace_seconds()
                if grace is not None and self._save_seconds:
                    again += (f" (the last save took {self._save_seconds:.0f} s and a step {self._step_seconds:.0f} s; "
                              f"torchrun kills the ranks {grace[0]:.0f} s ({grace[1]}) after its signal)")  # fmt: skip
                log.warning("%s: stopping after this step with a checkpoint%s", name, again)

        for sig in ours:
            signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, default in ours.items():
                signal.signal(sig, default)

    def _check_resumed_config(self, ckpt: Path, allow: bool) -> None:
        """Refuse (or with `allow`, warn about) resuming `ckpt` with a config other than the one
        it was saved with, or with another global batch (`batch_size` x `grad_accum` x processes):
        the resumed run would silently be neither the old run nor the new one. Another number of
        processes (ranks) with `grad_accum` set to keep the global batch continues the same run
        (the ranks partition one batch stream, `data.stream`), except under DeepSpeed, whose
        optimizer state is split per rank."""
        path = ckpt / CONFIG_NAME
        changes, old_training = [], None
        if path.is_file():  # (saved before checkpoints recorded their config: not compared)
            old, now = json.loads(path.read_text()), json.loads(json.dumps(self.cfg, default=str))
            old_training = dict(old.get("training", {}))
            for cfg in (old, now):
                cfg["training"] = {k: v for k, v in cfg.get("training", {}).items() if k not in RESUMABLE_CHANGES}
            changes = config_changes(old, now)
        saved = json.loads((ckpt / STATE_NAME).read_text()).get("processes")
        processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun and accelerate launch
        if saved is not None and saved != processes:  # the global batch and each rank's share of the stream
            changes.append(f"processes: {saved} -> {processes}")
        if saved is not None and old_training is not None:
            changes = self._rescaled_ranks(changes, old_training, saved, processes)
        if not changes:
            return
        listed = _listed(changes)
        if not allow:
            raise ConfigError(
                f"--resume: the config differs from the one {ckpt.name} was saved with ({listed}); resume with the "
                "same config, pass --allow-config-change to continue with the new one, or --overwrite to start again"
            )
        if int(os.environ.get("RANK", "0")) == 0:  # every rank compares the same files: said once, not per rank
            log.warning("resuming %s with a changed config: %s", ckpt, listed)

    def _check_resumed_data(self, ckpt: Path, allow: bool) -> None:
        """Refuse (or with `allow`, warn about) resuming `ckpt` on sources whose sequences differ from
        the ones it was saved with (`DATA_NAME`; sequences added, removed or of another length): the clip
        of a stream index is a function of the listing, so the resumed steps would draw other clips
        than the saved run, in silence."""
        path = ckpt / DATA_NAME
        if not path.is_file():  # (saved before checkpoints recorded their data: not compared)
            return
        changes = data_changes(json.loads(path.read_text()), self._data)
        if not changes:
            return
        if not allow:
            raise ConfigError(
                f"--resume: the data differ from those {ckpt.name} was saved with ({_listed(changes)}), so the "
                "resumed steps would draw other clips than the saved run; restore the data, pass "
                "--allow-config-change to continue on the data as they are now, or --overwrite to start again"
            )
        if int(os.environ.get("RANK", "0")) == 0:  # every rank compares the same files: said once
            log.warning("resuming %s on changed data: %s", ckpt, _listed(changes))

    def _check_ranks_see_same_data(self, acc: Any) -> None:
        """Every rank must draw from the same sequences: batch b is a function of the listing, so ranks
        whose folders differ (a node-local copy cut short, a node that mounts another version) would each
        take their own stream, in silence. Raises ConfigError (the same line on every rank) naming the
        ranks and the sequences that differ from rank 0's."""
        if acc.num_processes == 1:
            return
        digest = hashlib.blake2b(json.dumps(self._data, sort_keys=True).encode(), digest_size=8).digest()
        mine = int.from_bytes(digest, "little") & ((1 << 62) - 1)
        digests = acc.gather(torch.tensor([mine], dtype=torch.int64, device=acc.device)).tolist()
        if len(set(digests)) == 1:
            return
        listings: list[Any] = [None] * acc.num_processes  # only now: a listing may name 100 000 images
        torch.distributed.all_gather_object(listings, self._data)
        world = acc.num_processes
        differ = [f"rank {r} of {world}: " + ("; ".join(data_changes(listings[0], listings[r])) or "other sources")
                  for r in range(1, world) if digests[r] != digests[0]]  # fmt: skip
        raise ConfigError(
            f"the ranks see different data ({_listed(differ, 3)}, against rank 0's), so each would draw other "
            "clips for its share of a batch; give every rank the same data: one folder that every node sees, "
            "or complete copies"
        )

    def _rescaled_ranks(self, changes: list[str], old: dict[str, Any], saved: int, processes: int) -> list[str]:
        """`changes` without the process count and `grad_accum` when together they keep the global
        batch; otherwise with the `grad_accum` that would keep it named."""
        ours = [c for c in changes if c.startswith(("processes:", "training.grad_accum:"))]
        if not ours:
            return changes
        batch, accum = int(self.train_cfg["batch_size"]), int(self.train_cfg["grad_accum"])
        before = int(old.get("batch_size", batch)) * int(old.get("grad_accum", accum)) * saved
        rest = [c for c in changes if c not in ours]
        if before == batch * accum * processes and not _wants_deepspeed(self.train_cfg):
            if int(os.environ.get("RANK", "0")) == 0:
                log.info("resuming %d processes' checkpoint on %d with grad_accum %d: the same global batch of %d",
                         saved, processes, accum, before)  # fmt: skip
            return rest
        after = batch * accum * processes
        why = f"the global batch batch_size x grad_accum x processes changes from {before} to {after}"
        if _wants_deepspeed(self.train_cfg) and before == after:
            why = "DeepSpeed's optimizer state is split per rank: resume on the number of processes that saved it"
        elif before % (batch * processes) == 0:
            why += f"; training.grad_accum: {before // (batch * processes)} keeps it"
        elif before % batch == 0:  # no grad_accum keeps it on this many: name the numbers of processes that can
            fits = [p for p in range(1, before // batch + 1) if before % (batch * p) == 0]
            near = sorted(sorted(fits, key=lambda p: abs(p - processes))[:3])
            why += (f"; no grad_accum keeps it on {processes} processes: resume on "
                    + " or ".join(f"{p} with training.grad_accum: {before // (batch * p)}" for p in near))  # fmt: skip
        return [*rest, f"{', '.join(ours)} ({why})"]

    def _save(self, acc: Any, progress: TrainingProgress) -> None:
        """`save_state` into `checkpoints/checkpoint_<global step>.partial`, the counters as JSON
        (written last), a rename to `checkpoint_<global step>`, and only then the rotation to
        `keep_checkpoints`: a run killed at any point keeps its newest complete checkpoint, and a
        folder a killed save left is never resumed and is replaced."""
        if progress.global_step == self._saved_step:
            return
        folders = self.output_dir / "checkpoints"
        folder = folders / f"checkpoint_{progress.global_step}"
        partial = folder.with_name(folder.name + PARTIAL_SUFFIX)
        self._doing = f"saving {folder.name} in {folders}"
        t0 = time.monotonic()
        if acc.is_main_process:
            folders.mkdir(parents=True, exist_ok=True)
            for stale in folders.glob(f"checkpoint_*{PARTIAL_SUFFIX}"):  # killed saves: free their space first
                shutil.rmtree(stale, ignore_errors=True)
        acc.wait_for_everyone()
        try:
            acc.save_state(str(partial))  # every rank writes its part (its RNG states, a ZeRO shard)
        except OSError:
            if acc.is_main_process:  # a full disk: what was written of this save would keep it full
                shutil.rmtree(partial, ignore_errors=True)
            raise
        acc.wait_for_everyone()
        if acc.is_main_process:
            (partial / CONFIG_NAME).write_text(json.dumps(self.cfg, indent=2, sort_keys=True, default=str) + "\n")
            if self._data:  # one line: a source of single images lists each of them
                (partial / DATA_NAME).write_text(json.dumps(self._data, sort_keys=True) + "\n")
            state = {**progress.state_dict(), "processes": acc.num_processes}  # `--resume` compares it
            (partial / STATE_NAME).write_text(json.dumps(state, indent=2) + "\n")
            if folder.exists():  # incomplete (else it would have been resumed), or an earlier copy of this step
                shutil.rmtree(folder)
            os.replace(partial, folder)
            rotate_checkpoints(folders, keep=int(self.train_cfg["keep_checkpoints"]))
        acc.wait_for_everyone()
        self._saved_step = progress.global_step
        self._note_save_time(acc, folder.name, time.monotonic() - t0)

    def _note_save_time(self, acc: Any, name: str, seconds: float) -> None:
        """Remember how long a save took, and warn once (main process) when a step and a save take
        longer than the launcher waits after its SIGTERM (`launcher_grace_seconds`): a preempted run
        would then be killed in its save and resume from its last periodic checkpoint."""
        self._save_seconds = seconds
        grace = launcher_grace_seconds()
        needed = seconds + self._step_seconds
        if grace is None or needed <= grace[0] or self._warned_grace or not acc.is_main_process:
            return
        self._warned_grace = True
        log.warning(
            "saving %s took %.0f s (and a step %.0f s): longer than the %.0f s (%s) torchrun waits after a SIGTERM "
            "(a preemption, SLURM's time limit) before it kills the ranks, so a preempted run would lose the steps "
            "since its last periodic checkpoint; export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=%d (or more) before "
            "torchrun (training/launch/ scripts: SHUTDOWN_TIMEOUT), or save more often (training.checkpoint_every)",
            name, seconds, self._step_seconds, grace[0], grace[1], math.ceil(2 * needed),
        )  # fmt: skip

    @property
    def final_dir(self) -> Path:
        """The finished run's model folder, `output_dir/final` (`FINAL_NAME`)."""
        return self.output_dir / FINAL_NAME

    def _export_final(self, acc: Any, wrapped: nn.Module) -> None:
        """`final_dir` from `Accelerator.get_state_dict` (ZeRO gathers or clones its flat
        parameters, so the saved tensors never share storage)."""
        self._doing = f"writing the final model {self.final_dir}"
        state = acc.get_state_dict(wrapped)
        if acc.is_main_process:
            model = copy.deepcopy(acc.unwrap_model(wrapped).model)
            model.load_state_dict({k[len(STEP_PREFIX) :]: v for k, v in state.items() if k.startswith(STEP_PREFIX)})
            # a resumed run's export replaces its own earlier one (`fit` refused any other final/)
            self.export(model, overwrite=True)
        acc.wait_for_everyone()

    # -- tools --------------------------------------------------------------------------------
    def trained_stages(self, checkpoint: str | Path | None = None) -> list[Stage]:
        """The stages the weights of `checkpoint` went through, by the config and step it saved (a
        checkpoint folder of a run; the recipe since edited does not count), else the whole run's,
        to `stop_at`."""
        plan, step = self.plan, int(self.train_cfg.get("stop_at") or 0) or self.plan[-1].end
        if checkpoint is not None:
            try:
                step = int(json.loads((Path(checkpoint) / STATE_NAME).read_text())["global_step"])
                plan = plan_stages(json.loads((Path(checkpoint) / CONFIG_NAME).read_text()), self.recipe.stage_keys)
            except (OSError, ValueError, KeyError, TypeError, ConfigError):  # not a checkpoint folder of a run
                pass
        return [st for st in plan if st.start < step] or plan[:1]

    def export(
        self,
        model: nn.Module,
        out: str | Path | None = None,
        *,
        overwrite: bool = False,
        inputs: Iterable[str | Path] = (),
        stages: list[Stage] | None = None,
    ) -> Path:
        """`save_pretrained` the recipe's exported model into the model folder `out` (default
        `final_dir`), under a temporary name renamed when complete (`AtomicOutput`): a run killed
        while writing leaves no folder that looks like a finished model.

        Args:
            overwrite: replace an existing `out` (only a model folder; never a folder of the user's).
            inputs: files `out` may not overlap (the checkpoint exported).
            stages: the stages the weights went through (`trained_stages`; None: the whole run). The
                model folder records their crop sizes and clip lengths (`config.trained_record`), which
                the exporter and the engines default to.

        Raises:
            OutputExistsError: `out` exists (not empty) and `overwrite` is false, or it is not a model folder.
        """
        out = Path(out) if out is not None else self.final_dir
        dtype = self.train_cfg.get("export_weights_dtype")
        exported = self.recipe.export_model(model)
        exported.trained = trained_record(self.recipe.name, stages or self.trained_stages())
        with AtomicOutput(out, overwrite=overwrite, inputs=inputs, replaceable=not_a_model_folder) as tmp:
            exported.save_pretrained(tmp, weights_dtype=getattr(torch, dtype) if dtype else None)
        return out

    def export_checkpoint(self, checkpoint: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
        """A checkpoint (or any `vdepth_ros.models.load_state_dict_file` source) -> a `vdepth_ros.models` folder `out`,
        written under a temporary name and renamed into place (as `vdepth-export import` does).

        Raises:
            OutputExistsError: `out` exists (not empty) and `overwrite` is false, or is not a model folder
                (checked first).
            OfflineError: `out` overlaps `checkpoint`.
            ModelLoadError: the weights do not fit the recipe's model (the keys or shapes named).
        """
        check_output_path(Path(out), overwrite=overwrite, inputs=[Path(checkpoint)], replaceable=not_a_model_folder)
        torch.manual_seed(int(self.train_cfg["seed"]))
        model = self.recipe.build_model()
        what = f"{checkpoint} does not fit recipe {self.recipe.name!r}"
        load_state_checked(model, load_state_dict_file(checkpoint), what)
        stages = self.trained_stages(checkpoint)
        return self.export(model, out, overwrite=overwrite, inputs=[Path(checkpoint)], stages=stages)

    def precompute_cache(self) -> int:
        """Fill `training.latent_cache` with one epoch of every stage's clips without optimising.

        Runs the recipe's loss under `no_grad` on the clips `fit` draws in each stage (cache keys
        are clip contents, so stages that share clips share entries); ranks take every W-th batch.
        With `data.fixed_clips: true` training then never runs the frozen encoders or the teacher.
        Returns the number of batches all processes ran together (the same number on every rank).
        """
        if self.recipe.cache is None:
            raise ValueError("set training.latent_cache (or --latent-cache) to precompute a cache")
        from accelerate import PartialState

        check_gpus_per_node()
        state = PartialState()
        model = self._build_model(init=True).to(state.device)
        count, seed = 0, int(self.train_cfg["seed"])
        with torch.no_grad():
            for stage in self.plan:
                self.recipe.configure_stage(model, stage)
                self.recipe.prepare_data(stage, state.process_index, state.num_processes)
                state.wait_for_everyone()
                self.recipe.start_stage(stage)
                batches = self.recipe.batches(stage)
                epoch = math.ceil(len(batches) / state.num_processes)  # type: ignore[arg-type]
                loader = rank_loader(batches, start=0, rank=state.process_index, world=state.num_processes)
                for b, batch in zip(range(epoch), loader, strict=False):
                    index = b * state.num_processes + state.process_index
                    take_skipped(batch)
                    batch = {k: v.to(state.device) for k, v in batch.items()}
                    self.recipe.loss(model, batch, batch_generator(seed, stage.origin, index))
                    count += 1
        if state.num_processes > 1:  # the cache is the ranks' together: one total, said once (`train --cache-only`)
            total = torch.tensor([count], dtype=torch.int64, device=state.device)
            torch.distributed.all_reduce(total)
            count = int(total.item())
        state.wait_for_everyone()
        return count


def _listed(changes: list[str], most: int = 6) -> str:
    """The first `most` of `changes`, `; `-separated, and how many more."""
    return "; ".join(changes[:most]) + (f"; and {len(changes) - most} more" if len(changes) > most else "")


def config_changes(old: Any, new: Any, where: str = "") -> list[str]:
    """`"<dotted key>: <old> -> <new>"` for every value that differs between two configs (nested
    mappings and lists are compared item by item)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=str)
        return [c for k in keys for c in config_changes(old.get(k), new.get(k), f"{where}.{k}" if where else str(k))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [c for i, (a, b) in enumerate(zip(old, new, strict=True)) for c in config_changes(a, b, f"{where}[{i}]")]
    if isinstance(new, float) and misread_number(old) == new:
        return []  # `lr: 1e-4` saved as the string PyYAML read before recipes read it as a number
    return [] if old == new else [f"{where}: {old!r} -> {new!r}"]


def check_loss_decreases(history: list[dict[str, Any]], window: int = 3) -> tuple[float, float]:
    """(mean loss of the first `window` steps, of the last `window`) -- for overfit checks."""
    losses = [h["loss"] for h in history]
    if len(losses) < 2 * window or not all(math.isfinite(x) for x in losses):
        raise ValueError(f"need {2 * window} finite losses, got {losses}")
    return sum(losses[:window]) / window, sum(losses[-window:]) / window


__all__ = [
    "StoppedWithoutCheckpointError",
    "Trainer",
    "TrainingFailedError",
    "TrainingProgress",
    "batch_generator",
    "check_loss_decreases",
    "complete_checkpoints",
    "config_changes",
    "enable_gradient_checkpointing",
    "late_rank",
    "latest_checkpoint",
    "launch_folder",
    "note_doing",
    "segments",
    "take_skipped",
]
