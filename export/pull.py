"""`vdepth-export pull NAME`: download a known release from the hub and import it into the model cache.

    vdepth-export pull vda-small                      # Apache-2.0: no licence flag needed
    vdepth-export pull dvd --accept-license           # CC-BY-NC-4.0 weights
    vdepth-export pull vda-small --revision v1.0      # a branch, tag or commit of the release's repository
    vdepth-node --ros-args -p model:=vda-small ...    # `model: NAME` resolves to the cached folder

Downloads go through `huggingface_hub.hf_hub_download`, so `HF_ENDPOINT` (mirrors), `HF_HUB_OFFLINE`,
`HF_TOKEN` (gated repositories) and proxies behave as in every other hub tool, and the files land in
the hub's own cache (`HF_HUB_CACHE`), shared with those tools (a killed pull's partial file there is
deleted by the next pull: `_remove_stale_partials`). Each file with a known sha256 (or size) is
checked before import; a mismatch removes the downloaded copy.
The import writes the model folder under a temporary name and renames it (`import_released`), so an
interrupted pull never leaves half a model in the cache. `release.json` in the folder records each
file's revision (the registry's, or `--revision`'s) and the commit it resolved to; a file taken at
another revision than the registry's has no known checksum and is imported unverified (its sha256
recorded). Offline, the error lists the files, their
URLs and the two ways to import them by hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vdepth_ros.errors import ConfigError, VdepthError
from vdepth_ros.offline.errors import OutputExistsError
from vdepth_ros.paths import not_a_model_folder
from vdepth_ros.runtime.provenance import cached_revisions
from vdepth_ros.runtime.registry import (
    CACHE_ENV,
    PROVENANCE_NAME,
    Release,
    ReleaseFile,
    cached_model_dir,
    get_release,
    parse_revisions,
    releases,
)
from vdepth_ros.runtime.trt_cache import sha256_of

if TYPE_CHECKING:  # the models package imports torch: a pull --list must not wait for it
    from vdepth_ros.models.identify import WrongCheckpointError

log = logging.getLogger(__name__)


class LicenseNotAcceptedError(VdepthError):
    """A non-commercial release was pulled without `--accept-license`."""


class DownloadError(VdepthError):
    """The hub cannot be reached (offline), refuses access, or a file fails its checksum."""


def _manual_steps(release: Release, output: Path, endpoint: str | None) -> str:
    """What to do without the network: the files (URLs) and the two ways to import them."""
    lines = [f"download these files of {release.name!r} by hand:"]
    lines += [f"  {f.url_at(endpoint)}" for f in release.files]
    lines.append(f"then either put them as DIR/<repo>/<file> ({', '.join(f.local_path for f in release.files)})")
    default = get_release(release.name).files
    revisions = "".join(f" --revision {f.repo}={f.revision}" for f in dict.fromkeys(release.files) if f not in default)
    lines.append(f"and run `vdepth-export pull {release.name} --from DIR{revisions}`, or run")
    paths = [s.split(":", 1)[1] if ":" in s else f"<folder of {s}>" for s in release.sources]
    lines.append(f"  {release.import_command(paths, output)}")
    return "\n".join(lines)


def _check_file(
    path: Path, spec: ReleaseFile, remove_on_mismatch: bool, endpoint: str | None = None, registered: str | None = None
) -> str:
    """Size and sha256 against the registry (where known); returns the sha256. A mismatching
    download is deleted from the hub cache, so the next pull fetches it again. `registered`: the
    registry's sha256 of this file at the registry's revision, for a file taken at another one
    (`--revision`): the same bytes are verified, other bytes imported unverified (the revision's own)."""
    got = sha256_of(path)
    problem = None
    if spec.size is not None and path.stat().st_size != spec.size:
        problem = f"size {path.stat().st_size} bytes, expected {spec.size}"
    elif spec.sha256 is not None and got != spec.sha256:
        problem = f"sha256 {got}, expected {spec.sha256}"
    if problem is None:
        if spec.sha256 is None and registered is not None and got == registered:
            log.info("%s@%s: the registry's file (sha256 %s verified)", spec.local_path, spec.revision, got)
        elif spec.sha256 is None:
            other = " (another file than the registry's revision has)" if registered is not None else ""
            log.warning("%s: no known sha256 to check against%s (imported unverified, sha256 %s)", spec.local_path,
                        other, got)  # fmt: skip
        return got
    where = f"{spec.repo}/{spec.filename}"
    if owners := _releases_with_file(got):  # another release's file under this name (put in the wrong folder)
        problem += f": it is {_file_named(got)}, the file of {' or '.join(owners)} (`vdepth-export pull {owners[0]}`)"
    if remove_on_mismatch:
        commit = _commit_of(path, spec)
        real = path.resolve()
        path.unlink(missing_ok=True)
        real.unlink(missing_ok=True)  # the hub cache's blob behind the snapshot link
        at = f"commit {commit}" if commit else "another commit"
        history = spec.url_at(endpoint).replace(
            f"/resolve/{spec.revision}/{spec.filename}", f"/commits/{spec.revision}"
        )
        raise DownloadError(
            f"{where}: {problem}; the downloaded copy was removed and nothing was imported. Pull again (a transfer "
            f"damaged on the way differs each time); if it fails the same way, {spec.repo}@{spec.revision} is now "
            f"{at} and its file is not the one this registry checks: see {history}; to take that file anyway, "
            f"unverified (its sha256 recorded), pull with --revision {spec.repo}={commit or 'COMMIT'}"
        )
    if spec.size is not None and path.stat().st_size < spec.size:
        problem += " (a cut-off download?)"
    raise DownloadError(
        f"{path} ({where}): {problem}; nothing was imported: put the release's own file there ({spec.url_at(endpoint)})"
    )


def _releases_with_file(sha256: str) -> list[str]:
    """The releases one of whose registered files has this sha256 (any file, whatever it is called now)."""
    return [r.name for r in releases().values() if any(f.sha256 == sha256 for f in r.files)]


def _file_named(sha256: str) -> str:
    """The registered file name of the file with this sha256."""
    return next(f.filename for r in releases().values() for f in r.files if f.sha256 == sha256)


def _check_writable(output: Path, overwrite: bool) -> None:
    """Before any download: the model folder may be written (no user file or folder in the way,
    the cache folder writable), so a pull never fetches gigabytes only to fail at the import."""
    from vdepth_ros.offline.atomic import check_output_path

    check_output_path(output, overwrite=overwrite, replaceable=not_a_model_folder)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryDirectory(dir=output.parent, prefix=".vdepth-write-test-").cleanup()
    except OSError as err:
        why = "a file, not a folder" if output.parent.is_file() else (err.strerror or err)
        raise DownloadError(
            f"cannot write to the model cache {output.parent} ({why}): pass --cache DIR or set "
            f"${CACHE_ENV} to a writable folder"
        ) from None


def at_revisions(release: Release, revisions: Sequence[str]) -> Release:
    """`release` with `--revision` applied: `REV` (a branch, tag or commit; every file, when the
    release comes from one repository) or `REPO=REV` for one of its repositories. A file moved to
    another revision than the registry's loses its known sha256 and size (they are the registry
    revision's): it is imported unverified, its sha256 recorded.

    Raises:
        ConfigError: an empty revision, `REV` for a release from several repositories, a repository the
            release does not use, or two revisions for one repository.
    """
    chosen = parse_revisions(revisions, sorted({f.repo for f in release.files}), release.name)
    files = tuple(
        f if chosen.get(f.repo, f.revision) == f.revision
        else dataclasses.replace(f, revision=chosen[f.repo], sha256=None, size=None)
        for f in release.files
    )  # fmt: skip
    return dataclasses.replace(release, files=files)


def _revision_differs(folder: Path, release: Release) -> str | None:
    """What the cached `folder` holds when a file of `release` is asked at another revision, or None."""
    try:
        recorded = json.loads((folder / PROVENANCE_NAME).read_text())["files"]
        have = {(str(f["repo"]), str(f["filename"])): {f.get("revision"), f.get("commit")} for f in recorded}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        have = {}
    for spec in release.files:
        if spec.revision not in have.get((spec.repo, spec.filename), set()):
            held = ", ".join(f"{r}@{v}" for r, v in cached_revisions(folder).items()) or "a revision not recorded"
            return f"{folder} holds {release.name} at {held}, not {spec.repo}@{spec.revision}"
    return None


def _commit_of(path: Path, spec: ReleaseFile) -> str | None:
    """The commit a hub download resolved to: `.../snapshots/<commit>/<filename>` in the hub cache."""
    snapshot = path
    for _ in Path(spec.filename).parts:
        snapshot = snapshot.parent
    return snapshot.name if snapshot.parent.name == "snapshots" else None


#: errors of the local disk, not of the network: full, read-only, no permission, a file in the way
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST}


