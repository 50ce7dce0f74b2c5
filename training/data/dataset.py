"""`ClipDataset`: weighted sources of sequences -> normalised, augmented training clips (torch).

Determinism (needed for exact resume): item `g` is a pure function of `(seed, g)`. Indices past
`len(dataset)` are valid: `epoch, i = divmod(g, num_samples)` (with `fixed_clips` the epoch is
always 0, so the same clips repeat every epoch -- what latent caching needs). Everything a batch
must share (source, clip length, crop aspect) is drawn from `rng(seed, epoch, i // batch_size)`;
per-item choices (sequence, start, flip, crop offset) from `rng(seed, epoch, i)`. So an
`InfiniteSampler(start=k * batch_size)` resumes exactly after k batches, with any number of workers.

Each item is a dict:
    frames     (T, 3, H, W) float32 RGB in [0, 1]
    target     (T, H, W) float32 normalised disparity (see `targets.py`)
    valid      (T, H, W) bool
    intrinsics (T, 3, 3) float32 (identity when unknown; see `has_camera`)
    poses      (T, 4, 4) float32 camera-to-world (identity when unknown)
    has_camera () bool
    source     () int64 index into the dataset's sources
    key        (2,) int64 content hash of frames, target and valid: identity of the clip (the
               latent-cache key), the same on every rank, stage and epoch that draws the same clip
    skipped    () int64 clips drawn before this one that met a damaged file (`SKIPPED_KEY`)
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset
from vdepth_training.data.sequence import Sequence
from vdepth_training.data.targets import Normalization, normalize_target
from vdepth_training.data.transforms import pick_aspect, random_hflip, resize_and_crop, sample_clip_indices
from vdepth_training.ranks import first_to_say, said_folder

from vdepth_ros.errors import ConfigError

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # warnings given by this process
#: draws of one item before a source whose clips keep meeting damaged files stops the run
MAX_DRAWS = 8
#: an item's (a batch's, per item) number of clips skipped for a damaged file before it (`ClipDataset`).
#: A pure function of the item's index, so every rank (and a resumed run) skips the same clips and each
#: rank still gets one batch per micro-step: the ranks never desynchronise. The trainer takes it out of
#: the batch and sums it over the ranks (`data/skipped` in metrics.jsonl).
SKIPPED_KEY = "skipped"


class SequenceSource(Protocol):
    """Anything that can hand out frames of one sequence (`SequenceReader`, layout loaders)."""

    def __len__(self) -> int: ...

    def read(self, indices: SequenceABC[int] | np.ndarray | None = None) -> Sequence: ...


class InMemorySequence:
    """Wrap an in-memory `Sequence` as a `SequenceSource`."""

    def __init__(self, seq: Sequence) -> None:
        self.seq = seq

    def __len__(self) -> int:
        return self.seq.num_frames

    def read(self, indices: SequenceABC[int] | np.ndarray | None = None) -> Sequence:
        return self.seq if indices is None else self.seq.select(indices)

    @property
    def target_kind(self) -> str:
        return self.seq.target_kind


@dataclass
class Source:
    """One weighted data source (e.g. "TartanAir videos", weight 40 in DVD's 9:1:40:10 mix).

    Attributes:
        sequences: the sequences of this source.
        weight: relative sampling probability of the source.
        length_range: clip length override for this source ((1, 1) for image sources); None uses
            the dataset's.
        max_depth: depth cap before inversion (GemDepth sky 400 m; DVD TartanAir 50 m).
        name: label for logs.
        batch_size: clips per batch when this source is drawn (<= the dataset's batch size; DVD:
            8 images but 1 video per GPU); None = the dataset's. The unused slots of a batch are
            placeholders that `collate_clips` drops.
        root: the folder the sequences were found in (`data.sources[].root`; None: in memory).
    """

    sequences: list[SequenceSource]
    weight: float = 1.0
    length_range: tuple[int, int] | None = None
    max_depth: float | None = None
    name: str = ""
    batch_size: int | None = None
    root: str | None = None

    def listing(self) -> dict[str, int]:
        """`{sequence: frames}`: what this source draws from, each sequence by its folder relative to
        `root` (else its name, else its position). The clip of a stream index is a pure function of
        this listing, so a checkpoint records it and `--resume` (and every rank) compares it."""
        return {self._label(i, sequence): len(sequence) for i, sequence in enumerate(self.sequences)}

    def contents(self) -> dict[str, int]:
        """`{sequence: digest of its files}` (`checkpoints.files_digest`) for the sequences read from files
        (their `files`): beside `listing`, it tells data replaced under the same names and frame counts."""
        from vdepth_training.checkpoints import files_digest

        return {self._label(i, seq): files_digest(list(seq.files)) for i, seq in enumerate(self.sequences)
                if getattr(seq, "files", None) is not None}  # fmt: skip

    def _label(self, i: int, sequence: SequenceSource) -> str:
        """The `i`-th sequence's name in `listing`: its folder relative to `root`, else its name or position."""
        label = getattr(sequence, "name", None) or f"#{i}"
        directory = getattr(sequence, "directory", None)
        if directory is not None:  # a sequence folder: its own `name` need not be unique
            label = Path(directory).as_posix()
            if self.root is not None and Path(directory).is_relative_to(self.root):
                label = Path(directory).relative_to(self.root).as_posix()
        return label

    def __post_init__(self) -> None:
        """`max_depth` caps depth: a number > 0 (0 made every disparity infinite); on disparity targets
        it would do nothing: refused (every sequence holds disparity) or warned about (some do),
        naming the source, instead of silently ignored."""
        if self.max_depth is None:
            return
        if isinstance(self.max_depth, bool) or not isinstance(self.max_depth, int | float) or not self.max_depth > 0:
            raise ConfigError(f"data.sources[{self.name!r}]: max_depth must be a depth in metres > 0 (e.g. 80.0), "
                              f"got {self.max_depth!r}")  # fmt: skip
        disparity = [s for s in self.sequences if getattr(s, "target_kind", "depth") == "disparity"]
        if not disparity:
            return
        what = (f"data.sources[{self.name!r}] sets max_depth {self.max_depth}, a cap on depth in metres, but "
                f"{len(disparity)} of its {len(self.sequences)} sequences hold disparity (e.g. "
                f"{getattr(disparity[0], 'name', '?')}), which it cannot cap")  # fmt: skip
        if len(disparity) == len(self.sequences):
            raise ConfigError(f"{what}: remove max_depth from this source")
        if what not in _WARNED and int(os.environ.get("RANK", "0")) == 0:  # once, not per rank and stage
            _WARNED.add(what)
            log.warning("%s; those are used uncapped (remove max_depth, or split the source by target kind)", what)


@dataclass
class ClipSampling:
    """How clips are cut and augmented.

    Attributes:
        length_range: inclusive clip-length range (a stage's T).
        size: output (H, W); ignored when `aspects` is set.
        aspects: multi-aspect (H, W) crops (GemDepth); one is drawn per batch.
        normalization: target normalisation (see `targets.NORMALIZATIONS`).
        flip_p: horizontal-flip probability per clip.
        random_crop: random crop offset (else centre crop).
        stride: frame step inside a clip.
    """

    length_range: tuple[int, int] = (1, 1)
    size: tuple[int, int] = (320, 640)
    aspects: tuple[tuple[int, int], ...] | None = None
    normalization: Normalization = "minmax_sequence"
    flip_p: float = 0.5
    random_crop: bool = True
    stride: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class ClipDataset(Dataset):
    """Virtual-length dataset of training clips drawn from weighted sources.

    Args:
        sources: weighted `Source`s (at least one, each with at least one sequence).
        sampling: clip sampling/augmentation settings.
        num_samples: virtual epoch length.
        batch_size: items sharing source/length/aspect (must equal the loader's batch size).
        seed: base seed.
        fixed_clips: every epoch repeats epoch 0's clips (for cached latents).
    """

    def __init__(
        self,
        sources: list[Source],
        sampling: ClipSampling,
        *,
        num_samples: int = 1000,
        batch_size: int = 1,
        seed: int = 0,
        fixed_clips: bool = False,
    ) -> None:
        if not sources or any(not s.sequences for s in sources):
            raise ValueError("ClipDataset needs at least one source, each with at least one sequence")
        weights = np.array([s.weight for s in sources], dtype=np.float64)
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"source weights must be >= 0 with a positive sum, got {weights.tolist()}")
        self.sources = sources
        self.probs = weights / weights.sum()
        self.sampling = sampling
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.fixed_clips = bool(fixed_clips)
        # a damaged file's warning is said once by this process, its loader workers and (under torchrun) the
        # other ranks of the node: each worker is a process of its own, started again for every stage
        self._said = said_folder(self)
        for sequence in (q for s in sources for q in s.sequences):
            if hasattr(sequence, "said"):  # its own warnings (a frame without valid depth) too
                sequence.said = self._said
        if self.num_samples % self.batch_size:
            raise ValueError(f"num_samples {num_samples} must be a multiple of batch_size {batch_size}")
        for src in sources:
            if src.batch_size is not None and not 1 <= src.batch_size <= self.batch_size:
                raise ValueError(f"source {src.name!r}: batch_size {src.batch_size} not in [1, {self.batch_size}]")

    def __len__(self) -> int:
        return self.num_samples

    def split_index(self, index: int) -> tuple[int, int]:
        """Global item index -> (epoch, index within the epoch)."""
        epoch, i = divmod(int(index), self.num_samples)
        return (0 if self.fixed_clips else epoch), i

    def _group_choice(self, epoch: int, index: int) -> tuple[int, tuple[int, int], tuple[int, int]]:
        rng = np.random.default_rng([self.seed, epoch, index // self.batch_size, 1])
        src = int(rng.choice(len(self.sources), p=self.probs))
        lr = self.sources[src].length_range or self.sampling.length_range
        length = int(rng.integers(int(lr[0]), int(lr[1]) + 1))
        size = pick_aspect(self.sampling.aspects, rng) if self.sampling.aspects else tuple(self.sampling.size)
        return src, (length, length), size  # type: ignore[return-value]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        epoch, index = self.split_index(index)
        src_idx, length_range, size = self._group_choice(epoch, index)
        source = self.sources[src_idx]
        if index % self.batch_size >= (source.batch_size or self.batch_size):
            return {"placeholder": torch.tensor(True)}  # this source fills fewer slots of the batch
        for attempt in range(MAX_DRAWS):  # a clip with a damaged file is drawn again, from the same source
            rng = np.random.default_rng([self.seed, epoch, index, 2] + ([attempt] if attempt else []))
            seq_src = source.sequences[int(rng.integers(0, len(source.sequences)))]
            idx = sample_clip_indices(len(seq_src), length_range, rng, stride=self.sampling.stride)
            try:
                seq = seq_src.read(idx)
                break
            except ConfigError:  # a format mistake, not damage: names its file and the fix already
                raise
            except (OSError, ValueError, EOFError) as err:  # a damaged file, found when a rank draws it
                where = getattr(seq_src, "directory", None) or getattr(seq_src, "name", None) or type(seq_src).__name__
                # not the frames drawn: the file is named once, whichever clip of it a rank or worker meets first
                what = (f"source {source.name!r}, sequence {where}: {err} (a damaged or partly copied file: replace "
                        "it, or move its sequence out of the source's root)")  # fmt: skip
                if attempt == MAX_DRAWS - 1:
                    raise ConfigError(f"{what}; all {MAX_DRAWS} clips drawn for one item met damaged files") from err
                if what not in _WARNED and first_to_say(what, self._said):
                    _WARNED.add(what)
                    log.warning("%s; skipped: the clip is drawn again (counted as data/skipped in metrics.jsonl)", what)
        seq = random_hflip(seq, rng, self.sampling.flip_p)
        seq = resize_and_crop(seq, size, rng if self.sampling.random_crop else None)
        item = clip_to_tensors(seq, self.sampling.normalization, max_depth=source.max_depth, source_index=src_idx)
        item["key"] = clip_key(item)
        item[SKIPPED_KEY] = torch.tensor(attempt, dtype=torch.int64)
        return item


class InfiniteSampler(torch.utils.data.Sampler[int]):
    """Yields start, start + 1, ... forever (ClipDataset accepts any index; see module docstring)."""

    def __init__(self, start: int = 0) -> None:
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start)


def clip_to_tensors(
    seq: Sequence,
    normalization: Normalization,
    *,
    max_depth: float | None = None,
    source_index: int = 0,
) -> dict[str, torch.Tensor]:
    """A `Sequence` clip -> the item dict described in the module docstring."""
    target, valid = normalize_target(seq.target, seq.valid, seq.target_kind, normalization, max_depth=max_depth)
    t = seq.num_frames
    has_camera = seq.intrinsics is not None and seq.poses is not None
    intr = seq.intrinsics if seq.intrinsics is not None else np.tile(np.eye(3), (t, 1, 1))
    poses = seq.poses if seq.poses is not None else np.tile(np.eye(4), (t, 1, 1))
    return {
        "frames": torch.from_numpy(np.ascontiguousarray(seq.rgb.transpose(0, 3, 1, 2))).float() / 255.0,
        "target": torch.from_numpy(np.ascontiguousarray(target)),
        "valid": torch.from_numpy(np.ascontiguousarray(valid)),
        "intrinsics": torch.from_numpy(np.asarray(intr, dtype=np.float32)),
        "poses": torch.from_numpy(np.asarray(poses, dtype=np.float32)),
        "has_camera": torch.tensor(has_camera),
        "source": torch.tensor(source_index, dtype=torch.int64),
    }


def clip_key(item: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(2,) int64 content hash (BLAKE2b, 126 bits) of a clip's frames, target and valid mask.

    A content key, not a position: whatever rank, stage, epoch or dataset seed draws a clip, the
    cache finds its latents under the same key, and a different clip (other crop, flip or length)
    never hits them.
    """
    digest = hashlib.blake2b(digest_size=16)
    for name in ("frames", "target", "valid"):
        value = item[name].contiguous()
        digest.update(str((name, value.dtype, tuple(value.shape))).encode())
        digest.update(value.numpy().tobytes())
    raw = digest.digest()
    mask = (1 << 63) - 1
    return torch.tensor([int.from_bytes(raw[:8], "little") & mask, int.from_bytes(raw[8:], "little") & mask])


def collate_clips(items: list[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items; clips of unequal length (a sequence shorter than the drawn length) are cut to
    the shortest so the batch is rectangular: (B, T, ...). Placeholder items (sources with a
    smaller `batch_size`) are dropped."""
    items = [it for it in items if "placeholder" not in it]
    t = min(int(it["frames"].shape[0]) for it in items)
    # a cut clip is another clip: its key must name what the batch holds (latent-cache identity)
    items = [_cut(it, t) if int(it["frames"].shape[0]) > t and "key" in it else it for it in items]
    out: dict[str, torch.Tensor] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        if vals[0].dim() >= 1 and key in ("frames", "target", "valid", "intrinsics", "poses"):
            vals = [v[:t] for v in vals]
        out[key] = torch.stack(vals)
    return out


def _cut(item: Mapping[str, torch.Tensor], t: int) -> dict[str, torch.Tensor]:
    out = {k: v[:t] if k in ("frames", "target", "valid", "intrinsics", "poses") else v for k, v in item.items()}
    out["key"] = clip_key(out)
    return out


def make_loader(
    dataset: ClipDataset, *, start_batch: int | None = None, num_workers: int = 0, collate: Callable | None = None
) -> torch.utils.data.DataLoader:
    """Loader over the dataset (the dataset itself is randomised; see module docstring).

    Args:
        dataset: the clips.
        start_batch: None = one pass over `len(dataset)` items; an int = an endless stream starting
            at that batch (`InfiniteSampler`), used by the trainer for exact resume.
        num_workers: loader worker processes.
        collate: batch collation (default `collate_clips`).
    """
    sampler = None if start_batch is None else InfiniteSampler(start_batch * dataset.batch_size)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=dataset.batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate or collate_clips,
        drop_last=True,
    )


__all__ = [
    "MAX_DRAWS",
    "SKIPPED_KEY",
    "ClipDataset",
    "ClipSampling",
    "InMemorySequence",
    "InfiniteSampler",
    "SequenceSource",
    "Source",
    "clip_key",
    "clip_to_tensors",
    "collate_clips",
    "make_loader",
]
