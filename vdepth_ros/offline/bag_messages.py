"""Reading and decoding single rosbag2 messages, on `rosbags`: what `BagFrameSource` and
`vdepth-flicker` share (open a bag, iterate it with the bag's own failures named, decode colour and
depth images as the node does, match a stamp).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from vdepth_ros.encodings import get_encoding
from vdepth_ros.errors import InputError
from vdepth_ros.inputs.decode import (
    NODE_SETTINGS,
    SampleBitDepth,
    SettingWords,
    UnsupportedImageError,
    decode_color_image,
    decode_depth_image,
    is_compressed_depth,
    is_depth_png,
    read_as,
)
from vdepth_ros.offline.atomic import disk_full_error
from vdepth_ros.offline.bag_storage import ReadableCopies, expand_folders, is_packed, split_index, storage_files
from vdepth_ros.offline.bag_types import COMPRESSED, IMAGE_TYPES, STORAGE_NAMES
from vdepth_ros.offline.errors import BagReadError, UnsupportedEncodingError
from vdepth_ros.offline.skipped import SkippedMessages

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from rosbags.highlevel import AnyReader
    from rosbags.interfaces import Connection

log = logging.getLogger(__name__)

#: rosbags unpacks a bag recorded with `compression_mode: file` whole before reading it: into the
#: system temp folder, or the folder `open_reader` is given (`vdepth-bag`: beside its output)
TEMP_FULL_FIX = (
    "a bag recorded with compression_mode: file is unpacked there whole before reading; set TMPDIR to a "
    "folder on a disk with room for the uncompressed bag"
)
BESIDE_OUTPUT_FULL_FIX = (
    "a bag recorded with compression_mode: file is unpacked whole beside the output before reading; free "
    "space on that disk or choose an output on a disk with room for the uncompressed bag"
)


def _read_errors() -> tuple[type[Exception], ...]:
    """What a damaged or unreadable bag raises from inside rosbags (sqlite/mcap/yaml internals included)."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag2 import ReaderError

    return (AnyReaderError, ReaderError, OSError, ValueError, KeyError, IndexError, EOFError)


def storage_error(
    path: Path, err: Exception, files: Sequence[Path] = (), unpack_dir: Path | None = None
) -> BagReadError:
    """The `BagReadError` for a bag rosbags could not open or read; `files` (its storage files or
    folders) are probed one by one to name the damaged one. `unpack_dir`: where a file-compressed
    bag was being unpacked (None: the system temp folder)."""
    fix = TEMP_FULL_FIX if unpack_dir is None else BESIDE_OUTPUT_FULL_FIX
    full = disk_full_error(err, unpack_dir or Path(tempfile.gettempdir()), fix)
    if full is not None:  # not the bag's fault: it was being unpacked (compression_mode: file)
        return BagReadError(f"{path}: {full}")
    text = " ".join(str(a) for a in err.args) or type(err).__name__
    low = text.lower()
    if "storage" in low and ("not supported" in low or "unrecognized" in low or "unknown" in low):
        return BagReadError(f"{path}: unknown bag storage ({text}); supported: {', '.join(STORAGE_NAMES)}")
    foreign = _not_ros2_mcap(expand_folders(list(files) or [path]))
    if foreign is not None:
        return BagReadError(f"{path}: {'it' if foreign[0] == path else foreign[0].name} {foreign[1]}")
    busy = _being_written(expand_folders(list(files) or [path]))
    if busy is not None:
        return BagReadError(
            f"{path}: cannot read {busy.name} while it is being written ({text}): a recording still in "
            "progress? Stop the recorder (Ctrl-C on `ros2 bag record`) and run again; a sqlite3 (.db3) bag "
            "cannot be read while it records, an MCAP one (`ros2 bag record -s mcap`, the default) can"
        )
    bad, why = _damaged_file(files)
    if bad is not None and bad.suffix == ".mcap" and "magic" in why.lower():
        return BagReadError(
            f"{path}: {bad.name} looks truncated or corrupt ({why}): cut off where the recorder was killed "
            f"before it closed the file? Recover it with the mcap CLI, `mcap recover {bad} -o "
            f"{bad.with_suffix('.recovered.mcap').name}`, and put the recovered file in its place; or move it "
            "out of the folder to read the rest"
        )
    if bad is not None and bad != path:
        return BagReadError(f"{path}: cannot read {bad.name}, it looks truncated or corrupt ({why})")
    return BagReadError(f"{path}: cannot read the bag, it looks truncated or corrupt ({text})")


