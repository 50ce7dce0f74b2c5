"""`vdepth-export import`: released checkpoints (in their own key layouts) -> model folders the tools load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from vdepth_export.cli import main as cli_main
from vdepth_export.import_released import parse_overrides

from vdepth_ros.errors import ConfigError
from vdepth_ros.models import load_model
from vdepth_ros.models.gemdepth import GemDepth
from vdepth_ros.models.vda import VideoDepthAnything
from vdepth_ros.runtime import create_engine


def _sets(config: dict) -> list[str]:
    """`--set KEY=VALUE` arguments for a family's tiny config (JSON values)."""
    return [a for k, v in config.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def test_vda_release_imports_to_a_folder_the_runtime_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    tiny = VideoDepthAnything(**VideoDepthAnything.tiny_config()).eval()
    ckpt = tmp_path / "video_depth_anything_vits.pth"
    torch.save(tiny.released_state_dict(), ckpt)  # the release's key names, not ours
    out = tmp_path / "vda_small"
    args = ["import", "vda", str(ckpt), "-o", str(out), "--encoder", "vits", *_sets(VideoDepthAnything.tiny_config())]
    assert cli_main(args) == 0
    assert json.loads(capsys.readouterr().out)["model"] == str(out)
    again = load_model(out)
    frames = torch.rand(4, 3, 70, 98)
    assert torch.equal(again.predict(frames), tiny.predict(frames))
    # what the node does with `model: <folder>`: the torch backend through DepthEngine
    engine = create_engine(out, backend="torch", height=70, width=98)
    clip = (np.random.default_rng(0).random((engine.input_spec.frames, 70, 98, 3)) * 255).astype(np.uint8)
    assert np.isfinite(engine.infer(clip)).all()
    # a second import does not overwrite the user's folder unless asked
    assert cli_main(args) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli_main([*args, "--overwrite", "--weights-fp16"]) == 0
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        names = list(f.keys())
        stored = {f.get_tensor(k).dtype for k in names}
    assert torch.float16 in stored and torch.float32 not in stored
    halved = load_model(out).predict(frames)  # stored in fp16, computed in fp32
    assert halved.dtype == torch.float32
    torch.testing.assert_close(halved, tiny.predict(frames), rtol=0.05, atol=0.05 * float(halved.abs().max()))


def test_gemdepth_release_imports(tmp_path: Path) -> None:
    torch.manual_seed(1)
    tiny = GemDepth(**GemDepth.tiny_config()).eval()
    ckpt = tmp_path / "gemdepth.pth"
    torch.save(tiny.released_state_dict(), ckpt)
    assert cli_main(["import", "gemdepth", str(ckpt), "-o", str(tmp_path / "g"), *_sets(GemDepth.tiny_config())]) == 0
    frames = torch.rand(4, 3, 70, 98)
    assert torch.equal(load_model(tmp_path / "g").predict(frames), tiny.predict(frames))


def test_import_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "x.pth"
    torch.save({"head.unknown": torch.zeros(1)}, ckpt)
    cases = [
        (["import", "vda_lite", str(ckpt), "-o", str(tmp_path / "a")], "no released checkpoint"),
        (["import", "midas", str(ckpt), "-o", str(tmp_path / "a")], "unknown family 'midas'"),
        (["import", "vda", str(tmp_path / "none.pth"), "-o", str(tmp_path / "a")], "does not exist"),
        (["import", "depthcrafter", str(ckpt), "-o", str(tmp_path / "a")], "takes 2 source(s)"),
        (["import", "vda", str(ckpt), "-o", str(tmp_path / "a"), *_sets(VideoDepthAnything.tiny_config())], "keys"),
        (["import", "gemdepth", str(ckpt), "-o", str(tmp_path / "a"), "--encoder", "vits"], "ViT-L only"),
    ]
    for args, match in cases:
        assert cli_main(args) == 2, args
        assert match in capsys.readouterr().err, match
    assert not (tmp_path / "a").exists()  # nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".vdepth-partial-")]


def test_overrides_parse_json_values() -> None:
    assert parse_overrides(["window=16", "layer_indices=[0, 1]", "encoder=vits", "flag=true"]) == {
        "window": 16,
        "layer_indices": [0, 1],
        "encoder": "vits",
        "flag": True,
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["window"])
