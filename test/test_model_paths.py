"""How every entry point finds and checks the model the user names: one resolution
(`runtime.registry.resolve_model`) and one start-up check (`runtime.checks.checked_model`) for the node,
`vdepth-video`, `vdepth-bag`, `vdepth-eval` and the demo.

Before: the offline tools skipped the node's start-up check (a garbage model.onnx ended in an
onnxruntime traceback, a truncated model.safetensors beside a valid ONNX ran without a word); a relative
`model:` in a params file was looked up from the process's current folder (a launch system starts the
node elsewhere); a relative `$VDEPTH_MODEL_CACHE` was a different, empty cache for every process started
in another folder; a missing path was reported without saying what it was relative to.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import MODEL_FAULTS, broken_model, run_node_main, write_tiny_onnx

from vdepth_ros.offline import bag as bagcli
from vdepth_ros.offline import video as videocli
from vdepth_ros.offline.synth import synthetic_frames, write_image_bag
from vdepth_ros.runtime.registry import CACHE_ENV

H, W, N = 48, 64, 6


def clip(path: Path) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (W, H))
    for rgb in synthetic_frames(N, H, W):
        vw.write(np.ascontiguousarray(rgb[..., ::-1]))
    vw.release()
    return path


def tiny_model(folder: Path) -> Path:
    """A tiny working model folder (ONNX graph + config.json)."""
    folder.mkdir(parents=True)
    write_tiny_onnx(folder)
    (folder / "config.json").write_text('{"_family": "vda_lite", "window": 8}')
    return folder


def tiny_evaldata(root: Path) -> Path:
    """A 4-frame, 16x12 HoloLens-layout sequence for `vdepth-eval` (as test_eval_cli's fixture)."""
    seq = root / "dvmvs_hololens_000"
    (seq / "images").mkdir(parents=True)
    (seq / "depth").mkdir()
    for i in range(4):
        cv2.imwrite(str(seq / "images" / f"{i:05d}.png"), np.full((12, 16, 3), 100, np.uint8))
        cv2.imwrite(str(seq / "depth" / f"{i:05d}.png"), np.full((12, 16), 1000, np.uint16))
    np.savetxt(seq / "K.txt", [[10.0, 0, 8], [0, 10.0, 6], [0, 0, 1]])
    np.savetxt(seq / "poses.txt", np.tile(np.eye(4).reshape(1, 16), (4, 1)))
    return root


def params_file(path: Path, model: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"/**:\n  ros__parameters:\n    model: {json.dumps(model)}\n    scale_source: none\n")
    return path


def own_lines(err: str) -> list[str]:
    """stderr without the log lines (INFO/WARNING) the tools print on the way."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith(("INFO ", "WARNING "))]


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fault", list(MODEL_FAULTS))
def test_a_broken_model_stops_every_tool_before_any_work_with_the_nodes_words(
    tmp_path: Path, fault: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = broken_model(tmp_path, fault)
    before = files_of(model)
    code, err = run_node_main(params_file(tmp_path / "p.yaml", str(model)), monkeypatch, capsys)
    (node_line,) = own_lines(err)
    assert code == 2 and node_line.startswith("cannot start: ") and MODEL_FAULTS[fault] in node_line, err
    reason = node_line.removeprefix("cannot start: ")
    bag = tmp_path / "in"
    write_image_bag(bag, synthetic_frames(N, H, W), storage="mcap", start_ns=1_000_000_000)
    runs = {
        "vdepth-video": (videocli.main, [str(clip(tmp_path / "c.mp4")), "-o", str(tmp_path / "out_video")]),
        "vdepth-bag": (bagcli.main, [str(bag), "-o", str(tmp_path / "out_bag")]),
    }
    for prog, (main, args) in runs.items():
        assert main([*args, "--model", str(model), "--no-progress"]) == 2, prog
        err = capsys.readouterr().err
        assert own_lines(err) == [f"{prog}: error: {reason}"], err  # one line, the node's words, no traceback
        assert not Path(args[2]).exists(), prog  # before any output
    assert files_of(model) == before  # the user's folder is only read


def test_vdepth_eval_checks_the_model_as_the_node_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vdepth_ros.eval import cli as evalcli

    tiny_evaldata(tmp_path / "evaldata")
    model = broken_model(tmp_path, "garbage model.onnx")
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as done:
        evalcli.main(["--evaldata", str(tmp_path / "evaldata"), "--datasets", "hololens", "--model", str(model),
                      "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.splitlines()[-1] == f"vdepth-eval: error: {model / 'model.onnx'}: " + (
        "is not an ONNX model (truncated or not protobuf: invalid field tag 110 at byte 1)"
    ), err
    assert "Traceback" not in err and not out.exists()


def test_vdepth_eval_does_not_resolve_the_params_files_model_it_does_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vdepth-eval --params` takes the pipeline's settings from the node's file and runs `--model`
    (default: the bundled model): the file's model (here one not pulled) is not in the way."""
    from vdepth_ros.eval import cli as evalcli

    tiny_evaldata(tmp_path / "evaldata")
    params = params_file(tmp_path / "p.yaml", "no/such/model")
    args = ["--evaldata", str(tmp_path / "evaldata"), "--datasets", "hololens", "--baselines-only"]
    assert evalcli.main([*args, "--params", str(params), "--out", str(tmp_path / "r")]) == 0


def test_a_relative_model_in_a_params_file_is_relative_to_the_file_wherever_the_process_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A launch system (or a service) starts the node in another folder than the user's shell: the
    params file's `model: ../models/m` used to be looked up from there."""
    ws = tmp_path / "ws"
    model = tiny_model(ws / "models" / "m")
    params = params_file(ws / "config" / "p.yaml", "../models/m")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "out"
    assert videocli.main([str(clip(tmp_path / "c.mp4")), "-o", str(out), "--params", str(params), "--no-progress",
                          "--json"]) == 0  # fmt: skip
    ran = json.loads(capsys.readouterr().out)["model"]["model"]
    assert Path(ran).resolve() == model.resolve()
    # the node resolves it the same way: proven with a broken graph there (the node then stops at once)
    (model / "model.onnx").write_bytes(b"not an onnx graph")
    code, err = run_node_main(params, monkeypatch, capsys)
    assert code == 2 and own_lines(err) == [
        f"cannot start: {ws / 'config' / '..' / 'models' / 'm' / 'model.onnx'}: is not an ONNX model "
        "(truncated or not protobuf: invalid field tag 110 at byte 1)"
    ], err


def test_a_relative_model_in_a_launch_files_own_parameters_stays_relative_to_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """launch_ros writes `Node(parameters=[{"model": "models/m"}])` to /tmp/launch_params_XXXX: that folder
    means nothing to the user, so the value keeps its meaning from the folder the launch runs in."""
    ws = tmp_path / "ws"
    (tiny_model(ws / "models" / "m") / "model.onnx").write_bytes(b"garbage")  # the node stops at once
    monkeypatch.chdir(ws)
    code, err = run_node_main(params_file(tmp_path / "tmp" / "launch_params_x1y2", "models/m"), monkeypatch, capsys)
    assert code == 2 and own_lines(err) == [
        f"cannot start: {ws / 'models' / 'm' / 'model.onnx'}: is not an ONNX model (truncated or not protobuf: "
        "invalid field tag 103 at byte 1)"
    ], err


def test_a_relative_model_in_a_params_file_a_launch_tool_rewrote_is_never_taken_from_the_temporary_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nav2's RewrittenYaml (and ReplaceString, launch_ros's ParameterFile(allow_substs=True)) hands the
    node a rewritten copy of the user's params file, /tmp/tmpXXXXXXXX: a relative `model:` was looked up
    beside the copy, in the temporary folder, and a namesake there (another run's export) was taken without
    a word. Now the copy is known for one: the path is tried from the current folder, as a launch file's own
    values are; not found, the error names what was tried, the copy, the namesake left alone and the fix.
    The offline tools read such a file by the same rule."""
    import tempfile
    import uuid

    rel = f"vdepth_rewrite_{uuid.uuid4().hex[:8]}/m"
    temp = Path(tempfile.gettempdir())
    namesake = tiny_model(temp / rel)  # beside the copy; a garbage graph: a node that took it would stop on it
    (namesake / "model.onnx").write_bytes(b"garbage")
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(ws)
    with tempfile.NamedTemporaryFile("w", delete=False) as copy:  # as RewrittenYaml writes it
        copy.write(f"/**:\n  ros__parameters:\n    model: {rel}\n    scale_source: none\n")
    try:
        code, err = run_node_main(Path(copy.name), monkeypatch, capsys)
        (line,) = [x for x in own_lines(err) if not x.startswith("[")]  # without the ROS log lines
        assert code == 2 and line.startswith(f"cannot start: model '{rel}': {ws / rel} does not exist, relative "
                                             f"to the current folder {ws}; the params file that gave it, "
                                             f"{copy.name}, is a temporary copy"), err  # fmt: skip
        assert f"({namesake} exists beside the copy: not taken)" in line, line
        assert "write an absolute path for model" in line and "FindPackageShare" in line, line
        assert videocli.main([str(clip(tmp_path / "c.mp4")), "-o", str(tmp_path / "o"), "--params", copy.name]) == 2
        assert own_lines(capsys.readouterr().err) == [f"vdepth-video: error: {line.removeprefix('cannot start: ')}"]
        # there in the current folder: taken from there (the model line names it), with one WARN saying why
        (tiny_model(ws / rel) / "model.onnx").write_bytes(b"garbage")
        code, err = run_node_main(Path(copy.name), monkeypatch, capsys)
        assert code == 2 and f"cannot start: {ws / rel / 'model.onnx'}: is not an ONNX model" in err, err
        (warning,) = [r.getMessage() for r in caplog.records if "temporary copy" in r.getMessage()]
        assert warning.startswith(f"model '{rel}' is relative and the params file that gave it, {copy.name}, is a "
                                  "temporary copy a launch tool wrote"), warning  # fmt: skip
        assert f"taken relative to the current folder, {ws / rel}" in warning, warning
    finally:
        Path(copy.name).unlink()
        shutil.rmtree(namesake.parent)


def test_a_model_path_not_found_names_the_path_tried_and_what_it_is_relative_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    (tiny_model(ws / "models" / "m") / "model.onnx").write_bytes(b"garbage")  # a node taking it stops at once
    monkeypatch.chdir(ws)
    # written in a params file in config/, meant from the workspace: the file's folder is tried, the fix named
    params = params_file(ws / "config" / "p.yaml", "models/m")
    tried = ws / "config" / "models" / "m"
    code, err = run_node_main(params, monkeypatch, capsys)
    assert code == 2 and own_lines(err) == [
        f"cannot start: model 'models/m': {tried} does not exist, relative to the folder of the params file "
        f"{params}; {ws / 'models' / 'm'} exists: write that absolute path in the params file (expected a model "
        "folder, .onnx or .engine file, or a release name)"
    ], err
    assert videocli.main([str(clip(tmp_path / "c.mp4")), "-o", str(tmp_path / "o"), "--params", str(params)]) == 2
    assert own_lines(capsys.readouterr().err) == [f"vdepth-video: error: {own_lines(err)[0].split(': ', 1)[1]}"]
    # on the command line: relative to the current folder, and said so
    assert videocli.main([str(tmp_path / "c.mp4"), "-o", str(tmp_path / "o"), "--model", "modles/m"]) == 2
    assert own_lines(capsys.readouterr().err) == [
        f"vdepth-video: error: model 'modles/m': {ws / 'modles' / 'm'} does not exist, relative to the current "
        f"folder {ws} (expected a model folder, .onnx or .engine file, or a release name)"
    ]
    # the command line's --model replaces the params file's (whose bad path is then not in the way)
    tiny_model(ws / "good")
    out = tmp_path / "ok"
    assert videocli.main([str(tmp_path / "c.mp4"), "-o", str(out), "--params", str(params), "--model", "good",
                          "--no-progress"]) == 0  # fmt: skip
    assert out.is_dir()


def test_a_tilde_in_a_params_files_model_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    model = tiny_model(tmp_path / "home" / "models" / "m")
    params = params_file(tmp_path / "p.yaml", "~/models/m")
    assert videocli.main([str(clip(tmp_path / "c.mp4")), "-o", str(tmp_path / "o"), "--params", str(params),
                          "--no-progress", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["model"]["model"] == str(model)
    assert not (tmp_path / "~").exists()


#: the environment variables that name a model: (value, what it holds, the model parameter that reads it)
MODEL_ENV = {
    CACHE_ENV: ("cache", "vda-small"),
    "VDEPTH_DEFAULT_MODEL": ("m", "default"),
    "VDEPTH_MODEL_REGISTRY": ("registry.json", "my-release"),
}


@pytest.mark.parametrize("env", list(MODEL_ENV))
def test_a_relative_path_in_a_model_environment_variable_is_refused_by_every_entry_point(
    tmp_path: Path, env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`VDEPTH_MODEL_CACHE=cache` was `./cache` of whichever folder each process started in: a node started
    by a launch system looked in another (empty) cache and said the release was not pulled (likewise
    another default model, another registry file)."""
    from export.cli import main as export_main

    value, model = MODEL_ENV[env]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(env, value)
    # what the variable names, here: a model whose graph is garbage, so a node that takes it stops at once
    (tiny_model(tmp_path / "cache" / "vda-small") / "model.onnx").write_bytes(b"garbage")
    (tiny_model(tmp_path / "m") / "model.onnx").write_bytes(b"garbage")
    entry = {"name": "my-release", "family": "vda_lite", "title": "t", "license": "mit", "non_commercial": False}
    (tmp_path / "registry.json").write_text(json.dumps([entry]))
    expect = (
        f"${env}={value} is a relative path, which each process would look up from its own current folder (a "
        f"launch system starts nodes elsewhere): set it to an absolute path, e.g. {env}={tmp_path / value} "
        f"for the one relative to {tmp_path}"
    )
    code, err = run_node_main(params_file(tmp_path / "p.yaml", model), monkeypatch, capsys)
    assert code == 2 and own_lines(err) == [f"invalid configuration: {expect}"], err
    assert videocli.main([str(clip(tmp_path / "c.mp4")), "-o", "o", "--model", model]) == 2
    assert own_lines(capsys.readouterr().err) == [f"vdepth-video: error: {expect}"]
    assert not (tmp_path / "o").exists()
    if env == CACHE_ENV:
        assert export_main(["pull", "vda-small", "--from", "dl"]) == 2  # pulling into it would be as lost
        assert expect in capsys.readouterr().err


def test_an_empty_model_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`model: ""` (a launch argument left empty) was the params file's folder: "holds no usable model"."""
    code, err = run_node_main(params_file(tmp_path / "p.yaml", ""), monkeypatch, capsys)
    assert code == 2 and own_lines(err) == [
        'cannot start: model is empty: give a model folder or file, a release name, or "default"'
    ], err


def test_a_relative_xdg_cache_home_is_ignored_as_the_xdg_specification_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vdepth_ros.runtime.registry import model_cache_dir

    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert model_cache_dir() == Path.home() / ".cache" / "vdepth_ros" / "models"


def test_the_export_tools_take_a_pulled_release_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `vdepth-export pull NAME`, `model: NAME` ran it but `vdepth-export onnx NAME` said "neither a model
    folder nor a known family name" (and for a release named like its family, e.g. `dvd`, would have
    exported a model with random weights)."""
    from export.cli import main as export_main

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert export_main(["split", "vda-small"]) == 2  # not pulled: the node's words, with the command to run
    assert "`vdepth-export pull vda-small`" in capsys.readouterr().err
    folder = tmp_path / "cache" / "vda-small"  # where pull puts it (a tiny model stands in for the release)
    assert export_main(["onnx", "vda_lite", "--tiny", "-o", str(folder), "--no-parity"]) == 0
    (folder / "model.onnx").unlink()
    capsys.readouterr()
    assert export_main(["onnx", "vda-small", "--no-parity"]) == 0
    assert json.loads(capsys.readouterr().out)["onnx"] == str(folder / "model.onnx")


@pytest.mark.slow
def test_the_node_started_in_another_folder_runs_the_params_files_relative_model(tmp_path: Path) -> None:
    """As a launch system or a systemd service starts it: `vdepth-node` in another current folder than the
    params file's, whose `model: ../models/m` is found from the file's folder; SIGINT ends it (exit 0)."""
    import os
    import subprocess
    import sys

    from test_ros_deployed import interrupt, wait_for

    script = Path(sys.executable).parent / "vdepth-node"
    if not script.is_file():
        pytest.skip("vdepth-node console script not installed")
    ws = tmp_path / "ws"
    (ws / "models" / "m").mkdir(parents=True)
    write_tiny_onnx(ws / "models" / "m", frames=8)
    params = params_file(ws / "config" / "p.yaml", "../models/m")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log = tmp_path / "node.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(script), "--ros-args", "--params-file", str(params)],
            cwd=elsewhere,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_for(log, f"from {ws / 'config' / '..' / 'models' / 'm'} (release", 120, proc)
        finally:
            code = interrupt(proc)
    assert code == 0, log.read_text()
    assert list(elsewhere.iterdir()) == []  # nothing written where it was started


def test_the_pseudo_labeler_takes_a_model_as_every_tool_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m vdepth_training.data.pseudo --model vda-large` (a released teacher) read as a folder
    named vda-large here: "vda-large/config.json not found" instead of the release's pull command."""
    from vdepth_training.data.pseudo import main as pseudo_main

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((12, 16, 3), 100, np.uint8))
    args = ["--images", "images", "--out", "labels"]
    assert pseudo_main([*args, "--model", "vda-large"]) == 2
    assert "`vdepth-export pull vda-large --accept-license`" in capsys.readouterr().err
    assert pseudo_main([*args, "--model", "modles/teacher"]) == 2
    tried = tmp_path / "modles" / "teacher"
    assert f"{tried} does not exist, relative to the current folder" in capsys.readouterr().err
    assert not (tmp_path / "labels").exists()