#: an MCAP's schema encodings and message encoding of ROS 2 messages (rosbag2's, as rosbags reads them)
_ROS2_SCHEMAS, _ROS2_MESSAGES = frozenset({"ros2msg", "ros2idl", "omgidl", ""}), frozenset({"cdr"})


def _not_ros2_mcap(files: Sequence[Path]) -> tuple[Path, str] | None:
    """The first MCAP file of `files` that holds no ROS 2 messages, and why it cannot be read, with what
    to do: a ROS 1 MCAP, or one of JSON/protobuf/flatbuffer messages (Foxglove's, a non-ROS logger), was
    called "truncated or corrupt" (rosbags: "Profile is not ros2.", or a KeyError on the schema encoding)."""
    from mcap.reader import make_reader

    for f in files:
        if f.suffix != ".mcap":
            continue
        try:
            with f.open("rb") as stream:
                reader = make_reader(stream)
                header = reader.get_header()
                try:
                    summary = reader.get_summary()
                except Exception:  # a file cut off has no summary: its header tells
                    summary = None
        except Exception:  # not an MCAP file this can read: the other errors name it
            continue
        schemas = {sc.encoding for sc in summary.schemas.values()} if summary else set()
        messages = {ch.message_encoding for ch in summary.channels.values()} if summary else set()
        if header.profile == "ros2" and schemas <= _ROS2_SCHEMAS and messages <= _ROS2_MESSAGES:
            continue
        found = f"profile {header.profile!r}, written by {header.library or 'an unnamed library'!r}"
        if messages - _ROS2_MESSAGES:
            found += f", {'/'.join(sorted(messages - _ROS2_MESSAGES))} messages"
        if header.profile == "ros1" or "ros1" in messages:
            return f, (
                f"is an MCAP file of ROS 1 messages ({found}); the offline tools read ROS 2 bags: record "
                "with `ros2 bag record`, or convert the ROS 1 .bag it was made from with rosbags-convert (installed "
                "with rosbags)"
            )
        return f, (
            f"is an MCAP file but not a ROS 2 bag ({found}; a ROS 2 bag's is profile 'ros2', cdr "
            "messages): the offline tools read bags that `ros2 bag record` writes (MCAP or sqlite3); record the "
            "camera's ROS 2 topics with it"
        )
    return None


#: how long a storage file is watched for a recorder's writes when it cannot be read (`_being_written`)
BUSY_WATCH_S = 1.0
#: each storage file's (size, modification time) when `open_reader` opened it
_OPENED: dict[Path, tuple[int, int] | None] = {}


def _stamp(f: Path) -> tuple[int, int] | None:
    try:
        st = f.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _being_written(files: Sequence[Path]) -> Path | None:
    """The first of `files` another process is writing: changed since `open_reader` opened it, or
    within `BUSY_WATCH_S` now. rosbags reads a `.db3` file as immutable, so one a recorder is writing
    (sqlite's default journal, not WAL) reads as "malformed": not a corrupt bag. Only asked once
    reading failed (it waits)."""
    import time

    before = {f: _stamp(f) for f in files}
    changed = [f for f, st in before.items() if f in _OPENED and st != _OPENED[f]]
    if changed or not files:
        return changed[0] if changed else None
    time.sleep(BUSY_WATCH_S)
    return next((f for f, st in before.items() if st is not None and _stamp(f) != st), None)


def _damaged_file(files: Sequence[Path]) -> tuple[Path | None, str]:
    """The first of `files` (storage files or bag folders) rosbags cannot open alone, and why."""
    from rosbags.rosbag2 import Reader

    for f in expand_folders(files):
        reader = Reader(f)
        try:
            reader.open()
        except Exception as err:
            return f, " ".join(str(a) for a in err.args) or type(err).__name__
        reader.close()
    return None, ""


