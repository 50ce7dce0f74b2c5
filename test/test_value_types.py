"""One type rule for every setting a user gives (`vdepth_ros.values`), whichever way it comes in.

The node's parameters, the YAML the offline tools read and a model's config (config.json,
`vdepth-export import --set`, a recipe's `model.config`) had three copies of the rule that
disagreed: `window: 8.0` and `cloud_colors: "false"` stopped the node but ran `vdepth-bag` on the
same file; a recipe's `model.config: {metric: "false"}` built a metric model (a non-empty string
is true). Now each way in takes the same values and refuses the others in the same words.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vdepth_ros.errors import ConfigError, ModelLoadError

#: a mistake in the node's params file -> the words of the fix every tool gives
PARAMS_MISTAKES = {
    "quoted bool": ('cloud_colors: "false"', "cloud_colors must be true or false, got 'false'", "without quotes"),
    "bool for an integer": ("window: true", "window must be an integer, got True", ""),
    "decimal for an integer": ("window: 8.0", "window must be an integer, got 8.0", "write 8"),
    "decimals in an integer list": ("keyframes: [0.0, 8.0]", "keyframes must be a list of integers", "write 0"),
    "number for a string": ("model: 3", "model must be a string, got 3", "quotes"),
    # ROS-side keys vdepth-bag reproduces: `rectify: "false"` rectified every image (bool("false"))
    "quoted bool of the ROS side": ('rectify: "false"', "rectify must be true or false, got 'false'", "without quotes"),
    "string for a ROS-side number": ('sync_slop: "0.05"', "sync_slop must be a number, got '0.05'", "without quotes"),
    # infinity/NaN passed every range check (no max) and gave a one-colour preview or a NaN depth scale
    "infinite colormap bound": ("colormap_max: .inf", "colormap_max must be a number, got inf", "finite"),
    "NaN for a pipeline number": ("far: .nan", "far must be a number, got nan", "finite"),
    "inf as rcl reads it": ("colormap_min: -inf", "colormap_min must be a number, got -inf", "finite"),
}


def _params(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "depth.yaml"
    path.write_text(f"/**:\n  ros__parameters:\n    {line}\n")
    return path


def test_a_value_of_the_wrong_type_stops_vdepth_bag_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vdepth_ros.offline.bag import main

    for line, reason, fix in PARAMS_MISTAKES.values():
        params = _params(tmp_path, line)
        assert main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--params", str(params)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and reason in err and fix in err and "Traceback" not in err, (line, err)
    assert not (tmp_path / "out").exists()


@pytest.mark.ros
@pytest.mark.parametrize("mistake", list(PARAMS_MISTAKES))
def test_the_node_refuses_the_same_values_in_the_same_words_as_the_offline_tools(
    tmp_path: Path, mistake: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vdepth-node --ros-args --params-file` with the file `vdepth-bag --params` refused above."""
    pytest.importorskip("rclpy")
    from fakes import run_node_main

    from vdepth_ros.offline.runner import load_node_params, pipeline_config

    line, reason, fix = PARAMS_MISTAKES[mistake]
    params = _params(tmp_path, line)
    with pytest.raises(ConfigError) as offline:
        pipeline_config(load_node_params(params))
    code, err = run_node_main(params, monkeypatch, capsys)
    assert code == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines == [f"invalid configuration: {offline.value}"], err
    assert reason in lines[0] and fix in lines[0]


def test_infinity_and_nan_are_refused_at_runtime_naming_a_value_that_works() -> None:
    """`ros2 param set /depth_node colormap_min -inf` (a dynamic parameter) is refused with the reason and
    an example, not taken (a preview of one colour); in a list too."""
    from vdepth_ros import node_params as P
    from vdepth_ros.values import type_problem

    specs = {s.name: s for s in P.node_param_specs()}
    for name in ("colormap_min", "colormap_max", "watchdog_timeout", "flicker_period"):
        for bad in (float("inf"), float("-inf"), float("nan")):
            reason = P.runtime_change_error(name, specs[name].default, bad, specs)
            assert reason is not None and "finite" in reason and f"e.g. {name} " in reason
    assert type_problem(list[float], [0.5, float("inf")]) is not None
    # PyYAML reads `inf` (no dot) as text: "write the number, without quotes" sent the user round in a circle
    text = type_problem(float, "inf")
    assert text is not None and "finite" in text and "without quotes" not in text


def test_an_integer_is_a_number_everywhere(tmp_path: Path) -> None:
    """`far: 6` (YAML, JSON and `-p far:=6` write whole numbers so) is 6.0 for the offline tools as for
    the node (test_ros_process), and for a model's number settings."""
    import inspect

    from vdepth_ros.models import config_type_problem, family_class
    from vdepth_ros.offline.runner import load_node_params, pipeline_config

    config = pipeline_config(load_node_params(_params(tmp_path, "far: 6")))
    assert config.far == 6.0 and isinstance(config.far, float)
    params = inspect.signature(family_class("gemdepth").__init__).parameters
    assert config_type_problem(params, {"rope_freq": 100, "window": 16}) is None