def _damage(folder: Path) -> str | None:
    """Why a model folder in the cache cannot be loaded (config.json or the weights' header), or None."""
    from vdepth_ros.models import read_config, read_weight_shapes

    try:
        read_config(folder)
        read_weight_shapes(folder)
    except VdepthError as err:
        return str(err).split("; ")[0]
    return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """OSError, plus the hub client's HTTP transport errors (httpx2 in huggingface_hub >= 1)."""
    try:
        import httpx2

        return (OSError, httpx2.TransportError)
    except ImportError:  # older huggingface_hub on requests: its errors are OSErrors
        return (OSError,)


def _quiet_http_logs() -> None:
    """httpx logs every request at INFO; a pull prints its own outcome. huggingface_hub prints its
    warnings (retries, resumed downloads) with its own handler: not again through the root logger."""
    from huggingface_hub.utils import logging as hf_logging

    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    hf_logging.disable_propagation()


def _hub_answer(err: BaseException, endpoint: str | None) -> str:
    """What stopped the download, from the hub client's error and its causes: offline mode, an HTTP
    status the hub (or a mirror, a proxy) answered, or no connection."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    where = (endpoint or constants.ENDPOINT).rstrip("/")
    chain: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and len(chain) < 5:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if constants.HF_HUB_OFFLINE or any(isinstance(c, OfflineModeIsEnabled) for c in chain):
        return "HF_HUB_OFFLINE is set and the file is not in the hub cache: unset it to download"
    for c in chain:
        response = getattr(c, "response", None) if isinstance(c, HfHubHTTPError) else None
        if response is not None:
            return f"the hub at {where} answered HTTP {response.status_code} {response.reason_phrase}".rstrip()
    return f"cannot reach the hub at {where} ({chain[-1].__class__.__name__}: {str(chain[-1]).splitlines()[0][:200]})"


def _token_in_use() -> str | None:
    """Where the token the hub client sends comes from (`HF_TOKEN`, or the one `hf auth login` saved), or None
    when it sends none."""
    import os

    from huggingface_hub import constants, get_token

    if constants.HF_HUB_DISABLE_IMPLICIT_TOKEN:
        return None
    try:
        token = get_token()
    except Exception:  # an OIDC exchange that failed: the download said so already
        return None
    if token is None:
        return None
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return "the token in HF_TOKEN"
    return f"the token `hf auth login` saved ({constants.HF_TOKEN_PATH})"


def _login_refused(err: BaseException, repo: str, endpoint: str | None) -> str | None:
    """The hub's 401 or 403 (anywhere in the error's causes) in terms of the login, or None for another error.

    Before, a wrong or expired HF_TOKEN (401 'Invalid credentials', no error code) read 'download of URL failed:
    Client error' and a token without access (403) 'the hub answered HTTP 403', each followed by steps to
    download the files by hand, which need the same access; neither said whether a token was sent, nor from where.
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    chain: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and len(chain) < 5:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    answer = next((c for c in chain if isinstance(c, HfHubHTTPError) and c.response is not None), None)
    status = answer.response.status_code if answer is not None else None
    if status not in (401, 403):
        return None
    where = (endpoint or constants.ENDPOINT).rstrip("/")
    said = f' ("{answer.server_message.strip()}")' if answer.server_message else ""
    page = f"https://huggingface.co/{repo}"
    gated = any(isinstance(c, GatedRepoError) for c in chain)
    head = f"the hub at {where} answered HTTP {status} {answer.response.reason_phrase}{said} for {repo}"
    token = _token_in_use()
    if token is None:
        what = (
            "it is gated" if gated
            else "it is private or gated (the hub answers 401 for a missing repository too)" if status == 401
            else "the hub refuses it without a login"
        )  # fmt: skip
        accept = f"accept its licence on {page}, then " if gated else ""
        return (
            f"{head}: no token was sent (HF_TOKEN is unset and `hf auth login` saved none, or "
            f"HF_HUB_DISABLE_IMPLICIT_TOKEN is set) and {what}: {accept}log in with `hf auth login` or HF_TOKEN "
            "(a read token of an account that may read it)"
        )
    if status == 401 and not gated:
        return (
            f"{head}: {token} was refused (wrong, expired or revoked): make a new read token at "
            "https://huggingface.co/settings/tokens and set HF_TOKEN to it, or `hf auth login` again"
        )
    return (
        f"{head}: {token} was accepted but may not read it: accept the repository's licence on {page} with "
        "that token's account (a gated repository), and a fine-grained token needs read access to public gated "
        "repositories (or to this one) in its settings, https://huggingface.co/settings/tokens"
    )