def bag_path(path: str | Path) -> Path:
    """The bag a path names: a bag folder's metadata.yaml stands for the folder."""
    path = Path(path)
    return path.parent if path.name == "metadata.yaml" and path.is_file() else path


def recording_of(path: Path) -> Path:
    """The recording a bag path is part of, which no output may go into: a storage file of a bag
    folder (beside its metadata.yaml, or named as rosbag2 names a folder's files, `<folder>_<N>`:
    a recorder killed before it wrote metadata.yaml) stands for the folder. An output written beside
    the file went into the user's recording: read again without metadata.yaml (or `ros2 bag
    reindex`), it was one more file of it. A file on its own (`~/bags/run1.mcap`) is itself."""
    if path.is_dir() or (path.suffix not in (".mcap", ".db3") and not is_packed(path)):
        return path
    folder = path.parent
    stem, index = split_index(path)
    if (folder / "metadata.yaml").is_file() or (index >= 0 and stem == folder.name):
        return folder
    return path


def open_reader(
    paths: list[Path], typestore: str, notes: list[str] | None = None, unpack_dir: Path | None = None
) -> AnyReader:
    """An open rosbags `AnyReader` over `paths` (read together, in time order).

    A bag recorded with `compression_mode: file` is unpacked whole before it is read (rosbags): into
    `unpack_dir` when given (a tool's scratch folder beside its output, on the disk the user chose
    and removed with it), else the system temp folder (`TMPDIR`), often small or RAM-backed. When
    the unpacked size is known (the zstd frames record it) and does not fit, that is the error,
    before anything is written.

    A bag folder whose metadata.yaml is missing (a recorder killed before it wrote it, a folder
    copied without it) or cannot be used (written by a newer rosbag2 than rosbags reads, damaged)
    is read from its `.mcap`/`.db3` storage files directly, as one bag; what was done is appended
    to `notes`.

    Raises:
        BagReadError: unknown storage, not a bag, or a damaged bag (`storage_error`, naming the
            damaged storage file and how to recover a cut-off MCAP one); no room to unpack it.
    """
    paths = [bag_path(p) for p in paths]
    for path in paths:
        _note_part_of_split_bag(path, notes)
    _check_room_to_unpack(paths, unpack_dir)
    sources = [_folder_sources(p, notes) for p in paths]
    _OPENED.update((f, _stamp(f)) for f in expand_folders([f for group in sources for f in group]))
    copies = ReadableCopies(unpack_dir, notes)
    try:
        try:
            return copies.owned_by(_open_any(copies.readable(sources), typestore, unpack_dir))
        except BagReadError:
            raise
        except Exception as err:  # AnyReaderError/ReaderError, or sqlite/mcap/yaml internals on damaged files
            reason = _metadata_problem(err)
            folders = [p for p in paths if p.is_dir() and (p / "metadata.yaml").exists()]
            if reason is None or not folders:
                raise storage_error(paths[0], err, [f for group in sources for f in group], unpack_dir) from err
            sources = [
                storage_files(p, reason, notes) if p in folders else group
                for p, group in zip(paths, sources, strict=True)
            ]
        try:
            return copies.owned_by(_open_any(copies.readable(sources), typestore, unpack_dir))
        except BagReadError:
            raise
        except Exception as err:
            raise storage_error(paths[0], err, [f for group in sources for f in group], unpack_dir) from err
    except BaseException:
        copies.remove()
        raise


def _folder_sources(path: Path, notes: list[str] | None) -> list[Path]:
    """What to open for `path`: itself, or a bag folder's storage files where its metadata.yaml is
    missing or leaves some out (`_unlisted_parts`)."""
    if _is_folder_without_metadata(path):
        return storage_files(path, "has no metadata.yaml", notes)
    unlisted = _unlisted_parts(path)
    if unlisted:
        problem = (
            f"has storage files its metadata.yaml does not list ({', '.join(unlisted)}: recorded after it was "
            "written, by a recorder killed or still recording)"
        )
        return storage_files(path, problem, notes)
    return [path]


