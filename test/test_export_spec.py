"""The spec beside an exported graph (`model.onnx.json`) as users meet it: edited by hand with a wrong
value, missing beside an ONNX file from another tool. Either is one error line naming the file, the
field and what to run, at load time: before, most wrong values loaded and ran (an unknown alignment,
an upside-down pixel range, an unknown precision, `dynamic_frames: "no"`), or failed later without
naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import write_tiny_onnx

from vdepth_ros.errors import ConfigError
from vdepth_ros.offline import video as videocli
from vdepth_ros.runtime import create_engine

#: field -> a wrong value a hand edit leaves (the tiny graph: T=4, 48x64, window 4, overlap 1)
WRONG = {
    "alignment": "keyframes",
    "value_range": [255, 0],
    "precision": "fp8",
    "multiple_of": 0,
    "dynamic_frames": "no",
    "keyframes": [0, 9],
    "frames_rule": "4n",
    "overlap": 4,
    "frames": "4",
    "output_kind": "metric",
    "input_name": "",
    "max_frames": -1,
}


@pytest.fixture(scope="module")
def exported(module_tmp: Path) -> Path:
    folder = module_tmp
    write_tiny_onnx(folder)
    return folder


def _edited(exported: Path, tmp_path: Path, field: str, value: object) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.onnx").write_bytes((exported / "model.onnx").read_bytes())
    spec = json.loads((exported / "model.onnx.json").read_text())
    (folder / "model.onnx.json").write_text(json.dumps({**spec, field: value}))
    return folder


@pytest.mark.parametrize("field", list(WRONG))
def test_a_hand_edited_spec_value_is_refused_naming_file_field_and_fix(
    exported: Path, tmp_path: Path, field: str
) -> None:
    folder = _edited(exported, tmp_path, field, WRONG[field])
    with pytest.raises(ConfigError) as err:
        create_engine(folder, backend="onnx")
    msg = str(err.value)
    assert str(folder / "model.onnx.json") in msg and field in msg, msg
    assert "vdepth-export onnx" in msg, msg


def test_a_spec_that_is_not_json_or_not_an_object_names_the_file(exported: Path, tmp_path: Path) -> None:
    folder = _edited(exported, tmp_path, "frames", 4)
    for text in ('{"family": "fake", frames: 4', "[1, 4, 3, 48, 64]"):
        (folder / "model.onnx.json").write_text(text)
        with pytest.raises(ConfigError, match=r"model\.onnx\.json is not valid"):
            create_engine(folder, backend="onnx")


def _clip(tmp_path: Path) -> Path:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(6):
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    return frames


def test_vdepth_video_with_a_hand_edited_spec_is_one_line_and_exit_2(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _edited(exported, tmp_path, "alignment", "keyframes")  # before: ran as if the field were right
    out = tmp_path / "out"
    code = videocli.main([str(_clip(tmp_path)), "-o", str(out), "--model", str(folder), "--no-progress",
                          "--no-preview", "--params", str(_auto_alignment(tmp_path))])  # fmt: skip
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vdepth-video")]
    assert code == 2 and len(err) == 1, err
    assert "model.onnx.json" in err[0] and "alignment" in err[0], err
    assert not out.exists() or not any(out.rglob("*.png"))


def _auto_alignment(tmp_path: Path) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    alignment: auto\n")
    return params


@pytest.mark.parametrize("name", ["model.onnx", "depth_anything_video.onnx"])
def test_an_onnx_from_another_tool_says_how_to_convert_its_checkpoint(
    exported: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ONNX file without our spec (another tool's export): the error says how to get one that runs."""
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / name).write_bytes((exported / "model.onnx").read_bytes())
    model = foreign if name == "model.onnx" else foreign / name
    code = videocli.main([str(_clip(tmp_path)), "-o", str(tmp_path / "out"), "--model", str(model),
                          "--no-progress", "--no-preview"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{foreign / name}.json: not found" in err, err  # the start-up check's words, as the node gives them
    assert "vdepth-export import" in err and "vdepth-export onnx" in err, err


def test_another_tools_onnx_kept_in_a_model_folder_does_not_stop_the_node_start_up_check(
    exported: Path, tmp_path: Path
) -> None:
    """The node checks every file it may load before starting (`check_model_files`); a graph the runtime
    never loads from the folder (another tool's export kept beside ours, no spec) stopped it with
    "...json: missing", while vdepth-video ran the same folder. The graphs it does load stay checked."""
    from vdepth_ros.runtime.checks import ModelFileError, check_model_files

    folder = _edited(exported, tmp_path, "frames", 4)
    (folder / "depth_anything_v2_vits.onnx").write_bytes((exported / "model.onnx").read_bytes())
    (folder / "video_depth_anything.engine").write_bytes(b"")
    assert {f.name for f in check_model_files(folder)} == {"model.onnx"}
    (folder / "model.160x288.onnx").write_bytes((exported / "model.onnx").read_bytes())  # a variant: loaded
    with pytest.raises(ModelFileError, match=r"model\.160x288\.onnx\.json: not found"):
        check_model_files(folder)


def test_fp16_asked_of_onnx_runtime_on_the_cpu_says_it_is_not_applied(
    exported: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`precision: fp16` (or `bf16`) with an fp32 model.onnx on ONNX Runtime's CPU EP ran fp32 without a
    word; one warning per folder now says so and what to export."""
    folder = _edited(exported, tmp_path, "frames", 4)
    with caplog.at_level("WARNING"):
        create_engine(folder, backend="onnxruntime", precision="fp32").close()
        assert not [r for r in caplog.records if "not applied" in r.getMessage()]
        for _ in range(2):
            create_engine(folder, backend="onnxruntime", precision="fp16").close()
    warned = [r.getMessage() for r in caplog.records if "precision fp16 is not applied" in r.getMessage()]
    assert len(warned) == 1 and f"vdepth-export onnx {folder} --precision fp16" in warned[0], warned


@pytest.mark.parametrize(
    "record", ['{"frames": 4, "height": 48', "[]", '{"frames": 4}', '{"frames": "4", "height": 48, "width": 64}']
)
def test_a_damaged_split_record_runs_the_whole_graph_with_one_warning(
    exported: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, record: str
) -> None:
    """`model.split.json` cut off or edited by hand: every tool stopped with a JSONDecodeError/TypeError
    traceback (the split graphs are used by default). It is now treated as a stale split: the
    whole-window graph runs, and one warning names the file and `vdepth-export split`."""
    folder = _edited(exported, tmp_path, "frames", 4)
    for name in ("model.frame.onnx", "model.window.onnx"):
        (folder / name).write_bytes((exported / "model.onnx").read_bytes())
    (folder / "model.split.json").write_text(record)
    with caplog.at_level("WARNING"), create_engine(folder, backend="onnxruntime") as engine:
        assert not engine.supports_reuse
        assert engine.infer(np.zeros((4, 48, 64, 3), np.uint8)).shape == (4, 48, 64)
    warned = [r.getMessage() for r in caplog.records if "not reusing overlap work" in r.getMessage()]
    assert len(warned) == 1 and "model.split.json" in warned[0] and f"vdepth-export split {folder}" in warned[0]


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "model.onnx.json"])
def test_a_file_of_a_model_folder_given_as_the_model_names_the_folder(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--model FOLDER/model.safetensors` (or its config.json, a spec) was called "a released
    checkpoint: import it first" or "unknown model file type"; the fix is to give the folder."""
    from test_runtime_tinynet import TinyVideoNet

    folder = tmp_path / "my model"
    folder.mkdir()
    write_tiny_onnx(folder)
    TinyVideoNet(channels=4).eval().save_pretrained(folder)
    code = videocli.main([str(_clip(tmp_path)), "-o", str(tmp_path / "out"), "--model", str(folder / name),
                          "--no-progress", "--no-preview"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"is a file of the model folder {folder}: give the folder itself" in err, err
