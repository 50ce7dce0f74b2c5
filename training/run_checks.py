"""What a run is held to beside its config's own checks: a resumed run to the checkpoint it continues
(its config, its data listing, the number of processes and the global batch they make), and every rank
to the others (the same data listing before training, identical parameters after).

A mixin of `trainer.Trainer`, which sets the attributes these steps read: `cfg`, `train_cfg` and `_data`
(the data listing, `checkpoints.DATA_NAME`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from vdepth_training.checkpoints import CONFIG_NAME, DATA_NAME, RESUMABLE_CHANGES, STATE_NAME, data_changes
from vdepth_training.config import wants_deepspeed
from vdepth_training.ranks import TrainingFailedError

from vdepth_ros.errors import ConfigError
from vdepth_ros.values import misread_number

log = logging.getLogger("vdepth_training")

#: config keys naming a folder or file that each node may hold at its own path (`RunChecks._ranks_config`)
_NODE_PATHS = frozenset(("root", "init", "init_from", "deepspeed"))


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


class RunChecks:
    """Mixed into `trainer.Trainer`: the comparisons that refuse (or warn about) a run that would silently
    be another one than it says."""

    @staticmethod
    def _check_ranks_agree(acc: Any, model: nn.Module) -> None:
        """Data-parallel ranks must end with identical parameters: compare a digest of every
        parameter's and saved buffer's bytes across the ranks (a silent divergence would otherwise surface as a
        model that depends on which rank saved it; buffers too: BatchNorm statistics a forward updates
        differed, unseen, until `running_stats`)."""
        if acc.num_processes == 1:
            return
        digest = hashlib.blake2b(digest_size=8)
        saved = set(model.state_dict())  # the buffers the model written holds (not constants rebuilt at load)
        for name, p in [*model.named_parameters(), *((n, b) for n, b in model.named_buffers() if n in saved)]:
            digest.update(name.encode())
            digest.update(p.detach().float().cpu().contiguous().numpy().tobytes())
        mine = int.from_bytes(digest.digest(), "little") & ((1 << 62) - 1)
        digests = acc.gather(torch.tensor([mine], dtype=torch.int64, device=acc.device)).tolist()
        if len(set(digests)) != 1:
            raise TrainingFailedError(  # the same line on every rank (said once per node)
                f"the ranks ended with different parameters or buffers (digests {digests}): they diverged, e.g. by a "
                "computation that depends on the rank; the model written holds the main process's weights"
            )
        if acc.is_main_process:  # the same line on every rank: said once
            log.info("parameters identical on all %d ranks (digest %016x)", acc.num_processes, mine)

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
        the ones it was saved with (`DATA_NAME`; sequences added, removed, of another length, or with other
        files under the same names): the clip of a stream index is a function of the listing, so the
        resumed steps would draw other clips than the saved run, in silence."""
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
                "--allow-data-change to continue on the data as they are now, or --overwrite to start again"
            )
        if int(os.environ.get("RANK", "0")) == 0:  # every rank compares the same files: said once
            log.warning("resuming %s on changed data: %s", ckpt, _listed(changes))

    def _ranks_config(self) -> Any:
        """The config as the ranks must share it (`_check_ranks_see_same_run`): without the `training` keys
        that leave the steps alone (`RESUMABLE_CHANGES`) and the folders and files a node may hold
        elsewhere (`root`, `init`, `init_from`, `deepspeed`: their contents are compared, or rank 0's win)."""

        def strip(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items() if k not in _NODE_PATHS}
            return [strip(v) for v in value] if isinstance(value, list) else value

        cfg = json.loads(json.dumps(self.cfg, default=str))
        cfg["training"] = {k: v for k, v in cfg.get("training", {}).items() if k not in RESUMABLE_CHANGES}
        return strip(cfg)

    def _check_ranks_see_same_run(self, acc: Any) -> None:
        """Every rank must run the same config and draw from the same sequences: ranks whose configs differ
        (each reads its own copy: another `grad_accum` or `batch_size` on one node) call their exchanges at
        other moments and hang until the collective timeout (30 min); batch b is a function of the listing,
        so ranks whose folders differ (a node-local copy cut short, a node that mounts another version)
        would each take their own stream, in silence. Raises ConfigError (the same line on every rank)
        naming the ranks and what differs from rank 0's."""
        if acc.num_processes == 1:
            return
        mine_run = {"config": self._ranks_config(), "data": self._data}
        digest = hashlib.blake2b(json.dumps(mine_run, sort_keys=True).encode(), digest_size=8).digest()
        mine = int.from_bytes(digest, "little") & ((1 << 62) - 1)
        digests = acc.gather(torch.tensor([mine], dtype=torch.int64, device=acc.device)).tolist()
        if len(set(digests)) == 1:
            return
        runs: list[Any] = [None] * acc.num_processes  # only now: a listing may name 100 000 images
        torch.distributed.all_gather_object(runs, mine_run)
        world, first = acc.num_processes, runs[0]
        configs = [f"rank {r} of {world}: " + "; ".join(config_changes(first["config"], runs[r]["config"]))
                   for r in range(1, world) if runs[r]["config"] != first["config"]]  # fmt: skip
        if configs:
            raise ConfigError(
                f"the ranks run different configs ({_listed(configs, 3)}, against rank 0's), so they would wait "
                "for each other at other moments; give every rank the same config file"
            )
        differ = [f"rank {r} of {world}: " + ("; ".join(data_changes(first["data"], run["data"])) or "other sources")
                  for r, run in enumerate(runs) if r and digests[r] != digests[0]]  # fmt: skip
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
        if before == batch * accum * processes and not wants_deepspeed(self.train_cfg):
            if int(os.environ.get("RANK", "0")) == 0:
                log.info("resuming %d processes' checkpoint on %d with grad_accum %d: the same global batch of %d",
                         saved, processes, accum, before)  # fmt: skip
            return rest
        after = batch * accum * processes
        # the resumed steps read on from the stream position the checkpoint recorded (`TrainingProgress`), so no
        # batch is skipped or read twice; what changes is the optimisation, each step's mean over other samples
        why = (f"the global batch batch_size x grad_accum x processes changes from {before} to {after}: each step "
               f"from the checkpoint on averages {after} sample(s), not {before}")  # fmt: skip
        if wants_deepspeed(self.train_cfg) and before == after:
            why = "DeepSpeed's optimizer state is split per rank: resume on the number of processes that saved it"
        elif self.train_cfg.get("global_batch"):  # it derives grad_accum: name the one it would have to say
            why += f"; training.global_batch: {before} keeps it"
        elif before % (batch * processes) == 0:
            why += f"; training.grad_accum: {before // (batch * processes)} keeps it"
        elif before % batch == 0:  # no grad_accum keeps it on this many: name the numbers of processes that can
            fits = [p for p in range(1, before // batch + 1) if before % (batch * p) == 0]
            near = sorted(sorted(fits, key=lambda p: abs(p - processes))[:3])
            why += (f"; no grad_accum keeps it on {processes} processes: resume on "
                    + " or ".join(f"{p} with training.grad_accum: {before // (batch * p)}" for p in near))  # fmt: skip
        return [*rest, f"{', '.join(ours)} ({why})"]
