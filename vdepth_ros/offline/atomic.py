"""Outputs built under a temporary name next to their final path and renamed into place at the end.

A crash or Ctrl-C therefore never leaves a half-written result under the final name, an existing
output is replaced only when asked (and only after the new one is complete), and inputs are never
touched.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from vdepth_ros.offline.errors import OfflineError, OutputExistsError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

STAGING_PREFIX = ".vdepth-partial-"
#: the staging folder's folder where a commit sets aside the output it replaces until the new one is in place
_SET_ASIDE = ".previous"
#: the staging folder's file naming the output it stages: a killed run's folder is known as that output's
#: whatever it still holds (scratch files only, or nothing once its commit moved the output in)
_STAGES = ".stages"
_SCRATCH = ".scratch"
#: the staging folder's list of the companions its commit moved in where nothing was (name and inode): a run killed
#: before the output itself followed them leaves them beside nothing, and the next run takes them back
_MOVED_IN = ".moved-in"
#: the end of the error of an output that cannot be created, unless a tool names a better fix
OUTPUT_PATH_FIX = "choose another output path"

#: errnos of a write that did not fit: a full disk, a user quota, a file system's file size limit
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def disk_full_error(err: BaseException, where: Path, fix: str) -> OfflineError | None:
    """The one-line error for a write into `where` that did not fit (`DISK_FULL_ERRNOS`), naming
    `fix`; None for any other error."""
    if not isinstance(err, OSError) or err.errno not in DISK_FULL_ERRNOS:
        return None
    return OfflineError(f"cannot write {where}: {write_failure(err)}; {fix}")


#: What to do about a file system's largest file or a file size limit (a full disk's fix is each tool's own)
FILE_SIZE_FIX = "write to a disk formatted ext4, exFAT or NTFS, or raise the limit"


def write_failure(err: OSError) -> str:
    """What a write that did not fit (`DISK_FULL_ERRNOS`) ran into, in words: `File too large (...)`; a file
    size limit's with its fix (`FILE_SIZE_FIX`), which freeing space would not be."""
    why = err.strerror or str(err)
    if err.errno == errno.EFBIG:
        return f"{why} (the largest file of its file system, e.g. FAT32's 4 GiB, or `ulimit -f`: {FILE_SIZE_FIX})"
    return why


def file_size_limit(folder: Path) -> int | None:
    """The largest file a process may write in `folder`: `ulimit -f` (RLIMIT_FSIZE), or a FAT file system's
    4 GiB - 1 (a USB stick), whichever is lower; None where neither limits it. A tool stops its output before it
    (a write past it fails with EFBIG, and OpenCV's video writer fails there without a word)."""
    import resource

    limits = []
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    try:  # the mount holding `folder`: the longest mount point above it
        target, best, fs = os.path.realpath(folder), "", ""
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split(" - ")
            point, kind = fields[0].split()[4], fields[1].split()[0]
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)  # (`/media/u/MY\040STICK`)
            if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, fs = point, kind
        if fs in ("vfat", "msdos", "fat"):
            limits.append((1 << 32) - 1)
    except (OSError, IndexError):  # not Linux
        pass
    return min(limits, default=None)


def foreign_entries(folder: Path, written: Callable[[tuple[str, ...]], bool], shown: int = 5) -> str | None:
    """The entries under an earlier output `folder` that its tool does not write (`written`: an entry's
    path parts relative to `folder`), named for the refusal, or None: what `--overwrite` would delete
    with it (the user's notes, a copy of a recording, an analysis put beside the results)."""
    foreign: list[str] = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder).parts
        for name in sorted(dirs):
            if not written((*rel, name)):
                foreign.append("/".join((*rel, name)) + "/")
                dirs.remove(name)  # named as a whole
        foreign += ["/".join((*rel, name)) for name in sorted(files) if not written((*rel, name))]
    if not foreign:
        return None
    more = f" and {len(foreign) - shown} more" if len(foreign) > shown else ""
    return ", ".join(foreign[:shown]) + more


