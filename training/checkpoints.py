"""A run's output folder on disk: what a run writes there, its checkpoints, its metrics at `--resume`.

Checkpoints: accelerate's `save_state`/`load_state` (the step counters and the batch stream's
position registered with `register_for_checkpointing`, `TrainingProgress`) into
`checkpoints/checkpoint_<global step>`, plus `trainer_state.json` (the same counters, readable
before anything is built). A checkpoint is
written as `checkpoint_<step>.partial` and renamed when complete; only then are the checkpoints
beyond `keep_checkpoints` deleted, so a run killed while saving (SIGKILL, a node lost) keeps its
last complete checkpoint. `--resume` continues from the latest complete checkpoint and reproduces
an uninterrupted run exactly (tested with one and two ranks).

Output folder::

    metrics.jsonl                     one JSON line per optimizer step (main process)
    checkpoints/checkpoint_<step>/    accelerate state + trainer_config.json + trainer_data.json
                                      + trainer_state.json (last)
    checkpoints/checkpoint_<step>.partial/   a checkpoint being written (never resumed; replaced)
    final/                            (`FINAL_NAME`) `save_pretrained` of the exported model (loads with
                                      `vdepth_ros.models.load_model`); after ZeRO the weights come
                                      from `Accelerator.get_state_dict`
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from vdepth_ros.errors import ConfigError
from vdepth_ros.offline.errors import OutputExistsError
from vdepth_ros.paths import CONFIG_NAME as MODEL_CONFIG_NAME
from vdepth_ros.paths import TRAINER_CONFIG_NAME, TRAINER_STATE_NAME, WEIGHT_SUFFIXES, not_a_model_folder

STATE_NAME = TRAINER_STATE_NAME
#: the run's config as it was when a checkpoint was saved (beside `STATE_NAME`; `--resume` compares it)
CONFIG_NAME = TRAINER_CONFIG_NAME
#: what the run's data sources held when a checkpoint was saved (`Recipe.data_listing`; `--resume` compares it)
DATA_NAME = "trainer_data.json"
#: the suffix of a source's second listing entry, `{sequence: digest of its files}` (`files_digest`): files replaced
#: under the same names and frame counts (a dataset exported again) change the clips too. Renamed with each change
#: of `files_digest`: a checkpoint saved with another digest lacks the entry and is compared by names and lengths,
#: rather than every sequence of it reading as exported again (" (file contents)": 4 files of each sampled)
CONTENT_SUFFIX = " (every file's contents)"
#: the one entry of a frozen model folder's listing (`Recipe.frozen_models`): a digest of its files, not frames
MODEL_FOLDER_ENTRY = "(config.json and weight files)"
#: `training` keys a resumed run may change: they do not change what it computes
RESUMABLE_CHANGES = frozenset(
    ("log_every", "checkpoint_every", "keep_checkpoints", "num_workers", "log_with", "threads", "latent_cache")
    + ("stop_at", "export_weights_dtype", "validate_every", "validate_batches", "stall_timeout", "collective_timeout")
    # recomputed activations (less memory on a smaller GPU) and DDP's search for unused parameters: the same steps
    + ("gradient_checkpointing", "find_unused_parameters")
    # what it asks for is the global batch the resumed run's grad_accum and processes are compared by
    + ("global_batch",)
)
#: the finished run's model folder in its output folder (`Trainer.final_dir`)
FINAL_NAME = "final"
#: what a run writes into its output folder (`data/`, the default recipe's renders, is reused on purpose)
RUN_FILES = ("metrics.jsonl", "checkpoints", FINAL_NAME)


#: the lock file a run holds in its output folder while it runs (`hold_output`)
LOCK_NAME = ".vdepth_training.lock"


def hold_output(output_dir: Path) -> Any | None:
    """Lock `output_dir` for this run (an exclusive `flock` on its `LOCK_NAME`, held until `release_output`, or
    the process's end, a kill too); None where the file system cannot lock. Two runs on one folder (a job
    started twice, a requeued job beside the one still running, `one_node.sh` run again in another terminal:
    each passes `--resume`) both trained from the same checkpoint and overwrote each other's checkpoints,
    `metrics.jsonl` and `final/`.

    Raises:
        OutputExistsError: another run holds the folder (its process, host and start said), or it is a file.
        ConfigError: the folder cannot be written."""
    import fcntl

    made = not output_dir.exists()
    path = output_dir / LOCK_NAME
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputExistsError(f"--output {output_dir} is a file, not a folder: choose another --output") from None
    while True:
        try:
            held = path.open("a+")
        except OSError as err:  # (the run could not write its metrics and checkpoints there either)
            raise ConfigError(f"--output {output_dir}: cannot write there ({err.strerror}): choose another "
                              "--output") from None  # fmt: skip
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.seek(0)
            holder = held.read().strip() or "another process"
            held.close()
            raise OutputExistsError(
                f"{output_dir} is in use by another run ({holder}; it holds {path}): wait for it to end, stop it, "
                "or choose another --output"
            ) from None
        except OSError:  # a file system without locks (some network mounts): the runs are not told apart
            held.close()
            return None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(held.fileno()).st_ino:
                break  # else the run that held it deleted it as this one opened it: lock the new file
        held.close()
    held.seek(0)
    held.truncate()
    held.write(f"pid {os.getpid()} on {os.uname().nodename}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    held.flush()
    held.made_folder = made  # type: ignore[attr-defined]
    return held


def release_output(held: Any) -> None:
    """Delete the lock file `hold_output` returned, then unlock it, and the output folder if `hold_output` made it
    and the run wrote nothing there (it stopped at start-up): nothing of the lock stays."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(held.name)
    held.close()
    if getattr(held, "made_folder", False):
        with contextlib.suppress(OSError):  # (not empty: what the run wrote stays)
            Path(held.name).parent.rmdir()


