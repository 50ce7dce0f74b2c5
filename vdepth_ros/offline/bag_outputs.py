"""What is at `vdepth-bag`'s output path: a bag or not (`not_a_bag`), a bag vdepth-bag wrote, which
`--overwrite` may replace, or a recording of the user's, which it never replaces
(`not_a_vdepth_bag`: the `OUTPUT_MARK` keys of its metadata), and the storage a name implies
(`output_storage`)."""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path

from vdepth_ros.errors import VdepthError
from vdepth_ros.offline.atomic import foreign_entries
from vdepth_ros.offline.bag_types import IMAGE, STORAGE_NAMES


def not_a_bag(path: Path) -> str | None:
    """What an existing path is instead of a bag (a folder with metadata.yaml, a .mcap/.db3 file), or None."""
    if path.is_file() and path.suffix in SINGLE_FILE_STORAGES:
        with path.open("rb") as f:  # (a text file named .mcap is no bag, nor anyone's recording)
            magic = f.read(16)
        if magic.startswith(_MAGIC[path.suffix]):
            return None
        return f"not a bag (named {path.suffix}, but not {_KIND[path.suffix]} file)"
    if path.is_dir() and (path / "metadata.yaml").is_file():
        return None
    if path.is_dir():
        return "not a bag (a folder without metadata.yaml)"
    return "not a bag (a file, neither .mcap nor .db3)"


#: how each storage file starts (the MCAP magic; sqlite's header string)
_MAGIC = {".mcap": b"\x89MCAP0\r\n", ".db3": b"SQLite format 3\x00"}
_KIND = {".mcap": "an MCAP", ".db3": "an SQLite"}

#: the prefix of the metadata `custom_data` keys vdepth-bag writes into its outputs (which model ran)
OUTPUT_MARK = "vdepth_ros."


def not_a_vdepth_bag(path: Path) -> str | None:
    """What an existing output path is instead of an earlier vdepth-bag output that --overwrite may
    replace, or None. A bag folder or `.db3` is one when its metadata carries vdepth-bag's
    `custom_data`; a `.mcap` file (no metadata.yaml) when rosbags wrote it with vdepth-bag's
    disparity and depth/camera_info topics. A recording of the user's (`-o ~/bags/run2 --overwrite`,
    a slip for run3) is not replaced."""
    why = not_a_bag(path)
    if why is not None:
        return why
    try:
        ours = _written_by_vdepth_bag(path)
    except Exception as err:  # unreadable: not known to be ours (a text file named .mcap, a bag cut short)
        return f"not a bag vdepth-bag can read ({type(err).__name__}: {err})"[:300]
    if not ours:
        return "a bag vdepth-bag did not write (a recording?)"
    foreign = foreign_entries(path, lambda parts: _bag_entry(path, parts)) if path.is_dir() else None
    return None if foreign is None else f"vdepth-bag's output with files it did not write beside it ({foreign})"


def recorded_file_stem(folder_name: str) -> str:
    """The name (without extension) rosbag2 gives the first storage file of a bag folder `folder_name`:
    `OUT_0` (`SequentialWriter::format_storage_uri`), as `ros2 bag record -o OUT` writes `OUT/OUT_0.mcap`.
    rosbags names it after the folder alone (`OUT/OUT.mcap`), which `ros2 bag reindex` does not find: it takes
    only files named `.+_(\\d+)\\.<ext>` ("No database files found for reindexing. Abort"; rosbag2's
    `reindexer.cpp`)."""
    return f"{folder_name}_0"


def _bag_entry(folder: Path, parts: tuple[str, ...]) -> bool:
    """Whether `parts` (under an output bag `folder`) is what vdepth-bag writes there: metadata.yaml and
    its storage file, named as rosbag2 names it (or, by vdepth-bag before it did, after the folder)."""
    stems = (recorded_file_stem(folder.name), folder.name)
    return len(parts) == 1 and parts[0] in {"metadata.yaml", *(s + ext for s in stems for ext in SINGLE_FILE_STORAGES)}


def _written_by_vdepth_bag(path: Path) -> bool:
    import yaml

    if path.is_dir() or path.suffix == ".db3":
        if path.is_dir():
            text = (path / "metadata.yaml").read_text()
        else:  # rosbag2 keeps the metadata in the file too
            import sqlite3

            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                text = db.execute("SELECT metadata FROM metadata ORDER BY metadata_version DESC").fetchone()[0]
        data = yaml.safe_load(text) or {}
        info = data.get("rosbag2_bagfile_information", data)  # the .db3's table holds the inner mapping
        return any(str(k).startswith(OUTPUT_MARK) for k in (info.get("custom_data") or {}))
    with path.open("rb") as f:  # MCAP: magic, header record (opcode, length, profile, library)
        head = f.read(4096)
    at = 8 + 1 + 8
    profile_len = int.from_bytes(head[at : at + 4], "little")
    at += 4 + profile_len
    library = head[at + 4 : at + 4 + int.from_bytes(head[at : at + 4], "little")]
    if not library.startswith(b"rosbags"):
        return False
    from rosbags.highlevel import AnyReader

    with AnyReader([path]) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
    return any(t.endswith("disparity") and m == IMAGE for t, m in topics.items()) and any(
        t.endswith("depth/camera_info") for t in topics
    )


#: output extensions that name a single storage file, and their storage
SINGLE_FILE_STORAGES = {".mcap": "mcap", ".db3": "sqlite3"}


def output_storage(output: str | Path, storage: str | None) -> tuple[str, bool]:
    """The output's storage and whether it is a single storage file (`-o depth.mcap`), not a bag folder.

    The rule, for every form of `-o`: a name ending in `.mcap` or `.db3` is one storage file, unless it is an
    existing folder or written with a trailing `/` (a folder is always a bag folder: an empty one is written into,
    a folder of the user's is never replaced by a file); any other name is a bag folder (`ros2 bag record -o`'s
    form: metadata.yaml and `<name>_0.mcap`); folders above it that do not exist are created."""
    text = str(output)
    output = Path(output)
    as_folder = text.endswith(("/", os.sep)) or output.is_dir()
    implied = None if as_folder else SINGLE_FILE_STORAGES.get(output.suffix)
    if storage is not None and storage not in STORAGE_NAMES:
        raise VdepthError(f"--storage must be one of {', '.join(STORAGE_NAMES)}, got {storage!r}")
    if storage is not None and implied is not None and storage != implied:
        raise VdepthError(
            f"--storage {storage} cannot write {output.name}, a {implied} file; name the output "
            f"{output.stem}{next(k for k, v in SINGLE_FILE_STORAGES.items() if v == storage)} or a folder"
        )
    return storage or implied or "mcap", implied is not None


def output_form(output: Path, storage: str, single_file: bool) -> str:
    """What the summary says the output is, so that its form is never a surprise."""
    ext = next(k for k, v in SINGLE_FILE_STORAGES.items() if v == storage)
    if single_file:
        return f"{output} (one {storage} file, no metadata.yaml: `ros2 bag play` and rosbags read it as it is)"
    return f"{output} (a bag folder: metadata.yaml and {recorded_file_stem(output.name)}{ext})"