def _is_within(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def check_output_path(
    final: Path,
    *,
    overwrite: bool,
    inputs: Iterable[Path] = (),
    replaceable: Callable[[Path], str | None] | None = None,
) -> None:
    """Refuse an output that would clobber user data.

    Args:
        final: the output path the user asked for.
        overwrite: whether an existing `final` may be replaced.
        inputs: input files/folders; `final` may not be one of them, inside one, or contain one.
        replaceable: with `overwrite`, what an existing `final` is not (e.g. "not a bag"), or None
            when it is an earlier output of the tool that may be replaced; default: anything.

    Raises:
        OutputExistsError: `final` exists (and is not an empty folder) and `overwrite` is false,
            or `replaceable` refuses it.
        OfflineError: `final` overlaps an input.
    """
    final = final.resolve()
    for inp in inputs:
        inp = Path(inp).resolve()
        if _is_within(final, inp) or _is_within(inp, final):
            raise OfflineError(f"output {final} overlaps the input {inp}; choose another output path")
    if final.exists() or final.is_symlink():
        if final.is_dir() and not final.is_symlink() and not any(final.iterdir()):
            return
        # what it is first: --overwrite is named only where it would replace it (a folder or file of the user's
        # was answered "pass --overwrite", and that run then refused it)
        why = replaceable(final) if replaceable is not None else None
        if why is not None:
            raise OutputExistsError(
                f"output {final} exists and is {why}: it is kept (only an earlier output of the tool is replaced, "
                "with --overwrite where the tool has it); move it away or choose another output path"
            )
        if not overwrite:
            raise OutputExistsError(
                f"output {final} exists; pass --overwrite to replace it (an earlier output of the tool)"
            )


def _recover_stale_staging(final: Path) -> None:
    """Settle the staging folders a killed run (SIGKILL, power loss: no clean-up ran) left for the
    same output: `<parent>/.vdepth-partial-<pid>-<id>/` (its `.stages` file names the output)
    whose process no longer runs on this machine. Another output's staging, or a live run's, is
    left alone.

    One killed before its commit holds only a partial output: it is deleted. One killed during its
    commit (`--overwrite`, between setting the earlier output aside in `.previous` and moving the
    new one into place) is rolled back: what it set aside goes back under its name, then the folder
    is deleted; should anything set aside not go back (its name was taken since), the folder is
    kept, so the earlier output is never deleted unless its replacement is in place. One killed
    after the output's own move (its earlier output in `.previous`) had replaced it: the folder is
    deleted."""
    try:
        candidates = list(final.parent.glob(f"{STAGING_PREFIX}*"))
    except OSError:
        return
    for staging in candidates:
        pid = staging.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        new, previous = staging / final.name, staging / _SET_ASIDE
        has_new, set_aside = new.exists() or new.is_symlink(), previous / final.name
        ours = _stages(staging) == final.name or has_new or set_aside.exists() or set_aside.is_symlink()
        if not pid.isdigit() or not ours or _running(int(pid)):
            continue
        if has_new and not _take_back_moved_in(staging, final.parent):
            continue
        if has_new and previous.is_dir() and not _put_back(previous, staging, final.parent):
            continue
        shutil.rmtree(staging, ignore_errors=True)


def _stages(staging: Path) -> str | None:
    """The output name a staging folder's marker names, or None (no marker: another tool's folder,
    or one made before the marker existed)."""
    try:
        return (staging / _STAGES).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _put_back(previous: Path, staging: Path, parent: Path) -> bool:
    """Move the entries a killed commit set aside in `previous` back into `parent`; an entry's
    namesake there that the commit had moved in (gone from `staging`) goes back into `staging`.
    Returns whether all went back."""
    try:
        for aside in sorted(previous.iterdir()):
            dest, staged = parent / aside.name, staging / aside.name
            if dest.exists() or dest.is_symlink():
                if staged.exists() or staged.is_symlink():
                    continue  # not the commit's: whatever took the name since stays, and so does `aside`
                os.replace(dest, staged)
            os.replace(aside, dest)
        return not any(previous.iterdir())
    except OSError:  # a read-only folder now: keep all, to be put back by hand or by a later run
        return False


def _take_back_moved_in(staging: Path, parent: Path) -> bool:
    """Move the companions a killed commit moved into `parent` where nothing was (its `.moved-in`: an engine's spec
    without the engine) back into `staging`, to be removed with it; a file of that name that is not the one moved
    in (another inode: put there since) stays. Returns whether all went back."""
    try:
        lines = (staging / _MOVED_IN).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return True
    except (OSError, UnicodeDecodeError):
        return False
    try:
        for name, _, inode in (line.partition("\t") for line in lines):
            dest, staged = parent / name, staging / name
            if Path(name).name != name or name in ("", ".", "..") or staged.exists() or staged.is_symlink():
                continue  # not a plain name, or never moved in
            try:
                if str(os.lstat(dest).st_ino) == inode:
                    os.replace(dest, staged)
            except FileNotFoundError:
                continue
        return True
    except OSError:  # a read-only folder now: keep all, to be taken back by a later run
        return False


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


def _make_staging(final: Path, fix: str) -> Path:
    """A new staging folder for `final` (its parents made), marked with the output it stages; an
    `OfflineError` naming the cause and `fix` when it cannot be made."""
    staging = final.parent / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        (staging / _STAGES).write_text(final.name, encoding="utf-8")
    except OSError as err:  # a read-only folder, a file where a folder must be, a full disk...
        shutil.rmtree(staging, ignore_errors=True)  # made, but its marker did not fit
        where = Path(err.filename or final.parent)
        where = final.parent if where == staging else where  # the folder, not the hidden name it refused
        why = f"{where} is a file, not a folder" if where.is_file() else f"{err.strerror or err} ({where})"
        raise OfflineError(f"cannot create the output {final}: {why}; {fix}") from err
    return staging


def check_writable(final: str | Path, fix: str = OUTPUT_PATH_FIX) -> None:
    """Raise now the `OfflineError` that `AtomicOutput(final, fix=fix)` would raise on opening when
    `final`'s folder cannot be written (read-only, a file where a folder must be): a tool checks it
    before minutes of work that the output would then lose."""
    shutil.rmtree(_make_staging(Path(final).absolute(), fix), ignore_errors=True)


OUTPUT_FULL_FIX = "nothing was written under that name; free space on its disk or choose another output path"


class AtomicOutput:
    """Context manager giving a temporary path to write, renamed to `final` on success.

    The temporary path is `<parent>/.vdepth-partial-<id>/<final name>` (same filesystem, so the
    rename is atomic, and a storage file named after the folder keeps the final name). On an
    exception, including KeyboardInterrupt, the staging folder is deleted and `final` is untouched;
    a write that did not fit (a full disk, `DISK_FULL_ERRNOS`) becomes one `OfflineError` naming
    the output. `scratch` is a folder in the staging folder for a tool's temporary files, so they
    go on the output's disk and are removed with it (also after a SIGKILL, by the next run).

    `companions` names files that belong to `final` and sit beside it (an ONNX graph's external
    data and spec): written beside the temporary path, they are moved into place with it, the
    output itself last; a companion not written removes its namesake beside `final` (it belonged to
    the output replaced). Should a move fail, the files already moved are put back as they were.
    Other files beside `final` are never touched. `fix` ends the error of an output whose folder
    cannot be written (default: choose another output path); `check_writable` raises it early.

    Example:
        >>> with AtomicOutput(Path("out.bag"), overwrite=False) as tmp:  # doctest: +SKIP
        ...     write_bag(tmp)
    """

    def __init__(
        self,
        final: str | Path,
        *,
        overwrite: bool = False,
        inputs: Iterable[str | Path] = (),
        companions: Iterable[str] = (),
        replaceable: Callable[[Path], str | None] | None = None,
        fix: str = OUTPUT_PATH_FIX,
    ) -> None:
        self.final = Path(final).absolute()
        #: what the error of an output that cannot be created tells the user to do
        self.fix = fix
        self.replaceable = replaceable
        self.overwrite = overwrite
        self.inputs = [Path(p) for p in inputs]
        self.companions = [str(c) for c in companions]
        if any(Path(c).name != c or c in ("", ".", "..", self.final.name) for c in self.companions):
            raise OfflineError(f"companions of {self.final} must be other plain file names, got {self.companions}")
        reserved = (_SET_ASIDE, _STAGES, _SCRATCH, _MOVED_IN)
        if self.final.name in reserved or any(c in reserved for c in self.companions):
            raise OfflineError(f"{self.final}: an output may not be named {', '.join(reserved)}; choose another name")
        self.staging: Path | None = None
        self.committed = False
        #: whether `final` held something when opened (an earlier output that --overwrite replaces)
        self.replaces = False

    @property
    def path(self) -> Path:
        """The temporary path to write (not created; create it as a file or folder)."""
        if self.staging is None:
            raise OfflineError("AtomicOutput is not open")
        return self.staging / self.final.name

    def __enter__(self) -> Path:
        # first, so that an earlier output a killed --overwrite had set aside is back before it is checked
        _recover_stale_staging(self.final)
        check_output_path(self.final, overwrite=self.overwrite, inputs=self.inputs, replaceable=self.replaceable)
        self.replaces = self.final.is_symlink() or (
            self.final.exists() and not (self.final.is_dir() and not any(self.final.iterdir()))
        )
        self.staging = _make_staging(self.final, self.fix)
        return self.path

    @property
    def scratch(self) -> Path:
        """A folder for temporary files beside the output (in the staging folder; not renamed)."""
        if self.staging is None:
            raise OfflineError("AtomicOutput is not open")
        folder = self.staging / _SCRATCH
        folder.mkdir(exist_ok=True)
        return folder

    def commit(self) -> Path:
        """Move the finished output to its final name (replacing an allowed existing one).

        Returns:
            The final path.
        """
        if self.staging is None or not (self.path.exists() or self.path.is_symlink()):
            raise OfflineError(f"nothing was written for {self.final}")
        # it may have appeared meanwhile
        check_output_path(self.final, overwrite=self.overwrite, inputs=self.inputs, replaceable=self.replaceable)
        previous = self.staging / _SET_ASIDE
        previous.mkdir()
        done: list[tuple[Path, Path | None]] = []  # (final path, where its previous file was put aside)
        try:
            for name in [*self.companions, self.final.name]:  # the output itself last
                new, dest, aside = self.staging / name, self.final.parent / name, previous / name
                had = dest.exists() or dest.is_symlink()
                if had:
                    os.replace(dest, aside)  # aside, not deleted, until the new output is in place
                done.append((dest, aside if had else None))
                if new.exists() or new.is_symlink():
                    if not had and name != self.final.name:  # named first: a kill right after the move leaves it
                        with (self.staging / _MOVED_IN).open("a", encoding="utf-8") as moved_in:
                            moved_in.write(f"{name}\t{os.lstat(new).st_ino}\n")
                    os.replace(new, dest)
        except BaseException:
            for dest, aside in reversed(done):
                if dest.exists() or dest.is_symlink():
                    if dest.is_dir() and not dest.is_symlink():
                        shutil.rmtree(dest, ignore_errors=True)
                    else:
                        dest.unlink(missing_ok=True)
                if aside is not None:
                    os.replace(aside, dest)
            raise
        self.committed = True
        self._cleanup()
        return self.final

    def _cleanup(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            if exc_type is None and not self.committed:
                self.commit()
        finally:  # a commit that failed (a full disk) leaves no staging folder either
            self._cleanup()
        full = disk_full_error(exc, self.final, OUTPUT_FULL_FIX) if exc is not None else None
        if full is not None:  # a traceback from deep in a writer would hide what to do about it
            raise full from exc
        return False
