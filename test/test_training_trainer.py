"""Trainer behaviour: freezing, overfit on a fixed batch, exact resume, export to `vdepth_ros.models`.

Uses the VDA recipe's tiny config (the cheapest landed family); the per-recipe tiny runs are in
`test_training_recipes.py`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from training_support import CONFIGS, fresh_accelerate  # noqa: F401 - autouse fixture
from vdepth_training.config import deep_merge, load_config
from vdepth_training.freeze import count_by_kind, layer_kind, set_trainable
from vdepth_training.trainer import Trainer, check_loss_decreases, latest_checkpoint

from vdepth_ros.models import load_state_dict_file


class ToyST(nn.Module):
    """Names like diffusers' SVD blocks: spatial and temporal parts plus a σ embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.time_embedding = nn.Linear(2, 2)  # diffusion-timestep embedding: spatial (not temporal)
        self.down = nn.ModuleDict(
            {"spatial_res_block": nn.Linear(2, 2), "temporal_res_block": nn.Linear(2, 2), "time_mixer": nn.Linear(2, 1)}
        )
        self.attn = nn.ModuleDict(
            {"transformer_blocks": nn.Linear(2, 2), "temporal_transformer_blocks": nn.Linear(2, 2)}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.down
        h = self.time_embedding(x) + d["spatial_res_block"](x) + d["temporal_res_block"](x)
        h = h + self.attn["transformer_blocks"](h) + self.attn["temporal_transformer_blocks"](h)
        return h.sum() + d["time_mixer"](h).sum()


def test_layer_kind_table() -> None:
    assert layer_kind("unet.down_blocks.0.resnets.0.temporal_res_block.conv1.weight") == "temporal"
    assert layer_kind("unet.down_blocks.0.attentions.0.temporal_transformer_blocks.0.attn1.to_q.weight") == "temporal"
    assert layer_kind("unet.down_blocks.0.attentions.0.time_pos_embed.linear_1.weight") == "temporal"
    assert layer_kind("unet.down_blocks.0.resnets.0.time_mixer.mix_factor") == "temporal"
    assert layer_kind("head.motion_modules.0.attn.to_q.weight") == "temporal"
    assert layer_kind("unet.time_embedding.linear_1.weight") == "spatial"
    assert layer_kind("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight") == "spatial"


@pytest.mark.parametrize("select", ["spatial", "temporal"])
def test_frozen_parameters_bitwise_unchanged_after_a_step(select: str) -> None:
    model = ToyST()
    names = set(set_trainable(model, select))
    assert names and all(layer_kind(n) == select for n in names)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.1)
    model(torch.randn(3, 2)).backward()
    opt.step()
    for n, p in model.named_parameters():
        if n in names:
            assert not torch.equal(p, before[n]), n
        else:
            assert torch.equal(p, before[n]), n


def test_set_trainable_within_include_exclude() -> None:
    model = nn.ModuleDict({"unet": ToyST(), "vae": nn.Linear(2, 2)})
    names = set_trainable(model, "all", within="unet", exclude=r"time_embedding")
    assert all(n.startswith("unet.") and "time_embedding" not in n for n in names)
    assert set_trainable(model, "none", include=r"^vae\.") == ["vae.weight", "vae.bias"]
    counts = count_by_kind(ToyST())
    assert counts["temporal"] == 6 + 6 + 3 and counts["spatial"] == 6 + 6 + 6
    with pytest.raises(ValueError, match="select"):
        set_trainable(model, "lora")  # type: ignore[arg-type]


def vda_tiny(**over: object) -> dict:
    return load_config(CONFIGS / "vda.yaml", tiny=True, overrides=over or None)


def test_config_merge_and_validation(tmp_path: Path) -> None:
    assert deep_merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}
    cfg = vda_tiny()
    assert cfg["tiny"] and cfg["model"]["use_tiny_config"] and cfg["stages"][0]["steps"] > 0
    full = load_config(CONFIGS / "vda.yaml")
    assert full["stages"][0]["clip_length"] == [32, 32] and full["optimizer"]["lr"] == pytest.approx(1e-6)
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe: vda\nstages: []\n")
    with pytest.raises(ValueError, match="at least one stage"):
        load_config(bad)
    bad.write_text("recipe: vda\nstagez: []\n")
    with pytest.raises(ValueError, match="unknown sections"):
        load_config(bad)


@pytest.mark.parametrize("recipe", ["gemdepth", "depthcrafter", "onestep", "onestep_decoder", "fiffdepth", "dvd"])
def test_the_papers_global_batch_is_kept_on_any_number_of_processes(recipe: str) -> None:
    """The papers' recipes state a global batch (GemDepth 16 on 16 GPUs, DVD 128 images on 4 processes):
    their `batch_size` is per process, so on another number of GPUs the same file trained another global
    batch, in silence (GemDepth on one node of 8: half the paper's). `training.global_batch` derives
    grad_accum for the launch; a number of processes that cannot make it is one line naming those that can;
    the tiny runs keep one micro-batch."""
    from vdepth_training.config import resolve_global_batch

    from vdepth_ros.errors import ConfigError

    stated = {"gemdepth": 16, "depthcrafter": 8, "onestep": 64, "onestep_decoder": 64, "fiffdepth": 8, "dvd": 128}
    for processes in (1, 2, 8):
        training = load_config(CONFIGS / f"{recipe}.yaml")["training"]
        resolve_global_batch(training, processes)
        assert training["batch_size"] * training["grad_accum"] * processes == stated[recipe], (processes, training)
    tiny = load_config(CONFIGS / f"{recipe}.yaml", tiny=True)["training"]
    resolve_global_batch(tiny, 2)
    assert tiny["global_batch"] is None and tiny["grad_accum"] == 1
    with pytest.raises(ConfigError, match=r"training.global_batch: 16 is not batch_size 1 x grad_accum x 3 processes "
                       r"for any grad_accum: launch 1, 2 or 4 processes"):  # fmt: skip
        resolve_global_batch({"batch_size": 1, "grad_accum": 1, "global_batch": 16}, 3)
    with pytest.raises(ConfigError, match=r"training.grad_accum: 4 and training.global_batch: 128 disagree on 8 "
                       r"processes of batch_size 8 \(grad_accum 2 makes 128\): remove grad_accum"):  # fmt: skip
        resolve_global_batch({"batch_size": 8, "grad_accum": 4, "global_batch": 128}, 8)
    kept = {"batch_size": 8, "grad_accum": 2, "global_batch": 128}
    resolve_global_batch(kept, 8)  # a config already resolved (a second Trainer on it) is kept
    assert kept["grad_accum"] == 2
    # a resume that changes global_batch names it, not a grad_accum that global_batch would contradict
    from types import SimpleNamespace

    from vdepth_training.run_checks import RunChecks

    run = SimpleNamespace(train_cfg={"batch_size": 8, "grad_accum": 2, "global_batch": 64, "deepspeed": None})
    [said] = RunChecks._rescaled_ranks(run, ["training.grad_accum: 4 -> 2"], {"batch_size": 8, "grad_accum": 4},  # type: ignore[arg-type]
                                       4, 4)  # fmt: skip
    assert said.endswith(
        "changes from 128 to 64: each step from the checkpoint on averages 64 sample(s), not 128; "
        "training.global_batch: 128 keeps it)"
    ), said