def _unlisted_parts(path: Path) -> list[str]:
    """The storage files of a bag folder named as parts of its recording (`<name>_<N>` of a file its
    metadata.yaml lists) that the metadata.yaml leaves out (written before the last split file: a
    recorder killed, or still recording): rosbags reads the listed files alone, and the last part went
    missing without a word."""
    if not path.is_dir() or _file_compressed(path):
        return []
    try:
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        listed = {Path(str(f)).name for f in info["relative_file_paths"]}
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return []  # (rosbags names a metadata.yaml it cannot use)
    stems = {split_index(Path(name))[0] for name in listed}
    return [
        f.name
        for f in expand_folders([path])
        if f.name not in listed and split_index(f)[1] >= 0 and split_index(f)[0] in stems
    ]


def _file_compressed(path: Path) -> list[Path]:
    """The storage files of a bag folder recorded with `compression_mode: file` ([] for any other)."""
    try:
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        if str(info.get("compression_mode") or "").lower() != "file":
            return []
        return [path / name for name in info.get("relative_file_paths") or []]
    except (OSError, yaml.YAMLError, TypeError, KeyError):  # not a folder, or metadata rosbags will name
        return []


def _check_room_to_unpack(paths: list[Path], unpack_dir: Path | None) -> None:
    """Raise BagReadError when the file-compressed bags among `paths` will not fit where rosbags
    unpacks them (their zstd frames' recorded sizes; a size not recorded is not counted)."""
    files = [f for p in paths for f in _file_compressed(p)]
    if not files:
        return
    try:  # rosbags' own zstd
        from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14
    except ImportError:
        from backports import zstd

    need = 0
    for f in files:
        try:
            with f.open("rb") as fh:
                need += zstd.get_frame_info(fh.read(18)).decompressed_size or 0
        except (OSError, zstd.ZstdError):
            continue  # rosbags names a missing or damaged file
    where = unpack_dir or Path(tempfile.gettempdir())
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return
    if need > free:
        fix = TEMP_FULL_FIX if unpack_dir is None else BESIDE_OUTPUT_FULL_FIX
        raise BagReadError(
            f"{paths[0]}: no room to unpack it in {where}: the bag needs {need / 1e9:.2f} GB there, "
            f"{free / 1e9:.2f} GB are free; {fix}"
        )


@contextmanager
def _unpacking_in(folder: Path | None) -> Iterator[None]:
    """rosbags unpacks a file-compressed bag into a `tempfile.TemporaryDirectory()`, made while the
    reader opens: in `folder` then (None: the system temp folder)."""
    if folder is None:
        yield
        return
    before, tempfile.tempdir = tempfile.tempdir, str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = before