def _check_access(release: Release, endpoint: str | None) -> None:
    """Before any download, one HEAD request per file of a release from several repositories that the hub cache
    does not hold: a repository the login may not read (DepthCrafter's SVD-XT is gated) was refused only after
    the other repositories' gigabytes had been downloaded. A file in the hub cache is not asked (the hub client
    takes the cached copy when the hub refuses it). Any other answer (offline, unreachable, a missing file) is
    left to the download, which reports it; the first such answer ends the check (no waiting on each file)."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

    if constants.HF_HUB_OFFLINE or len({f.repo for f in release.files}) < 2:
        return
    for spec in release.files:
        if _in_hub_cache(spec):
            continue
        url = hf_hub_url(spec.repo, spec.filename, revision=spec.revision, endpoint=endpoint)
        try:
            get_hf_file_metadata(url, endpoint=endpoint)
        except _transport_errors() as err:  # the hub client's HTTP errors are OSErrors
            if (refused := _login_refused(err, spec.repo, endpoint)) is not None:
                raise DownloadError(f"{refused}; nothing was downloaded") from None
            return


def _download(spec: ReleaseFile, release: Release, output: Path, endpoint: str | None, asked: bool) -> Path:
    """`spec` from the hub into its cache; `asked`: its revision came from `--revision`."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    manual = _manual_steps(release, output, endpoint)
    try:
        try:
            return Path(hf_hub_download(spec.repo, spec.filename, revision=spec.revision, endpoint=endpoint))
        except OSError as err:  # the hub client's HTTP errors are OSErrors
            if (refused := _login_refused(err, spec.repo, endpoint)) is not None:
                raise DownloadError(refused) from None
            raise
    except GatedRepoError as err:  # without an HTTP answer (a client that raises it by itself)
        raise DownloadError(
            f"{spec.repo} is gated: accept its licence on https://huggingface.co/{spec.repo} and log in "
            f"(`hf auth login` or HF_TOKEN). ({err.__class__.__name__})"
        ) from None
    except RepositoryNotFoundError as err:  # 404, or 401: private, or a wrong/expired token
        raise DownloadError(
            f"{_hub_answer(err, endpoint)}: no repository {spec.repo} visible with this login. If it is private "
            "or gated, or HF_TOKEN is wrong or expired, log in (`hf auth login` or HF_TOKEN); otherwise the "
            "registry entry may be out of date"
        ) from None
    except (RevisionNotFoundError, EntryNotFoundError) as err:
        if isinstance(err, LocalEntryNotFoundError):  # offline, or the hub unreachable or answering an error
            raise DownloadError(f"{_hub_answer(err, endpoint)}.\n{manual}") from None
        if asked:
            what = f"no revision {spec.revision!r} of {spec.repo}" if isinstance(err, RevisionNotFoundError) else (
                f"no {spec.filename} in {spec.repo}@{spec.revision}")  # fmt: skip
            raise DownloadError(
                f"the hub has {what} ({err.__class__.__name__}): --revision takes a branch, tag or commit of "
                f"{spec.repo} that holds the release's files"
            ) from None
        raise DownloadError(
            f"the hub has no {spec.filename} in {spec.repo}@{spec.revision} ({err.__class__.__name__}); "
            "the registry entry may be out of date"
        ) from None
    except (OfflineModeIsEnabled, *_transport_errors()) as err:  # offline, refused, kept failing mid-file
        if isinstance(err, OSError) and err.errno in _STORAGE_ERRNOS:  # the local disk, not the network
            from huggingface_hub import constants

            raise DownloadError(
                f"cannot write the hub cache {constants.HF_HUB_CACHE} ({err.strerror}: {err.filename}): free space "
                "there, or set HF_HUB_CACHE (or HF_HOME) to a writable folder with room for the release"
            ) from None
        raise DownloadError(f"download of {spec.url_at(endpoint)} failed: {err}\n{manual}") from None