def test_a_model_folder_whose_weights_are_another_models_names_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ViT-S model.safetensors copied beside a tiny VDA's config.json (two pulls' or exports' files mixed by
    hand) stopped the tools with 'does not fit its config.json: N tensor(s) of another shape' and ten tensor
    names; now one line says what each file is, and the folder is only read."""
    from vdepth_ros.models.vda import VideoDepthAnything

    tiny = VideoDepthAnything.tiny_config()
    VideoDepthAnything(**tiny).save_pretrained(tmp_path / "model")
    VideoDepthAnything(**{**tiny, "hidden_size": 384, "num_heads": 6}).save_pretrained(tmp_path / "vits")
    shutil.copy(tmp_path / "vits" / "model.safetensors", tmp_path / "model" / "model.safetensors")
    before = files_of(tmp_path / "model")
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    backend: torch\n    scale_source: none\n")
    args = [str(clip(tmp_path / "c.mp4")), "-o", str(tmp_path / "out"), "--params", str(params), "--no-progress"]
    assert videocli.main([*args, "--model", str(tmp_path / "model")]) == 2
    (line,) = own_lines(capsys.readouterr().err)
    said = ["holds the weights of a Video Depth Anything ViT-S model", "config.json builds a Video Depth Anything "
            "model of ViT width 32", "import or export it again"]  # fmt: skip
    assert all(s in line for s in said) and "another shape" not in line, line
    assert files_of(tmp_path / "model") == before and not (tmp_path / "out").exists()
    # a family identify knows no layout of (vda_lite): the tensors of another shape, not a KeyError traceback
    from vdepth_ros.models.vda_lite import VideoDepthAnythingLite

    lite = VideoDepthAnythingLite.tiny_config()
    VideoDepthAnythingLite(**lite).save_pretrained(tmp_path / "lite")
    VideoDepthAnythingLite(**{**lite, "features": 2 * lite["features"]}).save_pretrained(tmp_path / "wide")
    shutil.copy(tmp_path / "wide" / "model.safetensors", tmp_path / "lite" / "model.safetensors")
    assert videocli.main([*args, "--model", str(tmp_path / "lite")]) == 2
    (line,) = own_lines(capsys.readouterr().err)
    assert "does not fit its config.json" in line and "another shape" in line, line
