"""`DepthPipeline.run_offline`: the non-causal two-pass run over a whole sequence (no ROS).

Pass 1 (`_offline_windows`) runs every window as causal mode would and records pairwise fits
(`CausalGraphAligner` as a fixed-lag smoother), spilling window disparities, sparse depth and
output-resolution images to temporary files (`_Spill`), so memory is bounded by the window size;
pass 2 (`_offline_output`) stitches each scene-cut segment with the solved affines. Kept apart
from `pipeline.py` because only the offline tools use it; it drives the pipeline's own steps
(`_check`, `_record`, `_infer`, `_depth_frame`, ...), so causal and offline frames go through
the same code.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from vdepth_ros.errors import InputError
from vdepth_ros.pipeline_types import fit_input, scale_input
from vdepth_ros.stream.graph import CausalGraphAligner, offline_aligner
from vdepth_ros.stream.stitch import StitchedFrame, Stitcher, blend_weights

if TYPE_CHECKING:
    from vdepth_ros.pipeline import DepthPipeline
    from vdepth_ros.pipeline_types import DepthFrame, FrameInput, _Record
    from vdepth_ros.stream.windows import Window

#: The offline crossfade (`Stitcher`'s `crossfade`): every overlap frame a blend of both windows'
#: aligned readings, `(i + 0.5) / n`, not the stream's (the papers') `linspace(0, 1, n)`, whose ends
#: hand a frame wholly to one window: less flicker offline (docs/alignment.md, "Blending
#: every overlap frame offline"). The stream keeps the papers' rule.
OFFLINE_CROSSFADE = blend_weights


def run_offline(
    pipe: DepthPipeline, frames: Iterable[FrameInput], spill_dir: str | Path | None = None
) -> Iterator[DepthFrame]:
    """`DepthPipeline.run_offline` (its docstring): pass 1 `_offline_windows`, pass 2 `_offline_output`."""
    pipe._clear()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="vdepth-offline-", dir=spill_dir) as tmp,
            contextlib.ExitStack() as stack,
        ):
            spill = _Spill(Path(tmp), pipe.height, pipe.width)
            stack.callback(spill.close_files)
            stack.callback(spill.close_reads)
            records: list[_Record] = []
            segments = _offline_windows(pipe, frames, spill, records)
            spill.close_writes()
            for segment in segments:
                yield from _offline_output(pipe, segment, spill, records)
    finally:
        pipe._clear()  # also when the consumer stops early: the causal API stays usable


def _offline_aligner(pipe: DepthPipeline) -> CausalGraphAligner:
    """The graph estimator as a fixed-lag smoother with the context check (`offline_aligner`)."""
    return offline_aligner(pipe.fit_options)


def _offline_windows(
    pipe: DepthPipeline, frames: Iterable[FrameInput], spill: _Spill, records: list[_Record]
) -> list[_OfflineSegment]:
    """Pass 1: every window of every segment run, spilled and fitted pairwise."""
    sched = pipe.scheduler
    segments = [_OfflineSegment(0, 0, _offline_aligner(pipe))]
    buffer: dict[int, np.ndarray] = {}  # working-resolution images by segment-local index

    def run(window: Window) -> None:
        seg = segments[-1]
        disp = pipe._infer(window, [buffer[f] for f in window.slots])
        spill.put_window(disp)
        fit_on = fit_input(disp, [records[seg.first_frame + f] for f in window.slots])
        seg.aligner.add(window, disp if fit_on is None else fit_on)
        seg.windows.append(window)

    def close_segment() -> None:
        while (w := sched.next_window(final=True)) is not None:
            run(w)
        buffer.clear()

    for frame in frames:
        rgb = pipe._check(frame)
        if records and rgb.shape[:2] != records[0].input_size:
            raise InputError("run_offline needs one input resolution for the whole sequence")
        if not records:
            pipe._start_stream(rgb.shape[:2], frame.camera)
            spill.h, spill.w = pipe.height, pipe.width
        rec = pipe._record(frame, rgb)
        assert rec.rgb is not None
        if pipe._scene_cut(rec):
            close_segment()
            sched.reset()
            pipe._reset_engine_stream()
            segments.append(_OfflineSegment(len(records), spill.n_windows, _offline_aligner(pipe)))
            pipe.stats.scene_cuts += 1
        buffer[sched.add_frame()] = rec.rgb
        spill.put_frame(len(records), rec)
        rec.rgb = rec.rgb_out = rec.sparse = None
        records.append(rec)
        pipe.stats.frames_in += 1
        while (w := sched.next_window()) is not None:
            run(w)
        need = sched.needed_frames()
        for i in [i for i in buffer if i not in need]:
            del buffer[i]
    close_segment()
    return segments


def _offline_output(
    pipe: DepthPipeline, seg: _OfflineSegment, spill: _Spill, records: list[_Record]
) -> Iterator[DepthFrame]:
    """Pass 2 for one segment: solve, stitch with the solved affines, output every frame once."""
    fits = seg.aligner.smoothed()
    pipe.stats.degenerate_fits += sum(f.degenerate for f in fits) + sum(e.fit.degenerate for e in seg.aligner.edges)
    pipe._index_base = seg.first_frame
    pipe.scale_source.reset()
    stitcher = Stitcher(  # type: ignore[arg-type]
        pipe.alignment, pipe.fit_options, clamp_negative=pipe.stitcher.clamp_negative, crossfade=OFFLINE_CROSSFADE
    )

    def out(sf: StitchedFrame) -> DepthFrame:
        g = seg.first_frame + sf.index
        return pipe._depth_frame(sf, spill.record(g, records[g]))

    for window, fit in zip(seg.windows, fits, strict=True):
        disp = spill.window(seg.first_window + window.index)
        fit_on = fit_input(disp, [records[seg.first_frame + f] for f in window.slots])
        stitched = stitcher.add(window, disp, affine=fit, fit_on=fit_on)
        pipe._note_fit(window.index, fit)  # named as the stream names it (an inverted window: a depth model?)
        here = [s for s in stitched if s.window == window.index]
        if here:
            pipe._update_scale(
                window.index,
                scale_input(here, [records[seg.first_frame + s.index] for s in here]),
                [spill.sparse(seg.first_frame + s.index) for s in here],
            )
        yield from (out(sf) for sf in stitched if sf.status == "final")
    yield from (out(sf) for sf in stitcher.finish())


@dataclass
class _OfflineSegment:
    """The frames between two scene cuts in `run_offline`: its windows and their pairwise fits."""

    first_frame: int  # sequence index of its frame 0
    first_window: int  # spill index of its window 0
    aligner: CausalGraphAligner
    windows: list[Window] = field(default_factory=list)


#: The largest temporary file offline mode writes: its spill is cut into parts of this size, as a file system may take
#: no larger file (FAT32's 4 GiB on a USB stick: a long bag's spill is tens of GB, and the run failed at 4 GiB)
SPILL_PART_BYTES = 1 << 30


class _PartedFile:
    """An append-only temporary file in parts of at most `SPILL_PART_BYTES` (a record larger than that alone in
    one), read back with `os.pread` (not np.memmap: pages a memmap has touched stay mapped, and counted in RSS,
    until it is closed, so RSS would grow with the sequence)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self._parts: list[int] = []  # each part's bytes
        self._file: BinaryIO | None = None
        self._fds: list[int] = []

    def part(self, k: int) -> Path:
        """Part `k`'s file: `disp.0.f32` for `disp.f32`."""
        name = Path(self.name)
        return self.folder / f"{name.stem}.{k}{name.suffix}"

    def append(self, data: bytes) -> tuple[int, int]:
        """Write `data`; returns where it lies: (part, offset)."""
        if self._file is None or (self._parts[-1] and self._parts[-1] + len(data) > SPILL_PART_BYTES):
            self.close_writes()
            self._file = open(self.part(len(self._parts)), "wb")  # noqa: SIM115 - close_writes
            self._parts.append(0)
        where = (len(self._parts) - 1, self._parts[-1])
        self._file.write(data)
        self._parts[-1] += len(data)
        return where

    def close_writes(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def open_reads(self) -> None:
        self.close_writes()
        self._fds = [os.open(self.part(k), os.O_RDONLY) for k in range(len(self._parts))]

    def close_reads(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def read(self, where: tuple[int, int], dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buf = bytearray(nbytes)
        view = memoryview(buf)
        got = 0
        part, offset = where
        while got < nbytes:  # pread may return short reads
            chunk = os.pread(self._fds[part], nbytes - got, offset + got)
            if not chunk:
                raise OSError(f"offline spill file {self.part(part).name} is truncated")
            view[got : got + len(chunk)] = chunk
            got += len(chunk)
        return np.frombuffer(buf, dtype=dtype).reshape(shape)


class _Spill:
    """Append-only temp files for offline mode (`_PartedFile`), read back window by window.

    Holds the window disparities, sparse depth (working resolution) and the output-resolution RGB;
    the working-resolution frames are only needed while their windows run (pass 1)."""

    def __init__(self, folder: Path, height: int, width: int) -> None:
        self.folder, self.h, self.w = folder, height, width
        self._rgb_out, self._disp, self._sparse = (
            _PartedFile(folder, n) for n in ("rgb_out.u8", "disp.f32", "sparse.f32")
        )
        self._win_at: list[tuple[tuple[int, int], int]] = []  # (where, n frames) per window
        self.n_windows = 0
        self._sparse_at: dict[int, tuple[int, int]] = {}
        self._rgb_out_at: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}

    def put_frame(self, index: int, rec: _Record) -> None:
        if rec.sparse is not None:
            self._sparse_at[index] = self._sparse.append(np.ascontiguousarray(rec.sparse, dtype=np.float32).tobytes())
        if rec.rgb_out is not None:
            where = self._rgb_out.append(np.ascontiguousarray(rec.rgb_out).tobytes())
            self._rgb_out_at[index] = (where, rec.rgb_out.shape[:2])

    def put_window(self, disp: np.ndarray) -> None:
        where = self._disp.append(np.ascontiguousarray(disp, dtype=np.float32).tobytes())
        self._win_at.append((where, disp.shape[0]))
        self.n_windows = len(self._win_at)

    def close_files(self) -> None:
        for f in (self._rgb_out, self._disp, self._sparse):
            f.close_writes()

    def close_writes(self) -> None:
        for f in (self._rgb_out, self._disp, self._sparse):
            f.open_reads()

    def close_reads(self) -> None:
        for f in (self._rgb_out, self._disp, self._sparse):
            f.close_reads()

    def window(self, k: int) -> np.ndarray:
        where, n = self._win_at[k]
        return self._disp.read(where, np.float32, (n, self.h, self.w))

    def sparse(self, index: int) -> np.ndarray | None:
        where = self._sparse_at.get(index)
        if where is None:
            return None
        return self._sparse.read(where, np.float32, (self.h, self.w))

    def record(self, index: int, rec: _Record) -> _Record:
        where, (h, w) = self._rgb_out_at[index]
        rgb_out = self._rgb_out.read(where, np.uint8, (h, w, 3))
        return replace(rec, rgb=None, rgb_out=rgb_out, sparse=None)