#: huggingface_hub's per-process partial download `<blob>.<8 hex>.incomplete` (never resumed: each
#: download writes its own); an older client's resumable `<blob>.incomplete` does not match
_PARTIAL = re.compile(r"([0-9a-f]+)\.[0-9a-f]{8}\.incomplete")


def _remove_stale_partials(release: Release) -> None:
    """Delete the partial downloads a killed pull left in the hub cache for `release`'s repositories.

    huggingface_hub downloads each file to a per-process `<blob>.<id>.incomplete` and deletes it when the
    download fails, but a killed process (SIGKILL, `docker stop`'s timeout, the OOM killer, a power cut)
    deletes nothing, and no later download reuses it: every such pull left up to a whole file (gigabytes
    on a robot's disk) for good. A partial whose download is still running (its blob's lock is held
    by another process) is kept.
    """
    from filelock import FileLock, Timeout
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    cache = Path(constants.HF_HUB_CACHE)
    for repo in sorted({f.repo for f in release.files}):
        folder = repo_folder_name(repo_id=repo, repo_type="model")
        try:
            partials = [(p, m[1]) for p in (cache / folder / "blobs").iterdir() if (m := _PARTIAL.fullmatch(p.name))]
        except OSError:
            continue
        for partial, blob in partials:
            lock = cache / ".locks" / folder / f"{blob}.lock"
            try:
                with FileLock(lock, timeout=0):  # the lock huggingface_hub holds while it downloads
                    size = partial.stat().st_size
                    partial.unlink()
            except (Timeout, OSError):  # downloading now, or not ours to remove
                continue
            log.info("removed %s (%d bytes), left by an interrupted download", partial, size)


