"""What the rosbags writer of every bag the package writes (`bag_writer.new_bag_writer`) adds to rosbags': the
folder named as `ros2 bag record` names it, and MCAP chunks that end where frames end, so that a write that does not
fit (a full disk, a file size limit) leaves a complete bag of the frames before it. Mixins, put on rosbags' classes
by `bag_writer._recorded_writer_class` (importing this module needs no rosbags)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vdepth_ros.offline.atomic import DISK_FULL_ERRNOS
from vdepth_ros.offline.bag_outputs import recorded_file_stem

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)


#: A chunk of the MCAP output closes (a sqlite3 output commits) at the end of the first frame that fills it this far:
#: a write that does not fit (a full disk, a file size limit) loses at most the frames of one chunk
FRAME_CHUNK_BYTES = 256 << 10
#: A chunk closes mid-frame past this (rosbags closes its chunks at 1 MiB; a frame larger than this is rare)
_LARGEST_CHUNK = 64 << 20


@dataclass(frozen=True)
class _KeptChunk:
    """A chunk on disk: where it starts and ends in the file, its messages per channel id, their times, its frames."""

    start: int
    end: int
    counts: dict[int, int]
    first_ns: int
    last_ns: int
    frames: int


class _OffsetBuffer:
    """A memory buffer standing in for the file from `base` on: rosbags' record writers put a chunk or the summary
    in it (their offsets the file's), so that it reaches the file in one write, or not at all."""

    def __init__(self, base: int) -> None:
        self.base, self.data = base, BytesIO()

    def write(self, data: Any) -> int:
        return self.data.write(data)

    def tell(self) -> int:
        return self.base + self.data.tell()

    def close(self) -> None:
        return None


class FrameChunkedMcap:
    """On rosbags' `McapWriter`: its chunks end where frames end (`end_frame`) and which survives a write that
    does not fit (`DISK_FULL_ERRNOS`: a full disk, a file system's or `ulimit -f`'s file size limit): the chunk that
    did not fit is cut off the file, later messages are dropped, and `finish_data` keeps the complete chunks that
    leave room for the summary, so the file closes as a complete, readable MCAP of the frames up to there (rosbags
    wrote straight into the file: a failed write left a file without its summary, and the run lost it all)."""

    def __init__(self, path: Path, compression: Any) -> None:
        super().__init__(path, compression)
        self.bio.flush()
        # unbuffered: after a write that failed, no buffer holds bytes to be written again (a buffered file
        # flushed them on its next seek or close: the same error)
        self.bio = self.bio.detach()
        self.data_start = self.bio.tell()  # (the magic and header record)
        self.kept: list[_KeptChunk] = []
        self.frames_in_chunk = 0
        self.frame_aligned = False  # `end_frame` called: chunks close there, not at rosbags' 1 MiB
        self.full: OSError | None = None  # the write that did not fit
        self.failed_at = 0  # the file's size when it failed: what cutting it back frees
        self.dropped_frames = 0

    def write(self, connection: Any, timestamp: int, data: bytes | memoryview) -> None:
        if self.full is None:  # after a write that did not fit, nothing more goes in
            super().write(connection, timestamp, data)

    def close_chunk(self) -> None:
        # rosbags calls this from `write` past 1 MiB, which may be mid-frame
        if not self.frame_aligned or self.chunk.bio.tell() > _LARGEST_CHUNK:
            self._write_chunk()

    def end_frame(self, counted: bool) -> None:
        """A frame's messages are all written (`counted`: a main one, not a provisional): its chunk may close."""
        self.frame_aligned = True
        self.frames_in_chunk += counted
        if self.full is None and self.chunk.bio.tell() >= FRAME_CHUNK_BYTES:
            self._write_chunk()

    def _write_chunk(self) -> None:
        chunk, frames = self.chunk, self.frames_in_chunk
        self.frames_in_chunk = 0
        if self.full is not None:
            return
        start = self.bio.tell()
        counts = {cid: len(msgs) for cid, msgs in chunk.msgs.items()}
        file, self.bio = self.bio, _OffsetBuffer(start)
        try:
            super().close_chunk()  # (into the buffer; starts the next chunk)
        finally:
            buffer, self.bio = self.bio, file
        try:
            _write_all(file, buffer.data.getbuffer())
        except OSError as err:
            if err.errno not in DISK_FULL_ERRNOS:
                raise
            self.chunks.pop()
            self.full, self.dropped_frames = err, frames
            self.failed_at = max(start, _file_size(file))
            _cut(file, start)
            log.warning("cannot write %s: %s; the output ends with the frames before", self.path, err.strerror)
            return
        self.kept.append(_KeptChunk(start, file.tell(), counts, chunk.message_start_time,
                                    chunk.message_end_time, frames))  # fmt: skip

    def finish_data(self, tail_room: Callable[[], int]) -> None:
        """Write the last chunk; after a write that did not fit, keep the complete chunks that leave `tail_room()`
        bytes (the summary, metadata.yaml) free of what the file held when it failed, and cut the rest."""
        if self.chunk.bio.tell() and self.full is None:
            self._write_chunk()
        if self.full is None:
            return
        self.dropped_frames += self.frames_in_chunk
        self.frames_in_chunk = 0
        self.chunk = type(self.chunk)(2**63 - 1, 0, BytesIO(), defaultdict(list))
        room = tail_room()
        while self.kept and self.failed_at - self.kept[-1].end < room:
            self.dropped_frames += self.kept.pop().frames
            self.chunks.pop()
        _cut(self.bio, self.kept[-1].end if self.kept else self.data_start)
        # the summary's statistics from the chunks kept
        self.channel_stats = dict.fromkeys(self.channel_stats, 0)
        for kept in self.kept:
            for cid, n in kept.counts.items():
                self.channel_stats[cid] += n
        times = [(k.first_ns, k.last_ns) for k in self.kept if k.counts]
        self.message_start_time = min((t[0] for t in times), default=2**63 - 1)
        self.message_end_time = max((t[1] for t in times), default=0)

    def kept_messages(self) -> tuple[dict[int, int], int, int]:
        """The messages the file keeps: their count per channel id, the first and last log time."""
        return dict(self.channel_stats), self.message_start_time, self.message_end_time

    def tail_size(self, metadata_bytes: int) -> int:
        """The bytes the summary takes with a rosbag2 metadata record of `metadata_bytes`."""
        saved = self.bio, self.chunk
        self.bio = _OffsetBuffer(saved[0].tell())
        self.chunk = type(self.chunk)(2**63 - 1, 0, BytesIO(), defaultdict(list))
        try:
            super().close(0, "x" * metadata_bytes)
            return self.bio.data.tell()
        finally:
            self.bio, self.chunk = saved

    def close(self, version: int, metadata: str) -> None:
        self.finish_data(lambda: 0)
        file, self.bio = self.bio, _OffsetBuffer(self.bio.tell())
        try:
            super().close(version, metadata)  # (the summary, into the buffer)
        finally:
            buffer, self.bio = self.bio, file
        _write_all(file, buffer.data.getbuffer())
        file.close()


#: sqlite's SQLITE_FULL: "database or disk is full" (a full disk, a file size limit)
_SQLITE_FULL = 13
#: sqlite's SQLITE_IOERR_WRITE: "disk I/O error" of a write, as past a file size limit (EFBIG)
_SQLITE_IOERR_WRITE = 778


class FrameCommittedSqlite:
    """On rosbags' `Sqlite3Writer` (one transaction for the whole bag: a write that did not fit lost all of it):
    commits where frames end (`end_frame`), past `FRAME_CHUNK_BYTES` of messages, journal in memory and without syncs as
    rosbag2's own default; a write that does not fit (SQLITE_FULL) rolls back the frames since the last commit,
    drops later messages, and `finish_data` deletes the last commits' messages where the file has no room left for
    the metadata row, so the bag closes complete with the frames before it."""

    def __init__(self, path: Path, compression: Any) -> None:
        super().__init__(path, compression)
        self.conn.execute("PRAGMA journal_mode=MEMORY")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.full: OSError | None = None
        self.pending_bytes = self.frames_pending = self.dropped_frames = self.failed_at = 0
        self.commits: list[tuple[int, int]] = []  # (the largest message id, the counted frames) of each commit

    def add_connection(self, connection: Any, offered_qos_profiles: str) -> None:
        super().add_connection(connection, offered_qos_profiles)
        self._commit()  # (a rollback keeps the topics)

    def write(self, connection: Any, timestamp: int, data: bytes | memoryview) -> None:
        if self.full is not None:
            return
        try:
            super().write(connection, timestamp, data)
        except sqlite3.OperationalError as err:
            self._failed(err)
        self.pending_bytes += len(data)

    def end_frame(self, counted: bool) -> None:
        self.frames_pending += counted
        if self.full is None and self.pending_bytes >= FRAME_CHUNK_BYTES:
            self._commit()

    def _commit(self) -> None:
        if self.full is not None:
            return
        try:
            self.conn.commit()
        except sqlite3.OperationalError as err:
            self._failed(err)
            return
        last = self.conn.execute("SELECT MAX(id) FROM messages").fetchone()[0] or 0
        self.commits.append((last, self.frames_pending))
        self.pending_bytes = self.frames_pending = 0

    def _failed(self, err: sqlite3.OperationalError) -> None:
        code = getattr(err, "sqlite_errorcode", None)  # (Python 3.11 on; before, its words)
        if code == _SQLITE_IOERR_WRITE:  # sqlite's word for EFBIG (ENOSPC is SQLITE_FULL)
            full = OSError(errno.EFBIG, f"{err} (sqlite3: a write failed, as past a file size limit)")
        elif (code & 0xFF == _SQLITE_FULL) if code is not None else "is full" in str(err):
            full = OSError(errno.ENOSPC, f"{err} (sqlite3)")
        else:
            raise err
        self.failed_at = max(self.failed_at, _size(self.path))
        self.conn.rollback()
        self.full = full
        self.dropped_frames += self.frames_pending
        self.frames_pending = 0
        log.warning("cannot write %s: %s; the output ends with the frames before", self.path, err)

    def finish_data(self, tail_room: Callable[[], int]) -> None:
        """Commit what is pending; after a write that did not fit, delete the last commits' messages until the file,
        by the size it had when it failed, has `tail_room()` bytes for the metadata row (their pages are reused)."""
        self._commit()
        if self.full is None:
            return
        self.dropped_frames += self.frames_pending  # (written after the write that did not fit: dropped)
        self.frames_pending = 0
        room = tail_room()
        while self.commits and self.failed_at - _size(self.path) + self._freed() < room:
            self.dropped_frames += self.commits.pop()[1]
            first = self.commits[-1][0] if self.commits else 0
            self.conn.execute("DELETE FROM messages WHERE id > ?", (first,))
            self.conn.commit()

    def _freed(self) -> int:
        """The bytes of the file's free pages (deleted messages'): room for new rows without the file growing."""
        pages, size = (self.conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("freelist_count", "page_size"))
        return pages * size

    def close(self, version: int, metadata: str) -> None:
        self.cursor.execute("INSERT INTO metadata(metadata_version, metadata) VALUES(?, ?)", (version, metadata))
        self.conn.commit()
        if self.full is None:  # (it writes: not on a full disk, and the bag is complete without it)
            self.conn.execute("PRAGMA optimize")
        self.conn.close()

    def kept_messages(self) -> tuple[dict[int, int], int, int]:
        """The messages the file keeps: their count per topic id, the first and last log time."""
        rows = self.conn.execute(
            "SELECT topic_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM messages GROUP BY topic_id"
        ).fetchall()
        first = min((r[2] for r in rows), default=2**63 - 1)
        return {r[0]: r[1] for r in rows}, first, max((r[3] for r in rows), default=0)

    def tail_size(self, metadata_bytes: int) -> int:
        """The bytes closing takes beyond the metadata row: its page, and sqlite's own (`PRAGMA optimize`)."""
        return 2 * int(self.conn.execute("PRAGMA page_size").fetchone()[0])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _file_size(file: Any) -> int:
    try:
        return os.fstat(file.fileno()).st_size
    except (OSError, ValueError):
        return 0


def _write_all(file: Any, data: memoryview) -> None:
    """Write all of `data` to the unbuffered `file`; a write that stops short (a file size limit reached) is
    followed by the one that says why (an OSError)."""
    done = 0
    while done < len(data):
        n = file.write(data[done:])
        if not n:
            raise OSError(errno.ENOSPC, "No space left on device")
        done += n


def _cut(file: Any, size: int) -> None:
    """Cut the unbuffered `file` back to `size` bytes, writing on from there."""
    os.ftruncate(file.fileno(), size)
    file.seek(size)


class RecordedBag:
    """On rosbags' `Writer`: its folder written as `bag_writer.new_bag_writer` says, and, with `FrameChunkedMcap` or
    `FrameCommittedSqlite` storage, `end_frame`, `full` and `finish_data`."""

    def __init__(self, path: Path, single_file: bool, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)  # (refuses an existing `path`)
        self.final_path, self.single_file = path, single_file
        self.folder_name = path.stem if single_file else recorded_file_stem(path.name)
        self.staging: Path | None = None

    def open(self) -> None:
        # rosbags names the storage file after the folder it writes: a folder named PATH_0 gives PATH_0.mcap
        parent = self.final_path.parent
        parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.final_path.name}.writing-", dir=parent))
        self.path = self.staging / self.folder_name
        self.metapath = self.path / "metadata.yaml"
        super().open()

    @property
    def full(self) -> OSError | None:
        """The write that did not fit (a full disk, a file size limit), or None."""
        return getattr(self.storage, "full", None)

    def end_frame(self, counted: bool = True) -> None:
        """A frame's messages are all written (`counted`: one of the frames `finish_data` counts)."""
        end_frame = getattr(self.storage, "end_frame", None)
        if end_frame is not None:
            end_frame(counted)

    def finish_data(self) -> int:
        """Write what is pending; after a write that did not fit, keep what leaves room to close the bag, and
        count only the messages kept. Returns the counted frames (`end_frame`) dropped (0: all written)."""
        storage = self.storage
        if not hasattr(storage, "finish_data"):
            return 0
        # the rosbag2 metadata (in the file, and metadata.yaml) grows with the topics and custom data
        metadata_bytes = 8192 + 1024 * len(self.connections) + sum(map(len, self.custom_data.values()))
        storage.finish_data(lambda: storage.tail_size(metadata_bytes) + 2 * metadata_bytes + (64 << 10))
        if storage.full is not None:
            counts, self.min_timestamp, self.max_timestamp = storage.kept_messages()
            self.counts = {c.id: counts.get(c.id, 0) for c in self.connections}
        return storage.dropped_frames

    def close(self) -> None:
        self.finish_data()
        super().close()
        if self.single_file:
            next(p for p in self.path.iterdir() if p.name != "metadata.yaml").rename(self.final_path)
        else:
            self.path.rename(self.final_path)
        self._remove_staging()

    def abort(self) -> None:
        try:
            super().abort()
        finally:
            self._remove_staging()

    def _remove_staging(self) -> None:
        staging, self.staging = self.staging, None
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