def _note_part_of_split_bag(path: Path, notes: list[str] | None) -> None:
    """Note that a storage file given alone is one of several files of the bag folder it is in."""
    meta = path.parent / "metadata.yaml"
    if path.is_dir() or not meta.is_file():
        return
    try:
        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        files = [Path(str(f)).name for f in info["relative_file_paths"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return
    if path.name in files and len(files) > 1:
        note = (
            f"{path.name} is 1 of the {len(files)} files of the bag {path.parent}: only it was read "
            "(pass the folder for all)"
        )
        log.warning("%s", note)
        if notes is not None:
            notes.append(note)


def _open_any(sources: list[list[Path]], typestore: str, unpack_dir: Path | None = None) -> AnyReader:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import get_typestore

    from vdepth_ros.offline.bag_types import TYPESTORES

    default = get_typestore(TYPESTORES[typestore])
    reader = AnyReader([f for group in sources for f in group], default_typestore=default)
    with _unpacking_in(unpack_dir):
        reader.open()
    # rosbags takes the default typestore only where no bag read defines a type: a recording made before Iron
    # (no definitions: Humble's sqlite3) read with vdepth-bag's output (`vdepth-flicker OUT IN`, `--flicker`) had
    # none of its types, every image "cannot deserialize". The bags' own definitions win; the typestore adds the rest.
    unknown = {name: fields for name, fields in default.fielddefs.items() if name not in reader.typestore.fielddefs}
    if unknown and any(c.msgtype not in reader.typestore.fielddefs for c in reader.connections):
        reader.typestore.register(unknown)
    if not reader.is2:  # rosbags reads ROS 1 bags, but with ROS 1's messages (CameraInfo.K, header.seq)
        reader.close()
        path = sources[0][0]
        raise BagReadError(
            f"{path} is a ROS 1 bag; the offline tools read ROS 2 bags. Convert it with rosbags' converter "
            f"(installed with it): rosbags-convert --src {path} --dst {path.with_suffix('')}_ros2 "
            f"--dst-typestore ros2_{typestore}"
        )
    return reader


def _is_folder_without_metadata(path: Path) -> bool:
    return path.is_dir() and not (path / "metadata.yaml").exists()


def _metadata_problem(err: Exception) -> str | None:
    """Why rosbags could not use a bag folder's metadata.yaml, from its error, or None (another failure)."""
    text = " ".join(str(a) for a in err.args)
    newer = re.search(r"version (\d+) not supported", text)
    if newer:
        return f"has a metadata.yaml of version {newer.group(1)}, newer than the installed rosbags reads"
    missing = re.search(r"Some database files are missing: \[(.*)\]", text)
    if missing:  # a split recording copied in part
        names = ", ".join(Path(n.strip(" '\"")).name for n in missing.group(1).split(","))
        return f"lacks storage files its metadata.yaml lists ({names}: copied in part?)"
    if re.search(r"Could not load YAML|metadata key is missing|Invalid bag metadata|Could not read metadata", text):
        return f"has a metadata.yaml that cannot be used ({text.rstrip('.')})"
    return None


def time_ordered_messages(reader: AnyReader, connections: list[Connection]) -> Iterator[tuple[Connection, int, bytes]]:
    """`reader.messages(connections)` in log-time order across every storage file read, as the messages reached the
    recorder (the live node saw them so). rosbags reads a bag folder's files one after another, each in time order,
    so a recording whose files overlap in time (a split bag's late messages, files split by topic: the images in
    one, camera_info in another) gave all of one file's messages first: no image found its camera_info, and the
    stream restarted at each going back in time. Bags and storage files read side by side were already merged so."""
    import heapq

    by_reader: dict[int, tuple[Any, list[Connection]]] = {}
    for conn in connections or reader.connections:  # (none: all of them, as rosbags reads them)
        by_reader.setdefault(id(conn.owner), (conn.owner, []))[1].append(conn)
    streams = []
    for owner, conns in by_reader.values():
        files = getattr(owner, "storages", None)  # (rosbags' DirectoryReader: a bag folder's storage files)
        if isinstance(files, list) and len(files) > 1 and hasattr(owner, "metadata") and _reads_per_file(owner, conns):
            # its own reading (connections mapped per file, per-message decompression), one storage file at a time
            one = [SimpleNamespace(storages=[f], metadata=owner.metadata) for f in files]
            streams += [type(owner).messages(part, conns) for part in one]
        else:
            streams.append(owner.messages(connections=conns))
    return heapq.merge(*streams, key=lambda message: message[1])


def _reads_per_file(owner: Any, conns: list[Connection]) -> bool:
    """Whether rosbags' folder reader still reads one storage file when given only that file (`storages`,
    `metadata`: its internals, as rosbags has no per-file reading; rosbags is not pinned): its first message
    of the first file is read to see. Else the folder is read in rosbags' own order, as before."""
    try:
        first = SimpleNamespace(storages=owner.storages[:1], metadata=owner.metadata)
        next(iter(type(owner).messages(first, conns)), None)
    except (AttributeError, TypeError):
        return False
    return True


def guarded_messages(
    reader: AnyReader, connections: list[Connection], path: Path
) -> Iterator[tuple[Connection, int, bytes]]:
    """`reader.messages(connections)`, where only the reader's own failures become "truncated or
    corrupt" (an error in the caller's frame code must surface as itself, not blame the bag)."""
    read_errors = _read_errors()
    try:
        it = iter(time_ordered_messages(reader, connections))
    except read_errors as err:
        raise storage_error(path, err) from err
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except read_errors as err:
            raise storage_error(path, err) from err
        yield item


def deserialize_or_skip(
    reader: AnyReader, raw: bytes, conn: Connection, log_time_ns: int, skipped: SkippedMessages
) -> Any:
    """The message in `raw`, or None when it cannot be deserialized (cut short or corrupt in the file; a
    buggy recorder or driver): one bad message of hours of recording is skipped and counted in `skipped`, not
    the end of the run. Its header cannot be read: the WARNING names its log time."""
    try:
        return reader.deserialize(raw, conn.msgtype)
    except Exception as err:  # rosbags' deserializers raise whatever the bytes lead them to (struct, index, value)
        skipped.skip(conn.topic, log_time_ns, f"cannot deserialize it as {conn.msgtype} ({err})", received=True)
        return None


#: how the offline tools' user picks the colour camera's stream, named in the shared causes (`decode_color_image`)
CHOOSE_IMAGE = "choose the colour camera's topic with --image-topic"

#: messages of an image topic read to tell its kind (`image_topics_by_kind`) before giving up on it
KIND_PEEK_MESSAGES = 64


def _image_kind(reader: AnyReader, raw: bytes, msgtype: str, image_encoding: str = "auto") -> str:
    """`"colour"` or `"depth"` by what the message in `raw` holds, "" for another encoding; raises for a
    message that cannot be read (cut short, corrupt, an encoding string that is none). With `image_encoding` (the
    node's parameter) set, a raw image of as many bytes per pixel as it is colour, as the run reads it (an IR
    camera's 16UC1 read as mono16; not a 32FC1 depth image, whose rows would fit mono16's with padding)."""
    msg = reader.deserialize(raw, msgtype)
    if msgtype == COMPRESSED:
        return "depth" if is_compressed_depth(msg) or is_depth_png(msg, image_encoding) else "colour"
    if image_encoding not in ("", "auto"):
        try:
            same = _pixel_layout(get_encoding(msg.encoding)) == _pixel_layout(get_encoding(image_encoding))
        except InputError:  # OpenCV's 8UC3...: `read_as` tells whether its bytes are image_encoding's
            same = True
        with contextlib.suppress(UnsupportedImageError):  # its bytes are not image_encoding's: by its own
            if same and read_as(msg, image_encoding):
                return "colour"
    return {"color": "colour", "mono": "colour", "depth": "depth"}.get(get_encoding(msg.encoding).kind, "")


def _pixel_layout(encoding: Any) -> tuple[int, float]:
    """(bytes per pixel, rows of data per image row) of an `encodings.Encoding`."""
    return encoding.dtype.itemsize * encoding.channels, encoding.height_scaling


def image_topics_by_kind(reader: AnyReader, image_encoding: str = "auto") -> dict[str, list[str]]:
    """The bag's image topics with messages, sorted, by what their first readable message holds:
    "colour" (an Image of a colour or mono encoding, a CompressedImage) and "depth" (an Image of a
    depth encoding, 16UC1/32FC1: a depth camera's, or `vdepth-bag`'s /depth and /disparity; a
    compressedDepth CompressedImage, or a 16UC1/32FC1 one of the compressed plugin). A camera's
    `/compressed` or `/compressedDepth` sub-topic beside its raw topic is that camera (recorded with
    `ros2 bag record -a`), not a candidate of its own. A message that cannot be read is passed over (the run reading
    the topic skips and counts it as any bad message): one cut short at the start of a recording
    took the camera's topic out of the choice. A topic none of whose first `KIND_PEEK_MESSAGES`
    messages can be read is neither. Used to choose a default topic: a depth camera's or the
    outputs' topics beside the camera do not make it ambiguous. With `image_encoding` set (not auto), a raw topic
    whose images it reads is colour (`_image_kind`): a bag whose camera is an IR camera's 16UC1 is read without
    naming the topic, a depth camera's 16UC1 beside it makes the choice ambiguous (its bytes are the same)."""
    kinds: dict[str, list[str]] = {"colour": [], "depth": []}
    topics = sorted({c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES and c.msgcount > 0})
    for topic in topics:
        kind = ""
        messages = reader.messages(connections=[c for c in reader.connections if c.topic == topic])
        try:
            for conn, _, raw in islice(messages, KIND_PEEK_MESSAGES):
                try:
                    kind = _image_kind(reader, raw, conn.msgtype, image_encoding)
                    break
                except Exception:  # a bad message: the next one tells the topic's kind
                    continue
        except Exception:  # the storage itself fails here: not a candidate (a chosen topic names its own error)
            kind = ""
        finally:
            messages.close()  # release the storage cursor before the next one
        if kind:
            kinds[kind].append(topic)
    return {kind: [t for t in found if not _transport_of(t, found)] for kind, found in kinds.items()}


def grey_camera_hint(reader: AnyReader, image_encoding: str, fix: str) -> str:
    """Why a bag with no colour image topic may still hold the camera, for the error that the image topic is not
    found: the raw topics that `fix` (the tool's way to set `image_encoding: mono16`: vdepth-bag's params file,
    vdepth-flicker's `--image-encoding mono16`) reads as a camera (`image_topics_by_kind`'s rule: an IR or grey
    camera's 16UC1, kinect2_bridge's image_ir); "" with `image_encoding` set, a colour topic, or no such topic.
    vdepth-bag and vdepth-flicker both end their not-found error with it (vdepth-flicker's lacked it)."""
    if image_encoding not in ("", "auto") or image_topics_by_kind(reader)["colour"]:
        return ""
    grey = image_topics_by_kind(reader, "mono16")["colour"]
    if not grey:
        return ""
    return (
        f"; {', '.join(grey)} {'holds' if len(grey) == 1 else 'hold'} 16UC1 images: an IR or grey camera's "
        f"(kinect2_bridge's image_ir) are read as a camera with {fix}"
    )


#: image_transport's sub-topics of an image topic that CompressedImage messages go on
_TRANSPORTS = ("compressed", "compressedDepth")


def _transport_of(topic: str, topics: list[str]) -> bool:
    """Whether `topic` is one of `topics`' image_transport sub-topics (`/cam/image_raw/compressed` of
    `/cam/image_raw`): the same camera's images, not another camera's."""
    base, _, leaf = topic.rpartition("/")
    return leaf in _TRANSPORTS and base in topics


def decode_color_msg(
    msg: Any,
    msgtype: str,
    topic: str,
    bit_depth: SampleBitDepth | None = None,
    image_encoding: str = "auto",
    words: SettingWords = NODE_SETTINGS,
) -> np.ndarray:
    """`(H, W, 3)` uint8 RGB of an Image/CompressedImage message read from `topic`
    (`inputs.decode.decode_color_image`, as the node decodes it; 16-bit samples by `bit_depth`, a raw image's bytes
    as `image_encoding`, the node's parameter, names: `inputs.decode.read_as`; the fixes in the user's `words`).

    Raises:
        UnsupportedEncodingError: the encoding is not a colour/mono one, or `image_encoding` does not fit the
            image's bytes (names the topic).
        InputError: the message is malformed (size, buffer, undecodable bytes).
    """
    try:
        return decode_color_image(
            msg, bit_depth=bit_depth, choose_image=CHOOSE_IMAGE, image_encoding=image_encoding, words=words
        )
    except UnsupportedImageError as err:  # named as the node names it (its one rule), with this tool's fix
        raise UnsupportedEncodingError(f"topic {topic!r}: {err}") from None


def decode_depth_msg(msg: Any, label: str) -> np.ndarray:
    """`(H, W)` float32 metres of a `16UC1`/`32FC1` Image message, or of a compressedDepth
    CompressedImage (NaN invalid; `inputs.decode.decode_depth_image`, as the node's sparse depth);
    `label` names where it came from in errors (e.g. "depth topic '/x'").

    Raises:
        UnsupportedEncodingError: not a depth encoding (the topic is not a depth stream).
        InputError: a malformed message (one bad message of a depth stream: skip it).
    """
    try:
        return decode_depth_image(msg)
    except UnsupportedImageError as err:
        raise UnsupportedEncodingError(f"{label}: {err}") from None


def nearest_stamp(store: Mapping[int, Any], stamp: int, slop_ns: int) -> int | None:
    """The key of `store` nearest to `stamp` within `slop_ns`, or None."""
    best = min(store, key=lambda s: abs(s - stamp), default=None)
    return best if best is not None and abs(best - stamp) <= slop_ns else None