def test_overfit_fixed_batch_and_export(tmp_path: Path) -> None:
    """The tiny VDA overfits one batch and exports a model that predicts as the trained one. A run without
    DeepSpeed does not import it (accelerate's `unwrap_model` did wherever it is installed, at each rank's
    first step and final export: 0.65 of 5.7 CPU-s of a 2-step tiny run)."""
    from vdepth_ros.models import load_model

    trainer = Trainer(vda_tiny(), tmp_path)
    deepspeed = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] == "deepspeed"}
    try:
        history = trainer.fit()
        assert "deepspeed" not in sys.modules
    finally:  # the modules as they were: a DeepSpeed test of this process keeps its own
        for k in [k for k in sys.modules if k.split(".")[0] == "deepspeed"]:
            del sys.modules[k]
        sys.modules.update(deepspeed)
    first, last = check_loss_decreases(history)
    assert last < 0.7 * first, [h["loss"] for h in history]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(history) and {"loss", "loss/ssi", "loss/gm", "loss/tgm"} <= set(json.loads(lines[0]))
    # the saved folder is a vdepth_ros model: same predictions after load_model
    loaded = load_model(tmp_path / "final")
    assert loaded.family == "vda"
    frames = torch.rand(4, 3, 28, 42)
    trainer.model.eval()
    torch.testing.assert_close(loaded.predict(frames), trainer.model.predict(frames), rtol=0, atol=0)


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    over = {"stages": [{"name": "finetune", "steps": 4, "trainable": "all", "clip_length": [3, 3]}],
            "data": {"num_samples": 4}, "training": {"checkpoint_every": 2}}  # fmt: skip
    straight = Trainer(vda_tiny(**over), tmp_path / "a")
    h_straight = straight.fit()
    interrupted = Trainer(vda_tiny(**over), tmp_path / "b")
    interrupted.fit(max_steps=3)  # checkpoint at 2 (periodic) and 3 (on stop)
    assert latest_checkpoint(tmp_path / "b").name == "checkpoint_3"
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["checkpoint_2", "checkpoint_3"]
    # as saved before checkpoints recorded the stream position: derived from the step (`resumed_stream_position`)
    ckpt = tmp_path / "b" / "checkpoints" / "checkpoint_3"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state.pop("stream_batches") == 3
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    torch.save({k: v for k, v in torch.load(ckpt / "custom_checkpoint_0.pkl").items() if k != "stream_batches"},
               ckpt / "custom_checkpoint_0.pkl")  # fmt: skip
    resumed = Trainer(vda_tiny(**over), tmp_path / "b")
    h_resumed = resumed.fit(resume=True)
    assert [h["step"] for h in h_resumed] == [4]
    assert h_resumed[-1]["loss"] == h_straight[-1]["loss"]
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("name", ["vda", "dvd"])
def test_resume_with_gradient_checkpointing_turned_on_continues_the_same_run(name: str, tmp_path: Path) -> None:
    """A run resumed on a GPU with less memory needs `gradient_checkpointing: true`; it was refused as
    a changed config, and --allow-config-change let any other edit through with it. Recomputed
    activations give the same steps (bit-identical here, ViT and diffusers UNet with LoRA), so it
    resumes without the flag, to the weights of the uninterrupted run."""
    from training_ranks import tiny_config

    straight = Trainer(tiny_config(name, tmp_path, threads=1), tmp_path / "straight")
    straight.fit()
    Trainer(tiny_config(name, tmp_path, threads=1), tmp_path / "run").fit(max_steps=1)
    resumed = Trainer(tiny_config(name, tmp_path, threads=1, gradient_checkpointing=True), tmp_path / "run")
    resumed.fit(resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_exports_to_a_model_folder(tmp_path: Path) -> None:
    """A mid-run DVD checkpoint (LoRA adapters) exports merged and loads with `load_model`."""
    from vdepth_training.train import main

    from vdepth_ros.models import load_model

    cfg = CONFIGS / "dvd.yaml"
    run = tmp_path / "run"
    assert main(["--config", str(cfg), "--tiny", "--output", str(run), "--max-steps", "1"]) == 0
    ckpt = latest_checkpoint(run)
    assert main(["--config", str(cfg), "--tiny", "--output", str(run), "--export-checkpoint", str(ckpt)]) == 0
    model = load_model(run / "export")
    assert model.family == "dvd" and model.lora_rank == 0
    assert not any("lora" in n for n in model.state_dict())


def test_the_stream_position_a_resume_reads_from(tmp_path: Path) -> None:
    """Where a resumed run reads on in the batch stream (`checkpoints.resumed_stream_position`): the position
    the checkpoint recorded, whatever the resumed run's processes and grad_accum; with another batch_size the
    first whole batch after the samples read (10 of 2: batch 5 of 2, 4 of 3); a checkpoint saved before the
    position was recorded: its steps x its own grad_accum x its own processes (not the resumed run's)."""
    from vdepth_training.checkpoints import resumed_stream_position

    def saved(state: dict, training: dict | None) -> Path:
        folder = tmp_path / f"checkpoint_{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": 5, "stage": 0, **state}))
        if training is not None:
            (folder / "trainer_config.json").write_text(json.dumps({"training": training}))
        return folder

    now = {"batch_size": 2, "grad_accum": 3}
    recorded = saved({"stream_batches": 5, "processes": 2}, {"batch_size": 2, "grad_accum": 1})
    assert resumed_stream_position(recorded, 5, now, 1) == 5  # not 5 steps x 3 x 1 = 15
    assert resumed_stream_position(recorded, 5, {**now, "batch_size": 3}, 1) == 4  # samples 12.. (10, 11 unread)
    older = saved({"processes": 2}, {"batch_size": 2, "grad_accum": 4})
    assert resumed_stream_position(older, 5, now, 1) == 40
    oldest = saved({}, None)  # neither recorded: as the resumed run
    assert resumed_stream_position(oldest, 5, now, 1) == 15


