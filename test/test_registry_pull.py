"""`vdepth-export pull` end to end against a local hub on 127.0.0.1 (huggingface_hub's URL layout).

The server answers `HEAD/GET /{repo}/resolve/{revision}/{filename}` as the hub does for an LFS file:
`X-Repo-Commit`, `ETag` (the sha256), `Content-Length`, `Accept-Ranges`, 206 for a `Range` request,
404 with `X-Error-Code: EntryNotFound` otherwise. The served weights are a tiny random VDA in the
released key layout. Scenarios: success through the console script with `HF_ENDPOINT` (and
`HF_HUB_OFFLINE` unset in that process only), then `model: NAME` in vdepth-video; a download cut
mid-file (resumed with a Range request) and one that keeps failing (clean error, nothing imported);
a wrong sha256; an unknown name; a licence not accepted; offline.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch
from vdepth_export.cli import main as export_main
from vdepth_export.pull import DownloadError, LicenseNotAcceptedError, at_revisions, pull

from vdepth_ros.errors import ConfigError, ModelLoadError
from vdepth_ros.models import load_model
from vdepth_ros.models.vda import VideoDepthAnything
from vdepth_ros.offline.errors import OutputExistsError
from vdepth_ros.runtime.registry import CACHE_ENV, PROVENANCE_NAME, REGISTRY_ENV

REPO = "test-org/Video-Depth-Anything-Tiny"
FILE = "video_depth_anything_vits.pth"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
COMMIT_V2 = "fedcba9876543210fedcba9876543210fedcba98"


@dataclass
class Hub:
    """What the local hub serves and what it was asked."""

    files: dict[tuple[str, str], bytes]
    cut: dict[str, int] = field(default_factory=dict)  # filename -> GETs to cut halfway (-1: always)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""
    status: tuple[int, str] | None = None  # answer every request with (HTTP status, X-Error-Code or "")
    error_message: str = ""  # the X-Error-Message of those answers
    authorizations: list[str | None] = field(default_factory=list)  # each request's Authorization header
    gated: set[str] = field(default_factory=set)  # repositories answering 401 GatedRepo
    stall: threading.Event | None = None  # GETs send half the body, then wait for this event
    #: other revisions (a tag, a branch, or the commit itself) -> (their commit, their files); main is `files`
    revisions: dict[str, tuple[str, dict[tuple[str, str], bytes]]] = field(default_factory=dict)
    #: GETs wait until this many HEADs were asked (clients past their cache check), 60 s at most
    heads_before_get: int = 0
    heads_seen: threading.Event = field(default_factory=threading.Event)


def _lookup(hub: Hub, path: str) -> tuple[str, str, bytes | None, str]:
    """`/{repo}/resolve/{revision}/{filename}` -> (the revision's commit, filename, the file or None,
    the X-Error-Code of a 404). The revision is main, its commit, or one of `hub.revisions` (by name or commit)."""
    parts = path.split("?")[0].lstrip("/").split("/")
    repo, rest = "/".join(parts[:2]), parts[2:]
    known = {"main": (COMMIT, hub.files), COMMIT: (COMMIT, hub.files), **hub.revisions}
    known |= {commit: (commit, files) for commit, files in hub.revisions.values()}
    revision = unquote(rest[1]) if len(rest) > 1 else "main"
    if revision not in known:
        return "", "", None, "RevisionNotFound"
    commit, files = known[revision]
    filename = "/".join(rest[2:]) if rest[:1] == ["resolve"] else ""
    return commit, filename, files.get((repo, filename)), "EntryNotFound"


def _gate(hub: Hub, command: str) -> None:
    """`heads_before_get`: a GET waits until that many HEADs were asked (2 minutes at most)."""
    if command == "HEAD" and sum(m == "HEAD" for m, _, _ in hub.requests) >= hub.heads_before_get:
        hub.heads_seen.set()
    elif command == "GET" and hub.heads_before_get:
        hub.heads_seen.wait(120)


def _answer_error(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str]) -> None:
    """An error answer with no body and the given headers (those with a value)."""
    handler.send_response(status)
    for name, value in headers.items():
        if value:
            handler.send_header(name, value)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _serve(self, body: bool) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Range")))
            hub.authorizations.append(self.headers.get("Authorization"))
            _gate(hub, self.command)
            status = (401, "GatedRepo") if "/".join(self.path.lstrip("/").split("/")[:2]) in hub.gated else hub.status
            if status is not None:  # a mirror or proxy that answers with an error, or a gated repository
                _answer_error(self, status[0], {"X-Error-Code": status[1], "X-Error-Message": hub.error_message})
                return
            commit, filename, data, error = _lookup(hub, self.path)
            if data is None:
                self.send_response(404)
                self.send_header("X-Error-Code", error)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            if hub.stall is not None and self.command == "GET":
                self.wfile.write(data[start : start + (len(data) - start) // 2])
                self.wfile.flush()
                hub.stall.wait(60)
                self.close_connection = True
                return
            left = hub.cut.get(filename, 0)
            if left:
                hub.cut[filename] = left - 1 if left > 0 else left
                self.wfile.write(data[start : start + (len(data) - start) // 2])
                self.wfile.flush()
                self.close_connection = True  # the peer sees a short body
                return
            self.wfile.write(data[start:])

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

    return Handler


@pytest.fixture(scope="module")
def tiny() -> VideoDepthAnything:
    torch.manual_seed(4)  # a seed whose random tiny VDA gives a non-constant output
    return VideoDepthAnything(**VideoDepthAnything.tiny_config()).eval()


@pytest.fixture(scope="module")
def weights(tiny: VideoDepthAnything) -> bytes:
    buf = io.BytesIO()
    torch.save(tiny.released_state_dict(), buf)  # the release's key names
    return buf.getvalue()


@pytest.fixture
def hub(weights: bytes) -> Iterator[Hub]:
    state = Hub(files={(REPO, FILE): weights, ("depth-anything/Video-Depth-Anything-Small", FILE): weights})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights: bytes) -> dict[str, str]:
    """A registry file with the tiny release, and a cache and a hub cache under tmp_path."""
    entry = {"name": "vda-tiny-test", "family": "vda", "title": "tiny random VDA", "license": "apache-2.0",
             "non_commercial": False, "encoder": "vits", "overrides": VideoDepthAnything.tiny_config(),
             "files": [{"repo": REPO, "filename": FILE, "sha256": hashlib.sha256(weights).hexdigest(),
                        "size": len(weights)}],
             "sources": [f"{REPO}:{FILE}"]}  # fmt: skip
    (tmp_path / "registry.json").write_text(json.dumps([entry]))
    values = {REGISTRY_ENV: str(tmp_path / "registry.json"), CACHE_ENV: str(tmp_path / "cache"),
              "HF_HUB_CACHE": str(tmp_path / "hf")}  # fmt: skip
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", values["HF_HUB_CACHE"])  # read at import by the library
    return values


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE off for this test's in-process calls only (conftest sets it for the suite)."""
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", False)


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