def _fetch(
    release: Release, output: Path, from_dir: Path | None, endpoint: str | None, asked: frozenset[ReleaseFile]
) -> dict[ReleaseFile, tuple[Path, str]]:
    """Every file of the release on local disk (from `from_dir`, else downloaded), with its sha256;
    `asked`: the files whose revision came from `--revision` (checked against the registry's sha256 of
    the file all the same: a pinned commit holding the registry's file is verified)."""
    registry = {(f.repo, f.filename): f.sha256 for f in get_release(release.name).files}
    paths: dict[ReleaseFile, tuple[Path, str]] = {}
    if from_dir is None:
        _remove_stale_partials(release)
        _check_access(release, endpoint)
    for spec in release.files:
        if from_dir is not None:
            path = _local_copy(from_dir, spec, release)
            registered = registry.get((spec.repo, spec.filename))
            paths[spec] = (path, _check_file(path, spec, remove_on_mismatch=False, registered=registered))
        else:
            path = _download(spec, release, output, endpoint, spec in asked)
            damage = _not_as_hub_sent(path)
            if damage is not None:  # e.g. a power cut after the download: the hub client would reuse it
                log.warning("%s in the hub cache is damaged (%s): downloading it again", spec.local_path, damage)
                _remove_from_hub_cache(path)
                path = _download(spec, release, output, endpoint, spec in asked)
                damage = _not_as_hub_sent(path)
                if damage is not None:
                    _remove_from_hub_cache(path)
                    raise DownloadError(
                        f"{spec.url_at(endpoint)} arrived damaged twice ({damage}); the copy was removed and nothing "
                        "was imported: pull again, or check what answers for the hub (a proxy, a mirror in HF_ENDPOINT)"
                    )
            registered = registry.get((spec.repo, spec.filename))
            paths[spec] = (path, _check_file(path, spec, True, endpoint=endpoint, registered=registered))
    return paths


def _local_copy(from_dir: Path, spec: ReleaseFile, release: Release) -> Path:
    """`spec`'s file under `pull --from DIR`, in any of the layouts a hand download leaves:
    `DIR/<repo>/<file>`; `DIR/<file>` (`hf download REPO --local-dir DIR`; when no other file of the
    release has that name); a hub cache copied from another machine (`DIR` = its `hub/` folder, or the
    `HF_HOME` holding it: `models--<owner>--<name>/snapshots/<commit of the revision>/<file>`, or that
    `models--<owner>--<name>` folder itself); or `from_dir`
    itself, a file, for a release of one file.

    Raises:
        FileNotFoundError: in none of them (the message names each path tried).
    """
    from huggingface_hub.file_download import repo_folder_name

    if from_dir.is_file():  # the one file a user downloaded, given as it is: checked like any other
        if len(release.files) == 1:
            return from_dir
        raise FileNotFoundError(
            f"--from {from_dir} is a file; {release.name} has {len(release.files)} files: give the folder that holds "
            f"them ({', '.join(f.local_path for f in release.files)})"
        )
    if not from_dir.exists():
        raise FileNotFoundError(f"--from {from_dir} does not exist: give the folder holding {spec.local_path}")
    tried = [from_dir / spec.local_path]
    if sum(f.filename == spec.filename for f in release.files) == 1:
        tried.append(from_dir / spec.filename)
    folder = repo_folder_name(repo_id=spec.repo, repo_type="model")
    for hub in (from_dir, from_dir / "hub", *([from_dir.parent] if from_dir.name == folder else [])):
        repo = hub / folder
        try:
            commit = (repo / "refs" / spec.revision).read_text().strip()
        except (OSError, ValueError):
            commit = spec.revision  # a commit, or absent
        tried.append(repo / "snapshots" / commit / spec.filename)
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{spec.repo}/{spec.filename} not found under --from {from_dir}; looked for "
        + ", ".join(str(p) for p in dict.fromkeys(tried))
    )


