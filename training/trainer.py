"""Recipe-agnostic multi-stage trainer on `accelerate`: one process, DDP or DeepSpeed ZeRO-2, one
GPU or several nodes, CPU (gloo) included.

Launch with plain `python`, `torchrun` or `accelerate launch` (see training/README.md and
`training/launch/`). Per optimizer step every rank runs `grad_accum` micro-batches; the loss is
computed inside the wrapped module's forward (`recipes.TrainingStep`), so DDP and DeepSpeed reduce
exactly the gradients of the parameters a stage trains (never-used ones are frozen by the recipe,
`Recipe.unused_parameters`).

The step loop is `steps.py` (its data stream), a run's folder and checkpoints `checkpoints.py`, what the
ranks tell each other and how one rank's failure ends the others `ranks.py`, a resumed run and the ranks
held to each other `run_checks.py`, a stall or a signal stopping the run `stops.py`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from vdepth_training.checkpoints import (
    CONFIG_NAME,
    DATA_NAME,
    FINAL_NAME,
    PARTIAL_SUFFIX,
    RUN_FILES,
    STATE_NAME,
    TrainingProgress,
    check_run_outputs,
    complete_checkpoints,
    hold_output,
    latest_checkpoint,
    release_output,
    resumed_stream_position,
    rotate_checkpoints,
    truncate_metrics,
)
from vdepth_training.config import (
    build_optimizer,
    check_keys,
    crop_sizes,
    resolve_global_batch,
    trained_record,
    wants_deepspeed,
)
from vdepth_training.data.stream import rank_loader
from vdepth_training.ranks import (
    PeerEndedError,
    StoppedWithoutCheckpointError,
    TerminatedError,
    TrainingFailedError,
    check_gpus_per_node,
    end_rank,
    late_rank,
    launch_folder,
    launcher_grace_seconds,
    note_doing,
    tell_start_failed,
    wait_for_ranks_to_start,
)
from vdepth_training.recipes import Recipe, TrainingStep, get_recipe
from vdepth_training.run_checks import RunChecks, config_changes
from vdepth_training.stages import Stage, plan_stages
from vdepth_training.steps import StepLoop, batch_generator, take_skipped, unwrapped
from vdepth_training.stops import RunStops, build_lock_watch, sigterm_ignored
from vdepth_training.weights import STEP_PREFIX, load_init_weights

from vdepth_ros.errors import ConfigError, extra_hint
from vdepth_ros.models.base import load_state_checked, load_state_dict_file
from vdepth_ros.offline.atomic import AtomicOutput, check_output_path
from vdepth_ros.offline.errors import OutputExistsError
from vdepth_ros.paths import not_a_model_folder
from vdepth_ros.runtime.shapes import round_to_multiple

log = logging.getLogger("vdepth_training")
T = TypeVar("T")


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


def segments(plan: list[Stage]) -> list[list[Stage]]:
    """Stages grouped by the optimizer they share (a restart stage opens a segment)."""
    out: list[list[Stage]] = []
    for stage in plan:
        if stage.restart:
            out.append([])
        out[-1].append(stage)
    return out


class Trainer(StepLoop, RunChecks, RunStops):
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
        processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun and accelerate launch
        resolve_global_batch(self.train_cfg, processes)  # before the checkpoint's and the ranks' configs are compared
        if int(os.environ.get("RANK", "0")) == 0:  # what the recipe trains on this launch, said once
            tc = self.train_cfg
            batch, accum = int(tc["batch_size"]), int(tc["grad_accum"])
            unset = "" if tc.get("global_batch") else " (training.global_batch unset)"
            log.info("global batch %d: batch_size %d x grad_accum %d x %d process(es)%s", batch * accum * processes,
                     batch, accum, processes, unset)  # fmt: skip
        self.plan = plan_stages(cfg, self.recipe.stage_keys)
        held_out = any(st.cfg["data"].get("validation") for st in self.plan)
        if int(self.train_cfg.get("validate_every") or 0) and not held_out:
            raise ConfigError("training.validate_every needs data.validation: the held-out data (e.g. its sources)")
        self.history: list[dict[str, Any]] = []
        self.model: nn.Module | None = None
        self._saved_step = -1
        self.interrupted = False  # set by SIGINT (Ctrl-C) or SIGTERM during the steps: stop, checkpointed
        self._stop_requested = False
        self._checked = False  # this rank passed its own start-up checks (`_start_ranks`)
        self._training = False  # the steps began (a rank ending before says "stopped before training")
        self._steps_over = False  # the last step is done: a SIGTERM now changes nothing (`_stop_on_signals`)
        self._output_lock: Any | None = None  # this run's lock on `output_dir` (`_check_output`)
        self._doing_now = "start-up"
        self._waiting: tuple[float, str] | None = None  # (since, what) while the step waits for its batch
        self._save_seconds = self._step_seconds = 0.0  # the last save's and step's duration
        self._warned_grace = False  # said that a step and a save outlast the launcher's grace after SIGTERM
        self._data: dict[str, dict[str, int]] = {}  # what the sources draw from (`Recipe.data_listing`)
        self._exchange_lock = threading.Lock()  # `_in_exchange`, `_ending_in_thread`: main thread and SIGTERM watcher
        self._in_exchange: str | None = None  # the start-up exchange this rank waits in (`stops.RunStops._exchange`)
        self._ending_in_thread = False  # a SIGTERM in that exchange: the watcher thread ends this rank

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
        allow_data_change: bool = False,
    ) -> list[dict[str, Any]]:
        """Train every stage (or stop, checkpointed, after `max_steps` global steps or at a Ctrl-C or
        SIGTERM, `interrupted`); returns the step records (the same on every rank).

        Args:
            resume: continue from the latest checkpoint in `output_dir` (fresh start if none).
            max_steps: stop early once this many global steps are done.
            overwrite: start afresh in an `output_dir` that holds a run (its metrics, checkpoints
                and final model are deleted first).
            allow_config_change: resume although the config differs from the checkpoint's (the
                differences are logged as a warning); otherwise that is an error. Implies `allow_data_change`.
            allow_data_change: resume although the data differ from the checkpoint's (sequences added,
                removed, of another length, or with other files under the same names; a frozen model folder
                with another model): a warning names them; otherwise that is an error.

        Raises:
            OutputExistsError: `output_dir` holds a run and neither `resume` nor `overwrite` is set, or
                `resume` finds a finished run (`final/`) without a checkpoint (it would start again).
            ConfigError: `resume` with a config that differs from the checkpoint's (beyond
                `RESUMABLE_CHANGES`) and not `allow_config_change`, or on other data and not `allow_data_change`.
        """
        progress = TrainingProgress()
        with self._output_held(), self._ended_as_one(lambda: progress.global_step if self._training else None):
            with self._terminated_as_error():
                existing = self._start_ranks(lambda: self._check_output(resume=resume, overwrite=overwrite),
                                             resume=resume, allow_config=allow_config_change,
                                             allow_data=allow_config_change or allow_data_change)  # fmt: skip
                # 1. accelerator, counters, model (every exchange from here on is covered: `_ended_as_one`)
                with self._exchange("starting the process group"):
                    acc = self._accelerator()
                with self._exchange("comparing the ranks' configs and data"):
                    self._check_ranks_see_same_run(acc)
                if existing and overwrite and not resume and acc.is_main_process:
                    for name in existing:
                        path = self.output_dir / name
                        shutil.rmtree(path) if path.is_dir() else path.unlink()
                with self._exchange("waiting for the other ranks before building the model"):
                    acc.wait_for_everyone()
                acc.register_for_checkpointing(progress)
                ckpt = latest_checkpoint(self.output_dir) if resume else None
                if resume and acc.is_main_process:
                    at = json.loads((ckpt / STATE_NAME).read_text())["global_step"] if ckpt else 0
                    truncate_metrics(self.output_dir, at)
                self._doing = "building the model"
                model = self._build_model(init=ckpt is None)
            # 2. where to start and where to stop
            start = json.loads((ckpt / STATE_NAME).read_text()) if ckpt else progress.state_dict()
            start.pop("processes", None)  # the counters only (the process count was checked above)
            if ckpt is not None:  # the first batch no step has read, in this run's batches
                at = self.plan[int(start["stage"])]
                steps_in = at.start - at.origin + int(start["stage_step"])
                position = resumed_stream_position(ckpt, steps_in, self.train_cfg, acc.num_processes)
                start["stream_batches"] = position
                per_step = int(self.train_cfg["grad_accum"]) * acc.num_processes
                if position != steps_in * per_step and acc.is_main_process:  # another global batch (allowed)
                    log.info("the batch stream goes on at batch %d (sample %d), the first no step has read; "
                             "%d batch(es) of %d sample(s) per step from here on", position,
                             position * int(self.train_cfg["batch_size"]), per_step,
                             int(self.train_cfg["batch_size"]))  # fmt: skip
            end = self.plan[-1].end if not self.train_cfg.get("stop_at") else int(self.train_cfg["stop_at"])
            stop = end if max_steps is None else min(end, max_steps)
            # 3. the segments of stages that share an optimizer, from the resume point on
            self._training, self._steps_over = True, False
            with self._stop_on_signals(), self._watch_for_stalls(acc):
                for segment in segments(self.plan):
                    if segment[-1].index < start["stage"] or progress.global_step >= stop:
                        continue
                    model = self._run_segment(acc, model, segment, progress, ckpt, start, stop, end)
                    ckpt = None  # loaded into the first segment run
                    if self.interrupted:
                        break
                # inside the handlers: a SIGTERM here, after the steps (SLURM's, or torchrun's forwarded one), killed
                # a rank of a run whose final/ was written, and the others said to start it again
                self._doing = "comparing the ranks' parameters"
                self._check_ranks_agree(acc, model)
        for tracker in acc.trackers:  # not `end_training`: it ends the process group, which outlives one fit
            tracker.finish()
        self.model = model
        return self.history

    def _start_ranks(self, checks: Callable[[], T], **data: bool) -> T:
        """This rank's own start-up checks (`checks`, its GPUs, `_open_data(**data)`), then the wait for
        every rank to have passed theirs: what one rank meets alone (its node's data, its GPUs) ends every
        rank, on any node, with its line (`ranks.tell_start_failed`). Returns what `checks` returned."""
        self._doing, self._checked = "start-up", False
        try:
            result = checks()
            check_gpus_per_node()
            self._check_deepspeed_usable()
            if data:
                self._open_data(**data)
            else:  # `--cache-only`: every stage's data, from the first
                for stage in self.plan:
                    self.recipe.open_data(stage)
        except Exception as err:
            tell_start_failed(err)
            raise
        self._checked = True
        self._doing = "waiting for the other ranks to start"
        wait_for_ranks_to_start(self.train_cfg.get("collective_timeout"))
        return result

    @contextmanager
    def _ended_as_one(self, step: Callable[[], int | None]) -> Iterator[None]:
        """Under a launcher of several ranks, anything that ends this rank after its own start-up checks
        (`_start_ranks`) ends every rank, each with one line (`ranks.end_rank`): a collective of the
        start-up as much as of the steps, and SIGTERM before the steps (`TerminatedError`). `step`: the
        steps done, None before training."""
        try:
            yield
        except (Exception, TerminatedError) as err:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            started = self._checked or isinstance(err, TerminatedError)  # else told by `_start_ranks`
            if world > 1 and started and not isinstance(err, (TrainingFailedError, StoppedWithoutCheckpointError)):
                with sigterm_ignored():  # the launcher's SIGTERM (another rank ended) would cut this rank's line
                    end_rank(
                        err,
                        rank=int(os.environ.get("RANK", "0")),
                        world=world,
                        doing=self._doing,
                        step=step(),
                        stop_requested=self._stop_requested,
                        collective_timeout=self.train_cfg.get("collective_timeout"),
                        output_dir=self.output_dir,
                    )
            if isinstance(err, TerminatedError):  # one process: SIGTERM ends it, as without the handler
                raise StoppedWithoutCheckpointError("stopped before training: SIGTERM") from None
            raise

    def _open_data(self, *, resume: bool, allow_config: bool, allow_data: bool) -> None:
        """Open the data of the stages to run (`Recipe.open_data`: a mistake in the data fails here, before
        the model is built) and list it; with `resume`, first refuse a changed config, then changed data."""
        first_stage = 0
        if (found := latest_checkpoint(self.output_dir) if resume else None) is not None:
            self._check_resumed_config(found, allow_config)
            first_stage = int(json.loads((found / STATE_NAME).read_text())["stage"])
        for stage in self.plan[first_stage:]:
            self.recipe.open_data(stage)
        self._data = {k: v for st in self.plan[first_stage:] for k, v in self.recipe.data_listing(st).items()}
        if found is not None:
            self._check_resumed_data(found, allow_data)

    @contextmanager
    def _output_held(self) -> Iterator[None]:
        """Release the lock on `output_dir` that `_check_output` takes (`checkpoints.hold_output`) when `fit` ends."""
        try:
            yield
        finally:
            if self._output_lock is not None:
                release_output(self._output_lock)
                self._output_lock = None

    def _check_output(self, *, resume: bool, overwrite: bool) -> list[str]:
        """The `RUN_FILES` in `output_dir`, after refusing (OutputExistsError) to start a run over
        them without `overwrite`, or to delete what a run did not write, or while another run holds the
        folder (the first rank locks it for the run: `checkpoints.hold_output`)."""
        if int(os.environ.get("RANK", "0")) == 0 and self._output_lock is None:  # (held: asked again, in one run)
            self._output_lock = hold_output(self.output_dir)
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
            progress.stream_batches = start["stream_batches"]  # (in this run's batch_size: `resumed_stream_position`)
            assert progress.state_dict() == start, (progress.state_dict(), start)
            self._saved_step = progress.global_step
        for stage in [st for st in segment if st.index >= progress.stage]:
            if progress.stage != stage.index:
                progress.stage, progress.stage_step = stage.index, 0
                if stage.restart:  # a fresh batch stream too (the segment's first stage)
                    progress.stream_batches = 0
            self._run_stage(acc, wrapped, optimizer, stage, progress, stop)
            if progress.global_step >= stop or self.interrupted:
                break
        # 4. the end of the run (export) or an early stop (checkpoint)
        self._steps_over = progress.global_step >= stop
        if progress.global_step >= end:
            self._export_final(acc, wrapped)
            if self.interrupted and acc.is_main_process:
                log.warning("the stop came in the run's last step: the run is complete (%s), nothing to resume",
                            self.final_dir)  # fmt: skip
            self.interrupted = False  # a finished run, not a stopped one: no checkpoint to resume, exit code 0
        elif progress.global_step >= stop or self.interrupted:
            self._save(acc, progress)
        if self.interrupted and acc.is_main_process:
            log.warning(
                "interrupted: stopped after step %d with a checkpoint; --resume continues", progress.global_step
            )
        model = unwrapped(acc, wrapped).model
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
        )

        tc = self.train_cfg
        if tc.get("threads"):
            torch.set_num_threads(int(tc["threads"]))
        ds_file = tc.get("deepspeed")
        want_ds = wants_deepspeed(tc)
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
        with build_lock_watch() if want_ds else nullcontext():  # DeepSpeed builds its ops here
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

    def _check_deepspeed_usable(self) -> None:
        """Refuse DeepSpeed (`training.deepspeed`, `accelerate launch`) where it cannot run, before the ranks
        meet: it never falls back to plain data parallel in silence (RuntimeError)."""
        from accelerate.utils import is_deepspeed_available

        if not wants_deepspeed(self.train_cfg):
            return
        if not is_deepspeed_available():
            raise RuntimeError(f"DeepSpeed was requested but is not installed: {extra_hint('deepspeed')}")
        if "LOCAL_RANK" not in os.environ:
            raise RuntimeError("DeepSpeed was requested but no launcher started this process: run it under torchrun "
                               "or `accelerate launch` (training/README.md), one process per GPU")  # fmt: skip

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
            acc.wait_for_everyone()  # (fails here when another rank's part failed)
        except Exception as err:
            if acc.is_main_process:  # a full disk, on any rank: what was written (the model) would keep it full
                shutil.rmtree(partial, ignore_errors=True)
            elif not partial.exists():  # removed so: the main process's save failed
                raise PeerEndedError(f"{partial} was removed while this rank wrote its part") from err
            raise
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
        """`final_dir` from `Accelerator.get_state_dict` under DeepSpeed (ZeRO gathers or clones its flat
        parameters, so the saved tensors never share storage), else from the module (`unwrapped`)."""
        from accelerate.utils import DistributedType

        self._doing = f"writing the final model {self.final_dir}"
        module = unwrapped(acc, wrapped)
        state = (
            acc.get_state_dict(wrapped) if acc.distributed_type == DistributedType.DEEPSPEED else module.state_dict()
        )
        if acc.is_main_process:
            model = copy.deepcopy(module.model)
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

    def precompute_cache(self) -> list[int]:
        """Fill `training.latent_cache` with one epoch of every stage's clips without optimising.

        Runs the recipe's loss under `no_grad` on the clips `fit` draws in each stage (cache keys
        are clip contents, so stages that share clips share entries); ranks take every W-th batch of
        the epoch, and no more (the batches after it are the next epoch's).
        With `data.fixed_clips: true` training then never runs the frozen encoders or the teacher.
        Returns the number of batches each process ran (the same list on every rank).
        """
        if self.recipe.cache is None:
            raise ValueError("set training.latent_cache (or --latent-cache) to precompute a cache")
        from accelerate import PartialState

        count = 0
        seconds = self.train_cfg.get("collective_timeout")
        with self._ended_as_one(lambda: None), self._terminated_as_error():
            self._start_ranks(lambda: None)  # one node's data missing ends every node, with its line
            with self._exchange("starting the process group"):
                # as `_accelerator`: CPU ranks meet over gloo (without `cpu`, accelerate started none on a
                # machine without GPUs, and every rank filled the whole cache alone)
                state = PartialState(cpu=not torch.cuda.is_available(),
                                     **({"timeout": timedelta(seconds=float(seconds))} if seconds else {}))  # fmt: skip
            self._doing = "building the model"
            model = self._build_model(init=True).to(state.device)
            seed, rank, world = int(self.train_cfg["seed"]), state.process_index, state.num_processes
            with torch.no_grad():
                for stage in self.plan:
                    self._doing = f"filling the cache for stage {stage.name}"
                    self.recipe.configure_stage(model, stage)
                    self.recipe.prepare_data(stage, rank, world)
                    state.wait_for_everyone()
                    self.recipe.start_stage(stage)
                    batches = self.recipe.batches(stage)
                    loader = rank_loader(batches, start=0, rank=rank, world=world)
                    indices = range(rank, len(batches), world)  # type: ignore[arg-type]
                    for index, batch in zip(indices, loader, strict=False):
                        take_skipped(batch)
                        batch = {k: v.to(state.device) for k, v in batch.items()}
                        self.recipe.loss(model, batch, batch_generator(seed, stage.origin, index))
                        count += 1
            self._doing = "adding up the ranks' batches"
            counts = torch.zeros(world, dtype=torch.int64, device=state.device)
            counts[rank] = count
            if world > 1:  # the cache is the ranks' together: one line, said once (`train --cache-only`)
                torch.distributed.all_reduce(counts)
            state.wait_for_everyone()
        return counts.cpu().tolist()


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
