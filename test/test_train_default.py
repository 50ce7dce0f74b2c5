"""The default-model trainer (`vdepth_training.train_default`): resumable bit for bit, and its
held-out synthetic probe; run on a tiny model and two tiny rendered clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("embreex")

from vdepth_training import probe_synthetic, train_default

from vdepth_ros.errors import ConfigError
from vdepth_ros.models.vda import VideoDepthAnything
from vdepth_ros.models.vda_lite import VideoDepthAnythingLite


def tiny_recipe(tmp_path: Path, steps: int) -> Path:
    cfg = train_default.load_config()
    cfg["model"] = {"family": "vda", **VideoDepthAnything.tiny_config(), "conv_stem": True}
    cfg["data"].update(seeds=[0, 2], frames=6, render_size=[64, 80], clip_length=[2, 3], size=[42, 56])
    cfg["train"].update(steps=steps, stages=[], warmup=2, checkpoint_every=2, threads=1)
    cfg["train"].pop("pretrained_encoder", None)  # the tiny VDA trains from scratch
    path = tmp_path / f"recipe{steps}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_resume_is_exact_and_probe_reports_baselines(tmp_path: Path) -> None:
    recipe = tiny_recipe(tmp_path, 4)
    data = tmp_path / "data"
    train_default.main(["--config", str(recipe), "--out", str(tmp_path / "full"), "--data", str(data)])
    train_default.main(["--config", str(recipe), "--out", str(tmp_path / "half"), "--data", str(data), "--steps", "2"])
    train_default.main(["--config", str(recipe), "--out", str(tmp_path / "half"), "--data", str(data), "--resume"])
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    half = torch.load(tmp_path / "half" / "checkpoint.pt", weights_only=True)
    assert full["step"] == half["step"] == 4
    for k, v in full["model"].items():
        assert torch.equal(v, half["model"][k]), k
    last_full = json.loads((tmp_path / "full" / "train.log").read_text().splitlines()[-1])
    last_half = json.loads((tmp_path / "half" / "train.log").read_text().splitlines()[-1])
    assert last_full["step"] == last_half["step"] == 4
    assert last_full["loss"] == last_half["loss"] > 0

    out = probe_synthetic.probe(str(tmp_path / "full" / "checkpoint.pt"), str(recipe), height=112, width=154)
    assert out["step"] == 4
    # the baselines depend only on the (deterministic) held-out renders
    assert out["constant"] == pytest.approx(0.3317, abs=2e-4)
    assert out["row_ramp"] == pytest.approx(0.2668, abs=2e-4)
    assert 0.0 < out["model"] < 1.0
    rich = probe_synthetic.probe(
        str(tmp_path / "full" / "checkpoint.pt"), str(recipe), height=112, width=154, style="rich"
    )
    # the same seeds rendered in the "rich" style: other clips, so other baseline scores
    assert rich["constant"] == pytest.approx(0.2651, abs=2e-4)
    assert rich["row_ramp"] == pytest.approx(0.1952, abs=2e-4)
    # every 3rd frame of longer renders: the camera covers more ground within the 8-frame window
    fast = probe_synthetic.probe(
        str(tmp_path / "full" / "checkpoint.pt"), str(recipe), height=112, width=154, style="rich", frame_step=3
    )
    assert fast["constant"] != pytest.approx(rich["constant"], abs=1e-3)
    assert np.isfinite(fast["model_nearness_gain"])  # defined once some clip approaches or leaves the scene
    with pytest.raises(ValueError, match="frame_step"):
        probe_synthetic.probe(str(tmp_path / "full" / "checkpoint.pt"), str(recipe), frame_step=0)


@pytest.mark.slow
def test_init_starts_from_another_runs_weights(tmp_path: Path) -> None:
    data = tmp_path / "data"
    base = tiny_recipe(tmp_path, 2)
    train_default.main(["--config", str(base), "--out", str(tmp_path / "base"), "--data", str(data)])
    cfg = yaml.safe_load(base.read_text())
    # one step at learning rate 0: the weights must be exactly the ones it was initialised from
    cfg["train"].update(init=str(tmp_path / "base" / "checkpoint.pt"), steps=1, lr=0.0, warmup=0)
    tune = tmp_path / "tune.yaml"
    tune.write_text(yaml.safe_dump(cfg))
    train_default.main(["--config", str(tune), "--out", str(tmp_path / "tuned"), "--data", str(data)])
    a = torch.load(tmp_path / "base" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "tuned" / "checkpoint.pt", weights_only=True)["model"]
    for k, v in a.items():
        assert torch.equal(v, b[k]), k
    # and a fresh run of the same recipe without init does not match (the test can fail)
    del cfg["train"]["init"]
    tune.write_text(yaml.safe_dump(cfg))
    train_default.main(["--config", str(tune), "--out", str(tmp_path / "fresh"), "--data", str(data)])
    c = torch.load(tmp_path / "fresh" / "checkpoint.pt", weights_only=True)["model"]
    assert any(not torch.equal(v, c[k]) for k, v in a.items())


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


@pytest.mark.slow
def test_a_restart_stage_is_the_run_it_replaces(tmp_path: Path) -> None:
    """A `restart` stage with its own data and loss weights continues exactly as a separate run
    initialised from the previous stage's checkpoint would (how the shipped v7 was trained), also
    when resumed at the stage boundary or inside the stage."""
    data = tmp_path / "data"
    base = tiny_recipe(tmp_path, 2)
    cfg = yaml.safe_load(base.read_text())

    def run(recipe: dict | Path, out: str, *extra: str) -> None:
        if isinstance(recipe, dict):
            path = tmp_path / f"{out}.yaml"
            path.write_text(yaml.safe_dump(recipe))
            recipe = path
        train_default.main(["--config", str(recipe), "--out", str(tmp_path / out), "--data", str(data), *extra])

    change = {"data": {"clip_length": [3, 3], "stride": [1, 2]}, "w_frame_level": 2.0}
    # the two-run way: stage 1, then a fine-tuning run with train.init
    run(base, "first")
    tune = {**cfg, "data": {**cfg["data"], **change["data"]}}
    tune["train"] = {**cfg["train"], "init": str(tmp_path / "first" / "checkpoint.pt"), "steps": 3, "lr": 2e-4}
    tune["train"]["w_frame_level"] = 2.0
    run(tune, "second")
    # the one-recipe way
    stage = {"steps": 3, "lr": 2e-4, "warmup": 2, "restart": True, **change}
    chain = {**cfg, "train": {**cfg["train"], "stages": [stage]}}
    run(chain, "chain")
    want, got = _weights(tmp_path / "second"), _weights(tmp_path / "chain")
    assert all(torch.equal(v, got[k]) for k, v in want.items())
    history = torch.load(tmp_path / "chain" / "checkpoint.pt", weights_only=True)["history"]
    assert "frame_level" in history[-1] and "frame_level" not in history[0]  # the stage's loss term is on
    for stop in (2, 3):  # at the boundary (the optimizer starts over) and inside the stage (it does not)
        run({**chain, "train": {**chain["train"], "stop_at": stop}}, f"resumed{stop}")
        run(tmp_path / "chain.yaml", f"resumed{stop}", "--resume")
        resumed = _weights(tmp_path / f"resumed{stop}")
        assert all(torch.equal(v, resumed[k]) for k, v in want.items()), stop
    # without `restart` the same stage keeps the optimizer and batch stream: another run (the test can fail)
    del stage["restart"]
    run(chain, "warm")
    warm = _weights(tmp_path / "warm")
    assert any(not torch.equal(v, warm[k]) for k, v in want.items())


def test_stage_plan_carries_changes_forward_and_rejects_unknown_keys() -> None:
    cfg = train_default.load_config()
    cfg["train"]["stages"] = [
        {"steps": 10, "lr": 1e-4, "w_frame_level": 2.0, "data": {"stride": [1, 4]}},
        {"steps": 5, "lr": 5e-5, "restart": True, "data": {"seeds": [0, 9]}},
        {"steps": 5, "lr": 5e-5},
    ]
    plan = train_default.stage_plan(cfg)
    n1 = int(cfg["train"]["steps"])
    assert [(st.start, st.origin, st.restart) for st in plan] == [
        (0, 0, False),
        (n1, 0, False),
        (n1 + 10, n1 + 10, True),
        (n1 + 15, n1 + 10, False),
    ]
    assert "w_frame_level" not in plan[0].cfg["train"] and plan[0].cfg["data"]["stride"] == cfg["data"]["stride"]
    assert all(st.cfg["train"]["w_frame_level"] == 2.0 and st.cfg["data"]["stride"] == [1, 4] for st in plan[1:])
    assert [st.cfg["data"]["seeds"] for st in plan] == [cfg["data"]["seeds"]] * 2 + [[0, 9]] * 2
    assert cfg["data"]["stride"] == [1, 2]  # the recipe itself is not modified
    steps = (0, n1 - 1, n1, n1 + 10, n1 + 15, n1 + 99)
    assert [train_default.stage_at(plan, s).index for s in steps] == [0, 0, 1, 2, 3, 3]
    cfg["train"]["stages"][0]["w_framelevel"] = 1.0
    with pytest.raises(ConfigError, match="w_framelevel"):
        train_default.stage_plan(cfg)
    del cfg["train"]["stages"][0]["w_framelevel"]
    cfg["train"]["stages"][0]["data"]["strides"] = [1, 3]
    with pytest.raises(ConfigError, match="strides"):
        train_default.stage_plan(cfg)


def test_encoder_learns_at_its_own_rate() -> None:
    cfg = train_default.load_config()
    cfg["model"] = {"family": "vda_lite", **VideoDepthAnythingLite.tiny_config()}
    model = train_default.build_model(cfg)
    assert cfg["train"].pop("encoder_lr_scale") == 0.1  # the shipped recipe's
    [one] = train_default.param_groups(model, cfg)  # no option: one group, as old checkpoints have
    assert one["lr_scale"] == 1.0 and len(one["params"]) == len(list(model.parameters()))
    cfg["train"]["encoder_lr_scale"] = 0.1
    enc, rest = train_default.param_groups(model, cfg)
    assert enc["lr_scale"] == 0.1 and rest["lr_scale"] == 1.0
    assert {id(p) for p in enc["params"]} == {id(p) for p in model.backbone.parameters()}
    assert len(enc["params"]) + len(rest["params"]) == len(list(model.parameters()))
    cfg["train"]["encoder_lr_scale"] = 0.0  # frozen: the encoder is neither optimised nor differentiated
    [head] = train_default.param_groups(model, cfg)
    assert not ({id(p) for p in head["params"]} & {id(p) for p in model.backbone.parameters()})
    assert len(head["params"]) == len(list(model.parameters())) - len(list(model.backbone.parameters()))
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_modules_new_since_the_init_checkpoint_start_fresh_at_their_own_rate() -> None:
    cfg = train_default.load_config()
    tiny = {"family": "vda_lite", **VideoDepthAnythingLite.tiny_config()}
    cfg["model"] = tiny
    old = train_default.build_model(cfg)
    cfg["model"] = {**tiny, "context_blocks": 1, "context_width": 16}
    model = train_default.build_model(cfg)
    with pytest.raises(ConfigError, match="init_new_modules"):  # not declared: refused, not silently fresh
        train_default.load_init_weights(model, old.state_dict())
    train_default.load_init_weights(model, old.state_dict(), ["context"])
    for k, v in old.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    state = dict(old.state_dict())
    state.pop(next(k for k in state if k.startswith("head.")))
    with pytest.raises(ConfigError, match="missing"):  # only the declared module may be absent
        train_default.load_init_weights(model, state, ["context"])
    with pytest.raises(ConfigError, match="unexpected"):
        train_default.load_init_weights(old, model.state_dict())
    cfg["train"].update(init_new_modules=["context"], new_module_lr_scale=10.0)
    enc, rest, new = train_default.param_groups(model, cfg)
    assert enc["lr_scale"] == 0.1 and rest["lr_scale"] == 1.0 and new["new_scale"] == 10.0
    assert {id(p) for p in new["params"]} == {id(p) for p in model.context.parameters()}
    ids = [id(p) for g in (enc, rest, new) for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))  # disjoint and complete


def test_a_stage_can_change_the_encoder_rate() -> None:
    cfg = {
        "train": {"steps": 10, "encoder_lr_scale": 0.1, "stages": [{"steps": 5}, {"steps": 5, "encoder_lr_scale": 0.3}]}
    }
    assert [train_default.encoder_lr_scale_at(s, cfg) for s in (0, 9, 10, 14, 15, 19, 25)] == [0.1] * 4 + [0.3] * 3
    cfg["train"]["encoder_lr_scale"] = 1.0  # one group: nothing to rescale separately
    with pytest.raises(ConfigError, match="encoder_lr_scale"):
        train_default.encoder_lr_scale_at(0, cfg)


CONFIGS = Path(train_default.__file__).resolve().parent / "configs"
RECIPES = sorted([*CONFIGS.glob("default*.yaml"), *CONFIGS.glob("experiments/*.yaml")])


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_committed_recipe_is_runnable(path: Path) -> None:
    """A recipe the model card cites must still parse, schedule and build: a renamed key or a
    stage the optimizer cannot represent would otherwise surface hours into a run."""
    cfg = train_default.load_config(path)
    n = train_default.total_steps(cfg)
    assert n > 0 and int(cfg["train"]["checkpoint_every"]) > 0
    lrs = [train_default.lr_at(s, cfg) for s in range(n)]
    peak = max([float(cfg["train"]["lr"])] + [float(st["lr"]) for st in cfg["train"].get("stages", [])])
    assert all(0.0 < lr <= peak for lr in lrs) and max(lrs) == pytest.approx(peak)
    scales = {train_default.encoder_lr_scale_at(s, cfg) for s in range(0, n, 50)}
    assert all(0.0 <= s <= 1.0 for s in scales)
    lo, hi = cfg["data"]["seeds"]
    assert 0 <= lo < hi
    if cfg["model"]["family"] == "vda_lite":  # the Lite encoder needs multiples of its stride 32
        assert all(v % 32 == 0 for v in cfg["data"]["size"])
    with torch.device("meta"):  # architecture only: no weights, no ImageNet checkpoint needed
        model = train_default.build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 1_000_000


def test_the_shipped_recipe_is_v5_then_the_v7c_and_v7e_runs() -> None:
    """The shipped weights came from three runs linked by `train.init` (v5, then v7c, then v7e);
    the default recipe writes them as stages, and each fine-tuning stage must be the run it replaces
    (same data, loss weights and schedule), or the one command would train another model."""
    shipped = train_default.load_config()
    plan = train_default.stage_plan(shipped)
    v5 = train_default.load_config(CONFIGS / "default_v5_lite.yaml")
    assert train_default.total_steps(v5) == plan[2].start
    for st in plan[:2]:
        assert st.cfg["data"] == v5["data"] and not st.restart
    for st, name in zip(plan[2:], ("v7c_frame_level", "v7e_frame_level_longer"), strict=True):
        run = train_default.load_config(CONFIGS / "experiments" / f"{name}.yaml")
        assert st.restart and st.steps == run["train"]["steps"]
        assert st.cfg["data"] == run["data"] and st.cfg["augment"] == run["augment"]
        for key in (
            "seed",
            "batch_size",
            "weight_decay",
            "grad_clip",
            "encoder_lr_scale",
            *train_default.STAGE_LOSS_KEYS,
        ):
            assert st.cfg["train"].get(key) == run["train"].get(key), (name, key)
        one = {**run, "train": {**run["train"], "stages": []}}
        assert [train_default.lr_at(st.start + k, shipped) for k in range(0, st.steps, 37)] == [
            train_default.lr_at(k, one) for k in range(0, st.steps, 37)
        ]
    assert len(plan) == 4


def test_the_shipped_recipe_builds_the_shipped_weights() -> None:
    """`train_default`'s default recipe, finalized, must give exactly the tensors of models/default."""
    from safetensors import safe_open

    from vdepth_ros.paths import default_model_dir

    with torch.device("meta"):
        model = train_default.build_model(train_default.load_config())
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with safe_open(str(default_model_dir() / "model.safetensors"), "pt") as f:
        names = f.keys()  # a safetensors handle, not a dict: it is not iterable
        shipped = {k: tuple(f.get_slice(k).get_shape()) for k in names}
    assert shipped == expected