def _remove_from_hub_cache(path: Path) -> None:
    """A downloaded file out of the hub cache: its snapshot link and the blob behind it (so the next
    download fetches it again instead of reusing it)."""
    real = path.resolve()
    path.unlink(missing_ok=True)
    real.unlink(missing_ok=True)


_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_SHA1 = re.compile(r"[0-9a-f]{40}")


def _not_as_hub_sent(path: Path) -> str | None:
    """How a downloaded file differs from what the hub said it is, or None. The hub cache names each
    blob by the hub's ETag: the sha256 of an LFS file (the weights), the git blob sha1 of a small
    file. A blob damaged after its download (a power cut before the disk wrote it: zero bytes or
    zeros; a full disk) keeps its name, and the hub client hands it out again on every pull."""
    real = path.resolve()
    name = real.name
    if _SHA256.fullmatch(name):
        got = sha256_of(real)
    elif _GIT_SHA1.fullmatch(name) and real.stat().st_size < 10_000_000:
        data = real.read_bytes()
        git = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
        got = name if hashlib.sha1(data, usedforsecurity=False).hexdigest() == name else git  # a mirror's plain sha1
    else:
        return None
    return None if got == name else f"{real.stat().st_size} bytes whose checksum is not the hub's {name}"


def _sources(release: Release, paths: dict[ReleaseFile, tuple[Path, str]]) -> list[Path]:
    """The import sources: `repo:file` -> that file, `repo` -> the folder its files were put in."""
    out = []
    for source in release.sources:
        repo, _, filename = source.partition(":")
        found = [(s, p) for s, (p, _sha) in paths.items() if s.repo == repo and filename in ("", s.filename)]
        if not found:
            raise ConfigError(f"registry entry {release.name!r}: source {source!r} matches none of its files")
        spec, path = found[0]
        out.append(path if filename else Path(str(path)[: -len(spec.filename)].rstrip("/")))
    return out