def test_two_stages_switch_trainable_layers(tmp_path: Path) -> None:
    over = {"stages": [
        {"name": "all", "steps": 1, "trainable": "all", "clip_length": [2, 2]},
        {"name": "spatial", "steps": 1, "trainable": "spatial", "clip_length": [2, 2]},
    ]}  # fmt: skip
    Trainer(vda_tiny(**over), tmp_path).fit(max_steps=1)  # stops at the stage boundary
    ckpt = latest_checkpoint(tmp_path)
    # stage 0 done; the resumed run opens stage 1 with a fresh optimizer over its own parameters
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state == {"global_step": 1, "stage": 0, "stage_step": 1, "stream_batches": 1, "processes": 1}
    after_stage1 = load_state_dict_file(ckpt)
    trainer = Trainer(vda_tiny(**over), tmp_path)
    trainer.fit(resume=True)
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), after_stage1[n])}
    assert changed and all(layer_kind(n) == "spatial" for n in changed)
    assert any(layer_kind(n) == "temporal" for n in after_stage1)


def test_bf16_checkpointing_and_accumulation_run(tmp_path: Path) -> None:
    from vdepth_training.config import build_family_model
    from vdepth_training.trainer import enable_gradient_checkpointing

    assert enable_gradient_checkpointing(build_family_model(vda_tiny())) > 0
    over = {"training": {"mixed_precision": "bf16", "gradient_checkpointing": True, "grad_accum": 2},
            "stages": [{"name": "finetune", "steps": 2, "trainable": "all", "clip_length": [2, 2]}],
            "data": {"num_samples": 4}}  # fmt: skip
    trainer = Trainer(vda_tiny(**over), tmp_path)
    history = trainer.fit()
    assert [h["step"] for h in history] == [1, 2]
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)


def test_teacher_latents_cached_to_disk(tmp_path: Path) -> None:
    """One-step distillation reads the 5-step teacher latents from the cache on the second pass."""
    from vdepth_training.config import build_dataset, build_sources
    from vdepth_training.data.dataset import collate_clips
    from vdepth_training.recipes import get_recipe

    cfg = load_config(CONFIGS / "onestep.yaml", tiny=True, overrides={"training": {"latent_cache": str(tmp_path)}})
    recipe = get_recipe(cfg)
    model = recipe.build_model()
    ds = build_dataset(cfg, cfg["stages"][0], build_sources(cfg["data"]), seed=0, normalization="minmax_sequence")
    batch = collate_clips([ds[0]])
    first, _ = recipe.loss(model, batch, torch.Generator().manual_seed(0))
    files = sorted(tmp_path.rglob("*.safetensors"))
    assert [f.parent.name.split("@")[0] for f in files] == ["os_teacher_latent"]  # @ the teacher's fingerprint
    calls = []
    recipe.teacher.sample_latents = lambda *a, **k: calls.append(1)  # type: ignore[method-assign]
    second, _ = recipe.loss(model, batch, torch.Generator().manual_seed(0))
    assert not calls and recipe.cache.hits == 1
    assert float(first) == float(second)


def test_cache_only_cli_fills_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vdepth_training.train import main

    argv = ["--config", str(CONFIGS / "dvd.yaml"), "--tiny", "--output", str(tmp_path / "run"),
            "--latent-cache", str(tmp_path / "cache"), "--cache-only"]  # fmt: skip
    assert main(argv) == 0
    assert "cached 1 batches" in capsys.readouterr().out
    names = sorted(p.parent.name.split("@")[0] for p in (tmp_path / "cache").rglob("*.safetensors"))
    assert names == ["dvd_depth", "dvd_rgb"]


@pytest.mark.slow
def test_train_then_export_onnx(tmp_path: Path) -> None:
    """train -> save_pretrained -> vdepth_export.export_onnx (parity checked by the exporter); one step makes
    the trained folder as well as the tiny config's 12."""
    export = pytest.importorskip("vdepth_export.export_onnx")
    Trainer(vda_tiny(stages=[{"name": "finetune", "steps": 1, "trainable": "all", "clip_length": [4, 4]}]),
            tmp_path).fit()  # fmt: skip
    result = export.export_onnx(tmp_path / "final", frames=4, height=28, width=42, evaldata=False, threads=1)
    assert result.onnx_path.is_file()


