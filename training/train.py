"""Entry point: `python -m vdepth_training.train --config training/configs/<recipe>.yaml [--tiny] [--resume]`.

The same command runs in one process, under `torchrun` (one launcher per node) or under
`accelerate launch` (DDP or DeepSpeed ZeRO-2); see training/README.md and `training/launch/`::

    torchrun --standalone --nproc_per_node 8 -m vdepth_training.train --config training/configs/vda.yaml
    accelerate launch --config_file training/configs/accelerate_zero2.yaml \\
        -m vdepth_training.train --config training/configs/depthcrafter.yaml

Prints one line per logged step and the folder of the final model (`<output>/final`, loadable with
`vdepth_ros.models.load_model`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch
from vdepth_training.config import load_config
from vdepth_training.ranks import PROG, StoppedWithoutCheckpointError, TrainingFailedError, say_end
from vdepth_training.recipes import recipe_class
from vdepth_training.trainer import Trainer

from vdepth_ros.errors import ConfigError, VdepthError
from vdepth_ros.paths import expand_home


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, type=Path, help="recipe YAML (training/configs/*.yaml)")
    p.add_argument("--tiny", action="store_true", help="apply the config's `tiny` section (CPU smoke run)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an --output that holds a run (deletes its metrics, checkpoints and final model); "
        "with --export-checkpoint: replace <output>/export",
    )
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: continue although the config differs from the checkpoint's (refused otherwise)",
    )
    p.add_argument(
        "--allow-data-change",
        action="store_true",
        help="with --resume: continue although the data differ from the checkpoint's (sequences added, removed, "
        "of another length or with other files; refused otherwise)",
    )
    p.add_argument("--output", type=Path, default=None, help="output folder (default: runs/<config stem>[-tiny])")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many global steps (checkpointed)")
    p.add_argument("--latent-cache", type=Path, default=None, help="cache frozen-encoder/teacher latents here")
    p.add_argument("--cache-only", action="store_true", help="fill the latent cache for every stage's clips and exit")
    p.add_argument("--data", type=Path, default=None, help="recipe default only: folder of the rendered clips")
    p.add_argument("--deepspeed", type=Path, default=None, help="DeepSpeed JSON config (sets training.deepspeed)")
    p.add_argument(
        "--export-checkpoint",
        type=Path,
        default=None,
        help="write a checkpoint (or model/weights file) as a vdepth_ros model to <output>/export and exit "
        "(an existing export only with --overwrite)",
    )
    p.add_argument("--weights-fp16", action="store_true", help="store exported weights as float16")
    return p.parse_args(argv)


def overrides_from(args: argparse.Namespace) -> dict:
    """Command-line settings as config overrides."""
    training: dict = {}
    if args.latent_cache:
        training["latent_cache"] = str(args.latent_cache)
    if args.deepspeed:
        training["deepspeed"] = str(args.deepspeed)
    if args.weights_fp16:
        training["export_weights_dtype"] = "float16"
    out: dict = {"training": training} if training else {}
    if args.data:
        out["data"] = {"root": str(args.data)}
    return out


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done (or stopped at --max-steps), 2 a mistake in the command or config (one line
    on stderr), 1 the run failed (a non-finite loss, or under a launcher one rank's own failure: one line naming
    the rank, the step and the cause), 130 stopped by Ctrl-C or SIGTERM (after a checkpoint during the steps;
    `--resume` continues), 143 stopped because another rank failed (that rank's exit code and line say why)."""
    args = parse_args(argv)
    expand_home(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    out = output_folder(args)
    try:
        return _run(args)
    except (VdepthError, FileNotFoundError, FileExistsError, TrainingFailedError, StoppedWithoutCheckpointError,
            KeyboardInterrupt) as err:  # fmt: skip
        return say_end(err, out)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def output_folder(args: argparse.Namespace) -> Path:
    """The run's output folder: --output, else runs/<config stem>[-tiny]."""
    return args.output or Path("runs") / (args.config.stem + ("-tiny" if args.tiny else ""))


def _run(args: argparse.Namespace) -> int:
    if args.resume and args.overwrite and args.export_checkpoint is None:
        raise ConfigError("--resume continues the run in --output and --overwrite starts it again: pass one of them "
                          "(training/launch/ scripts pass --resume unless --overwrite is given)")  # fmt: skip
    out = output_folder(args)
    cfg = load_config(args.config, tiny=args.tiny, overrides=overrides_from(args) or None)
    if args.data and "root" not in recipe_class(cfg).data_keys:
        raise ConfigError(f"--data is the folder of the default recipe's rendered clips; recipe {cfg['recipe']!r} "
                          "reads its data from data.sources (set each source's root in the config)")  # fmt: skip
    trainer = Trainer(cfg, out)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    report = print if main_rank else (lambda *_: None)  # once, not once per rank
    if args.export_checkpoint is not None:
        if not main_rank:  # under a launcher one process writes the model (the others would race it)
            return 0
        print(f"model: {trainer.export_checkpoint(args.export_checkpoint, out / 'export', overwrite=args.overwrite)}")
        return 0
    if args.cache_only:
        counts = trainer.precompute_cache()  # each rank's batches
        shares = f" ({' + '.join(map(str, counts))} on {len(counts)} processes)" if len(counts) > 1 else ""
        report(f"cached {sum(counts)} batches in {cfg['training']['latent_cache']}{shares}")
        return 0
    history = trainer.fit(resume=args.resume, max_steps=args.max_steps, overwrite=args.overwrite,
                          allow_config_change=args.allow_config_change,
                          allow_data_change=args.allow_data_change)  # fmt: skip
    if history:
        skipped = sum(int(h.get("data/skipped", 0)) for h in history)
        report(f"steps {history[0]['step']}..{history[-1]['step']}: loss {history[0]['loss']:.5g} -> "
               f"{history[-1]['loss']:.5g}" + (f"; {skipped} clips skipped for damaged files (the warnings name "
               "them)" if skipped else ""))  # fmt: skip
    if trainer.interrupted:
        report(f"interrupted: checkpoint in {out / 'checkpoints'}; add --resume to continue")
        return 130
    if trainer.final_dir.is_dir():
        report(f"model: {trainer.final_dir}")
    return 0


def _exit_without_finalizing(code: int) -> None:
    """Leave a launched rank (torchrun, accelerate launch) without Python's finalization.

    At interpreter exit, gloo's worker threads could still be destroying the last collective's work
    (the ranks' parameter check) and need the GIL while the main thread finalizes: the rank then
    aborted with "terminate called without an active exception" (SIGABRT, in about 2 of 5 two-rank
    dvd or fiffdepth runs) after a complete run, and the launcher exited 1. Everything is written and
    the process group destroyed by now, so the rank flushes and exits with its own code."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _exit_without_finalizing(code)
    raise SystemExit(code)