def pull(
    name: str,
    *,
    cache: str | Path | None = None,
    accept_license: bool = False,
    overwrite: bool = False,
    from_dir: str | Path | None = None,
    endpoint: str | None = None,
    revisions: Sequence[str] = (),
) -> Path:
    """Download (or take from `from_dir`) release `name`, check it and import it into the model cache.

    Args:
        name: registry name (`vdepth_ros.runtime.registry.releases()`).
        cache: model cache folder (default `model_cache_dir()`); the model goes to `cache/name`.
        accept_license: required for non-commercial releases.
        overwrite: replace a model already in the cache.
        from_dir: use files already on disk, laid out as `DIR/<repo>/<filename>`, instead of the hub.
        endpoint: hub URL (default: `HF_ENDPOINT`, else huggingface.co).
        revisions: `--revision` values (`at_revisions`): `REV` or `REPO=REV`, a branch, tag or commit;
            with `from_dir`, the revision its files are (recorded, not verified).

    Returns:
        The model folder; already there (and `overwrite` false) -> returned without downloading.

    Raises:
        ConfigError: unknown name, a release with no public download, or a `revisions` value that
            does not fit the release.
        LicenseNotAcceptedError: non-commercial licence without `accept_license`.
        DownloadError: offline (the message lists the manual steps), gated, missing, bad checksum,
            or a model cache that cannot be written (checked before downloading).
        OutputExistsError: something else is at the model's folder, or the release at another
            revision, and `overwrite` is false (checked before downloading).
        ModelLoadError: the files do not fit the family (from the importer).
    """
    from vdepth_export.import_released import import_released

    from vdepth_ros.models.identify import WrongCheckpointError

    _refuse_a_family_without_release(name)
    registered = get_release(name)
    output = cached_model_dir(name, cache)
    if not registered.files:
        raise ConfigError(f"{name} has no public download. {registered.notes}".replace("<cache>", str(output.parent)))
    release = at_revisions(registered, revisions)
    asked = frozenset(f for f in release.files if f not in registered.files)
    if release.non_commercial and not accept_license:
        pages = ", ".join(sorted({f"https://huggingface.co/{f.repo}" for f in release.files})) or "see docs/models.md"
        raise LicenseNotAcceptedError(
            f"{name} is released under {release.license}, which does not allow commercial use. Read the "
            f"licence ({pages}) and pass --accept-license to download it."
        )
    if (output / "config.json").is_file() and not overwrite:
        damage = _damage(output)
        other = _revision_differs(output, release) if revisions else None
        if other is not None:
            raise OutputExistsError(f"{other}: pass --overwrite to replace it")
        if damage is None:
            held = ", ".join(f"{r}@{v}" for r, v in cached_revisions(output).items())
            log.info("%s is already in the model cache: %s%s (pass --overwrite to pull it again)", name, output,
                     f" ({held})" if held else "")  # fmt: skip
            return output
        if not (output / PROVENANCE_NAME).is_file():  # imported there by hand: the user's to replace
            raise DownloadError(f"{output} is damaged ({damage}): pass --overwrite to replace it with {name}")
        log.warning("%s in the model cache is damaged (%s): pulling it again", output, damage)
        overwrite = True  # a folder pull wrote, unusable as it is
    _quiet_http_logs()  # imports the hub client: without the `ml` extra, fail before the cache is touched
    _check_writable(output, overwrite)
    cached_before = _repos_in_hub_cache(release) if from_dir is None else set()
    paths = _fetch(release, output, Path(from_dir) if from_dir is not None else None, endpoint, asked)
    provenance = {
        "name": release.name,
        "family": release.family,
        "license": release.license,
        "files": [
            {
                "repo": s.repo,
                "filename": s.filename,
                "revision": s.revision,
                "commit": _commit_of(p, s),
                "sha256": sha,
            }
            for s, (p, sha) in paths.items()
        ],
    }
    try:
        folder = import_released(
            release.family,
            _sources(release, paths),
            output,
            encoder=release.encoder,
            overrides=dict(release.overrides),
            variant=release.variant,
            overwrite=overwrite,
            extra_files={PROVENANCE_NAME: json.dumps(provenance, indent=2) + "\n"},
        )
        if from_dir is None:
            _note_hub_copies(name, [(s.repo, p) for s, (p, _) in paths.items()], cached_before)
        return folder
    except WrongCheckpointError as err:
        raise _not_the_release(err, release, paths, from_dir, endpoint) from None
    except OutputExistsError:
        if not _pulled_meanwhile(output, release):
            raise
        log.info("%s was pulled into the model cache by another process meanwhile: %s", name, output)
        return output


def _refuse_a_family_without_release(name: str) -> None:
    """`pull onestep` (or `vda_lite`): a model family whose weights no paper released, asked by its family name,
    was 'unknown model' with a list of releases that did not say why it is missing, nor what to do."""
    from vdepth_ros.models import MODEL_FAMILIES

    known = releases()
    if name in known or name not in MODEL_FAMILIES or any(r.family == name for r in known.values()):
        return
    raise ConfigError(
        f"{name} is a model family whose weights were never released, so there is nothing to pull: train it "
        f"(training/README.md, configs for {name}) and give its run's final/ folder as model:; the releases: "
        f"{', '.join(sorted(n for n, r in known.items() if r.files))}"
    )