@pytest.mark.slow
def test_cache_only_prefills_every_stage(tmp_path: Path) -> None:
    """`--cache-only` fills the cache for all three DepthCrafter stages (the third with its own
    sources); the training run that follows never computes a cached latent again."""
    over = {"training": {"latent_cache": str(tmp_path / "cache")},
            "stages": [{"name": "s1", "steps": 1, "trainable": "all", "within": "unet", "clip_length": [2, 2]},
                       {"name": "s2", "steps": 1, "trainable": "temporal", "within": "unet", "clip_length": [3, 3]},
                       {"name": "s3", "steps": 1, "trainable": "spatial", "within": "unet", "clip_length": [3, 3],
                        "data": {"sources": [{"name": "synthetic", "layout": "toy", "count": 1, "frames": 4,
                                              "height": 64, "width": 64, "seed": 3}]}}]}  # fmt: skip
    cfg = load_config(CONFIGS / "depthcrafter.yaml", tiny=True, overrides=over)
    assert Trainer(cfg, tmp_path / "run").precompute_cache() == [3]
    (depths,) = (tmp_path / "cache").glob("dc_depth@*")  # one VAE
    assert len(list(depths.iterdir())) == 3  # three different clips
    trainer = Trainer(load_config(CONFIGS / "depthcrafter.yaml", tiny=True, overrides=over), tmp_path / "run")
    trainer.fit()
    assert trainer.recipe.cache.misses == 0 and trainer.recipe.cache.hits == 9  # 3 entries x 3 steps


def test_a_misspelt_training_or_optimizer_key_is_refused_before_training(tmp_path: Path) -> None:
    """`training.bach_size` used to train with the default batch size in silence."""
    from vdepth_ros.errors import ConfigError

    with pytest.raises(ConfigError, match=r"training sets unknown keys \['bach_size'\].*did you mean 'batch_size'"):
        Trainer(vda_tiny(training={"bach_size": 2}), tmp_path)
    with pytest.raises(ConfigError, match=r"optimizer sets unknown keys \['learning_rate'\]"):
        Trainer(vda_tiny(optimizer={"learning_rate": 1.0}), tmp_path)
    with pytest.raises(ConfigError, match=r"mixed_precision must be one of"):
        Trainer(vda_tiny(training={"mixed_precision": "fp8x"}), tmp_path)
    with pytest.raises(ConfigError, match=r"got False \(YAML reads a bare no as false: write 'no' in quotes"):
        Trainer(vda_tiny(training={"mixed_precision": False}), tmp_path)  # `mixed_precision: no`
    assert not any(tmp_path.iterdir())
    # the default recipe's own optimizer keys stay accepted
    default = load_config(CONFIGS / "default_v7.yaml", overrides={"data": {"root": str(tmp_path / "data")}})
    Trainer(default, tmp_path / "run")


def test_a_misspelt_section_in_the_tiny_section_is_refused(tmp_path: Path) -> None:
    """`tiny: {optimiser: {lr: 3e-4}}` was merged as a section nothing reads: `--tiny` trained at the
    full recipe's learning rate (1e-6) without a word. Now it is refused with the closest section."""
    from vdepth_ros.errors import ConfigError

    recipe = tmp_path / "mine.yaml"
    text = (CONFIGS / "vda.yaml").read_text()
    assert "  optimizer: {lr: 3.0e-4" in text
    recipe.write_text(text.replace("  optimizer: {lr: 3.0e-4", "  optimiser: {lr: 3.0e-4"))
    for tiny in (True, False):
        with pytest.raises(ConfigError, match=r"tiny sets unknown keys \['optimiser'\].*did you mean 'optimizer'"):
            load_config(recipe, tiny=tiny)


