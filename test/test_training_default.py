"""The bundled default model's recipe on the one trainer (`recipe: default`): resumable bit for bit,
restart stages equal the runs they replace, rendering split and resumable, every committed recipe
plans and builds, and the held-out probe; run on a tiny model and two tiny rendered clips."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("embreex")

from training_support import CONFIGS, assert_same_state, fresh_accelerate, state_of  # noqa: F401 - autouse fixture
from vdepth_training import augment, probe_synthetic
from vdepth_training.config import DEFAULT_RECIPE, build_family_model, load_config
from vdepth_training.recipes import get_recipe
from vdepth_training.stages import plan_stages, stage_lr, total_steps
from vdepth_training.train import main
from vdepth_training.trainer import latest_checkpoint
from vdepth_training.weights import load_init_weights

from vdepth_ros.errors import ConfigError
from vdepth_ros.models.vda import VideoDepthAnything
from vdepth_ros.models.vda_lite import VideoDepthAnythingLite


def tiny_recipe(tmp_path: Path, name: str, stages: list[dict[str, Any]], **training: Any) -> Path:
    """The shipped recipe on a tiny VDA, two 6-frame renders and 42x56 crops, saved as YAML."""
    cfg = yaml.safe_load(DEFAULT_RECIPE.read_text())
    cfg["model"] = {"family": "vda", "config": {**VideoDepthAnything.tiny_config(), "conv_stem": True}}
    cfg["data"].update(seeds=[0, 2], frames=6, render_size=[64, 80], clip_length=[2, 3], size=[42, 56],
                       root=str(tmp_path / "data"), render_workers=1)  # fmt: skip
    cfg["training"].update(checkpoint_every=2, threads=1, keep_checkpoints=0, **training)
    cfg["training"].pop("export_weights_dtype")
    cfg["stages"] = stages
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(recipe: Path, out: Path, *extra: str) -> None:
    assert main(["--config", str(recipe), "--output", str(out), *extra]) == 0


@pytest.mark.slow
def test_resume_is_exact_and_probe_reports_baselines(tmp_path: Path) -> None:
    recipe = tiny_recipe(tmp_path, "r", [{"name": "s1", "steps": 4, "lr": 3e-4, "warmup_steps": 2}])
    run(recipe, tmp_path / "full")
    run(recipe, tmp_path / "half", "--max-steps", "2")
    assert not (tmp_path / "half" / "final").exists()  # stopped, not finished
    run(recipe, tmp_path / "half", "--resume")
    assert_same_state(state_of(tmp_path / "full" / "final"), state_of(tmp_path / "half" / "final"), what="resumed")
    last = [json.loads((tmp_path / r / "metrics.jsonl").read_text().splitlines()[-1]) for r in ("full", "half")]
    assert last[0]["step"] == last[1]["step"] == 4 and last[0]["loss"] == last[1]["loss"] > 0

    ckpt = latest_checkpoint(tmp_path / "full")
    out = probe_synthetic.probe(str(ckpt), str(recipe), height=112, width=154)
    assert out["step"] == 4
    # the baselines depend only on the (deterministic) held-out renders
    assert out["constant"] == pytest.approx(0.3317, abs=2e-4)
    assert out["row_ramp"] == pytest.approx(0.2668, abs=2e-4)
    assert 0.0 < out["model"] < 1.0
    rich = probe_synthetic.probe(str(tmp_path / "full" / "final"), str(recipe), height=112, width=154, style="rich")
    # the same seeds rendered in the "rich" style: other clips, so other baseline scores
    assert rich["step"] is None  # a model folder has no step
    assert rich["constant"] == pytest.approx(0.2651, abs=2e-4)
    assert rich["row_ramp"] == pytest.approx(0.1952, abs=2e-4)
    fast = probe_synthetic.probe(str(ckpt), str(recipe), height=112, width=154, style="rich", frame_step=3)
    assert fast["constant"] != pytest.approx(rich["constant"], abs=1e-3)
    assert np.isfinite(fast["model_nearness_gain"])  # defined once some clip approaches or leaves the scene
    with pytest.raises(ValueError, match="frame_step"):
        probe_synthetic.probe(str(ckpt), str(recipe), frame_step=0)


@pytest.mark.slow
def test_init_starts_from_another_runs_weights(tmp_path: Path) -> None:
    """`training.init` reads a checkpoint folder or a former `checkpoint.pt`; one step at learning
    rate 0 must leave exactly the weights it started from."""
    base = tiny_recipe(tmp_path, "base", [{"name": "s1", "steps": 2, "lr": 3e-4, "warmup_steps": 1}])
    run(base, tmp_path / "base")
    weights = state_of(latest_checkpoint(tmp_path / "base"))
    legacy = tmp_path / "checkpoint.pt"
    torch.save({"model": weights, "step": 2}, legacy)
    still = [{"name": "s1", "steps": 1, "lr": 0.0, "warmup_steps": 0}]
    for source in (latest_checkpoint(tmp_path / "base"), legacy):
        run(tiny_recipe(tmp_path, "tune", still, init=str(source)), tmp_path / f"tuned_{source.name}")
        assert_same_state(weights, state_of(tmp_path / f"tuned_{source.name}" / "final"), what=str(source))
    run(tiny_recipe(tmp_path, "fresh", still), tmp_path / "fresh")  # the test can fail
    fresh = state_of(tmp_path / "fresh" / "final")
    assert any(not torch.equal(v, fresh[k]) for k, v in weights.items())


@pytest.mark.slow
def test_a_restart_stage_is_the_run_it_replaces(tmp_path: Path) -> None:
    """A `restart` stage with its own data and loss weights continues exactly as a separate run
    initialised from the previous stage's checkpoint would (how the shipped v7 was trained), also
    when resumed at the stage boundary or inside the stage."""
    first = {"name": "s1", "steps": 2, "lr": 3e-4, "warmup_steps": 2}
    change = {"data": {"clip_length": [3, 3], "stride": [1, 2]}, "loss": {"w_frame_level": 2.0}}
    second = {"name": "s2", "steps": 3, "lr": 2e-4, "warmup_steps": 2}
    run(tiny_recipe(tmp_path, "first", [first]), tmp_path / "first")
    tune = yaml.safe_load(
        tiny_recipe(tmp_path, "x", [second], init=str(latest_checkpoint(tmp_path / "first"))).read_text()
    )
    tune["data"].update(change["data"])
    tune["loss"].update(change["loss"])
    (tmp_path / "second.yaml").write_text(yaml.safe_dump(tune))
    run(tmp_path / "second.yaml", tmp_path / "second")
    want = state_of(tmp_path / "second" / "final")
    chain = tiny_recipe(tmp_path, "chain", [first, {**second, "restart": True, **change}])
    run(chain, tmp_path / "chain")
    assert_same_state(want, state_of(tmp_path / "chain" / "final"), what="chain")
    records = [json.loads(line) for line in (tmp_path / "chain" / "metrics.jsonl").read_text().splitlines()]
    assert "loss/frame_level" in records[-1] and "loss/frame_level" not in records[0]  # the stage's term is on
    for stop in (2, 3):  # at the boundary (the optimizer starts over) and inside the stage (it does not)
        run(chain, tmp_path / f"resumed{stop}", "--max-steps", str(stop))
        run(chain, tmp_path / f"resumed{stop}", "--resume")
        assert_same_state(want, state_of(tmp_path / f"resumed{stop}" / "final"), what=f"resumed at {stop}")
    # without `restart` the same stage keeps the optimizer and batch stream: another run (the test can fail)
    run(tiny_recipe(tmp_path, "warm", [first, {**second, "restart": False, **change}]), tmp_path / "warm")
    warm = state_of(tmp_path / "warm" / "final")
    assert any(not torch.equal(v, warm[k]) for k, v in want.items())


def test_rendering_is_split_across_ranks_and_resumable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from vdepth_training.data.synthetic import render_dataset

    caplog.set_level(logging.INFO, logger="vdepth_training")
    args = (tmp_path, range(5), 2, 24, 32)
    rank1 = render_dataset(*args, rank=1, world=2)  # renders seeds 1 and 3, the others are rank 0's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000001", "000003"] and len(rank1) == 5
    render_dataset(*args, rank=0, world=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{s:06d}" for s in range(5)]
    assert "rendering 3 missing synthetic clips" in caplog.text  # rank 0's share: seeds 0, 2 and 4
    assert "s per clip measured" in caplog.text
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("sequence.json")}
    render_dataset(*args, rank=0, world=1)  # nothing missing: nothing rendered again
    assert stamp == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("sequence.json")}


def test_stage_plan_carries_changes_forward_and_rejects_unknown_keys() -> None:
    cfg = load_config(DEFAULT_RECIPE)
    cfg["stages"] = [
        {"name": "a", "steps": 20, "lr": 1e-4},
        {"name": "b", "steps": 10, "lr": 1e-4, "restart": False, "loss": {"w_frame_level": 2.0},
         "data": {"stride": [1, 4]}},
        {"name": "c", "steps": 5, "lr": 5e-5, "restart": True, "data": {"seeds": [0, 9]}},
        {"name": "d", "steps": 5, "lr": 5e-5, "restart": False},
    ]  # fmt: skip
    plan = plan_stages(cfg, get_recipe(cfg).stage_keys)
    assert [(st.start, st.origin, st.restart) for st in plan] == [(0, 0, True), (20, 0, False), (30, 30, True),
                                                                  (35, 30, False)]  # fmt: skip
    assert "w_frame_level" not in plan[0].cfg["loss"] and plan[0].cfg["data"]["stride"] == cfg["data"]["stride"]
    assert all(st.cfg["loss"]["w_frame_level"] == 2.0 and st.cfg["data"]["stride"] == [1, 4] for st in plan[1:])
    assert [st.cfg["data"]["seeds"] for st in plan] == [cfg["data"]["seeds"]] * 2 + [[0, 9]] * 2
    assert cfg["data"]["stride"] == [1, 2]  # the recipe itself is not modified
    for bad, match in (({"w_framelevel": 1.0}, "w_framelevel"), ({"data": {"strides": [1, 3]}}, "strides"),
                       ({"restart": False, "trainable": "spatial"}, "restart: false")):  # fmt: skip
        broken = {**cfg, "stages": [cfg["stages"][0], {**cfg["stages"][1], **bad}]}
        with pytest.raises(ConfigError, match=match):
            plan_stages(broken, get_recipe(cfg).stage_keys)


def tiny_lite_recipe(**optimizer: Any) -> Any:
    cfg = load_config(DEFAULT_RECIPE, overrides={"optimizer": optimizer} if optimizer else None)
    cfg["model"] = {"family": "vda_lite", "config": VideoDepthAnythingLite.tiny_config()}
    return get_recipe(cfg)


def test_encoder_learns_at_its_own_rate() -> None:
    recipe = tiny_lite_recipe(encoder_lr_scale=1.0)
    model = build_family_model(recipe.cfg)
    [one] = recipe.configure_stage(model, recipe.plan[0])  # factor 1: one group
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert one["role"] == "rest" and len(one["params"]) == len(trainable)
    recipe = tiny_lite_recipe()  # the shipped 0.1
    enc, rest = recipe.configure_stage(model, recipe.plan[0])
    assert (enc["role"], rest["role"]) == ("encoder", "rest") and recipe.lr_scale(recipe.plan[0], "encoder") == 0.1
    assert {id(p) for p in enc["params"]} == {id(p) for p in model.backbone.parameters() if p.requires_grad}
    assert len(enc["params"]) + len(rest["params"]) == len(trainable)
    recipe = tiny_lite_recipe(encoder_lr_scale=0.0)  # frozen: neither optimised nor differentiated
    [head] = recipe.configure_stage(model, recipe.plan[0])
    assert not ({id(p) for p in head["params"]} & {id(p) for p in model.backbone.parameters()})
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_modules_new_since_the_init_checkpoint_start_fresh_at_their_own_rate() -> None:
    tiny = VideoDepthAnythingLite.tiny_config()
    old = build_family_model({"model": {"family": "vda_lite", "config": tiny}})
    cfg = load_config(DEFAULT_RECIPE, overrides={"optimizer": {"new_module_lr_scale": 10.0},
                                                 "training": {"init_new_modules": ["context"]}})  # fmt: skip
    cfg["model"] = {"family": "vda_lite", "config": {**tiny, "context_blocks": 1, "context_width": 16}}
    recipe = get_recipe(cfg)
    model = build_family_model(cfg)
    with pytest.raises(ConfigError, match="init_new_modules"):  # not declared: refused, not silently fresh
        load_init_weights(model, old.state_dict())
    load_init_weights(model, old.state_dict(), ["context"])
    for k, v in old.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    state = dict(old.state_dict())
    state.pop(next(k for k in state if k.startswith("head.")))
    with pytest.raises(ConfigError, match="missing"):  # only the declared module may be absent
        load_init_weights(model, state, ["context"])
    with pytest.raises(ConfigError, match="unexpected"):
        load_init_weights(old, model.state_dict())
    enc, rest, new = recipe.configure_stage(model, recipe.plan[0])
    assert new["role"] == "new" and recipe.lr_scale(recipe.plan[0], "new") == 10.0
    assert {id(p) for p in new["params"]} == {id(p) for p in model.context.parameters()}
    ids = [id(p) for g in (enc, rest, new) for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(p.requires_grad for p in model.parameters())  # disjoint and complete


def test_a_stage_can_change_the_encoder_rate() -> None:
    cfg = load_config(DEFAULT_RECIPE)
    cfg["stages"] = [{"name": "a", "steps": 10}, {"name": "b", "steps": 5, "restart": False},
                     {"name": "c", "steps": 5, "restart": False, "encoder_lr_scale": 0.3}]  # fmt: skip
    recipe = get_recipe(cfg)
    assert [recipe.encoder_lr_scale(st) for st in recipe.plan] == [0.1, 0.1, 0.3]
    cfg["optimizer"]["encoder_lr_scale"] = 1.0  # one group: nothing to rescale separately
    with pytest.raises(ConfigError, match="encoder_lr_scale"):
        get_recipe(cfg)
    cfg["stages"][2]["restart"] = True  # a fresh optimizer may group the encoder anew
    assert get_recipe(cfg).encoder_lr_scale(get_recipe(cfg).plan[2]) == 0.3


RECIPES = sorted([*CONFIGS.glob("default*.yaml"), *CONFIGS.glob("experiments/*.yaml")])


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_committed_recipe_is_runnable(path: Path) -> None:
    """A recipe the model card cites must still parse, schedule and build: a renamed key or a
    stage the optimizer cannot represent would otherwise surface hours into a run."""
    cfg = load_config(path)
    recipe = get_recipe(cfg)
    n = total_steps(recipe.plan)
    assert n > 0 and int(cfg["training"]["checkpoint_every"]) > 0
    lrs = [stage_lr(next(st for st in recipe.plan if s < st.end), s) for s in range(n)]
    peak = max(float(st.spec["lr"]) for st in recipe.plan)
    assert all(0.0 < lr <= peak for lr in lrs) and max(lrs) == pytest.approx(peak)
    assert all(0.0 <= recipe.encoder_lr_scale(st) <= 1.0 for st in recipe.plan)
    lo, hi = cfg["data"]["seeds"]
    assert 0 <= lo < hi
    if cfg["model"]["family"] == "vda_lite":  # the Lite encoder needs multiples of its stride 32
        assert all(v % 32 == 0 for v in cfg["data"]["size"])
    with torch.device("meta"):  # architecture only: no weights, no ImageNet checkpoint needed
        model = build_family_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 1_000_000


def legacy_lr(step: int, train: dict[str, Any]) -> float:
    """The former `train_default.lr_at`, kept here to check the migrated schedules step for step."""
    import math

    stages = [(int(train["steps"]), float(train["lr"]), int(train["warmup"]))]
    stages += [(int(st["steps"]), float(st["lr"]), int(st.get("warmup", 0))) for st in train.get("stages", [])]
    start = 0
    for n, base, warm in stages:
        if step < start + n or (n, base, warm) == stages[-1]:
            s = step - start
            if s < warm:
                return base * (s + 1) / warm
            prog = min(1.0, (s - warm) / max(1, n - warm))
            return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * prog)))
        start += n
    raise AssertionError("unreachable")


def test_the_shipped_recipe_is_v5_then_the_v7c_and_v7e_runs() -> None:
    """The shipped weights came from three runs linked by `training.init` (v5, then v7c, then v7e);
    the default recipe writes them as stages, and each fine-tuning stage must be the run it replaces
    (same data, loss weights and schedule), or the one command would train another model."""
    shipped = get_recipe(load_config(DEFAULT_RECIPE))
    plan = shipped.plan
    v5 = get_recipe(load_config(CONFIGS / "default_v5_lite.yaml"))
    assert total_steps(v5.plan) == plan[2].start
    for st, st5 in zip(plan[:2], v5.plan, strict=True):
        assert st.cfg["data"] == v5.cfg["data"]
        assert (st.start, st.origin, st.spec["lr"]) == (st5.start, st5.origin, st5.spec["lr"])
    for st, name in zip(plan[2:], ("v7c_frame_level", "v7e_frame_level_longer"), strict=True):
        run = get_recipe(load_config(CONFIGS / "experiments" / f"{name}.yaml"))
        assert st.restart and st.steps == run.plan[0].steps
        assert st.cfg["data"] == run.cfg["data"] and st.cfg["augment"] == run.cfg["augment"]
        assert st.cfg["loss"] == run.cfg["loss"] and shipped.encoder_lr_scale(st) == run.encoder_lr_scale(run.plan[0])
        for key in ("seed", "batch_size"):
            assert shipped.cfg["training"][key] == run.cfg["training"][key], (name, key)
        for key in ("weight_decay", "grad_clip", "schedule", "min_lr_ratio"):
            assert shipped.cfg["optimizer"][key] == run.cfg["optimizer"][key], (name, key)
        assert [stage_lr(st, st.start + k) for k in range(0, st.steps, 37)] == [
            stage_lr(run.plan[0], k) for k in range(0, st.steps, 37)
        ]
    assert len(plan) == 4


def test_the_migrated_schedules_are_the_former_ones() -> None:
    """The former schema (`train:`), read through `legacy.convert_train_default`, gives the same
    learning rate at every step as the former trainer computed, and `load_config` accepts it."""
    old = {
        "model": {"family": "vda_lite", **VideoDepthAnythingLite.tiny_config()},
        "data": {"seeds": [0, 2], "stride": [1, 2]},
        "augment": {},
        "train": {"seed": 0, "steps": 30, "lr": 3e-4, "warmup": 5, "batch_size": 2, "weight_decay": 0.01,
                  "grad_clip": 1.0, "checkpoint_every": 10, "w_gm": 0.5, "w_tgm": 10.0, "encoder_lr_scale": 0.1,
                  "stages": [{"steps": 20, "lr": 1.5e-4, "warmup": 3},
                             {"steps": 10, "lr": 8e-5, "restart": True, "w_frame_level": 2.0}]},
    }  # fmt: skip
    from vdepth_training.legacy import convert_train_default

    cfg = load_config_dict(convert_train_default(old))
    plan = get_recipe(cfg).plan
    assert [(st.steps, st.restart) for st in plan] == [(30, True), (20, False), (10, True)]
    assert plan[2].cfg["loss"] == {"w_gm": 0.5, "w_tgm": 10.0, "w_frame_level": 2.0}
    for step in range(62):
        st = next((s for s in plan if step < s.end), plan[-1])
        assert stage_lr(st, step) == legacy_lr(step, old["train"]), step


def test_the_former_schema_is_named_by_rank_0_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Every rank reads the config: the note that it uses the former schema was said once per rank.
    Rank 0 says it (as the trainer's other notes on a file every rank reads), the others do not."""
    old = {"model": {"family": "vda_lite", **VideoDepthAnythingLite.tiny_config()}, "data": {"seeds": [0]},
           "train": {"seed": 0, "steps": 2, "lr": 3e-4, "warmup": 0, "batch_size": 1, "weight_decay": 0.0,
                     "grad_clip": 1.0, "checkpoint_every": 1}}  # fmt: skip
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    said = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vdepth_training"):
            load_config(path)
        said.append([r.getMessage() for r in caplog.records if "former train_default schema" in r.getMessage()])
    assert [len(lines) for lines in said] == [1, 0], said