@pytest.mark.slow
def test_pull_through_the_console_script_then_model_name_in_vdepth_video(
    hub: Hub, env: dict[str, str], tiny: VideoDepthAnything, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Path(sys.executable).parent / "vdepth-export"
    proc_env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    proc_env["HF_ENDPOINT"] = hub.url
    res = subprocess.run(
        [str(script), "pull", "vda-tiny-test"], env=proc_env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    folder = Path(env[CACHE_ENV]) / "vda-tiny-test"
    assert json.loads(res.stdout)["model"] == str(folder)
    assert {"config.json", "model.safetensors", PROVENANCE_NAME} <= {p.name for p in folder.iterdir()}
    provenance = json.loads((folder / PROVENANCE_NAME).read_text())
    assert provenance["files"][0]["sha256"] == hashlib.sha256(hub.files[(REPO, FILE)]).hexdigest()
    assert ("GET", f"/{REPO}/resolve/main/{FILE}", None) in hub.requests
    assert _leftovers(Path(env[CACHE_ENV])) == ["vda-tiny-test"]  # no temporary folder left
    frames = torch.rand(4, 3, 70, 98, generator=torch.Generator().manual_seed(0))
    expected = tiny.predict(frames)
    assert float(expected.std()) > 0 and torch.equal(load_model(folder).predict(frames), expected)
    # a second pull finds it in the cache and downloads nothing
    n = len(hub.requests)
    assert subprocess.run([str(script), "pull", "vda-tiny-test"], env=proc_env, timeout=300).returncode == 0
    assert len(hub.requests) == n
    # `--model NAME` in vdepth-video resolves to the cached folder (the node and vdepth-bag share this config path)
    import cv2
    import numpy as np

    from vdepth_ros.offline import video as videocli

    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (98, 70))
    for i in range(5):
        writer.write(np.full((70, 98, 3), 40 * i, np.uint8))
    writer.release()
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    backend: torch\n")
    out = tmp_path / "out"
    assert (
        videocli.main(
            [str(clip), "-o", str(out), "--model", "vda-tiny-test", "--params", str(params), "--no-progress", "--json"]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["frames_out"] == 5


def test_interrupted_download_resumes_or_fails_without_a_half_model(
    hub: Hub, env: dict[str, str], online: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.cut[FILE] = 1  # the first GET stops halfway: huggingface_hub retries (with a Range when it kept bytes)
    folder = pull("vda-tiny-test", endpoint=hub.url)
    assert (folder / "model.safetensors").is_file()
    assert sum(method == "GET" for method, _, _ in hub.requests) == 2, hub.requests
    cache = Path(env[CACHE_ENV])
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(cache.parent / "hf-empty"))  # nothing downloaded yet
    hub.cut[FILE] = -1  # every GET stops halfway: the pull fails after the library's retries
    with pytest.raises(DownloadError, match=r"download of .* failed"):
        pull("vda-tiny-test", endpoint=hub.url, overwrite=True, cache=cache / "other")
    assert not (cache / "other").exists() or _leftovers(cache / "other") == []


def test_wrong_hash_removes_the_download_and_imports_nothing(hub: Hub, env: dict[str, str], online: None) -> None:
    """The real vda-small entry has the release's size and sha256; the local hub serves other bytes under its
    name: those of another registered release's file (vda-tiny-test's), which the error names by its sha256."""
    with pytest.raises(
        DownloadError,
        match=r"size \d+ bytes, expected 116440756: it is video_depth_anything_vits.pth, the file of vda-tiny-test "
        r"\(`vdepth-export pull vda-tiny-test`\).*nothing was imported",
    ):
        pull("vda-small", endpoint=hub.url)
    assert _leftovers(Path(env[CACHE_ENV])) == []
    blobs = list(Path(env["HF_HUB_CACHE"]).rglob("blobs/*"))
    assert blobs == [], blobs  # the mismatching download was deleted, so a retry fetches it again


def test_a_release_file_replaced_upstream_names_the_commit_to_pin(
    hub: Hub, env: dict[str, str], online: None, weights: bytes
) -> None:
    """The authors re-upload a release file on main (a moved branch or tag): every pull failed its
    sha256 with 'the downloaded copy was removed and nothing was imported', and nothing said what the
    hub now holds or how to take it. The message names the commit main now is, its history page and
    the `--revision REPO=COMMIT` that imports it unverified, which then works."""
    release = json.loads(Path(env[REGISTRY_ENV]).read_text())
    release[0]["files"][0]["sha256"] = "0" * 64  # the registry's file, replaced upstream since
    release[0]["files"][0]["size"] = None
    Path(env[REGISTRY_ENV]).write_text(json.dumps(release))
    with pytest.raises(DownloadError) as err:
        pull("vda-tiny-test", endpoint=hub.url)
    msg = str(err.value)
    assert f"main is now commit {COMMIT}" in msg and f"{hub.url}/{REPO}/commits/main" in msg, msg
    fix = f"--revision {REPO}={COMMIT}"
    assert fix in msg, msg
    folder = pull("vda-tiny-test", endpoint=hub.url, revisions=[fix.split(" ")[1]])
    recorded = json.loads((folder / PROVENANCE_NAME).read_text())["files"][0]
    assert recorded["commit"] == COMMIT and recorded["sha256"] == hashlib.sha256(weights).hexdigest()


def test_unknown_name_and_licence_not_accepted_download_nothing(
    hub: Hub, env: dict[str, str], online: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="unknown model 'vda-smal'"):
        pull("vda-smal", endpoint=hub.url)
    # a family whose weights were never released (the one-step student) said only 'unknown model'
    with pytest.raises(ConfigError, match=r"onestep is a model family whose weights were never released.*train it"):
        pull("onestep", endpoint=hub.url)
    with pytest.raises(LicenseNotAcceptedError, match=r"cc-by-nc-4\.0.*--accept-license"):
        pull("vda-base", endpoint=hub.url)
    assert hub.requests == []
    assert export_main(["pull", "dvd"]) == 2
    assert "--accept-license" in capsys.readouterr().err
    assert export_main(["pull", "fiffdepth", "--accept-license"]) == 2
    assert "no public download" in capsys.readouterr().err
    assert export_main(["pull", "--list"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["vda-tiny-test"]["cached"] is False and listed["vda-base"]["needs_accept_license"] is True


def test_offline_names_the_files_and_the_import_command(env: dict[str, str], tmp_path: Path, weights: bytes) -> None:
    with pytest.raises(DownloadError) as err:  # HF_HUB_OFFLINE=1, as conftest sets it
        pull("vda-tiny-test")
    msg = str(err.value)
    assert f"https://huggingface.co/{REPO}/resolve/main/{FILE}" in msg
    assert f"vdepth-export import vda {FILE} -o {Path(env[CACHE_ENV]) / 'vda-tiny-test'} --encoder vits" in msg
    assert "vdepth-export pull vda-tiny-test --from DIR" in msg
    # the files placed by hand as the message says: --from DIR imports them, checked
    (tmp_path / "dl" / REPO).mkdir(parents=True)
    (tmp_path / "dl" / REPO / FILE).write_bytes(weights)
    assert (pull("vda-tiny-test", from_dir=tmp_path / "dl") / "config.json").is_file()


def test_a_cache_that_cannot_be_written_or_a_file_in_the_way_stops_before_downloading(
    hub: Hub, env: dict[str, str], online: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both used to download the release first; an unwritable cache then ended in an OSError
    traceback (`Read-only file system` / `Permission denied`), a user's file at the model's path
    in an OutputExistsError after the download."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(
        DownloadError, match=r"cannot write to the model cache .*--cache DIR or set \$VDEPTH_MODEL_CACHE"
    ):
        pull("vda-tiny-test", endpoint=hub.url, cache=blocker / "models")
    mine = Path(env[CACHE_ENV]) / "vda-tiny-test"
    mine.parent.mkdir(parents=True)
    mine.write_text("my notes")
    import huggingface_hub.constants as hf

    endpoint = hf.ENDPOINT
    hf.ENDPOINT = hub.url  # the CLI passes no endpoint: HF_ENDPOINT's value
    try:
        assert export_main(["pull", "vda-tiny-test"]) == 2
    finally:
        hf.ENDPOINT = endpoint
    err = capsys.readouterr().err
    assert "exists and is a file, not a model folder: it is kept" in err and err.count("\n") == 1
    assert mine.read_text() == "my notes"
    assert hub.requests == []  # nothing downloaded in either case


def test_hub_errors_say_what_the_hub_answered_and_where(
    hub: Hub, env: dict[str, str], online: None, tmp_path: Path
) -> None:
    """A mirror (HF_ENDPOINT) answering 404 without the hub's error headers used to be reported as
    'cannot reach the hub', with huggingface.co URLs to fetch by hand; a 401 (private repository,
    wrong or expired HF_TOKEN) as 'the registry entry may be out of date'."""
    hub.status = (404, "")
    with pytest.raises(DownloadError) as err:
        pull("vda-tiny-test", endpoint=hub.url)
    msg = str(err.value)
    assert f"{hub.url} answered HTTP 404" in msg and "cannot reach" not in msg, msg
    assert f"{hub.url}/{REPO}/resolve/main/{FILE}" in msg and "huggingface.co" not in msg, msg
    hub.status = (401, "RepoNotFound")
    with pytest.raises(DownloadError) as err:
        pull("vda-tiny-test", endpoint=hub.url)
    msg = str(err.value)
    assert "HTTP 401" in msg and "hf auth login" in msg and "HF_TOKEN" in msg, msg
    assert _leftovers(Path(env[CACHE_ENV])) == []


def test_offline_mode_is_named_as_the_reason(env: dict[str, str], hub: Hub) -> None:
    """HF_HUB_OFFLINE=1 (often set for robots) used to read as 'cannot reach the hub'."""
    with pytest.raises(DownloadError, match=r"HF_HUB_OFFLINE is set.*unset it to download"):
        pull("vda-tiny-test", endpoint=hub.url)
    assert hub.requests == []


def test_pull_into_another_cache_prints_next_steps_that_work(
    env: dict[str, str], tmp_path: Path, weights: bytes, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`pull NAME --cache mycache` used to print `"model": "mycache/NAME"` (relative to where pull ran)
    and `next: model: NAME`, which the node then refused: NAME is looked up in the default cache."""
    from vdepth_ros.runtime.registry import resolve_model

    (tmp_path / "dl" / REPO).mkdir(parents=True)
    (tmp_path / "dl" / REPO / FILE).write_bytes(weights)
    monkeypatch.chdir(tmp_path)
    assert export_main(["pull", "vda-tiny-test", "--from", "dl", "--cache", "mycache"]) == 0
    printed = json.loads(capsys.readouterr().out)
    folder = tmp_path / "mycache" / "vda-tiny-test"
    assert printed["model"] == str(folder)
    monkeypatch.chdir(tmp_path / "dl")  # the node runs elsewhere
    for step in printed["next"]:
        model = step.split("model: ", 1)[1] if step.startswith("model: ") else step.split("--model ", 1)[1]
        assert resolve_model(model) == str(folder), step
    assert any(f"{CACHE_ENV}={folder.parent}" in step for step in printed.get("or", [])), printed


def test_a_hub_cache_that_cannot_be_written_is_not_called_a_download_failure(
    hub: Hub, env: dict[str, str], online: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk (a multi-GB release on a Jetson's eMMC), a read-only or blocked HF_HUB_CACHE used to
    read 'download of URL failed: [Errno 20] Not a directory ...' followed by how to download by hand."""
    import errno

    import huggingface_hub.constants as hf

    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "afile" / "hub"))
    with pytest.raises(DownloadError) as err:
        pull("vda-tiny-test", endpoint=hub.url)
    msg = str(err.value)
    assert "cannot write the hub cache" in msg and "HF_HUB_CACHE" in msg and "by hand" not in msg, msg
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf2"))
    import huggingface_hub.file_download as fd

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "hf2" / "blob.incomplete"))

    monkeypatch.setattr(fd, "http_get", full)
    with pytest.raises(DownloadError, match=r"cannot write the hub cache .*No space left on device.*HF_HUB_CACHE"):
        pull("vda-tiny-test", endpoint=hub.url)
    assert _leftovers(Path(env[CACHE_ENV])) == []


def test_a_damaged_model_in_the_cache_is_pulled_again(
    env: dict[str, str], tmp_path: Path, weights: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cached model whose weights were cut (a full disk, a copy interrupted) made the node say 'not a
    readable safetensors file; pull or export it again', and `pull` answered 'already in the model
    cache' without looking: the user was stuck unless they found --overwrite."""
    (tmp_path / "dl" / REPO).mkdir(parents=True)
    (tmp_path / "dl" / REPO / FILE).write_bytes(weights)
    folder = pull("vda-tiny-test", from_dir=tmp_path / "dl")
    good = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(good[:100])
    with pytest.raises(Exception, match=r"vdepth-export pull vda-tiny-test"):
        load_model(folder)
    assert pull("vda-tiny-test", from_dir=tmp_path / "dl") == folder
    assert (folder / "model.safetensors").read_bytes() == good
    # a folder the user imported there by hand (no release.json) is not replaced without --overwrite
    (folder / PROVENANCE_NAME).unlink()
    (folder / "model.safetensors").unlink()
    with pytest.raises(Exception, match=r"damaged.*--overwrite"):
        pull("vda-tiny-test", from_dir=tmp_path / "dl")
    assert not (folder / "model.safetensors").exists()


def test_list_reports_the_cache_it_is_given(
    env: dict[str, str], tmp_path: Path, weights: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pull --list --cache DIR` used to report the default cache's state, ignoring --cache."""
    (tmp_path / "dl" / REPO).mkdir(parents=True)
    (tmp_path / "dl" / REPO / FILE).write_bytes(weights)
    other = tmp_path / "other"
    assert export_main(["pull", "vda-tiny-test", "--from", str(tmp_path / "dl"), "--cache", str(other)]) == 0
    capsys.readouterr()
    assert export_main(["pull", "--list", "--cache", str(other)]) == 0
    assert {r["name"]: r for r in json.loads(capsys.readouterr().out)}["vda-tiny-test"]["cached"] is True
    assert export_main(["pull", "--list"]) == 0  # the default cache does not hold it
    assert {r["name"]: r for r in json.loads(capsys.readouterr().out)}["vda-tiny-test"]["cached"] is False


@pytest.mark.slow
def test_hub_client_warnings_are_printed_once(hub: Hub, env: dict[str, str]) -> None:
    """Each huggingface_hub warning (a cut download being resumed, a retry) used to print twice:
    once by the library's own handler and again, with a level prefix, by vdepth-export's."""
    script = Path(sys.executable).parent / "vdepth-export"
    proc_env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    proc_env["HF_ENDPOINT"] = hub.url
    hub.cut[FILE] = 1  # the first GET stops halfway; the client warns and resumes
    res = subprocess.run([str(script), "pull", "vda-tiny-test"], env=proc_env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    warned = [line for line in res.stderr.splitlines() if "peer closed connection" in line]
    assert len(warned) == 1, res.stderr


def _default_signals() -> None:
    """In the child before exec: SIGINT and SIGTERM at their defaults and unblocked, as a shell or a
    launch system starts a tool. A process inherits ignored and blocked signals, and the test
    runner's own state after earlier tests (rclpy installs handlers) must not decide this test."""
    import signal

    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_during_a_download_is_one_line_and_imports_nothing(hub: Hub, env: dict[str, str]) -> None:
    """Ctrl-C (or a SIGTERM) in the middle of a multi-GB download used to print a KeyboardInterrupt
    traceback (SIGTERM: killed outright); the other console tools say one line and exit 130."""
    import signal
    import time

    script = Path(sys.executable).parent / "vdepth-export"
    proc_env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    proc_env["HF_ENDPOINT"] = hub.url
    hub.stall = threading.Event()
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            n = len(hub.requests)
            proc = subprocess.Popen([str(script), "pull", "vda-tiny-test"], env=proc_env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)  # fmt: skip
            deadline = time.monotonic() + 240
            while not any(m == "GET" for m, _, _ in hub.requests[n:]) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)  # the half body is being read
            proc.send_signal(sig)
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                pytest.fail(f"vdepth-export pull went on for 60 s after {signal.Signals(sig).name}:\n{err}")
            assert proc.returncode == 130, (sig, proc.returncode, err)
            assert "Traceback" not in err and "vdepth-export pull: interrupted" in err, err
            assert _leftovers(Path(env[CACHE_ENV])) == []
    finally:
        hub.stall.set()


def test_revision_pulls_a_tag_or_commit_and_records_it(
    hub: Hub, env: dict[str, str], online: None, capsys: pytest.CaptureFixture[str], tiny: VideoDepthAnything
) -> None:
    """`pull` had no `--revision`: only the registry's revision (main) could be pulled, so a release
    re-tagged or fixed upstream could not be pinned or rolled back, and the model folder did not say
    which commit it held. Now `--revision` takes a branch, tag or commit (huggingface_hub's), the
    registry's sha256 (main's) is not applied to another revision's bytes, and release.json and
    `pull --list` record the revision and its commit; a cached model at another revision is replaced
    only with --overwrite."""
    torch.manual_seed(5)
    v2 = VideoDepthAnything(**VideoDepthAnything.tiny_config()).eval()
    buf = io.BytesIO()
    torch.save(v2.released_state_dict(), buf)
    hub.revisions["v2"] = (COMMIT_V2, {(REPO, FILE): buf.getvalue()})
    folder = pull("vda-tiny-test", endpoint=hub.url, revisions=["v2"])
    assert ("GET", f"/{REPO}/resolve/v2/{FILE}", None) in hub.requests, hub.requests
    recorded = json.loads((folder / PROVENANCE_NAME).read_text())["files"][0]
    assert (recorded["revision"], recorded["commit"]) == ("v2", COMMIT_V2)
    assert recorded["sha256"] == hashlib.sha256(buf.getvalue()).hexdigest()
    frames = torch.rand(4, 3, 70, 98, generator=torch.Generator().manual_seed(0))
    assert torch.equal(load_model(folder).predict(frames), v2.predict(frames))
    assert export_main(["pull", "--list"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}["vda-tiny-test"]
    assert listed["cached_revisions"] == {REPO: f"v2 ({COMMIT_V2})"}
    n = len(hub.requests)
    assert pull("vda-tiny-test", endpoint=hub.url) == folder  # no --revision: the cached model, as is
    assert pull("vda-tiny-test", endpoint=hub.url, revisions=[COMMIT_V2]) == folder  # its commit: the same
    with pytest.raises(OutputExistsError, match=rf"at {REPO}@v2 \({COMMIT_V2}\), not {REPO}@main.*--overwrite"):
        pull("vda-tiny-test", endpoint=hub.url, revisions=["main"])
    assert len(hub.requests) == n  # none of these downloaded anything
    pull("vda-tiny-test", endpoint=hub.url, revisions=["main"], overwrite=True)  # main: checked against the registry
    assert torch.equal(load_model(folder).predict(frames), tiny.predict(frames))
    assert json.loads((folder / PROVENANCE_NAME).read_text())["files"][0]["commit"] == COMMIT
    # a revision the repository does not have: one line naming it, nothing imported
    other = Path(env[CACHE_ENV]).parent / "other"
    with pytest.raises(DownloadError, match=r"no revision 'v9' of .*--revision takes a branch, tag or commit"):
        pull("vda-tiny-test", endpoint=hub.url, revisions=["v9"], cache=other)
    assert _leftovers(other) == []


def test_revision_offline_uses_the_hub_cache_or_names_the_url(
    hub: Hub, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HF_HUB_OFFLINE keeps its meaning with --revision: a revision already in the hub cache is
    imported from there without a request; one that is not is refused naming HF_HUB_OFFLINE and
    the file's URL at that revision."""
    import huggingface_hub.constants as hf

    buf = io.BytesIO()
    torch.save(VideoDepthAnything(**VideoDepthAnything.tiny_config()).released_state_dict(), buf)
    hub.revisions["v2"] = (COMMIT_V2, {(REPO, FILE): buf.getvalue()})
    with pytest.raises(DownloadError) as err:  # HF_HUB_OFFLINE=1, as conftest sets it
        pull("vda-tiny-test", endpoint=hub.url, revisions=["v2"])
    assert "HF_HUB_OFFLINE is set" in str(err.value) and f"{hub.url}/{REPO}/resolve/v2/{FILE}" in str(err.value)
    assert hub.requests == []
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", False)
    pull("vda-tiny-test", endpoint=hub.url, revisions=["v2"], cache=Path(env[CACHE_ENV]).parent / "first")
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    n = len(hub.requests)
    folder = pull("vda-tiny-test", endpoint=hub.url, revisions=["v2"])
    assert len(hub.requests) == n
    assert json.loads((folder / PROVENANCE_NAME).read_text())["files"][0]["commit"] == COMMIT_V2


def test_revision_values_that_do_not_fit_the_release_are_refused(env: dict[str, str], tmp_path: Path) -> None:
    from vdepth_ros.runtime.registry import get_release

    dvd = get_release("dvd")  # two repositories: a bare REV is ambiguous
    with pytest.raises(ConfigError, match=r"2 repositories .*--revision REPO=REV"):
        at_revisions(dvd, ["v1"])
    with pytest.raises(ConfigError, match=r"nobody/else is not a repository of dvd"):
        at_revisions(dvd, ["nobody/else=v1"])
    pinned = at_revisions(dvd, ["Wan-AI/Wan2.1-T2V-1.3B=abc123"])
    assert [(f.repo, f.revision) for f in pinned.files] == [("FayeHongfeiZhang/DVD", "main"),
                                                             ("Wan-AI/Wan2.1-T2V-1.3B", "abc123")]  # fmt: skip
    assert pinned.files[1].sha256 is None and pinned.files[0] == dvd.files[0]


def test_revision_offline_steps_import_the_revision_by_hand(
    env: dict[str, str], tmp_path: Path, weights: bytes
) -> None:
    """Offline with --revision, the manual steps named the revision's URL but the command
    `pull NAME --from DIR` without it: the file fetched by hand then failed the registry's sha256
    (main's). The command now carries the revision, and `--from DIR --revision` imports the files as
    that revision (recorded, unverified)."""
    other = weights + b"\0"  # another revision's bytes: not the registry's sha256
    with pytest.raises(DownloadError) as err:  # HF_HUB_OFFLINE=1, as conftest sets it
        pull("vda-tiny-test", revisions=["v2"])
    assert f"/resolve/v2/{FILE}" in str(err.value)
    assert f"vdepth-export pull vda-tiny-test --from DIR --revision {REPO}=v2" in str(err.value)
    (tmp_path / "dl" / REPO).mkdir(parents=True)
    (tmp_path / "dl" / REPO / FILE).write_bytes(other)
    with pytest.raises(DownloadError, match=r"expected .*nothing was imported"):  # the registry's revision: checked
        pull("vda-tiny-test", from_dir=tmp_path / "dl")
    folder = pull("vda-tiny-test", from_dir=tmp_path / "dl", revisions=[f"{REPO}=v2"])
    recorded = json.loads((folder / PROVENANCE_NAME).read_text())["files"][0]
    assert (recorded["revision"], recorded["commit"]) == ("v2", None)


@pytest.mark.slow
def test_two_pulls_of_one_release_at_once_both_succeed(hub: Hub, env: dict[str, str]) -> None:
    """Two `vdepth-export pull NAME` at once (two terminals, a provisioning script run twice, two
    containers sharing the cache) both found the model absent and downloaded; the first renamed its
    folder into place and the second then failed with 'output ... exists; pass --overwrite', exit 2."""
    script = Path(sys.executable).parent / "vdepth-export"
    proc_env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    proc_env |= {"HF_ENDPOINT": hub.url, "HF_HUB_DOWNLOAD_TIMEOUT": "150", "HF_HUB_ETAG_TIMEOUT": "150"}
    hub.heads_before_get = 2  # the download starts once both pulls have asked the hub
    args = [str(script), "pull", "vda-tiny-test"]
    procs: list[subprocess.Popen[str]] = []
    for _ in range(2):
        procs.append(subprocess.Popen(args, env=proc_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    folder = Path(env[CACHE_ENV]) / "vda-tiny-test"
    for rc, out, err in results:
        assert rc == 0 and json.loads(out)["model"] == str(folder), err
    assert sum(m == "HEAD" for m, _, _ in hub.requests) >= 2, hub.requests  # both passed the cache check
    assert _leftovers(Path(env[CACHE_ENV])) == ["vda-tiny-test"]
    assert (folder / "model.safetensors").is_file() and (folder / PROVENANCE_NAME).is_file()


@pytest.mark.slow
def test_a_pull_killed_mid_download_leaves_no_partial_file_after_the_next_pull(
    hub: Hub, env: dict[str, str], online: None
) -> None:
    """huggingface_hub downloads to a per-process `<blob>.<id>.incomplete` that no later download
    reuses; a killed pull (SIGKILL, `docker stop`, the OOM killer, a power cut) used to leave it in
    the hub cache for good: up to a whole release file per kill, on a robot's small disk."""
    import signal
    import time

    script = Path(sys.executable).parent / "vdepth-export"
    proc_env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    proc_env["HF_ENDPOINT"] = hub.url
    blobs = Path(env["HF_HUB_CACHE"]) / "models--test-org--Video-Depth-Anything-Tiny" / "blobs"
    hub.stall = threading.Event()  # GETs send half the file, then wait
    proc = subprocess.Popen([str(script), "pull", "vda-tiny-test"], env=proc_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not any(blobs.glob("*.incomplete")) and time.monotonic() < deadline:  # (10 MB chunks: 0 bytes here)
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        hub.stall.set()
    assert [p.name.endswith(".incomplete") for p in blobs.iterdir()] == [True]  # what the kill left
    hub.stall = None
    folder = pull("vda-tiny-test", endpoint=hub.url)
    assert (folder / "model.safetensors").is_file()
    assert [p.name for p in blobs.iterdir()] == [hashlib.sha256(hub.files[(REPO, FILE)]).hexdigest()]


@pytest.mark.parametrize("damage", ["power cut (zero bytes)", "zeroed tail"])
def test_a_file_damaged_in_the_hub_cache_is_downloaded_again(
    hub: Hub, env: dict[str, str], online: None, damage: str
) -> None:
    """The hub client reuses any blob in its cache under the hub's ETag without reading it. A blob
    emptied or zeroed after its download (a power cut before the disk wrote it, on a robot) failed
    every later pull of a release without a registry sha256 (most of them) with 'is empty (0 bytes):
    ... download it again' or 'truncated or corrupt', and pulling again reused the same blob."""
    release = json.loads(Path(env[REGISTRY_ENV]).read_text())
    release[0]["files"][0].update(sha256=None, size=None)  # as vda-base, gemdepth, dvd... are registered
    Path(env[REGISTRY_ENV]).write_text(json.dumps(release))
    cache = Path(env[CACHE_ENV])
    pull("vda-tiny-test", endpoint=hub.url, cache=cache / "first")
    (blob,) = Path(env["HF_HUB_CACHE"]).rglob("blobs/*")
    data = blob.read_bytes()
    blob.write_bytes(b"" if damage.startswith("power") else data[: len(data) // 2] + bytes(len(data) - len(data) // 2))
    gets = sum(m == "GET" for m, _, _ in hub.requests)
    folder = pull("vda-tiny-test", endpoint=hub.url)
    assert sum(m == "GET" for m, _, _ in hub.requests) == gets + 1  # downloaded again
    assert blob.read_bytes() == data and (folder / "model.safetensors").is_file()
    # damaged again, and every download arrives damaged too (a proxy that cuts files): one error,
    # nothing imported, no bad copy kept
    blob.write_bytes(b"")
    import huggingface_hub.file_download as fd

    real_get = fd.http_get

    def cut(url: str, temp_file: object, **kwargs: object) -> None:
        real_get(url, temp_file, **kwargs)
        temp_file.truncate(10)  # type: ignore[attr-defined]

    fd.http_get = cut
    try:
        with pytest.raises(DownloadError, match=r"arrived damaged twice .*nothing was imported"):
            pull("vda-tiny-test", endpoint=hub.url, cache=cache / "third")
    finally:
        fd.http_get = real_get
    assert _leftovers(cache / "third") == [] and not blob.exists()


def test_pull_from_the_layouts_a_hand_download_leaves(
    hub: Hub, env: dict[str, str], online: None, tmp_path: Path, weights: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    """An offline robot: the files were fetched on a connected machine with `hf download REPO --local-dir
    DIR` (DIR/<file>), or its hub cache (~/.cache/huggingface) was copied over. `pull NAME --from DIR`
    only looked at DIR/<repo>/<file> and answered 'not found (--from expects DIR/<repo>/<file>)'."""
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / FILE).write_bytes(weights)
    assert export_main(["pull", "vda-tiny-test", "--from", str(flat), "--cache", str(tmp_path / "c1")]) == 0
    pull("vda-tiny-test", endpoint=hub.url, cache=tmp_path / "laptop")  # the connected machine's hub cache
    import shutil

    home = tmp_path / "copied-hf-home"
    shutil.copytree(env["HF_HUB_CACHE"], home / "hub", symlinks=True)
    for given in (home, home / "hub", home / "hub" / "models--test-org--Video-Depth-Anything-Tiny"):
        cache = tmp_path / f"c-{given.name}"
        assert export_main(["pull", "vda-tiny-test", "--from", str(given), "--cache", str(cache)]) == 0
        recorded = json.loads((cache / "vda-tiny-test" / PROVENANCE_NAME).read_text())["files"][0]
        assert recorded["commit"] == COMMIT and recorded["sha256"] == hashlib.sha256(weights).hexdigest()
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    assert (
        export_main(["pull", "vda-tiny-test", "--from", str(tmp_path / "empty"), "--cache", str(tmp_path / "c")]) == 2
    )
    err = capsys.readouterr().err
    assert f"not found under --from {tmp_path / 'empty'}" in err and str(tmp_path / "empty" / FILE) in err, err


def test_a_pull_names_the_download_it_leaves_in_the_hub_cache(
    hub: Hub, env: dict[str, str], online: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The release's checkpoint stays in the hub cache after the import (a second copy as large as the model,
    gigabytes for DepthCrafter, in ~/.cache/huggingface), which nothing said: the pull now names it, its
    size and the command that frees it (the pulled model does not read it)."""
    import logging

    with caplog.at_level(logging.INFO, logger="vdepth_export.pull"):
        pull("vda-tiny-test", endpoint=hub.url)
    said = [r.getMessage() for r in caplog.records if "hub cache" in r.getMessage()]
    assert said, [r.getMessage() for r in caplog.records]
    size = len(hub.files[(REPO, FILE)])
    assert f"hf cache rm model/{REPO}" in said[-1] and f"{size / 1e6:.1f} MB" in said[-1], said
    assert str(Path(env["HF_HUB_CACHE"])) in said[-1], said
    # already in the hub cache (the authors' code, another tool): taken from there, and no `hf cache rm` advised,
    # which would delete that tool's copy
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vdepth_export.pull"):
        pull("vda-tiny-test", endpoint=hub.url, cache=Path(env[CACHE_ENV]).parent / "second")
    said = [r.getMessage() for r in caplog.records if "hub cache" in r.getMessage()]
    assert any(f"{REPO}: taken from the hub cache" in m for m in said), said
    assert not any("hf cache rm" in m for m in said), said


def test_another_releases_file_names_the_release_it_is(
    hub: Hub, env: dict[str, str], online: None, tmp_path: Path, weights: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pull vda-base --from DIR` with vda-small's file put there (both named video_depth_anything_vit?.pth;
    vda-base has no registry sha256) ended in '392 tensor(s) of another shape: ...' and 'pass --encoder vits',
    an option pull does not have. Now: which release file, what it is, whose release that is, and the right
    file's URL; a hub serving another family's file under the release's name says the entry or the mirror."""
    import dataclasses

    from vdepth_ros.models.gemdepth import GemDepth
    from vdepth_ros.runtime.registry import get_release

    # a release the registry has no size or sha256 for (as gemdepth, dvd): the file's keys say what it is
    registry = json.loads(Path(env[REGISTRY_ENV]).read_text())
    unverified = dataclasses.asdict(get_release("vda-base"))
    unverified["files"][0].update(sha256=None, size=None)
    Path(env[REGISTRY_ENV]).write_text(json.dumps([*registry, unverified]))
    vits_wide = {k: (torch.zeros(1, 1, 384) if k == "pretrained.cls_token" else v) for k, v in torch.load(
        io.BytesIO(weights), weights_only=True).items()}  # fmt: skip
    base = tmp_path / "dl" / "depth-anything" / "Video-Depth-Anything-Base"
    base.mkdir(parents=True)
    torch.save(vits_wide, base / "video_depth_anything_vitb.pth")
    assert export_main(["pull", "vda-base", "--accept-license", "--from", str(tmp_path / "dl")]) == 2
    err = capsys.readouterr().err
    expected = [
        "depth-anything/Video-Depth-Anything-Base/video_depth_anything_vitb.pth",
        "expected a Video Depth Anything ViT-B checkpoint",
        "found a Video Depth Anything ViT-S checkpoint",
        "nothing was imported",
        "https://huggingface.co/depth-anything/Video-Depth-Anything-Base/resolve/main/video_depth_anything_vitb.pth",
        "it is a file of vda-small or vda-metric-small (`vdepth-export pull vda-small --from DIR`)",
    ]
    assert all(s in err for s in expected) and "--encoder" not in err and "of another shape" not in err, err
    assert _leftovers(Path(env[CACHE_ENV])) == []
    # the hub serves another family's checkpoint under the release's file name (no sha256 in the entry)
    release = json.loads(Path(env[REGISTRY_ENV]).read_text())[:1]
    release[0]["files"][0]["sha256"] = release[0]["files"][0]["size"] = None
    Path(env[REGISTRY_ENV]).write_text(json.dumps(release))
    buf = io.BytesIO()
    torch.save(GemDepth(**GemDepth.tiny_config()).released_state_dict(), buf)
    hub.files[(REPO, FILE)] = buf.getvalue()
    with pytest.raises(Exception, match=r"found a GemDepth checkpoint.*is not the file this registry entry expects"):
        pull("vda-tiny-test", endpoint=hub.url)
    assert _leftovers(Path(env[CACHE_ENV])) == []


def test_a_pinned_commit_holding_the_registrys_file_is_verified(
    hub: Hub, env: dict[str, str], online: None, caplog: pytest.LogCaptureFixture
) -> None:
    """`pull NAME --revision COMMIT`, pinning the commit main is (for a reproducible robot image), imported the
    very file the registry checks as 'no known sha256 to check against (imported unverified)': pinning lost
    the check. The file of another revision is compared with the registry's sha256 all the same: the same
    bytes are verified; other bytes are imported unverified, saying they differ from the registry's file."""
    import logging

    buf = io.BytesIO()
    torch.save(VideoDepthAnything(**VideoDepthAnything.tiny_config()).released_state_dict(), buf)
    hub.revisions["v2"] = (COMMIT_V2, {(REPO, FILE): buf.getvalue()})
    cache = Path(env[CACHE_ENV])
    with caplog.at_level(logging.INFO, logger="vdepth_export.pull"):
        pull("vda-tiny-test", endpoint=hub.url, revisions=[COMMIT], cache=cache / "pinned")
    said = " | ".join(r.getMessage() for r in caplog.records)
    assert f"{FILE}@{COMMIT}: the registry's file (sha256" in said and "unverified" not in said, said
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vdepth_export.pull"):
        pull("vda-tiny-test", endpoint=hub.url, revisions=["v2"], cache=cache / "v2")
    said = " | ".join(r.getMessage() for r in caplog.records)
    assert "another file than the registry's revision has" in said and "imported unverified" in said, said


def test_from_the_one_downloaded_file_and_paths_that_are_no_folder(
    env: dict[str, str], tmp_path: Path, weights: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pull NAME --from FILE` with the one file of a one-file release (what a user who downloaded it by hand
    has) listed four paths under FILE/ that were not found; `--from` a path that does not exist did the same,
    and `--cache FILE` said 'File exists'. The file is taken (and checked), the others say what the path is."""
    mine = tmp_path / "downloads" / "vda.pth"
    mine.parent.mkdir()
    mine.write_bytes(weights)
    folder = pull("vda-tiny-test", from_dir=mine)
    assert (folder / "config.json").is_file() and mine.read_bytes() == weights  # checked, imported, left alone
    assert export_main(["pull", "vda-tiny-test", "--from", str(tmp_path / "nowhere"), "--overwrite"]) == 2
    assert f"--from {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err
    assert export_main(["pull", "vda-tiny-test", "--cache", str(mine)]) == 2
    assert f"cannot write to the model cache {mine} (a file, not a folder)" in capsys.readouterr().err


def test_import_takes_a_hub_repository_already_in_the_hub_cache(
    hub: Hub, env: dict[str, str], online: None, tmp_path: Path, weights: bytes, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The authors' code names its weights by repository (`--unet-path tencent/DepthCrafter`) and put them in the
    hub cache; `vdepth-export import vda depth-anything/Video-Depth-Anything-Small` answered 'does not exist'. The
    repository, a file in it, or the cache's `models--owner--name` folder are now taken from the hub cache, its
    file's name telling relative from metric; a folder of that name in the working folder still wins, and one
    not in the cache names the download. Given as `model:`, the hub cache's copy names the import that reads it."""
    from huggingface_hub import hf_hub_download

    small = "depth-anything/Video-Depth-Anything-Small"
    hf_hub_download(small, FILE, endpoint=hub.url)  # what the authors' run.py did on this machine
    sets = [a for k, v in VideoDepthAnything.tiny_config().items() for a in ("--set", f"{k}={json.dumps(v)}")]
    repo_folder = Path(env["HF_HUB_CACHE"]) / "models--depth-anything--Video-Depth-Anything-Small"
    monkeypatch.chdir(tmp_path)
    for i, given in enumerate((small, f"{small}/{FILE}", str(repo_folder))):
        assert export_main(["import", "vda", given, "-o", f"m{i}", *sets]) == 0, capsys.readouterr().err
        assert load_model(tmp_path / f"m{i}").config.get("metric") is not True
    from vdepth_ros.runtime import create_engine

    snapshot = repo_folder / "snapshots" / COMMIT
    for given in (repo_folder, snapshot, snapshot / FILE):  # as model:, it read 'holds no usable model'
        with pytest.raises(ModelLoadError, match=f"hub cache's download of {small}.*import FAMILY {given} -o"):
            create_engine(given)
    n = len(hub.requests)
    assert export_main(["import", "vda", "depth-anything/Video-Depth-Anything-Base", "-o", "b", *sets]) == 2
    err = capsys.readouterr().err
    assert "hf download depth-anything/Video-Depth-Anything-Base" in err and "vdepth-export pull vda-base" in err, err
    assert export_main(["import", "vda", f"{small}/metric_{FILE}", "-o", "b", *sets]) == 2
    assert f"holds no metric_{FILE}: download it (`hf download {small} metric_{FILE}`)" in capsys.readouterr().err
    assert len(hub.requests) == n  # nothing downloaded by `import`
    # another revision beside main in the hub cache (`hf download --revision v2`): `import` read main only
    torch.manual_seed(5)
    v2 = VideoDepthAnything(**VideoDepthAnything.tiny_config()).eval()
    buf = io.BytesIO()
    torch.save(v2.released_state_dict(), buf)
    hub.revisions["v2"] = (COMMIT_V2, {(small, FILE): buf.getvalue()})
    hf_hub_download(small, FILE, revision="v2", endpoint=hub.url)
    for i, rev in enumerate(("v2", COMMIT_V2, f"{small}=v2")):
        assert export_main(["import", "vda", small, "--revision", rev, "-o", f"v{i}", *sets]) == 0
        got = load_model(tmp_path / f"v{i}").state_dict()
        assert all(torch.equal(got[k], v) for k, v in v2.state_dict().items()), rev
    assert export_main(["import", "vda", small, "-o", "v-main", *sets]) == 0  # no --revision: main, as before
    cls = "backbone.embeddings.cls_token"
    assert not torch.equal(load_model(tmp_path / "v-main").state_dict()[cls], v2.state_dict()[cls])
    assert export_main(["import", "vda", small, "--revision", "v3", "-o", "v3", *sets]) == 2
    err = capsys.readouterr().err
    assert "holds no copy of revision v3, 2 snapshots of it (refs main, v2)" in err, err
    assert f"hf download {small} --revision v3" in err and not (tmp_path / "v3").exists()
    assert export_main(["import", "vda", small, "--revision", "other/repo=v2", "-o", "v3", *sets]) == 2
    assert "--revision other/repo=v2: other/repo is not a repository of the sources" in capsys.readouterr().err
    n = len(hub.requests)
    (tmp_path / small).mkdir(parents=True)  # a folder of the user's named like the repository: the path wins
    assert export_main(["import", "vda", small, "-o", "mine", *sets]) == 2
    assert f"{small} is a folder with no" in capsys.readouterr().err
    assert len(hub.requests) == n  # nothing downloaded by `import`


def test_a_pull_with_the_hub_unreachable_takes_the_hub_caches_copy(
    hub: Hub, env: dict[str, str], online: None, tmp_path: Path
) -> None:
    """A robot whose hub cache holds the release (downloaded earlier, by this or another tool) and that has no
    network now, without HF_HUB_OFFLINE set: the hub client takes the cached file; nothing is asked of the hub."""
    pull("vda-tiny-test", endpoint=hub.url, cache=tmp_path / "online")
    n = len(hub.requests)
    folder = pull("vda-tiny-test", endpoint="http://127.0.0.1:9", cache=tmp_path / "unreachable")  # nothing listens
    assert (folder / "config.json").is_file() and len(hub.requests) == n
    assert json.loads((folder / PROVENANCE_NAME).read_text())["files"][0]["commit"] == COMMIT


def test_a_refused_login_says_whether_a_token_was_sent_and_what_to_do(
    hub: Hub, env: dict[str, str], online: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub's 401/403 in terms of the login. A wrong or expired HF_TOKEN (401 'Invalid credentials', no
    error code) read 'download of URL failed: Client error' and a fine-grained token without gated access (403)
    'the hub answered HTTP 403', each followed by steps to download by hand (which need the same access); now
    each names the token that was sent (HF_TOKEN, or the one `hf auth login` saved), or that none was."""
    import huggingface_hub.constants as hf

    token_file = tmp_path / "hf-token"
    monkeypatch.setattr(hf, "HF_TOKEN_PATH", str(token_file))  # not this machine's login
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_expired")

    def refusal(status: int, code: str, message: str) -> str:
        hub.status, hub.error_message = (status, code), message
        with pytest.raises(DownloadError) as err:
            pull("vda-tiny-test", endpoint=hub.url)
        return str(err.value)

    msg = refusal(401, "", "Invalid credentials in Authorization header")
    assert "HTTP 401" in msg and "the token in HF_TOKEN was refused (wrong, expired or revoked)" in msg, msg
    assert "Invalid credentials" in msg and "by hand" not in msg, msg
    assert "Bearer hf_expired" in hub.authorizations  # sent to the hub in HF_ENDPOINT, a mirror
    fine_grained = "Please enable access to public gated repositories in your fine-grained token settings"
    msg = refusal(403, "", fine_grained)
    assert "HTTP 403" in msg and "HF_TOKEN was accepted but may not read it" in msg and fine_grained in msg, msg
    monkeypatch.delenv("HF_TOKEN")
    token_file.write_text("hf_saved")
    msg = refusal(403, "GatedRepo", "")
    assert f"the token `hf auth login` saved ({token_file})" in msg and "accept the repository's licence" in msg, msg
    token_file.unlink()
    msg = refusal(401, "GatedRepo", "")
    assert "no token was sent" in msg and f"accept its licence on https://huggingface.co/{REPO}" in msg, msg
    assert _leftovers(Path(env[CACHE_ENV])) == []


def test_a_gated_repository_is_refused_before_the_other_repositories_are_downloaded(
    hub: Hub, env: dict[str, str], online: None, tmp_path: Path, weights: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pull depthcrafter` without access to SVD-XT (gated): DepthCrafter's UNet (gigabytes) was downloaded first
    and the pull then failed on SVD-XT's files. Every file's repository is asked first (HEAD), nothing downloaded."""
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    entry = json.loads(Path(env[REGISTRY_ENV]).read_text())[0]
    entry = {**entry, "name": "two-repos", "files": [*entry["files"], {"repo": "test-org/Gated", "filename": "x.pth"}]}
    Path(env[REGISTRY_ENV]).write_text(json.dumps([entry]))
    hub.gated.add("test-org/Gated")
    with pytest.raises(DownloadError, match=r"401.* for test-org/Gated: no token was sent .*nothing was downloaded"):
        pull("two-repos", endpoint=hub.url)
    assert [m for m, _, _ in hub.requests if m == "GET"] == []
    assert not list(Path(env["HF_HUB_CACHE"]).glob("models--*/blobs/*"))
    # its files in the hub cache already (downloaded when the login could): the hub client takes them, as before
    hub.gated.clear()
    hub.files[("test-org/Gated", "x.pth")] = b"part"
    pull("two-repos", endpoint=hub.url, cache=tmp_path / "first")
    hub.gated.add("test-org/Gated")
    assert (pull("two-repos", endpoint=hub.url, cache=tmp_path / "again") / "config.json").is_file()