def _not_the_release(
    err: WrongCheckpointError,
    release: Release,
    paths: dict[ReleaseFile, tuple[Path, str]],
    from_dir: str | Path | None,
    endpoint: str | None,
) -> WrongCheckpointError:
    """A release file that is another family's, size's or part's checkpoint, in the release's terms: which
    of its files, what it is instead, whose release that is, and where the right one comes from (the
    importer's own fix, an `--encoder` or another import command, is no option of `pull`)."""
    from vdepth_ros.models.identify import ENCODER_WIDTHS, WrongCheckpointError

    spec = next((s for s, (p, _) in paths.items() if str(p) == err.path), None)
    label = f"{spec.repo}/{spec.filename} ({err.path})" if spec is not None else err.path
    found = err.found

    def width(r: Release) -> int | None:  # the DINOv2 width a release is imported at
        return r.overrides.get("hidden_size", ENCODER_WIDTHS.get(r.encoder or ""))

    owners = [
        r.name
        for r in releases().values()
        if r.files and r.family == found.family and (found.vit_width is None or width(r) == found.vit_width)
    ]
    whose = f"; it is a file of {' or '.join(owners)}" if owners and release.name not in owners else ""
    if from_dir is not None:
        right = spec.url_at(endpoint) if spec is not None else "the release's file"
        fix = f"the file under --from {from_dir} is not {release.name}'s: put its own file there ({right})"
        if whose:
            fix += f"{whose} (`vdepth-export pull {owners[0]} --from DIR`)"
    else:
        where = spec.url_at(endpoint) if spec is not None else "the hub"
        fix = (
            f"{where} is not the file this registry entry expects: the entry may be out of date, or a mirror "
            f"(HF_ENDPOINT) serves another file under that name{whose}"
        )
    return WrongCheckpointError(
        f"{label}: expected {err.expected.describe()}, found {found.describe()}; nothing was imported: {fix}",
        expected=err.expected,
        found=found,
        path=err.path,
    )


def _in_hub_cache(spec: ReleaseFile) -> bool:
    """Whether the hub cache holds `spec` at its revision (huggingface_hub's `try_to_load_from_cache`)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(spec.repo, spec.filename, revision=spec.revision), str)


def _repos_in_hub_cache(release: Release) -> set[str]:
    """The repositories of `release` all of whose files the hub cache already holds (another tool's download,
    the authors' code's, or an earlier pull's)."""
    return {f.repo for f in release.files} - {f.repo for f in release.files if not _in_hub_cache(f)}


def _note_hub_copies(
    name: str, files: list[tuple[str, Path]], cached_before: frozenset[str] | set[str] = frozenset()
) -> None:
    """Say that the downloads stay in the hub cache, beside the imported model (a second copy as large as
    the release, which the model does not read), their size, and the command that frees them. A repository
    the hub cache held before this pull is named as taken from there: freeing it would delete the copy
    another tool (the authors' code) reads, and this pull did not put it there."""
    from huggingface_hub import constants

    if taken := sorted({repo for repo, _ in files} & cached_before):
        log.info("%s: taken from the hub cache %s, where it already was (not downloaded)", ", ".join(taken),
                 constants.HF_HUB_CACHE)  # fmt: skip
    files = [(repo, path) for repo, path in files if repo not in cached_before]
    if not files:
        return
    size = 0
    for _, path in files:
        with contextlib.suppress(OSError):
            size += path.stat().st_size
    amount = f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
    free = " and ".join(f"`hf cache rm model/{r}`" for r in sorted({repo for repo, _ in files}))
    log.info(
        "the download (%s) also stays in the hub cache %s; %s does not read it, later pulls (--overwrite) do: "
        "free it with %s", amount, constants.HF_HUB_CACHE, name, free,
    )  # fmt: skip


def _pulled_meanwhile(folder: Path, release: Release) -> bool:
    """Whether `folder`, absent when this pull checked the cache, now holds `release` at the asked
    revisions, complete: another `pull` of the same release (a second terminal, a provisioning script
    run twice) renamed it into place while this one downloaded or imported."""
    return (
        (folder / PROVENANCE_NAME).is_file() and _damage(folder) is None and _revision_differs(folder, release) is None
    )


def describe_releases(cache: str | Path | None = None) -> list[dict[str, object]]:
    """Every release with its licence and whether it is in the model cache `cache` (default
    `model_cache_dir()`) (`pull --list [--cache DIR]`)."""
    return [
        {
            "name": r.name,
            "family": r.family,
            "title": r.title,
            "license": r.license,
            "needs_accept_license": r.non_commercial,
            "downloadable": bool(r.files),
            "cached": (cached_model_dir(r.name, cache) / "config.json").is_file(),
            "cached_revisions": cached_revisions(cached_model_dir(r.name, cache)),
        }
        for r in releases().values()
    ]


__all__ = [
    "DownloadError",
    "LicenseNotAcceptedError",
    "at_revisions",
    "cached_revisions",
    "describe_releases",
    "pull",
    "sha256_of",
]
