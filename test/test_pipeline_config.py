"""PipelineConfig validation, from_params and ROS 2 parameter files."""

from __future__ import annotations

from pathlib import Path

import pytest

from vdepth_ros.config import PipelineConfig, load_params
from vdepth_ros.errors import ConfigError


def test_defaults_are_valid_and_roundtrip():
    cfg = PipelineConfig()
    assert cfg.alignment == "auto" and cfg.publish == "provisional" and cfg.scale_clip is None
    again, unknown = PipelineConfig.from_params(cfg.to_params())
    assert again == cfg and unknown == {}


def test_from_params_splits_unknown_keys_and_takes_integers_for_numbers():
    params = {"window": 45, "near": 1, "cloud_colors": False, "image_topic": "/cam/image", "qos.depth": 5}
    cfg, unknown = PipelineConfig.from_params(params)
    assert cfg.window == 45 and isinstance(cfg.window, int)
    assert cfg.near == 1.0 and isinstance(cfg.near, float)
    assert cfg.cloud_colors is False
    assert unknown == {"image_topic": "/cam/image", "qos.depth": 5}


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"publish": "sometimes"}, r"publish .*'sometimes'"),
        ({"alignment": "icp"}, "alignment"),
        ({"window": 8, "overlap": 8}, "overlap"),
        ({"window": -1}, "window"),
        ({"window": 2.5}, "window must be an integer"),
        ({"min_depth": 5.0, "max_depth": 1.0}, "min_depth"),
        ({"scale_source": "range", "near": 3.0, "far": 2.0}, "near"),
        ({"scale_clip_min": 1.5, "scale_clip_max": 0.7}, "scale_clip"),
        ({"cloud_colors": "maybe"}, "cloud_colors must be true or false"),
        ({"cloud_colors": "false"}, "cloud_colors must be true or false, got 'false' .*without quotes"),
        ({"window": 45.0}, r"window must be an integer, got 45.0 \(write 45"),
        ({"window": True}, "window must be an integer, got True"),
        ({"keyframes": [0, "a"]}, "keyframes"),
        ({"model": 3}, "model must be a string"),
        ({"anchor_min_inliers": 2.0}, "anchor_min_inliers"),
        ({"graph_lag": 0}, "graph_lag"),
    ],
)
def test_invalid_values_name_field_and_value(params, match):
    with pytest.raises(ConfigError, match=match):
        PipelineConfig.from_params(params)


def test_scale_clip_and_default_model(monkeypatch, tmp_path):
    assert PipelineConfig(scale_clip_min=0.7, scale_clip_max=1.5).scale_clip == (0.7, 1.5)
    monkeypatch.setenv("VDEPTH_DEFAULT_MODEL", "/opt/models/vda")
    assert PipelineConfig().resolved_model() == "/opt/models/vda"
    assert PipelineConfig(model=str(tmp_path)).resolved_model() == str(tmp_path)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "depth.yaml"
    p.write_text(text)
    return p


def test_load_params_merges_the_sections_that_apply_as_rcl_does(tmp_path):
    path = _write(
        tmp_path,
        """
/**:
  ros__parameters:
    window: 32
    publish: final
    qos:
      depth: 5
      reliability: best_effort
/**/depth_node:
  ros__parameters:
    window: 45
depth_node:
  ros__parameters:
    overlap: 9
other_node:
  ros__parameters:
    window: 7
""",
    )
    params = load_params(path)
    assert params == {"window": 45, "publish": "final", "qos.depth": 5, "qos.reliability": "best_effort", "overlap": 9}
    assert load_params(path, "other_node")["window"] == 7
    assert load_params(path, "/robot/other_node")["window"] == 32  # a plain name: no namespace only
    cfg, unknown = PipelineConfig.from_params(params)
    assert (cfg.window, cfg.overlap, cfg.publish) == (45, 9, "final")
    assert unknown == {"qos.depth": 5, "qos.reliability": "best_effort"}


def test_load_params_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="ros__parameters"):
        load_params(_write(tmp_path, "foo:\n  bar: 1\n"))
    with pytest.raises(ConfigError, match="YAML"):
        load_params(_write(tmp_path, "a: [1, 2\n"))


def test_repository_default_params_file_is_valid(repo_root):
    path = repo_root / "config" / "depth.yaml"
    if not path.is_file():
        pytest.skip("config/depth.yaml not written yet (owned by the ROS node)")
    cfg, _ = PipelineConfig.from_params(load_params(path))
    assert cfg.publish in ("provisional", "final", "both")


def test_engine_options_follow_the_backend() -> None:
    assert PipelineConfig().engine_options() == {"device_id": 0}  # auto: a GPU backend, if chosen, takes it
    assert PipelineConfig(engine_threads=1, device_id=1, backend="onnxruntime").engine_options() == {
        "threads": 1,
        "device_id": 1,
    }
    assert PipelineConfig(engine_threads=3, backend="torch").engine_options() == {"threads": 3}
    assert PipelineConfig(device_id=2, backend="tensorrt").engine_options() == {"device_id": 2}
    with pytest.raises(ConfigError, match="engine_threads does not apply to backend 'tensorrt'"):
        PipelineConfig(engine_threads=2, backend="tensorrt")
    for bad in ({"engine_threads": -1}, {"device_id": -1}):
        with pytest.raises(ConfigError, match=">= 0"):
            PipelineConfig(**bad)


def test_engine_threads_reach_the_onnxruntime_session(tmp_path: Path) -> None:
    from fakes import write_tiny_onnx

    from vdepth_ros.pipeline import DepthPipeline
    from vdepth_ros.runtime.onnx_backend import usable_cores

    model = str(write_tiny_onnx(tmp_path))
    # 0: the cores the process may run on (ONNX Runtime's own default would count every core of the machine)
    for params, threads in (({"engine_threads": 1}, 1), ({}, usable_cores())):
        pipe = DepthPipeline.from_dict({"model": model, "backend": "onnxruntime", **params})
        assert pipe.engine.session.get_session_options().intra_op_num_threads == threads