def test_numpy_numbers_from_a_script_are_numbers() -> None:
    """`DepthPipeline.from_dict({"window": np.int64(16)})` (a value computed with numpy) was refused:
    "window must be an integer, got np.int64(16)"."""
    import numpy as np

    from vdepth_ros.config import PipelineConfig

    config, _ = PipelineConfig.from_params({"window": np.int64(16), "overlap": np.int32(4), "far": np.float32(8)})
    assert (config.window, config.overlap, config.far) == (16, 4, 8.0)
    assert type(config.window) is int and type(config.far) is float
    with pytest.raises(ConfigError, match=r"window must be an integer, got np\.float64"):
        PipelineConfig.from_params({"window": np.float64(16.5)})
    config, _ = PipelineConfig.from_params({"cloud_colors": np.bool_(False)})  # a mask's .any(), say
    assert config.cloud_colors is False
    with pytest.raises(ConfigError, match=r"window must be an integer, got np\.True_"):
        PipelineConfig.from_params({"window": np.bool_(True)})


#: a mistake in a model's config -> the words of the fix (config.json, --set and model.config alike)
MODEL_MISTAKES: dict[str, tuple[Any, str]] = {
    "metric": ("false", "metric expects true or false, got 'false' (a string: write true or false, without quotes)"),
    "window": (8.0, "window expects an integer, got 8.0 (write 8, without a decimal point)"),
    "max_frames": (True, "max_frames expects an integer, got True"),
    "out_channels": ([16, 32.5], "out_channels expects a list of integers, got [16, 32.5] (item 1 is 32.5)"),
    # settings whose default is None took anything (a string for a number ran until inference)
    "overlap": ("4", "overlap expects an integer (or null), got '4' (a string: write the number, without quotes)"),
    "keyframes": ([0, 8.5], "keyframes expects a list of integers (or null), got [0, 8.5] (item 1 is 8.5)"),
}


def test_every_model_setting_defaulting_to_none_is_held_to_its_declared_type() -> None:
    """A family's constructor setting whose default is None (`overlap: int | None`, `lora_alpha:
    float | None`, `unet: dict | None`, `augment_noise: bool | None`) took any value; now each is
    judged by its declared type, and None (JSON null) is still taken."""
    import inspect

    from vdepth_ros.models import MODEL_FAMILIES, config_parameters, config_type_problem, family_class

    checked = 0
    for family in MODEL_FAMILIES:
        params = config_parameters(family_class(family).__init__)
        for name, param in params.items():
            if param.default is not None or param.annotation is inspect.Parameter.empty:
                continue
            assert config_type_problem(params, {name: None}) is None, (family, name)
            wrong = 3 if "str" in str(param.annotation) and "dict" not in str(param.annotation) else "x"
            problem = config_type_problem(params, {name: wrong})
            assert problem is not None and problem.startswith(f"{name} expects "), (family, name, problem)
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("key", list(MODEL_MISTAKES))
def test_a_model_setting_of_the_wrong_type_is_refused_in_the_same_words_everywhere(tmp_path: Path, key: str) -> None:
    """config.json of a model folder, `vdepth-export import --set` and a training recipe's
    `model.config` (which used to build a metric model from `metric: "false"`)."""
    import torch
    from vdepth_export.import_released import check_overrides
    from vdepth_training.config import build_family_model

    from vdepth_ros.models import load_model
    from vdepth_ros.models.vda import VideoDepthAnything

    value, words = MODEL_MISTAKES[key]
    torch.manual_seed(0)
    folder = VideoDepthAnything(**VideoDepthAnything.tiny_config()).save_pretrained(tmp_path / "m")
    config = folder / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), key: value}))
    with pytest.raises(ModelLoadError) as loaded:
        load_model(folder)
    assert str(loaded.value) == f"{config}: {words}"
    with pytest.raises(ConfigError) as overridden:
        check_overrides("vda", {key: value})
    assert str(overridden.value) == f"--set {words}"
    recipe = {"model": {"family": "vda", "use_tiny_config": True, "config": {key: value}}}
    with pytest.raises(ConfigError) as trained:
        build_family_model(recipe)
    assert str(trained.value) == f"model.config: {words}"


def test_the_offline_tools_name_a_parameter_the_node_does_not_have(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`windw: 8` in the file given to `vdepth-bag --params` was ignored without a word (the node warns
    about it at start-up); now the offline tools give the node's warning, with the closest name.
    rclpy's own parameters and the publishers' `qos_overrides.*` are known."""
    from vdepth_ros.offline.runner import load_node_params

    path = tmp_path / "depth.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    windw: 8\n    use_sim_time: true\n"
        "    qos_overrides:\n      /depth:\n        publisher:\n          depth: 5\n"
    )
    with caplog.at_level("WARNING"):
        params = load_node_params(path)
    assert params["windw"] == 8
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "ignoring 1 parameter(s)" in warned[0], warned
    assert "windw (did you mean window?)" in warned[0] and str(path) in warned[0]
    assert "-p arguments" not in warned[0]  # a file, not a command line, is what to check
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_node_params()  # the bundled config/depth.yaml: every name known
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_scientific_notation_that_pyyaml_left_as_text_is_named_with_the_number_to_write() -> None:
    """`far: 1e1` in a YAML a script reads with PyYAML (YAML 1.1: no dot, so text) reaches
    `PipelineConfig` as '1e1'; the fix said "write the number, without quotes", which the user had
    done. It now says why it is text and what to write."""
    from vdepth_ros.config import PipelineConfig

    with pytest.raises(ConfigError) as err:
        PipelineConfig.from_params({"far": "1e1"})
    assert (
        str(err.value)
        == "far must be a number, got '1e1' (a string: PyYAML (YAML 1.1) reads 1e1 without a dot as text; write 10.0)"
    )
    with pytest.raises(ConfigError, match=r"window must be an integer, got '1e1' \(.*write 10\)"):
        PipelineConfig.from_params({"window": "1e1"})
