"""Recipe-agnostic multi-stage trainer on `accelerate`.

Features: mixed precision (`accelerator.autocast`), gradient checkpointing (any submodule that
offers it), gradient accumulation (`accelerator.accumulate`), gradient clipping, checkpoints with
exact resume (`accelerator.save_state` + data position + stage), per-step loss logging
(`metrics.jsonl`, plus accelerate trackers when `training.log_with` is set) and DeepSpeed ZeRO-2
when launched with `accelerate launch --config_file <accelerate yaml with deepspeed_config_file>`.

Exactness of resume: the data stream of a stage is a pure function of (seed, stage, micro-batch
index) (`ClipDataset`), the loss noise of a micro-batch comes from a generator seeded with
(seed, global step, micro index, process index), and model/optimizer/scheduler state is restored by
accelerate. So stopping after k steps and resuming equals running straight through.

Output folder::

    metrics.jsonl                   one JSON line per optimizer step
    checkpoints/step_00001000/      accelerate state + trainer_state.json
    final/                          `save_pretrained` of the exported model (loads with
                                    `vdepth_ros.models.load_model`)
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from vdepth_training.config import build_dataset, build_optimizer, build_sources
from vdepth_training.data.dataset import make_loader
from vdepth_training.recipes import Recipe, get_recipe

log = logging.getLogger("vdepth_training")

STATE_NAME = "trainer_state.json"


def enable_gradient_checkpointing(model: nn.Module) -> int:
    """Turn on activation checkpointing in every submodule that supports it (diffusers
    `enable_gradient_checkpointing`; transformers `activation_checkpointing_enable`, formerly
    `gradient_checkpointing_enable`); returns how many modules were switched."""
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


def step_generator(seed: int, step: int, micro: int, process: int) -> torch.Generator:
    """The loss-noise generator of one micro-batch (pure function of its position)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 1009 + micro * 31 + process) % (2**63))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = sorted((Path(output_dir) / "checkpoints").glob("step_*"))
    ckpts = [c for c in ckpts if (c / STATE_NAME).is_file()]
    return ckpts[-1] if ckpts else None