def check_run_outputs(output_dir: Path, names: list[str]) -> None:
    """Raise OutputExistsError unless each of `names` in `output_dir` is what a run writes there."""
    for name in names:
        if (why := _not_run_output(output_dir / name)) is not None:
            raise OutputExistsError(
                f"{output_dir / name} exists and is {why}: --overwrite replaces only an earlier run; "
                "move it away or choose another --output"
            )


def _not_run_output(path: Path) -> str | None:
    """What `path` (one of `RUN_FILES` in an output folder) is instead of what a run writes there, or None."""
    if path.name == FINAL_NAME:
        return not_a_model_folder(path)
    if path.name == "checkpoints":
        if not path.is_dir():
            return "a file, not a run's checkpoints folder"
        other = [p.name for p in path.iterdir() if _checkpoint_step(p) is None]
        return f"not a run's checkpoints folder (it holds {', '.join(sorted(other)[:3])})" if other else None
    try:  # metrics.jsonl: one JSON object with a step per line
        first = path.open().readline() if path.is_file() else None
        if first is not None and (not first.strip() or "step" in json.loads(first)):
            return None
    except (OSError, ValueError, TypeError):
        pass
    return "not a run's metrics (JSON lines with a step)"


class TrainingProgress:
    """The step counters and the position in the batch stream, restored with a checkpoint
    (`Accelerator.register_for_checkpointing`).

    `stream_batches` is the number of batches of the current segment's stream (`data.stream`) that the
    ranks have read together: the next step reads from batch `stream_batches` on, whatever number of
    processes, `grad_accum` or `batch_size` it runs with (`resumed_stream_position`), so a resume with
    another global batch continues at the first batch no step has read, none skipped or read twice."""

    def __init__(self) -> None:
        self.global_step = 0
        self.stage = 0
        self.stage_step = 0
        self.stream_batches = 0

    def state_dict(self) -> dict[str, int]:
        return {"global_step": self.global_step, "stage": self.stage, "stage_step": self.stage_step,
                "stream_batches": self.stream_batches}  # fmt: skip

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.global_step, self.stage, self.stage_step = state["global_step"], state["stage"], state["stage_step"]
        # the trainer sets it again from `resumed_stream_position` (another batch_size, an older checkpoint)
        self.stream_batches = int(state.get("stream_batches", 0))


