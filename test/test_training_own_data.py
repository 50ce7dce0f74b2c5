"""A user's whole journey with their own data, as the docs give it: an RGB-D bag -> sequences
(`layouts rosbag`) -> a recipe's tiny config on two ranks, stopped and resumed -> `final/` ->
`vdepth-export onnx` -> `vdepth-bag`; and a training checkpoint given where a model folder goes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from training_support import CONFIGS, fresh_accelerate, torchrun  # noqa: F401 - autouse fixture
from vdepth_training.trainer import latest_checkpoint

from vdepth_ros.errors import VdepthError
from vdepth_ros.offline.synth import synthetic_frames, write_image_bag

DEPTH = "/camera/aligned_depth_to_color/image_raw"
COLOR = "/camera/color/image_raw"


def _own_config(tmp_path: Path, data: Path | None, steps: int = 4) -> Path:
    """vda.yaml as a user edits it: its tiny run trains on their folder, checkpoints every 2 steps."""
    text = (CONFIGS / "vda.yaml").read_text()
    cfg = yaml.safe_load(text)
    if data is not None:
        cfg["tiny"]["data"]["sources"] = [{"name": "mine", "layout": "sequence", "root": str(data)}]
    cfg["tiny"]["training"]["checkpoint_every"] = 2
    cfg["tiny"]["stages"][0]["steps"] = steps
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_training_checkpoint_where_a_model_folder_goes_names_final_and_the_export_command(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`vdepth-export onnx runs/x/checkpoints/checkpoint_N` (and the node, `vdepth-bag`, `load_model`)
    called the trainer's checkpoint "a released checkpoint" and sent the user to `vdepth-export import
    vda ...`, which failed with a wall of missing keys for any model config but the family's default
    (a --tiny run, another size). Now each names the run's `final/` and the command that writes this
    checkpoint as a model folder with the run's own config, which works."""
    from vdepth_export.cli import main as export_main
    from vdepth_export.import_released import import_released
    from vdepth_training.train import main as train_main

    from vdepth_ros.models import load_model

    cfg, run = _own_config(tmp_path, None), tmp_path / "runs" / "x"
    assert train_main(["--config", str(cfg), "--tiny", "--output", str(run), "--max-steps", "2"]) == 0
    ckpt = latest_checkpoint(run)
    command = f"--tiny --output {run} --export-checkpoint {ckpt}"
    assert export_main(["onnx", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "training checkpoint" in err and command in err and "released checkpoint" not in err
    assert f"{run / 'final'}" in err  # where a finished run's model is
    assert export_main(["onnx", str(run)]) == 2  # the run's own folder, before it finished: its latest checkpoint
    assert command in capsys.readouterr().err
    with pytest.raises(VdepthError, match="training checkpoint") as info:
        load_model(ckpt)  # the node, vdepth-bag and vdepth-video load through it
    assert command in str(info.value)
    # the import's own reason (a --tiny run's ViT is narrower than the family's default), then the fix
    with pytest.raises(VdepthError, match="found a Video Depth Anything checkpoint of ViT width") as info:
        import_released("vda", [ckpt], tmp_path / "imported")
    assert command in str(info.value)
    # the named command, with the run's config, writes a model folder that loads
    assert train_main(["--config", str(cfg), *command.split()]) == 0
    assert load_model(run / "export").family == "vda"
    (run / "export").rename(run / "final")  # as a finished run holds it
    assert export_main(["onnx", str(run), "--frames", "8", "--height", "28", "--width", "42"]) == 2
    assert f"its model is {run / 'final'} (use it)" in capsys.readouterr().err


@pytest.mark.slow
def test_own_rgbd_bag_to_a_deployed_model_on_two_ranks(tmp_path: Path) -> None:
    """The docs' commands in order, each step's output the next one's input without hand edits."""
    from vdepth_training.data.layouts import main as layouts_main

    from vdepth_ros.offline.bag import main as bag_main

    n, h, w = 20, 48, 64
    mm = [np.tile((800 + 20 * i + 10 * np.arange(w)).astype(np.uint16), (h, 1)) for i in range(n)]
    bag = tmp_path / "rec"
    write_image_bag(bag, synthetic_frames(n, h, w), image_topic=COLOR, camera_info_topic="/camera/color/camera_info",
                    sparse_depth=mm, sparse_depth_topic=DEPTH)  # fmt: skip
    data = tmp_path / "data" / "mine"
    assert (
        layouts_main(["rosbag", str(bag), "--out", str(data), "--depth-topic", DEPTH, "--frames-per-sequence", "10"])
        == 0
    )
    cfg, run = _own_config(tmp_path, data), tmp_path / "runs" / "mine"
    base = ["-m", "vdepth_training.train", "--config", str(cfg), "--tiny", "--output", str(run)]
    torchrun([*base, "--max-steps", "2"])
    assert not (run / "final").exists() and latest_checkpoint(run).name == "checkpoint_2"
    out = torchrun([*base, "--resume"])
    assert "process 1 of 2" in out
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert steps == [1, 2, 3, 4]
    from vdepth_export.cli import main as export_main

    assert export_main(["onnx", str(run / "final"), "--frames", "8", "--height", "42", "--width", "56"]) == 0
    assert bag_main([str(bag), "-o", str(tmp_path / "out"), "--model", str(run / "final"), "--image-topic", COLOR]) == 0
    assert (tmp_path / "out" / "metadata.yaml").is_file()


def test_single_images_feeding_a_video_stage_are_named_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A user's frames labelled with the pseudo-label tool are single-frame sequences; a video
    recipe's stage (clips of 4) trained on them in silence, every clip cut to one frame (its
    temporal loss 0 throughout). Now the run stops before the model is built, naming the source,
    the lengths and the fixes; `length: [1, 1]` (images on purpose) runs."""
    from vdepth_training.data.sequence import Sequence, write_sequences
    from vdepth_training.train import main as train_main

    rng = np.random.default_rng(0)
    images = [Sequence(rgb=rng.integers(0, 256, (1, 32, 48, 3), dtype=np.uint8),
                       target=rng.uniform(0.1, 1, (1, 32, 48)).astype(np.float32), valid=np.ones((1, 32, 48), bool),
                       target_kind="disparity", metric=False, name=f"images/{i}") for i in range(3)]  # fmt: skip
    write_sequences(tmp_path / "pseudo", images)
    cfg, run = _own_config(tmp_path, tmp_path / "pseudo"), tmp_path / "run"
    assert train_main(["--config", str(cfg), "--tiny", "--output", str(run), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "data.sources['mine']" in err and "1 frame(s)" in err and "clips of 4-4" in err and "length: [1, 1]" in err
    assert not run.exists() or not any(run.iterdir())  # nothing built, nothing written
    data = yaml.safe_load(cfg.read_text())
    data["tiny"]["data"]["sources"][0]["length"] = [1, 1]
    cfg.write_text(yaml.safe_dump(data))
    assert train_main(["--config", str(cfg), "--tiny", "--output", str(run), "--max-steps", "1"]) == 0


def test_max_depth_on_a_source_of_disparity_is_named_not_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    """`max_depth` caps depth before inversion; on a source whose sequences hold disparity (the
    pseudo-label tool's output) it did nothing, in silence: the user believed their far range was
    capped. Now such a source is refused before training, naming the source and the fix; a source
    with some disparity sequences trains with one warning naming it."""
    from vdepth_training.data.dataset import Source
    from vdepth_training.data.sequence import Sequence, SequenceReader, write_sequences
    from vdepth_training.train import main as train_main

    rng = np.random.default_rng(0)

    def seq(kind: str, i: int) -> Sequence:
        return Sequence(rgb=rng.integers(0, 256, (4, 32, 48, 3), dtype=np.uint8),
                        target=rng.uniform(0.5, 9, (4, 32, 48)).astype(np.float32), valid=np.ones((4, 32, 48), bool),
                        target_kind=kind, metric=kind == "depth", name=f"{kind}/{i}")  # fmt: skip

    write_sequences(tmp_path / "labels", [seq("disparity", i) for i in range(2)])
    cfg, run = _own_config(tmp_path, tmp_path / "labels"), tmp_path / "run"
    data = yaml.safe_load(cfg.read_text())
    data["tiny"]["data"]["sources"][0]["max_depth"] = 5.0
    cfg.write_text(yaml.safe_dump(data))
    assert train_main(["--config", str(cfg), "--tiny", "--output", str(run), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "data.sources['mine']" in err and "max_depth" in err and "disparity" in err and "remove max_depth" in err
    write_sequences(tmp_path / "mixed", [seq("depth", 0), seq("disparity", 1)])
    readers = [SequenceReader(p) for p in sorted((tmp_path / "mixed").iterdir())]
    with caplog.at_level("WARNING"):
        Source(readers, max_depth=5.0, name="mixed")
        Source(readers, max_depth=5.0, name="mixed")  # the next stage's sources: not said again
    assert "data.sources['mixed']" in caplog.text and "1 of its 2 sequences hold disparity" in caplog.text
    assert caplog.text.count("data.sources['mixed']") == 1
    Source(readers[:1], max_depth=5.0, name="depth")  # depth only: no complaint
    for bad in (0, -1.0, "80", True):  # 0 capped every depth to 0: infinite disparity, NaN losses
        with pytest.raises(VdepthError, match=r"data.sources\['depth'\]: max_depth must be a depth in metres > 0"):
            Source(readers[:1], max_depth=bad, name="depth")