class Trainer:
    """Run a config's stages.

    Args:
        cfg: loaded config (`config.load_config`).
        output_dir: where metrics, checkpoints and the final model go.
        recipe: override the recipe built from `cfg["recipe"]`.
    """

    def __init__(self, cfg: dict[str, Any], output_dir: str | Path, recipe: Recipe | None = None) -> None:
        self.cfg = cfg
        self.output_dir = Path(output_dir)
        self.recipe = recipe or get_recipe(cfg)
        self.train_cfg = cfg["training"]
        self.history: list[dict[str, Any]] = []
        self.model: nn.Module | None = None

    # -- helpers ------------------------------------------------------------------------------------
    def _accelerator(self) -> Any:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import ProjectConfiguration

        if AcceleratorState._shared_state and int(os.environ.get("WORLD_SIZE", "1")) == 1:
            # accelerate's state is a per-process singleton that refuses a different precision; a
            # single-process caller (tests, notebooks) may train several configs in a row.
            AcceleratorState._reset_state(reset_partial_state=True)

        log_with = self.train_cfg.get("log_with")
        accelerator = Accelerator(
            mixed_precision=self.train_cfg["mixed_precision"],
            gradient_accumulation_steps=int(self.train_cfg["grad_accum"]),
            cpu=not torch.cuda.is_available(),
            log_with=log_with,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir), logging_dir=str(self.output_dir)),
        )
        plugin = getattr(accelerator.state, "deepspeed_plugin", None)
        if plugin is not None:
            # The loader is not passed to `prepare` (the dataset is sharded by seed), so DeepSpeed's
            # "auto" micro-batch size and clipping are filled in here.
            ds_cfg = plugin.deepspeed_config
            ds_cfg["train_micro_batch_size_per_gpu"] = int(self.train_cfg["batch_size"])
            if ds_cfg.get("gradient_clipping") == "auto":
                ds_cfg["gradient_clipping"] = float(self.cfg["optimizer"].get("grad_clip") or 0.0)
        return accelerator

    def _save(self, accelerator: Any, model: nn.Module, global_step: int, stage_idx: int, stage_step: int) -> Path:
        ckpt = self.output_dir / "checkpoints" / f"step_{global_step:08d}"
        accelerator.save_state(str(ckpt))
        weights = ckpt / "model.safetensors"
        if not weights.is_file():  # DeepSpeed/FSDP write sharded engine state: add plain weights
            state = accelerator.get_state_dict(model)
            if accelerator.is_main_process:
                from safetensors.torch import save_file

                save_file({k: v.detach().cpu().clone() for k, v in state.items()}, str(weights))
        if accelerator.is_main_process:
            state = {"global_step": global_step, "stage": stage_idx, "stage_step": stage_step,
                     "stage_name": self.cfg["stages"][stage_idx]["name"]}  # fmt: skip
            (ckpt / STATE_NAME).write_text(json.dumps(state, indent=2) + "\n")
            keep = int(self.train_cfg.get("keep_checkpoints") or 0)
            if keep > 0:
                for old in sorted((self.output_dir / "checkpoints").glob("step_*"))[:-keep]:
                    shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return ckpt

    def _log(self, accelerator: Any, record: dict[str, Any]) -> None:
        self.history.append(record)
        if accelerator.is_main_process:
            with (self.output_dir / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
            if self.train_cfg.get("log_with"):
                accelerator.log({k: v for k, v in record.items() if isinstance(v, int | float)}, step=record["step"])
            every = int(self.train_cfg.get("log_every") or 1)
            if record["step"] % every == 0:
                terms = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k.startswith("loss"))
                log.info("step %d [%s] %s", record["step"], record["stage"], terms)

    # -- main loop ----------------------------------------------------------------------------------
    def fit(self, *, resume: bool = False, max_steps: int | None = None) -> list[dict[str, Any]]:
        """Train every stage (or stop after `max_steps` global steps); returns the step records.

        Args:
            resume: continue from the latest checkpoint in `output_dir` (fresh start if none).
            max_steps: stop early (and checkpoint) once this many global steps are done.
        """
        self.output_dir.mkdir(parents=True, exist_ok=True)
        cfg, tc = self.cfg, self.train_cfg
        seed = int(tc["seed"])
        torch.manual_seed(seed)
        model = self.recipe.build_model()
        if tc.get("gradient_checkpointing"):
            enable_gradient_checkpointing(model)
        sources = build_sources(cfg["data"])
        stages = cfg["stages"]
        start_stage, start_step, global_step = 0, 0, 0
        ckpt = latest_checkpoint(self.output_dir) if resume else None
        if ckpt is not None:
            state = json.loads((ckpt / STATE_NAME).read_text())
            start_stage, start_step, global_step = state["stage"], state["stage_step"], state["global_step"]
            if start_step >= int(stages[start_stage]["steps"]):
                start_stage, start_step = start_stage + 1, 0
        accum = int(tc["grad_accum"])
        for stage_idx in range(start_stage, len(stages)):
            stage = stages[stage_idx]
            accelerator = self._accelerator()
            if tc.get("log_with") and accelerator.is_main_process:
                accelerator.init_trackers("vdepth_training", config={"recipe": cfg["recipe"]})
            if ckpt is not None and stage_idx == start_stage and start_step == 0:
                # Checkpoint taken at a stage boundary: carry the weights, not the old optimizer.
                from safetensors.torch import load_model

                load_model(model, str(ckpt / "model.safetensors"), strict=False)
            groups = self.recipe.configure_stage(model, stage)
            optimizer = build_optimizer(groups, cfg["optimizer"])
            warmup = int(stage.get("warmup_steps", cfg["optimizer"].get("warmup_steps") or 0))
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda s, w=warmup: 1.0 if w <= 0 else min(1.0, (s + 1) / w)
            )
            model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
            stage_step = 0
            if ckpt is not None and stage_idx == start_stage and start_step > 0:
                accelerator.load_state(str(ckpt))
                stage_step = start_step
            ds = build_dataset(cfg, stage, sources, seed=seed + 7919 * stage_idx + 104_729 * accelerator.process_index,
                               normalization=self.recipe.normalization)  # fmt: skip
            loader = iter(make_loader(ds, start_batch=stage_step * accum, num_workers=int(tc.get("num_workers") or 0)))
            trainable = [p for g in optimizer.param_groups for p in g["params"]]
            model.train()
            n_steps = int(stage["steps"])
            while stage_step < n_steps:
                if max_steps is not None and global_step >= max_steps:
                    break
                t0 = time.perf_counter()
                sums: dict[str, float] = {}
                for micro in range(accum):
                    batch = {k: v.to(accelerator.device) for k, v in next(loader).items()}
                    gen = step_generator(seed, global_step, micro, accelerator.process_index)
                    with accelerator.accumulate(model), accelerator.autocast():
                        loss, terms = self.recipe.loss(model, batch, gen)
                        if not torch.isfinite(loss):
                            raise FloatingPointError(f"non-finite loss {loss.item()} at step {global_step}")
                        accelerator.backward(loss)
                        if accelerator.sync_gradients and cfg["optimizer"].get("grad_clip"):
                            accelerator.clip_grad_norm_(trainable, float(cfg["optimizer"]["grad_clip"]))
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                    sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) / accum
                    for k, v in terms.items():
                        sums[f"loss/{k}"] = sums.get(f"loss/{k}", 0.0) + float(v) / accum
                stage_step += 1
                global_step += 1
                record = {"step": global_step, "stage": stage["name"], "stage_step": stage_step, **sums,
                          "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}  # fmt: skip
                self._log(accelerator, record)
                every = int(tc.get("checkpoint_every") or 0)
                if every and global_step % every == 0:
                    self._save(accelerator, model, global_step, stage_idx, stage_step)
            model = accelerator.unwrap_model(model)
            if max_steps is not None and global_step >= max_steps and stage_step < n_steps:
                self._save(accelerator, model, global_step, stage_idx, stage_step)
                self.model = model
                accelerator.end_training()
                return self.history
            accelerator.end_training()
        self.model = model
        if global_step > 0 or ckpt is not None:
            self.export(model)
        return self.history

    def precompute_cache(self, stage_index: int = 0) -> int:
        """Fill `training.latent_cache` for one epoch of a stage's clips without optimising.

        Runs the recipe's loss under `no_grad` on exactly the clips `fit` will draw in that stage
        (same seeds; process 0), so with `data.fixed_clips: true` training never runs the frozen
        encoders or the teacher. Returns the number of batches processed.
        """
        if self.recipe.cache is None:
            raise ValueError("set training.latent_cache (or --latent-cache) to precompute a cache")
        cfg, seed = self.cfg, int(self.train_cfg["seed"])
        torch.manual_seed(seed)
        model = self.recipe.build_model()
        stage = cfg["stages"][stage_index]
        self.recipe.configure_stage(model, stage)
        ds = build_dataset(cfg, stage, build_sources(cfg["data"]), seed=seed + 7919 * stage_index,
                           normalization=self.recipe.normalization)  # fmt: skip
        count = 0
        with torch.no_grad():
            for i, batch in enumerate(make_loader(ds, num_workers=int(self.train_cfg.get("num_workers") or 0))):
                self.recipe.loss(model, batch, step_generator(seed, i, 0, 0))
                count += 1
        return count

    def export(self, model: nn.Module, out: str | Path | None = None) -> Path:
        """`save_pretrained` the recipe's exported model (default folder: `output_dir/final`)."""
        out = Path(out) if out is not None else self.output_dir / "final"
        self.recipe.export_model(model).save_pretrained(out)
        return out

    def export_checkpoint(self, checkpoint: str | Path, out: str | Path) -> Path:
        """A `checkpoints/step_*` folder -> a `vdepth_ros.models` folder (e.g. to evaluate mid-run)."""
        from safetensors.torch import load_model

        model = self.recipe.build_model()
        load_model(model, str(Path(checkpoint) / "model.safetensors"), strict=True)
        return self.export(model, out)


def check_loss_decreases(history: list[dict[str, Any]], window: int = 3) -> tuple[float, float]:
    """(mean loss of the first `window` steps, of the last `window`) -- for overfit checks."""
    losses = [h["loss"] for h in history]
    if len(losses) < 2 * window or not all(math.isfinite(x) for x in losses):
        raise ValueError(f"need {2 * window} finite losses, got {losses}")
    return sum(losses[:window]) / window, sum(losses[-window:]) / window


__all__ = ["Trainer", "check_loss_decreases", "enable_gradient_checkpointing", "latest_checkpoint", "step_generator"]