def test_camera_effects_are_off_unless_a_recipe_sets_them() -> None:
    """Motion blur and JPEG are opt-in: a recipe without them draws the same random numbers as
    before (so the shipped recipe still reproduces its weights), and with them the clip changes,
    deterministically per generator seed."""
    aug = dict(train_default.load_config()["augment"])
    clip = torch.rand(3, 3, 32, 40, generator=torch.Generator().manual_seed(1))

    def run(a: dict, seed: int = 7) -> torch.Tensor:
        return train_default.photometric(clip, a, torch.Generator().manual_seed(seed))

    base = run(aug)
    off = run({**aug, "motion_blur_p": 0.0, "motion_blur_px": 9.0, "jpeg_p": 0.0, "jpeg_quality": [30, 40]})
    assert torch.equal(base, off)
    on = {**aug, "motion_blur_p": 1.0, "motion_blur_px": 9.0, "jpeg_p": 1.0, "jpeg_quality": [30, 40]}
    a, b = run(on), run(on)
    assert torch.equal(a, b) and a.shape == base.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert (a - base).abs().mean() > 0.01

    # a horizontal blur smears a vertical edge across columns and leaves rows alone
    edge = torch.zeros(1, 3, 9, 21)
    edge[..., 10:] = 1.0
    blurred = train_default.motion_blur(edge, 0.0, 8.0, torch.Generator().manual_seed(0))
    row = blurred[0, 0, 4]
    assert 0.0 < float(row[9]) < 1.0 and 0.0 < float(row[10]) < 1.0  # ramps over the edge
    assert torch.allclose(blurred[0, 0], blurred[0, 0, :1].expand(9, -1), atol=1e-6)
    assert float(row[0]) == 0.0 and float(row[-1]) == 1.0
    # JPEG at low quality changes a noisy image; the result stays an image in [0, 1]
    noisy = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    jpg = train_default.jpeg_roundtrip(noisy, 30)
    assert jpg.shape == noisy.shape and (jpg - noisy).abs().mean() > 0.02
