"""The seam between a user's training run and deploying what it produced: the model folder a run
writes (`final/`, `--export-checkpoint`) carries the size and clip lengths it was trained at, and the
exporter and the engines run it at those unless told otherwise (then they say so, once)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from training_support import CONFIGS, fresh_accelerate, torchrun  # noqa: F401 - autouse fixture

TRAINED = (42, 56)  # neither the family's tiny shape nor the package default 280x504


def _config(tmp_path: Path) -> Path:
    """vda.yaml's tiny run as a user edits it: their crop size, clips of 4 frames (the model's window is 8)."""
    cfg = yaml.safe_load((CONFIGS / "vda.yaml").read_text())
    cfg["tiny"]["data"]["size"] = list(TRAINED)
    cfg["tiny"]["data"]["sources"][0].update(height=48, width=64)
    cfg["tiny"]["training"]["checkpoint_every"] = 1
    cfg["tiny"]["stages"] = [{"name": "finetune", "steps": 2, "trainable": "all", "clip_length": [4, 4]}]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_model_trained_at_its_own_size_is_exported_and_run_at_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model fine-tuned at 42x56 on clips of 4 frames was exported (`vdepth-export onnx
    runs/x/final`) at 280x504 with the family's 8-frame window, and the torch engine (node,
    vdepth-bag, vdepth-video, vdepth-eval) ran it at short side 280: a silently different model.
    Now final/ records what training fixed; export and engines default to it, and an explicit
    other shape runs with one warning naming the trained one."""
    from vdepth_export.cli import main as export_main
    from vdepth_training.train import main as train_main
    from vdepth_training.trainer import latest_checkpoint

    from vdepth_ros.config import PipelineConfig
    from vdepth_ros.models import load_model
    from vdepth_ros.pipeline import DepthPipeline
    from vdepth_ros.runtime import create_engine
    from vdepth_ros.runtime.spec import InputSpec

    cfg, run = _config(tmp_path), tmp_path / "runs" / "x"
    out = torchrun(["-m", "vdepth_training.train", "--config", str(cfg), "--tiny", "--output", str(run)])
    assert "process 1 of 2" in out
    engine = create_engine(run / "final", backend="torch")  # the node's, vdepth-bag's and vdepth-video's engine
    assert (engine.input_spec.height, engine.input_spec.width, engine.input_spec.frames) == (*TRAINED, 4)

    onnx = tmp_path / "x.onnx"
    assert export_main(["onnx", str(run / "final"), "-o", str(onnx), "--no-parity"]) == 0
    spec = InputSpec.load(onnx.with_name("x.onnx.json"))
    assert (spec.frames, spec.height, spec.width) == (4, *TRAINED)

    saved = json.loads((run / "final" / "config.json").read_text())["_trained"]  # where it is kept
    assert saved["sizes"] == [list(TRAINED)] and saved["clip_length"] == [4, 4]

    caplog.clear()
    with caplog.at_level(logging.WARNING):  # an explicit other size runs, said once
        other = create_engine(run / "final", backend="torch", height=28, width=42)
    assert (other.input_spec.height, other.input_spec.width) == (28, 42)
    said = [r.getMessage() for r in caplog.records if "trained at 42x56" in r.getMessage()]
    assert len(said) == 1 and "28x42" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the node's working_short_side, another explicit size
        DepthPipeline(PipelineConfig(working_short_side=28), engine)
    assert any("working_short_side 28: this model was trained at 42x56" in r.getMessage() for r in caplog.records)

    # a checkpoint exported records what it trained at, though the recipe was edited since; a model
    # built in code or imported records none
    ckpt = latest_checkpoint(run)
    edited = yaml.safe_load(cfg.read_text())
    edited["tiny"]["data"]["size"] = [28, 42]
    cfg.write_text(yaml.safe_dump(edited))
    assert train_main(["--config", str(cfg), "--tiny", "--output", str(run), "--export-checkpoint", str(ckpt)]) == 0
    assert load_model(run / "export").trained["sizes"] == [list(TRAINED)]
    plain = load_model(run / "final")
    plain.trained = None
    plain.save_pretrained(tmp_path / "plain")
    assert "_trained" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    assert create_engine(tmp_path / "plain", backend="torch").input_spec.height == 280  # the package default


