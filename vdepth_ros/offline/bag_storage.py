"""A bag's storage files, and readable copies of the ones rosbags cannot read whole: what lets the
offline tools read a recording still being written, or whose recorder was killed (`ReadableCopies`:
a `.db3` with messages in its write-ahead log, an `.mcap` cut off before its footer), and a bag
folder whose metadata.yaml cannot be used (`storage_files`). The input is never touched."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
import weakref
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from vdepth_ros.offline.atomic import disk_full_error
from vdepth_ros.offline.errors import BagReadError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rosbags.highlevel import AnyReader

log = logging.getLogger(__name__)


def split_index(path: Path) -> tuple[str, int]:
    """Sort key of rosbag2's split files (`name_0`, `name_1`, ... `name_10`)."""
    stem, _, index = path.name.split(".")[0].rpartition("_")
    return (stem, int(index)) if index.isdigit() else (path.name, -1)


#: the names of storage files rosbag2 compressed whole (`--compression-mode file`), read from unpacked copies
PACKED_SUFFIXES = (".mcap.zstd", ".db3.zstd")


def is_packed(path: Path) -> bool:
    """A storage file compressed whole: rosbags reads it only through the metadata.yaml that says so, and named it
    "unknown bag storage" given alone (one file of such a recording, or a folder whose metadata.yaml is missing:
    a recorder killed leaves its earlier files compressed and the last one not)."""
    return path.name.endswith(PACKED_SUFFIXES) and path.is_file()


def storage_files(folder: Path, problem: str, notes: list[str] | None) -> list[Path]:
    """The `.mcap`/`.db3` files of a bag folder whose metadata.yaml cannot be used, and those compressed whole
    (`is_packed`, read from unpacked copies: leaving them out lost all but a killed recording's last file without a
    word), noted in `notes`."""
    files = sorted(expand_folders([folder]) + [p for p in folder.iterdir() if is_packed(p)], key=split_index)
    if not files:
        if not (folder / "metadata.yaml").exists():
            # (the folder the bags are recorded into, passed for one of them)
            inner = sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / "metadata.yaml").is_file())
            listed = ", ".join(inner[:5]) + (", ..." if len(inner) > 5 else "")
            held = f"; it holds the bag{'s' if len(inner) > 1 else ''} {listed}: pass one" if inner else ""
            raise BagReadError(f"{folder}: not a bag: no metadata.yaml and no .mcap or .db3 storage files in it{held}")
        raise BagReadError(f"{folder} {problem}, and no .mcap or .db3 storage files")
    note = f"{folder} {problem}: read its {len(files)} storage file{'s' if len(files) > 1 else ''} directly"
    log.warning("%s", note)
    if notes is not None:
        notes.append(note)
    return files


def expand_folders(files: Sequence[Path]) -> list[Path]:
    """`files` with each bag folder replaced by its `.mcap`/`.db3` storage files."""
    out: list[Path] = []
    for f in files:
        if f.is_dir():
            out += sorted((p for p in f.iterdir() if p.suffix in (".mcap", ".db3") and p.is_file()), key=split_index)
        else:
            out.append(f)
    return out


_MCAP_MAGIC = b"\x89MCAP0\r\n"


def _wal_of(db3: Path) -> Path | None:
    """The sqlite write-ahead log beside a `.db3` file when it holds pages (None: none, or empty)."""
    wal = db3.with_name(db3.name + "-wal")
    try:
        return wal if db3.suffix == ".db3" and wal.stat().st_size > 32 else None  # 32: the WAL's header alone
    except OSError:
        return None


def _cut_off_mcap(path: Path) -> bool:
    """An MCAP file that starts as one but does not end with its closing magic: cut off where the
    recorder was killed, or still being written."""
    if path.suffix != ".mcap" or not path.is_file():
        return False
    try:
        with path.open("rb") as f:
            head = f.read(len(_MCAP_MAGIC))
            f.seek(max(0, path.stat().st_size - len(_MCAP_MAGIC)))
            tail = f.read()
    except OSError:
        return False
    return head == _MCAP_MAGIC and tail != _MCAP_MAGIC


def _needs_copy(path: Path) -> bool:
    """A storage file a recorder did not close, read from a copy (`ReadableCopies`)."""
    return _wal_of(path) is not None or _cut_off_mcap(path)


def _unpack(src: Path, dst: Path) -> None:
    """Decompress a storage file compressed whole (`is_packed`) into `dst`, as rosbags unpacks a bag's files."""
    try:  # rosbags' own zstd
        from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14
    except ImportError:
        from backports import zstd

    try:
        with zstd.open(src, "rb") as packed, dst.open("wb") as out:
            shutil.copyfileobj(packed, out, 1 << 20)
    except zstd.ZstdError as err:
        raise BagReadError(f"{src}: cannot unpack {src.name}, it looks truncated or corrupt ({err})") from err


