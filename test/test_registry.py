"""The release registry, the model cache and `model: NAME` resolution (no network)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vdepth_ros.config import PipelineConfig
from vdepth_ros.errors import ConfigError, ModelLoadError
from vdepth_ros.models import MODEL_FAMILIES
from vdepth_ros.runtime.registry import (
    CACHE_ENV,
    REFERENCE_INFERENCE,
    REGISTRY_ENV,
    get_release,
    model_cache_dir,
    releases,
    resolve_model,
)

EXPECTED = {"vda-small", "vda-base", "vda-large", "vda-metric-small", "vda-metric-base", "vda-metric-large",
            "gemdepth", "depthcrafter", "dvd", "dvd-1.1", "fiffdepth"}  # fmt: skip


def test_registry_lists_every_paper_release_with_what_pull_needs() -> None:
    known = releases()
    assert set(known) >= EXPECTED
    for r in known.values():
        assert r.family in MODEL_FAMILIES and r.family in REFERENCE_INFERENCE, r.name
        assert r.license and r.title and r.paper, r.name
        for f in r.files:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+", f.repo) and f.filename, (r.name, f)
            assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256), (r.name, f)
        for source in r.sources:  # every import source is one of the files or a repository of them
            repo, _, filename = source.partition(":")
            assert any(f.repo == repo and filename in ("", f.filename) for f in r.files), (r.name, source)
        assert bool(r.files) == bool(r.sources), r.name
    # licences as the model cards state them: VDA-S Apache-2.0, VDA-B/L CC-BY-NC-4.0, DVD weights CC-BY-NC
    assert not known["vda-small"].non_commercial and known["vda-large"].non_commercial
    assert known["dvd"].non_commercial and known["depthcrafter"].non_commercial
    assert known["vda-metric-small"].overrides == {"metric": True} and known["vda-large"].encoder == "vitl"
    assert [f.filename for f in known["dvd"].files] == ["model.safetensors", "Wan2.1_VAE.pth"]
    assert known["depthcrafter"].variant == "fp16" and not known["fiffdepth"].files


def test_unknown_release_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'vda-tiny'.*vda-small"):
        get_release("vda-tiny")


def test_cache_location_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache_dir() == tmp_path / "xdg" / "vdepth_ros" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert model_cache_dir() == Path.home() / ".cache" / "vdepth_ros" / "models"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert model_cache_dir() == tmp_path / "c"


def test_model_name_resolves_through_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match=r"not in the model cache.*`vdepth-export pull vda-small`"):
        resolve_model("vda-small")
    with pytest.raises(ModelLoadError, match=r"`vdepth-export pull vda-large --accept-license` \(licence: cc-by-nc"):
        PipelineConfig(model="vda-large").resolved_model()  # what the node, vdepth-bag and vdepth-video call
    with pytest.raises(ModelLoadError, match="neither an existing file/folder nor a known release"):
        resolve_model("vda_smal")
    folder = tmp_path / "cache" / "vda-small"
    folder.mkdir(parents=True)
    with pytest.raises(ModelLoadError, match="not in the model cache"):  # an empty folder is not a model
        resolve_model("vda-small")
    (folder / "config.json").write_text("{}")
    assert resolve_model("vda-small") == str(folder)
    assert PipelineConfig(model="vda-small").resolved_model() == str(folder)
    # an existing path as an absolute one; a missing one names the path tried and what it is relative to
    assert resolve_model(str(folder)) == str(folder)
    assert resolve_model("cache/vda-small") == str(folder)
    missing = tmp_path / "models" / "missing"
    with pytest.raises(ModelLoadError, match=f"{missing} does not exist, relative to the current folder {tmp_path}"):
        resolve_model("models/missing")
    with pytest.raises(ModelLoadError, match=f"'graph.onnx': {tmp_path / 'graph.onnx'} does not exist"):
        resolve_model("graph.onnx")
    # a folder named like the release where the node starts (`hf download REPO --local-dir vda-small`): it read
    # 'a released checkpoint: import it first'; now both are named
    (tmp_path / "vda-small").mkdir()
    (tmp_path / "vda-small" / "video_depth_anything_vits.pth").write_bytes(b"weights")
    with pytest.raises(ModelLoadError, match=rf"names {tmp_path / 'vda-small'}, which holds no model, before .*"
                       rf"model cache .*model: {folder}"):  # fmt: skip
        resolve_model("vda-small")
    (tmp_path / "vda-small" / "config.json").write_text('{"_family": "vda"}')  # a model of the user's: it wins
    assert resolve_model("vda-small") == str(tmp_path / "vda-small")


def test_extra_releases_from_a_registry_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    entry = {"name": "my-vda", "family": "vda", "title": "fine-tuned VDA-S", "license": "apache-2.0",
             "non_commercial": False, "files": [{"repo": "me/my-vda", "filename": "w.pth"}],
             "sources": ["me/my-vda:w.pth"], "encoder": "vits"}  # fmt: skip
    path = tmp_path / "registry.json"
    path.write_text(json.dumps([entry]))
    monkeypatch.setenv(REGISTRY_ENV, str(path))
    release = get_release("my-vda")
    assert release.files[0].url == "https://huggingface.co/me/my-vda/resolve/main/w.pth"
    assert release.import_command(["w.pth"], "out") == "vdepth-export import vda w.pth -o out --encoder vits"
    path.write_text(json.dumps([{**entry, "colour": "red"}]))
    with pytest.raises(ConfigError, match="registry entry 'my-vda'"):
        releases()


@pytest.mark.ros
def test_node_with_a_release_not_pulled_says_how_to_pull_it(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    script = Path(sys.executable).parent / "vdepth-node"
    if not script.is_file():
        pytest.skip("vdepth-node console script not installed in this environment (pip install -e .)")
    env = {**os.environ, CACHE_ENV: str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [str(script), "--ros-args", "-p", "model:=vda-small"], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "cannot start: model 'vda-small' is not in the model cache" in res.stderr
    assert "`vdepth-export pull vda-small`" in res.stderr


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("vda_small", "'vda-small'"),  # `_` for `-`, as in the Python names
        ("VDA-Small", "'vda-small'"),
        ("vda-smal", "'vda-small'"),
        ("gem-depth", "'gemdepth'"),
        ("vda", "'vda-small'"),  # a family: its releases
        ("depth-anything/Video-Depth-Anything-Small", "release 'vda-small'"),  # the model card's repository id
        ("https://huggingface.co/depth-anything/Video-Depth-Anything-Large/tree/main", "release 'vda-large'"),
        ("hf.co/FayeHongfeiZhang/DVD", "release 'dvd' or 'dvd-1.1'"),
    ],
)
def test_a_name_that_is_no_release_names_the_release_meant(
    given: str, meant: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`model: vda_small`, `model: depth-anything/Video-Depth-Anything-Small` (what the model card shows,
    what transformers' from_pretrained takes) or its URL, and `vdepth-export pull` of them, used to say
    only 'neither an existing file/folder nor a known release (list)', or for a repository id
    '<cwd>/depth-anything/Video-Depth-Anything-Small does not exist': not which release it is."""
    from vdepth_export.cli import main as export_main

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError) as err:
        PipelineConfig(model=given).resolved_model()  # what the node, vdepth-bag and vdepth-video call
    assert meant in str(err.value), err.value
    assert export_main(["pull", given]) == 2
    printed = capsys.readouterr().err
    assert meant in printed and printed.count("\n") == 1, printed
    if "/" in given:
        assert "vdepth-export pull" in str(err.value) and "model: " in str(err.value), err.value


def test_a_path_or_an_unknown_repository_gets_no_release_suggested(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for path in ("models/vda_small", "vda_small/model.onnx", "me/my-finetune"):
        with pytest.raises(ModelLoadError) as err:
            resolve_model(path)
        assert "did you mean" not in str(err.value) and "release '" not in str(err.value), err.value
    with pytest.raises(ModelLoadError, match=r"me/mine is no known release: add it .*VDEPTH_MODEL_REGISTRY"):
        resolve_model("https://huggingface.co/me/mine")