def test_a_damaged_training_record_is_one_error_naming_the_fix(tmp_path: Path) -> None:
    from vdepth_ros.errors import ModelLoadError
    from vdepth_ros.models import build_model, family_class, load_model

    model = build_model("vda", **family_class("vda").tiny_config())
    model.trained = {"sizes": [[42, 56]], "clip_length": [4, 4]}
    model.save_pretrained(tmp_path / "m")
    assert load_model(tmp_path / "m").trained == model.trained
    # the window follows a fixed clip length only; clips of several lengths keep the family's (8)
    from vdepth_ros.runtime.shapes import spec_from_model

    assert spec_from_model(model).frames == 4
    model.trained = {"sizes": [[42, 56]], "clip_length": [3, 6]}
    assert (spec_from_model(model).frames, spec_from_model(model).height) == (8, 42)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["_trained"] = {"sizes": [42, 56]}
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="_trained must be"):
        load_model(tmp_path / "m")


def test_a_metric_model_trained_on_disparity_targets_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Fine-tuning a metric VDA (`metric: true`, e.g. a metric release as model.init_from) trained its
    output towards normalised disparity, and final/ still said metric: the node and vdepth-bag then
    read that disparity-like output as depth in metres. Now the run stops before training, naming the
    fix, which trains (the metric weights as training.init of a relative model)."""
    from vdepth_training.train import main as train_main

    from vdepth_ros.models import build_model, family_class

    metric = build_model("vda", **{**family_class("vda").tiny_config(), "metric": True})
    metric.save_pretrained(tmp_path / "metric")
    cfg = yaml.safe_load((CONFIGS / "vda.yaml").read_text())
    cfg["tiny"]["stages"][0]["steps"] = 1
    cfg["model"]["config"] = None  # the family's tiny config and the keys below
    for model, init in ((None, str(tmp_path / "metric")), ({"config": {"metric": True}}, None)):
        cfg["model"]["init_from"] = init
        cfg["tiny"]["model"] = {"use_tiny_config": True, **(model or {"config": None})}
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        run = tmp_path / "run"
        assert train_main(["--config", str(tmp_path / "c.yaml"), "--tiny", "--output", str(run)]) == 2
        err = capsys.readouterr().err
        assert "trains relative disparity" in err and "training.init" in err and not (run / "final").exists()
    cfg["model"]["init_from"] = None
    cfg["tiny"]["model"] = {"use_tiny_config": True, "config": {"metric": False}}
    cfg["tiny"]["training"]["init"] = str(tmp_path / "metric")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert train_main(["--config", str(tmp_path / "c.yaml"), "--tiny", "--output", str(tmp_path / "ok")]) == 0


def test_a_crop_the_family_cannot_run_is_named_in_training_and_deployment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """vda trained at 30x40 in silence (its 14-pixel patch grid saw 28x28 of each crop) and the model
    folder then recorded a size no engine runs. Now training warns once, naming the size engines run,
    and the engine says it runs the nearest multiple."""
    from vdepth_training.train import main as train_main

    from vdepth_ros.runtime import create_engine

    cfg = yaml.safe_load((CONFIGS / "vda.yaml").read_text())
    cfg["tiny"]["data"]["size"] = [30, 40]
    cfg["tiny"]["stages"][0]["steps"] = 1
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    with caplog.at_level(logging.WARNING):
        assert train_main(["--config", str(tmp_path / "c.yaml"), "--tiny", "--output", str(tmp_path / "run")]) == 0
        engine = create_engine(tmp_path / "run" / "final", backend="torch")
    said = [r.getMessage() for r in caplog.records]
    assert sum("crop 30x40" in m and "not a multiple of 14" in m and "28x42" in m for m in said) == 1
    assert any("trained at 30x40, not a multiple of 14: it runs at 28x42" in m for m in said)
    assert (engine.input_spec.height, engine.input_spec.width) == (28, 42)