def test_a_misspelt_model_config_key_is_refused_before_the_ranks_start(tmp_path: Path) -> None:
    """`model.config: {windw: 8}` stopped every rank (each printing it) once its accelerator was up,
    with Python's "unexpected keyword argument" and no hint; now one error before anything is built,
    with the closest key, as for every other section."""
    from vdepth_ros.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model.config \(family vda\) sets unknown keys \['windw'\].*'window'"):
        Trainer(vda_tiny(model={"config": {"windw": 8}}), tmp_path)
    with pytest.raises(ConfigError, match=r"model.config: window expects an integer, got 8.0"):
        Trainer(vda_tiny(model={"config": {"window": 8.0}}), tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_model_config_that_init_from_ignores_is_refused(tmp_path: Path) -> None:
    """`model.init_from` loads a saved model as it was saved: a `model.config` value beside it (a user
    fine-tuning released weights with `window: 16`) was ignored in silence; now it is refused, naming
    both values. The saved model's own values are fine."""
    from vdepth_ros.errors import ConfigError
    from vdepth_ros.models.vda import VideoDepthAnything

    tiny = VideoDepthAnything.tiny_config()
    folder = VideoDepthAnything(**tiny).save_pretrained(tmp_path / "saved")
    other = tiny["window"] + 2
    cfg = vda_tiny()
    cfg["model"] = {"family": "vda", "init_from": str(folder), "config": {"window": other}}
    with pytest.raises(ConfigError, match=rf"model.config sets window: {other} \(saved: {tiny['window']}\), but"):
        Trainer(cfg, tmp_path / "run")
    cfg["model"]["config"] = {"window": tiny["window"]}
    Trainer(cfg, tmp_path / "run")


#: a recipe value of the wrong type (section overrides) -> the one line that refuses it
TYPE_MISTAKES: dict[str, tuple[dict, str]] = {
    "quoted lr": ({"optimizer": {"lr": "abc"}}, "optimizer.lr must be a number, got 'abc'"),
    "decimal batch size": ({"training": {"batch_size": 2.0}}, "training.batch_size must be an integer, got 2.0"),
    "quoted seed": ({"training": {"seed": "1"}}, "training.seed must be an integer, got '1' (a string: write the"),
    "None-default threads": ({"training": {"threads": "2"}}, "training.threads must be an integer (or null), got '2'"),
    "None-default grad_clip": ({"optimizer": {"grad_clip": "x"}}, "optimizer.grad_clip must be a number (or null)"),
    "quoted bool": ({"data": {"random_crop": "false"}}, "data.random_crop must be true or false, got 'false'"),
    "float count": ({"data": {"num_samples": 1e3}}, "data.num_samples must be an integer, got 1000.0 (write 1000"),
    "loss weight": ({"loss": {"w_tgm": "10"}}, "loss.w_tgm must be a number, got '10'"),
    "betas": ({"optimizer": {"betas": [0.9, "x"]}}, "optimizer.betas must be a list of numbers"),
}


@pytest.mark.parametrize("mistake", list(TYPE_MISTAKES))
def test_a_recipe_value_of_the_wrong_type_is_refused_before_training(tmp_path: Path, mistake: str) -> None:
    """Recipe values were not checked against their type: `lr: abc` and `num_samples: 1e3` ended in
    a float()/int() traceback after the model was built, `random_crop: "false"` cropped (a non-empty
    string is true), `batch_size: 2.0` ran as 2. Now each is one ConfigError naming the key and the fix."""
    from vdepth_ros.errors import ConfigError

    over, words = TYPE_MISTAKES[mistake]
    with pytest.raises(ConfigError) as err:
        Trainer(vda_tiny(**over), tmp_path)
    assert str(err.value).startswith(words), str(err.value)
    assert not any(tmp_path.iterdir())


def test_the_default_recipes_augment_values_are_held_to_their_types(tmp_path: Path) -> None:
    """`augment: {noise_std: ["5e-3", 0.05]}` (or `hue_shift: "0.06"`) failed in the first batch's
    photometric augmentation with a TypeError, after the renders and the model; now it is one line."""
    from vdepth_ros.errors import ConfigError

    for over, words in (
        ({"noise_std": ["5e-3", 0.05]}, "augment.noise_std must be a list of numbers, got ['5e-3', 0.05]"),
        ({"hue_shift": "0.06"}, "augment.hue_shift must be a number, got '0.06' (a string: write the number"),
    ):
        cfg = load_config(CONFIGS / "default_v7.yaml", overrides={"data": {"root": str(tmp_path)}, "augment": over})
        with pytest.raises(ConfigError) as err:
            Trainer(cfg, tmp_path / "run")
        assert str(err.value).startswith(words), str(err.value)


def test_a_stage_value_of_the_wrong_type_is_refused_and_scientific_notation_is_a_number(tmp_path: Path) -> None:
    """A stage's `restart: "false"` restarted the optimizer (a non-empty string is true) and
    `warmup_steps: "10"` was int()'d in silence; a YAML `lr: 1e-4` (PyYAML: a string) is the number."""
    from vdepth_training.trainer import config_changes

    from vdepth_ros.errors import ConfigError

    recipe = tmp_path / "mine.yaml"
    text = (
        (CONFIGS / "vda.yaml").read_text().replace("optimizer: {lr: 3.0e-4, lr_new: 3.0e-4}", "optimizer: {lr: 3e-4}")
    )
    stage = "    - {name: finetune, steps: 12, trainable: all, clip_length: [4, 4]}"
    assert stage in text
    recipe.write_text(text.replace(stage, stage[:-1] + ", lr: 1e-4, min_lr_ratio: 5E-2, warmup_steps: 2}"))
    cfg = load_config(recipe, tiny=True)
    assert (
        cfg["optimizer"]["lr"] == 3e-4 and cfg["stages"][0]["lr"] == 1e-4 and cfg["stages"][0]["min_lr_ratio"] == 0.05
    )
    Trainer(cfg, tmp_path / "run")
    for key, value, words in (
        ("restart", "false", "stages[1].restart must be true or false, got 'false'"),
        ("warmup_steps", "10", "stages[1].warmup_steps must be an integer, got '10'"),
    ):
        cfg = vda_tiny()
        cfg["stages"] = [cfg["stages"][0], {**cfg["stages"][0], "name": "second", key: value}]
        with pytest.raises(ConfigError) as err:
            Trainer(cfg, tmp_path / "run")
        assert str(err.value).startswith(words), str(err.value)
    # a checkpoint saved when `lr: 1e-4` was read as text resumes with the same recipe
    assert config_changes({"optimizer": {"lr": "1e-4"}}, {"optimizer": {"lr": 1e-4}}) == []
    assert config_changes({"optimizer": {"lr": "1e-4"}}, {"optimizer": {"lr": 2e-4}}) != []


def test_cli_mistakes_are_one_line_errors_and_a_run_is_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config mistake used to end in a traceback; a second run into the same --output appended
    to its metrics.jsonl, retrained and then crashed on (or silently replaced) its checkpoints."""
    import yaml
    from vdepth_training.train import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**yaml.safe_load((CONFIGS / "vda.yaml").read_text()), "recipe": "vdaa"}))
    for argv, message in (
        (["--config", str(bad), "--tiny"], "unknown recipe 'vdaa'"),
        (["--config", str(tmp_path / "none.yaml")], "not found"),
    ):
        assert main([*argv, "--output", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    run = tmp_path / "run"
    argv = ["--config", str(CONFIGS / "vda.yaml"), "--tiny", "--output", str(run), "--max-steps", "2"]
    assert main(argv) == 0
    before = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == before  # nothing touched
    assert main([*argv[:-1], "1", "--overwrite"]) == 0  # asked: starts again
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint_1"]


def test_ctrl_c_stops_after_the_step_with_a_checkpoint_and_resumes_exactly(tmp_path: Path) -> None:
    """SIGINT used to raise KeyboardInterrupt mid-step: everything since the last periodic
    checkpoint was lost (all of it before the first one), and the resumed run logged the lost
    steps a second time in metrics.jsonl."""
    import os
    import signal

    over = {"stages": [{"name": "finetune", "steps": 5, "trainable": "all", "clip_length": [3, 3]}],
            "data": {"num_samples": 5}, "training": {"checkpoint_every": 0}}  # fmt: skip
    straight = Trainer(vda_tiny(**over), tmp_path / "a")
    h_straight = straight.fit()
    interrupted = Trainer(vda_tiny(**over), tmp_path / "b")
    loss = interrupted.recipe.loss
    calls = []

    def ctrl_c_in_step_3(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the third step
        return loss(*args, **kwargs)

    interrupted.recipe.loss = ctrl_c_in_step_3  # type: ignore[method-assign]
    # the trainer takes SIGINT over only from Python's own handler; an earlier test in this process
    # (rclpy) may have installed another one
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        history = interrupted.fit()
    finally:
        restored = signal.signal(signal.SIGINT, previous)
    assert restored is signal.default_int_handler  # the trainer put Python's handler back
    assert interrupted.interrupted and [h["step"] for h in history] == [1, 2, 3]  # the step finished
    assert latest_checkpoint(tmp_path / "b").name == "checkpoint_3" and not (tmp_path / "b" / "final").exists()
    with (tmp_path / "b" / "metrics.jsonl").open("a") as f:  # as if killed after logging step 4
        f.write(json.dumps({"step": 4, "loss": 1.0}) + "\n")
    resumed = Trainer(vda_tiny(**over), tmp_path / "b")
    resumed.fit(resume=True)
    assert not resumed.interrupted
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]  # each step logged once
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and h_straight[-1]["step"] == 5


def test_sigterm_in_the_last_step_ends_a_complete_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A SIGTERM (a preemption, the time limit) in the run's last step: the run exported final/, but said
    `interrupted: checkpoint in .../checkpoints; add --resume to continue` with no checkpoint written, and
    exited 130, so a requeued job's `--resume` met a finished run without checkpoints and stopped with an
    error. The run is complete: it says so and exits 0."""
    import signal

    from vdepth_training import steps as steps_module
    from vdepth_training.train import main

    step = steps_module.StepLoop._step

    def sigterm_in_the_last_step(self: object, *args: object) -> object:
        if args[-1] == 1:  # the second (last) step
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # the trainer's handler, not death
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, *args)

    monkeypatch.setattr(steps_module.StepLoop, "_step", sigterm_in_the_last_step)
    cfg = tmp_path / "vda.yaml"
    cfg.write_text(json.dumps({**vda_tiny(stages=[{"name": "finetune", "steps": 2, "clip_length": [2, 2]}]),
                               "tiny": {}}))  # fmt: skip
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the trainer takes over Python's default only
    try:
        code = main(["--config", str(cfg), "--output", str(tmp_path / "run")])
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = capsys.readouterr().out
    assert code == 0 and f"model: {tmp_path / 'run' / 'final'}" in out and "interrupted" not in out, out