def load_config_dict(raw: dict[str, Any]) -> dict[str, Any]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.yaml"
        path.write_text(yaml.safe_dump(raw))
        return load_config(path)


def test_the_shipped_recipe_builds_the_shipped_weights() -> None:
    """The default recipe, exported, must give exactly the tensors of models/default."""
    from safetensors import safe_open

    from vdepth_ros.paths import default_model_dir

    with torch.device("meta"):
        model = build_family_model(load_config(DEFAULT_RECIPE))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with safe_open(str(default_model_dir() / "model.safetensors"), "pt") as f:
        names = f.keys()  # a safetensors handle, not a dict: it is not iterable
        shipped = {k: tuple(f.get_slice(k).get_shape()) for k in names}
    assert shipped == expected


def test_camera_effects_are_off_unless_a_recipe_sets_them() -> None:
    """Motion blur and JPEG are opt-in: a recipe without them draws the same random numbers as
    before (so the shipped recipe still reproduces its weights), and with them the clip changes,
    deterministically per generator seed."""
    aug = dict(load_config(DEFAULT_RECIPE)["augment"])
    clip = torch.rand(3, 3, 32, 40, generator=torch.Generator().manual_seed(1))

    def photometric(a: dict, seed: int = 7) -> torch.Tensor:
        return augment.photometric(clip, a, torch.Generator().manual_seed(seed))

    base = photometric(aug)
    off = photometric({**aug, "motion_blur_p": 0.0, "motion_blur_px": 9.0, "jpeg_p": 0.0, "jpeg_quality": [30, 40]})
    assert torch.equal(base, off)
    on = {**aug, "motion_blur_p": 1.0, "motion_blur_px": 9.0, "jpeg_p": 1.0, "jpeg_quality": [30, 40]}
    a, b = photometric(on), photometric(on)
    assert torch.equal(a, b) and a.shape == base.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert (a - base).abs().mean() > 0.01

    # a horizontal blur smears a vertical edge across columns and leaves rows alone
    edge = torch.zeros(1, 3, 9, 21)
    edge[..., 10:] = 1.0
    blurred = augment.motion_blur(edge, 0.0, 8.0, torch.Generator().manual_seed(0))
    row = blurred[0, 0, 4]
    assert 0.0 < float(row[9]) < 1.0 and 0.0 < float(row[10]) < 1.0  # ramps over the edge
    assert torch.allclose(blurred[0, 0], blurred[0, 0, :1].expand(9, -1), atol=1e-6)
    assert float(row[0]) == 0.0 and float(row[-1]) == 1.0
    # JPEG at low quality changes a noisy image; the result stays an image in [0, 1]
    noisy = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    jpg = augment.jpeg_roundtrip(noisy, 30)
    assert jpg.shape == noisy.shape and (jpg - noisy).abs().mean() > 0.02