def resumed_stream_position(ckpt: Path, steps_into_segment: int, training: dict[str, Any], processes: int) -> int:
    """The batch of the segment's stream that a run resumed from `ckpt` reads first, in batches of the
    resumed run's `training["batch_size"]`: the position the checkpoint recorded
    (`TrainingProgress.stream_batches`; for one saved before it did, its steps since the segment began x its
    `grad_accum` x its processes), or with another `batch_size` the first whole batch after the samples read
    (batches of another size are other clips: `ClipDataset` draws a batch's source, length and crop together).
    What the checkpoint does not record (an older one's config or process count) is taken as `training` and
    `processes`, the resumed run's."""
    state = json.loads((ckpt / STATE_NAME).read_text())
    try:
        saved = dict(json.loads((ckpt / CONFIG_NAME).read_text()).get("training", {}))
    except (OSError, ValueError):  # (saved before checkpoints recorded their config)
        saved = {}
    batch = int(training["batch_size"])
    position = state.get("stream_batches")
    if position is None:
        accum = int(saved.get("grad_accum") or training["grad_accum"])
        position = steps_into_segment * accum * int(state.get("processes") or processes)
    return -(-int(position) * int(saved.get("batch_size") or batch) // batch)


#: a checkpoint folder's name: `checkpoint_<step>`, or `checkpoint_<step>.partial` while it is written
_CHECKPOINT_NAME = re.compile(r"checkpoint_(\d+)(\.partial)?")
PARTIAL_SUFFIX = ".partial"


def _checkpoint_step(path: Path) -> int | None:
    """The step of a checkpoint folder's name (complete or `.partial`), or None for another name."""
    match = _CHECKPOINT_NAME.fullmatch(path.name)
    return int(match.group(1)) if match else None


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """The complete checkpoints (`checkpoints/checkpoint_<step>` with its trainer state), oldest first."""
    folder = Path(output_dir) / "checkpoints"
    found = [p for p in folder.glob("checkpoint_*") if not p.name.endswith(PARTIAL_SUFFIX)] if folder.is_dir() else []
    done = [p for p in found if _checkpoint_step(p) is not None and (p / STATE_NAME).is_file()]
    return sorted(done, key=_checkpoint_step)  # type: ignore[arg-type, return-value]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (`checkpoints/checkpoint_<step>` with its trainer state)."""
    done = complete_checkpoints(output_dir)
    return done[-1] if done else None


def resume_hint(output_dir: str | Path) -> str:
    """What to run next after a run in `output_dir` stopped, for its last line: `--resume` and the checkpoint
    it continues from, or, with no complete checkpoint (a run that stopped before training or before its
    first save), that there is nothing to resume and which command starts the run again from step 0 (what
    `Trainer._check_output` accepts for what the run left in `output_dir`)."""
    last = latest_checkpoint(output_dir)
    if last is not None:
        return f"--resume continues from {last.name}"
    nothing = "no checkpoint was written, so there is nothing to resume"
    left = [name for name in RUN_FILES if (Path(output_dir) / name).exists()]
    if FINAL_NAME in left:
        return f"{nothing}: --overwrite starts the run again (replacing its {FINAL_NAME}/ model)"
    if left:  # without --resume or --overwrite the same command refuses an output folder that holds a run
        return f"{nothing}: --resume (or --overwrite) starts the run again from step 0"
    return f"{nothing}: the same command starts the run again from step 0"


def _record_step(line: str) -> int | None:
    """The step of one `metrics.jsonl` line, or None for a line that is no record (cut short when the
    disk filled up or the run was killed while writing it: such a line is dropped at `--resume`)."""
    try:
        record = json.loads(line)
        return int(record["step"]) if isinstance(record, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


def truncate_metrics(output_dir: Path, step: int) -> None:
    """Drop the records of `output_dir/metrics.jsonl` after `step` (the checkpoint resumed from): an interrupted run
    logged steps that the resumed run logs again."""
    path = output_dir / "metrics.jsonl"
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if (at := _record_step(line)) is not None and at <= step]
    if len(kept) != len(lines):  # a new file renamed over it: a full disk leaves the old one, not half of it
        part = path.with_name(path.name + PARTIAL_SUFFIX)
        part.write_text("".join(kept))
        os.replace(part, path)


def data_changes(saved: dict[str, dict[str, int]], now: dict[str, dict[str, int]]) -> list[str]:
    """`"<source>: N sequence(s) added (...), N removed (...), N of another length (...), N with other
    files (...)"` for each source listed in both `Recipe.data_listing`s whose sequences differ (the last
    by their `CONTENT_SUFFIX` entries: files replaced under the same names and frame counts; listings saved
    without them are compared by names and lengths), `"<folder>: another model there"` for a frozen model
    folder whose files changed (a source or folder only one lists is a change of the config, named there)."""

    def few(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f", ... ({len(names) - 3} more)" if len(names) > 3 else "")

    out = []
    for where in sorted(k for k in saved.keys() & now.keys() if not k.endswith(CONTENT_SUFFIX)):
        old, new = saved[where], now[where]
        if MODEL_FOLDER_ENTRY in old:  # a frozen model folder (a teacher, a labeller): its files, not sequences
            if old != new:
                out.append(f"{where}: another model there (its config.json or weight files changed)")
            continue
        added, removed = sorted(new.keys() - old.keys()), sorted(old.keys() - new.keys())
        kept = sorted(k for k in old.keys() & new.keys() if old[k] == new[k])
        resized = [f"{k}: {old[k]} -> {new[k]} frames" for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]
        old_files, new_files = saved.get(where + CONTENT_SUFFIX, {}), now.get(where + CONTENT_SUFFIX, {})
        replaced = [k for k in kept if k in old_files and k in new_files and old_files[k] != new_files[k]]
        kinds = (("sequence(s) added", added), ("removed", removed), ("of another length", resized),
                 ("with other files under the same names", replaced))  # fmt: skip
        parts = [f"{len(names)} {what} ({few(names)})" for what, names in kinds if names]
        if parts:
            out.append(f"{where}: {', '.join(parts)}")
    return out


def _sampled_bytes(path: Path, samples: int, chunk: int) -> bytes:
    """`samples` chunks of `chunk` bytes spread over the file `path` (all of it when that is smaller), read
    without the kernel's read-ahead (which would read ~32 chunks for each of them from a cold disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if hasattr(os, "posix_fadvise"):  # (Linux, macOS lacks it)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        if size <= samples * chunk:
            return os.pread(fd, size, 0)
        return b"".join(os.pread(fd, chunk, (size - chunk) * i // max(samples - 1, 1)) for i in range(samples))
    finally:
        os.close(fd)


#: files whose size follows their content (compressed images): `files_digest` reads none of their bytes
SIZE_TELLS_CONTENT = frozenset((".png", ".jpg", ".jpeg", ".webp"))


def files_digest(paths: list[Path], chunk: int = 4096) -> int:
    """A sequence's files by their content, at a bounded cost: every file's name and size, and of every file
    whose size does not follow its content (a depth map `.npy`: a header and H x W floats; not the compressed
    images of `SIZE_TELLS_CONTENT`, which a re-export with other content writes at another size) 3 chunks of
    `chunk` bytes, its start, middle and end (all of it up to 3 chunks). A re-export rewrites each frame it
    changes, which changes those chunks; an edit local to one file's other bytes (a patch of one depth map) is
    not seen. Not a hash of every byte: that reads the whole dataset at every start on every rank, ~6 s per
    1000 frames of 480x640 against 0.1 s (0.5 s from a cold disk; benchmarks/data_digest.py). Neither the
    folder nor the files' times count: a node-local copy is the same data. A file that cannot be read counts
    as missing."""
    h = hashlib.sha256()
    for path in paths:
        with contextlib.suppress(OSError):
            h.update(f"{path.name}:{path.stat().st_size}".encode())
            if path.suffix.lower() not in SIZE_TELLS_CONTENT:
                h.update(_sampled_bytes(path, 3, chunk))
    return int(h.hexdigest()[:15], 16)


def model_folder_digest(folder: Path, samples: int = 16, chunk: int = 1 << 16) -> int:
    """A model folder's identity by its content, for `Recipe.data_listing`: its `config.json` and each
    weight file's name, size and `samples` chunks of `chunk` bytes spread over it (a model trained
    again differs there; reading a few MiB, not the whole teacher, at every start). Neither its path
    nor its files' times count: a node-local copy, copied at another time, is the same model."""
    h = hashlib.sha256()
    with contextlib.suppress(OSError):
        h.update((folder / MODEL_CONFIG_NAME).read_bytes())
        for path in sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES):
            size = path.stat().st_size
            h.update(f"{path.name}:{size}".encode())
            with path.open("rb") as f:
                for i in range(samples):
                    f.seek(size * i // samples)
                    h.update(f.read(chunk))
    return int(h.hexdigest()[:15], 16)


def rotate_checkpoints(folders: Path, keep: int) -> None:
    """Delete the complete checkpoints beyond the newest `keep` (0: keep all) and the folders of
    saves that were killed; only checkpoint folders, never anything else in `folders`."""
    done = complete_checkpoints(folders.parent)
    old = done[: max(len(done) - keep, 0)] if keep > 0 else []
    stale = [p for p in folders.iterdir() if _checkpoint_step(p) is not None and p.is_dir() and p not in done]
    for path in [*old, *stale]:
        shutil.rmtree(path, ignore_errors=True)


__all__ = [
    "CONFIG_NAME",
    "CONTENT_SUFFIX",
    "DATA_NAME",
    "FINAL_NAME",
    "MODEL_FOLDER_ENTRY",
    "PARTIAL_SUFFIX",
    "RESUMABLE_CHANGES",
    "RUN_FILES",
    "STATE_NAME",
    "TrainingProgress",
    "check_run_outputs",
    "complete_checkpoints",
    "data_changes",
    "files_digest",
    "latest_checkpoint",
    "model_folder_digest",
    "resume_hint",
    "resumed_stream_position",
    "rotate_checkpoints",
    "truncate_metrics",
]