@pytest.mark.parametrize(
    ("recipe", "over", "message"),
    [
        ("vda", {"data": {"clip_lenght": [2, 3]}}, r"data sets unknown keys.*did you mean 'clip_length'"),
        ("vda", {"loss": {"w_tmg": 1.0}}, r"loss sets unknown keys \['w_tmg'\].*did you mean 'w_tgm'"),
        ("vda", {"loss": {"w_cam": 1.0}}, r"loss sets unknown keys \['w_cam'\]"),  # gemdepth's, not VDA's
        ("vda", {"model": {"use_tiny_confg": True}}, r"model sets unknown keys \['use_tiny_confg'\]"),
        ("vda", {"augment": {"blur_p": 0.5}}, r"augment sets unknown keys \['blur_p'\]"),  # the default recipe's
        ("vda", {"stages": [{"name": "s", "steps": 1, "loss": {"w_gn": 0.1}}]}, r"stages\[0\]\.loss sets .*'w_gm'"),
        ("vda", {"stages": [{"name": "s", "steps": 1, "lr_nwe": 1e-3}]}, r"stages\[0\] sets .*did you mean 'lr_new'"),
        ("vda", {"stages": [{"name": "s", "steps": 1, "warmup": 5}]}, r"stages\[0\] sets .*mean 'warmup_steps'"),
        ("vda", {"data": {"sources": [{"layout": "toy", "cuont": 2}]}}, r"data\.sources\[0\].*\['cuont'\].*'count'"),
        ("dvd", {"loss": {"w_spacial": 0.5}}, r"loss sets unknown keys \['w_spacial'\].*did you mean 'w_spatial'"),
        ("fiffdepth", {"data": {"pseudo": {"modle": None}}}, r"data\.pseudo sets unknown keys \['modle'\]"),
        ("onestep", {"model": {"teacher": {"step": 5}}}, r"model\.teacher sets unknown keys \['step'\].*'steps'"),
    ],
)
def test_a_misspelt_key_in_any_section_is_refused_before_training(
    recipe: str, over: dict, message: str, tmp_path: Path
) -> None:
    """Only `training:` and `optimizer:` were checked: `data.clip_lenght` or `loss.w_tmg` trained
    with the defaults in silence, a misspelt source option failed only once the data was built."""
    from vdepth_ros.errors import ConfigError

    cfg = load_config(CONFIGS / f"{recipe}.yaml", tiny=True, overrides=over)
    with pytest.raises(ConfigError, match=message):
        Trainer(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_misspelt_default_recipe_key_is_one_line_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default recipe's `data:` and `augment:` keys are its own; a typo there is exit code 2
    and one line, before any clip is rendered; `--data` with a recipe that reads `data.sources`
    is refused instead of ignored."""
    import yaml
    from vdepth_training.config import DEFAULT_RECIPE
    from vdepth_training.train import main

    raw = yaml.safe_load(DEFAULT_RECIPE.read_text())
    for section, key, hint in (("data", "render_sise", "render_size"), ("augment", "jpeg_qualty", "jpeg_quality")):
        path = tmp_path / f"{section}.yaml"
        path.write_text(yaml.safe_dump({**raw, section: {**raw[section], key: 1}}))
        assert main(["--config", str(path), "--output", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"did you mean {hint!r}" in err, err
    assert not (tmp_path / "run").exists()
    bad_stages = ((["warmup"], "stages[0] must be a mapping"), ([{"steps": 2.5}], "stages[0].steps must be an integer"))
    for stages, expect in bad_stages:
        path = tmp_path / "stages.yaml"
        path.write_text(yaml.safe_dump({**raw, "stages": stages}))
        assert main(["--config", str(path), "--output", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expect in err and "Traceback" not in err, err
    argv = ["--config", str(CONFIGS / "vda.yaml"), "--tiny", "--output", str(tmp_path / "run"), "--data", "x"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--data" in err and "data.sources" in err, err


def test_export_checkpoint_does_not_replace_an_export_without_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--export-checkpoint` wrote over `<output>/export` (an earlier export, perhaps the one a robot
    runs) without asking, unlike vdepth-export and vdepth-eval; exporting from a file inside that
    folder overwrote the weights it was reading."""
    from vdepth_training.train import main

    run = tmp_path / "run"
    base = ["--config", str(CONFIGS / "vda.yaml"), "--tiny", "--output", str(run)]
    assert main([*base, "--max-steps", "2"]) == 0
    capsys.readouterr()
    ckpt = latest_checkpoint(run)
    assert main([*base, "--export-checkpoint", str(ckpt)]) == 0
    assert f"model: {run / 'export'}" in capsys.readouterr().out
    export = run / "export"
    (export / "NOTES.md").write_text("deployed on robot 3\n")
    before = {p.name: p.read_bytes() for p in export.iterdir()}
    for source, why in ((ckpt, "--overwrite"), (export / "model.safetensors", "overlaps")):
        assert main([*base, "--export-checkpoint", str(source), "--weights-fp16"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "export" in err and why in err and "Traceback" not in err, err
        assert {p.name: p.read_bytes() for p in export.iterdir()} == before  # untouched
    assert main([*base, "--export-checkpoint", str(ckpt), "--weights-fp16", "--overwrite"]) == 0  # asked
    assert sorted(p.name for p in export.iterdir()) == ["config.json", "model.safetensors"]
    assert (export / "model.safetensors").stat().st_size < len(before["model.safetensors"])
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no staging left behind


def test_export_checkpoint_of_weights_that_do_not_fit_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Weights of another model size given to `--export-checkpoint` were torch's strict-load
    RuntimeError traceback (one line per tensor); now one line naming the tensors, as vdepth-export
    import says it (`models.base.load_state_checked`)."""
    from safetensors.torch import load_file, save_file
    from vdepth_training.train import main

    run = tmp_path / "run"
    base = ["--config", str(CONFIGS / "vda.yaml"), "--tiny", "--output", str(run)]
    assert main([*base, "--max-steps", "1"]) == 0
    state = load_file(str(latest_checkpoint(run) / "model.safetensors"))  # the training step's: `model.` keys
    name = sorted(k for k, v in state.items() if v.ndim == 2 and k.startswith("model."))[0]
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    save_file(state, str(tmp_path / "other.safetensors"))
    capsys.readouterr()
    assert main([*base, "--export-checkpoint", str(tmp_path / "other.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tensor(s) of another shape" in err and name.removeprefix("model.") in err, err
    assert not (run / "export").exists()


def test_export_checkpoint_reads_the_layouts_vdepth_export_import_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Training read weights with its own reader, which took any file but `.pt` for safetensors: a
    fine-tuned `.pth` saved by the user's own loop (DDP `module.` + torch.compile `_orig_mod.` keys in
    `{"state_dict": ..., "epoch": ...}`) and a Git LFS pointer both ended in a SafetensorError
    traceback. Training now reads through the package's one reader (`load_state_dict_file`)."""
    from vdepth_training.config import build_family_model
    from vdepth_training.train import main

    from vdepth_ros.models import load_model

    torch.manual_seed(3)
    state = build_family_model(vda_tiny()).state_dict()
    finetuned = tmp_path / "finetuned.pth"
    torch.save({"state_dict": {f"_orig_mod.module.{k}": v for k, v in state.items()}, "epoch": 3}, finetuned)
    run = tmp_path / "run"
    base = ["--config", str(CONFIGS / "vda.yaml"), "--tiny", "--output", str(run)]
    assert main([*base, "--export-checkpoint", str(finetuned)]) == 0
    exported = load_model(run / "export").state_dict()
    assert all(torch.equal(exported[k], v) for k, v in state.items())
    lfs = tmp_path / "lfs.safetensors"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1200\n")
    capsys.readouterr()
    assert main([*base, "--export-checkpoint", str(lfs), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Git LFS pointer" in err and "Traceback" not in err, err


def test_ctrl_c_before_the_first_step_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while a large model loads (before the trainer takes SIGINT over) printed a
    KeyboardInterrupt traceback on every rank."""
    from vdepth_training.train import main

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_build_model", interrupted)
    argv = ["--config", str(CONFIGS / "vda.yaml"), "--tiny", "--output", str(tmp_path / "run")]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err and "Traceback" not in err, err


def test_validation_needs_held_out_data(tmp_path: Path) -> None:
    """`training.validate_every` without `data.validation` would validate nothing in silence."""
    from vdepth_ros.errors import ConfigError

    with pytest.raises(ConfigError, match=r"validate_every needs data\.validation"):
        Trainer(vda_tiny(training={"validate_every": 2}), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"data\.validation sets unknown keys \['sorces'\].*'sources'"):
        Trainer(vda_tiny(training={"validate_every": 2}, data={"validation": {"sorces": []}}), tmp_path / "run")


def test_a_run_that_dies_while_writing_final_leaves_no_final_folder(tmp_path: Path, monkeypatch) -> None:
    """`final/` was written in place: a run killed (or out of disk) half way through `save_pretrained`
    left a `final/` with a config and part of the weights, which looks like a finished model. It is
    now written under a temporary name and renamed when complete."""
    from vdepth_ros.models.base import VideoDepthModel

    def dies_half_way(self, out, *args, **kwargs):
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(VideoDepthModel, "save_pretrained", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        Trainer(vda_tiny(), tmp_path).fit()
    assert not (tmp_path / "final").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".vdepth-partial")]


def test_export_never_fills_a_users_folder_named_like_the_final_model(tmp_path: Path) -> None:
    """`Trainer.export(model)` wrote config.json and model.safetensors straight into `output/final`,
    whatever it held (a folder of the user's, another run's model): now the one model writer is
    atomic and refuses it, and `final_dir` is the one name of that folder."""
    from vdepth_ros.models import load_model
    from vdepth_ros.offline.errors import OutputExistsError

    trainer = Trainer(vda_tiny(), tmp_path)
    assert trainer.final_dir == tmp_path / "final"
    (trainer.final_dir / "photos").mkdir(parents=True)
    (trainer.final_dir / "notes.txt").write_text("mine\n")
    model = trainer.recipe.build_model()
    # (named for what it is, not "pass --overwrite": that would refuse it too)
    with pytest.raises(OutputExistsError, match=r"exists and is not a model folder .*: it is kept"):
        trainer.export(model)
    with pytest.raises(OutputExistsError, match="not a model folder"):
        trainer.export(model, overwrite=True)
    assert sorted(p.name for p in trainer.final_dir.iterdir()) == ["notes.txt", "photos"]
    assert load_model(trainer.export(model, tmp_path / "other")).family == "vda"


def test_a_latent_cache_write_that_fails_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    """A cache entry is written to `<key>.<pid>.tmp` and renamed; a write that failed (a full disk, Ctrl-C
    in the middle of it) left the partial file in the cache folder for good, one per failure and rank."""
    import errno

    import safetensors.torch
    from vdepth_training.cache import LatentCache

    def full_disk(tensors: dict, filename: str, **kw: object) -> None:
        Path(filename).write_bytes(b"\0" * 1000)  # part of the entry, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    cache = LatentCache(tmp_path / "cache")
    keys = torch.arange(6, dtype=torch.int64).reshape(2, 3)
    with pytest.raises(OSError, match="No space"):
        cache.get_or_compute("latent", keys, lambda: torch.zeros(2, 4))
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_a_save_on_a_full_disk_frees_its_space_and_keeps_the_last_checkpoint(tmp_path: Path, monkeypatch) -> None:
    """A save that failed (ENOSPC) left its `.partial` folder, and a killed save's `.partial` of another
    step stayed until the next save had completed: on a disk that had filled up, both held the space
    the next save needed, so the resumed run's first save failed again. Now a failed save deletes
    what it wrote, every `.partial` is deleted before a save begins, and the last checkpoint resumes."""
    import errno

    import accelerate.checkpointing

    over = {"stages": [{"name": "finetune", "steps": 4, "trainable": "all", "clip_length": [3, 3]}],
            "data": {"num_samples": 4}, "training": {"checkpoint_every": 2}}  # fmt: skip
    Trainer(vda_tiny(**over), tmp_path).fit(max_steps=2)
    killed = tmp_path / "checkpoints" / "checkpoint_3.partial"  # a save killed at step 3 (SIGTERM, SIGKILL)
    killed.mkdir()
    (killed / "model.safetensors").write_bytes(b"\0" * 1000)
    save, seen = accelerate.checkpointing.save, []

    def full_disk(obj, f, *args, **kwargs):
        seen.append(sorted(p.name for p in (tmp_path / "checkpoints").iterdir()))
        save(obj, f, *args, **kwargs)  # a part is written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(accelerate.checkpointing, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        Trainer(vda_tiny(**over), tmp_path).fit(resume=True)
    assert seen[0] == ["checkpoint_2", "checkpoint_4.partial"]  # the killed save's folder was gone first
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint_2"]
    monkeypatch.setattr(accelerate.checkpointing, "save", save)
    assert [h["step"] for h in Trainer(vda_tiny(**over), tmp_path).fit(resume=True)] == [3, 4]


def test_a_metrics_line_cut_short_by_a_full_disk_does_not_stop_the_resume(tmp_path: Path) -> None:
    """The disk filled up (or the run was killed) while the main process appended a step to
    metrics.jsonl: `--resume` read every line as JSON and stopped with a JSONDecodeError traceback,
    so the run could not continue from its intact checkpoint. The cut line is now dropped."""
    over = {"stages": [{"name": "finetune", "steps": 4, "trainable": "all", "clip_length": [3, 3]}],
            "data": {"num_samples": 4}, "training": {"checkpoint_every": 2}}  # fmt: skip
    Trainer(vda_tiny(**over), tmp_path).fit(max_steps=2)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 3, "stage": "finetune", "lo')
    assert [h["step"] for h in Trainer(vda_tiny(**over), tmp_path).fit(resume=True)] == [3, 4]
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3, 4]


def test_a_deepspeed_start_waiting_on_a_build_lock_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """DeepSpeed's start JIT-builds its ops under a lock file in torch's extensions folder, shared by every run
    of the machine: a build killed before it ended left the file, and every later DeepSpeed start (both ranks,
    inside `Accelerator(...)`) waited on it forever without a word. Now a start still building after
    `stops.BUILD_LOCK_WARN_S` names the lock files in one warning, and says what to do."""
    from vdepth_training.stops import build_lock_watch

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="vdepth_training"), build_lock_watch(0.05):
        time.sleep(0.3)  # waiting, and no lock there: nothing to name
    assert not caplog.records
    lock = tmp_path / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir()
    lock.touch()  # left by a killed build
    with caplog.at_level(logging.WARNING, logger="vdepth_training"), build_lock_watch(5.0):
        pass  # a start that ends before the delay says nothing
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="vdepth_training"), build_lock_watch(0.05):
        deadline = time.monotonic() + 30  # (a loaded machine runs the watch's thread late)
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.05)
    [said] = {r.getMessage() for r in caplog.records}  # one line (caplog may hold a record twice)
    assert f"waits on {lock} until the process building there ends" in said and "delete it" in said, said


def test_a_run_holds_its_output_folder_and_leaves_nothing_of_the_lock(tmp_path: Path) -> None:
    """Two runs on one --output (a job started twice, a requeued job beside the running one) trained over each other's
    checkpoints and final/: the first holds the folder, the second is refused naming it; released, nothing stays of
    the lock (nor the folder it made for a run that wrote nothing). Two ranks: `test_training_preemption.py`."""
    from vdepth_training.checkpoints import LOCK_NAME, hold_output, release_output

    from vdepth_ros.offline.errors import OutputExistsError

    held = hold_output(tmp_path / "run")
    with pytest.raises(OutputExistsError, match=rf"run is in use by another run \(pid {os.getpid()} on .*{LOCK_NAME}"):
        hold_output(tmp_path / "run")
    release_output(held)
    assert not (tmp_path / "run").exists()
    (tmp_path / "mine").mkdir()
    release_output(hold_output(tmp_path / "mine"))
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())  # the user's folder stays
    (tmp_path / "file").write_text("the user's")
    with pytest.raises(OutputExistsError, match="is a file, not a folder"):
        hold_output(tmp_path / "file")