def _recover_mcap(src: Path, dst: Path) -> int:
    """Write the schemas, channels and whole messages of a cut-off MCAP file `src` into a complete
    MCAP file `dst` (what `mcap recover` does); returns the number of messages."""
    from mcap.records import Channel, Header, Message, Schema
    from mcap.stream_reader import StreamReader
    from mcap.writer import CompressionType, Writer

    schemas: dict[int, int] = {}
    channels: dict[int, int] = {}
    count = 0
    with src.open("rb") as f, dst.open("wb") as g:
        writer = Writer(g, compression=CompressionType.LZ4)
        started = False
        records = iter(StreamReader(f).records)
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except Exception:  # the cut: a record or chunk cut short (EndOfFile, a length past the end, ...)
                break  # (only reading: a failed write, e.g. a full disk, is raised)
            if isinstance(record, Header):
                writer.start(profile=record.profile, library=record.library)
                started = True
            elif isinstance(record, Schema) and record.id not in schemas:
                schemas[record.id] = writer.register_schema(record.name, record.encoding, record.data)
            elif isinstance(record, Channel) and record.id not in channels:
                channels[record.id] = writer.register_channel(
                    record.topic, record.message_encoding, schemas.get(record.schema_id, 0), record.metadata
                )
            elif isinstance(record, Message) and record.channel_id in channels:
                writer.add_message(
                    channels[record.channel_id], record.log_time, record.data, record.publish_time, record.sequence
                )
                count += 1
        if not started:
            writer.start(profile="ros2", library="vdepth_ros")
        writer.finish()
    return count


class ReadableCopies:
    """Readable copies of storage files rosbags cannot read whole, for a recording still being
    written or whose recorder was killed; the input is not touched.

    - A `.db3` file with messages in its write-ahead log: rosbag2's sqlite3 storage with
      `storage_preset_profile: resilient` writes through `name.db3-wal`, folded into the file when
      the recorder closes it. rosbags opens the file as immutable, which ignores the log: its newest
      messages were silently missing. The file and its log are copied and folded together.
    - An `.mcap` file without its closing records (no footer, no summary): rosbags refused it. Its
      whole messages are written into a complete MCAP file (`mcap recover`'s work).

    The copies go into `unpack_dir` (a tool's scratch folder beside its output; None: a temporary
    folder in TMPDIR, removed with the reader).
    """

    def __init__(self, unpack_dir: Path | None, notes: list[str] | None) -> None:
        self.unpack_dir, self.notes = unpack_dir, notes
        self.folder: Path | None = None
        self._copies: dict[Path, Path] = {}

    def readable(self, sources: list[list[Path]]) -> list[list[Path]]:
        """`sources` with each storage file rosbags cannot read whole replaced by a readable copy; a
        bag folder holding such a file is read from its storage files (its metadata.yaml, if any,
        was written before them)."""
        out = []
        for group in sources:
            files: list[Path] = []
            for f in group:
                if f.is_dir() and (f / "metadata.yaml").exists() and any(map(_needs_copy, expand_folders([f]))):
                    problem = "is still being recorded, or its recorder was killed"
                    files += storage_files(f, problem, self.notes)
                else:
                    files.append(f)
            out.append([self._copy(f) if _needs_copy(f) or is_packed(f) else f for f in files])
        return out

    def _copy(self, path: Path) -> Path:
        if path in self._copies:
            return self._copies[path]
        if self.folder is None:
            if self.unpack_dir is not None:
                self.unpack_dir.mkdir(parents=True, exist_ok=True)
            self.folder = Path(tempfile.mkdtemp(prefix="vdepth-copy-", dir=self.unpack_dir))
        copy = (
            self.folder / str(len(self._copies)) / (path.name.removesuffix(".zstd") if is_packed(path) else path.name)
        )
        wal = _wal_of(path)
        try:
            copy.parent.mkdir()
            if is_packed(path):
                _unpack(path, copy)
                note = (
                    f"{path.name} is compressed whole (a recording with compression mode file, read without the "
                    "metadata.yaml that says so): read an unpacked copy"
                )
            elif wal is not None:
                shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))  # the log first: a recorder may fold it
                shutil.copyfile(path, copy)
                with closing(sqlite3.connect(copy)) as con:  # opening it folds the log in
                    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    con.execute("PRAGMA journal_mode=DELETE")
                note = (
                    f"{path.name} has messages in {wal.name} not yet written into it (a recording still being "
                    "written, or its recorder killed, with storage preset resilient): read a copy with them"
                )
            else:
                n = _recover_mcap(path, copy)
                if n == 0:
                    raise BagReadError(
                        f"{path}: cannot read {path.name}, it looks truncated or corrupt (it ends before its first "
                        "whole chunk of messages: a recording killed, or still being written, that soon?)"
                    )
                note = (
                    f"{path.name} is cut off (no MCAP footer: a recording still being written, or its recorder "
                    f"killed): read the {n} whole messages before the cut from a recovered copy"
                )
        except OSError as err:
            fix = (
                "a storage file a recorder did not close, or compressed whole, is copied there whole to read it; "
                + ("free space on that disk or choose an output on a disk with room" if self.unpack_dir else
                   "set TMPDIR to a folder on a disk with room for it")
            )  # fmt: skip
            full = disk_full_error(err, self.folder, fix)
            raise BagReadError(f"{path}: {full or err}") from err
        except sqlite3.Error as err:
            raise BagReadError(f"{path}: cannot fold {path.name}-wal into a copy of it ({err})") from err
        log.warning("%s", note)
        if self.notes is not None:
            self.notes.append(note)
        self._copies[path] = copy
        return copy

    def owned_by(self, reader: AnyReader) -> AnyReader:
        """`reader`, which removes the copies when it is collected (or at exit)."""
        if self.folder is not None:
            weakref.finalize(reader, shutil.rmtree, self.folder, True)
        return reader

    def remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
