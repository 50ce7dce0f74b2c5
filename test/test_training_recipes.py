"""Each recipe's tiny config trains on CPU: the loss on a fixed batch (fixed noise) goes down, and
the saved folder loads into its `vdepth_ros.models` class with identical predictions.

Families that have not landed in `vdepth_ros.models` are skipped with a reason.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from training_support import CONFIGS, fresh_accelerate  # noqa: F401 - autouse fixture
from vdepth_training.config import load_config
from vdepth_training.recipes import get_recipe
from vdepth_training.trainer import Trainer


def family_landed(family: str) -> bool:
    from vdepth_ros.models import MODEL_FAMILIES

    module = MODEL_FAMILIES[family].split(":")[0]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError:
        return False
    return True


def fixed_batch_loss(recipe, model, batch) -> float:
    with torch.no_grad():
        loss, _ = recipe.loss(model, batch, torch.Generator().manual_seed(1234))
    return float(loss)


def run_tiny(name: str, tmp_path: Path, min_drop: float) -> None:
    from vdepth_ros.models import load_model

    cfg = load_config(CONFIGS / f"{name}.yaml", tiny=True)
    if not family_landed(cfg["model"]["family"]):
        pytest.skip(f"vdepth_ros.models family {cfg['model']['family']!r} has not landed")
    trainer = Trainer(cfg, tmp_path)
    torch.manual_seed(cfg["training"]["seed"])
    model = trainer.recipe.build_model()
    trainer.recipe.configure_stage(model, trainer.plan[0])
    trainer.recipe.start_stage(trainer.plan[0])
    batch = trainer.recipe.batches(trainer.plan[0])[0]
    model.train()
    before = fixed_batch_loss(trainer.recipe, model, batch)
    trainer.recipe.build_model = lambda: model  # type: ignore[method-assign]
    history = trainer.fit()
    assert len(history) == sum(s["steps"] for s in cfg["stages"])
    model.train()
    after = fixed_batch_loss(trainer.recipe, model, batch)
    assert after < (1 - min_drop) * before, (before, after)
    loaded = load_model(tmp_path / "final")
    exported = trainer.recipe.export_model(model).eval()
    frames = batch["frames"][0]
    torch.testing.assert_close(loaded.predict(frames), exported.predict(frames), rtol=1e-5, atol=1e-6)


def test_dvd_tiny_trains_and_exports(tmp_path: Path) -> None:
    run_tiny("dvd", tmp_path, min_drop=0.3)


def test_fiffdepth_tiny_trains_and_exports(tmp_path: Path) -> None:
    run_tiny("fiffdepth", tmp_path, min_drop=0.3)


def test_depthcrafter_tiny_three_stages(tmp_path: Path) -> None:
    run_tiny("depthcrafter", tmp_path, min_drop=0.2)


def test_gemdepth_tiny(tmp_path: Path) -> None:
    run_tiny("gemdepth", tmp_path, min_drop=0.2)


def test_onestep_unet_stage_tiny(tmp_path: Path) -> None:
    run_tiny("onestep", tmp_path, min_drop=0.3)


def test_onestep_decoder_stage_tiny(tmp_path: Path) -> None:
    run_tiny("onestep_decoder", tmp_path, min_drop=0.3)


def test_every_config_parses_and_names_a_recipe() -> None:
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml") if not p.stem.startswith(("accelerate", "default")))
    assert {"depthcrafter", "dvd", "fiffdepth", "gemdepth", "onestep", "onestep_decoder", "vda"} <= set(names)
    for name in names:
        for tiny in (False, True):
            cfg = load_config(CONFIGS / f"{name}.yaml", tiny=tiny)
            recipe = get_recipe(cfg)
            assert recipe.family == cfg["model"]["family"]


def test_paper_schedules_in_configs() -> None:
    dc = load_config(CONFIGS / "depthcrafter.yaml")
    assert [(s["trainable"], s["clip_length"], s["steps"]) for s in dc["stages"]] == [
        ("all", [1, 25], 80000), ("temporal", [1, 110], 40000), ("spatial", [45, 45], 10000)]  # fmt: skip
    assert dc["optimizer"]["name"] == "adam" and dc["optimizer"]["lr"] == pytest.approx(1e-5)
    assert dc["data"]["size"] == [320, 640]
    dvd = load_config(CONFIGS / "dvd.yaml")
    assert dvd["model"]["config"]["lora_rank"] == 512 and dvd["optimizer"]["name"] == "adamw"
    assert dvd["optimizer"]["lr"] == pytest.approx(1e-4) and dvd["data"]["size"] == [480, 640]
    assert [s["weight"] for s in dvd["data"]["sources"]] == [9, 1, 40, 10]
    assert dvd["stages"][0]["clip_length"] == [45, 45]
    assert dvd["optimizer"]["weight_decay"] == pytest.approx(0.01)  # torch.optim.AdamW's default, as released
    # one command runs DepthCrafter's three stages, the third on the synthetic sets
    assert [s["layout"] for s in dc["stages"][2]["data"]["sources"]] == ["dynamic_replica"]
    assert "data" not in dc["stages"][0] and "data" not in dc["stages"][1]
    fiff = load_config(CONFIGS / "fiffdepth.yaml")["loss"]
    assert (fiff["w_mae"], fiff["w_gm"], fiff["w_k"], fiff["gamma"]) == (1.0, 0.5, 0.2, 0.5)


def test_deepspeed_zero2_config_is_valid_for_accelerate() -> None:
    import json

    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DeepSpeedPlugin

    raw = json.loads((CONFIGS / "deepspeed_zero2.json").read_text())
    assert raw["zero_optimization"]["stage"] == 2
    plugin = DeepSpeedPlugin(hf_ds_config=str(CONFIGS / "deepspeed_zero2.json"))
    assert plugin.zero_stage == 2
    cluster = ClusterConfig.from_yaml_file(str(CONFIGS / "accelerate_zero2.yaml"))
    assert str(cluster.distributed_type).endswith("DEEPSPEED")
    assert cluster.deepspeed_config["deepspeed_config_file"] == "training/configs/deepspeed_zero2.json"


def test_matrix_to_quaternion_round_trip() -> None:
    import numpy as np
    from vdepth_training.data.layouts import quat_to_matrix
    from vdepth_training.recipes import matrix_to_quaternion

    half = float(np.sqrt(0.5))
    r = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90° about z
    torch.testing.assert_close(matrix_to_quaternion(r), torch.tensor([0.0, 0.0, half, half]))
    q = torch.nn.functional.normalize(torch.tensor([[0.1, -0.7, 0.3, 0.6], [0.5, 0.5, -0.5, 0.5]]), dim=-1)
    back = matrix_to_quaternion(torch.from_numpy(quat_to_matrix(q.double().numpy())).float())
    torch.testing.assert_close(back, q, atol=1e-6, rtol=0)


def test_gemdepth_stage_param_groups() -> None:
    from vdepth_training.stages import plan_stages, stage_lr

    cfg = load_config(CONFIGS / "gemdepth.yaml", tiny=True, overrides={"optimizer": {"lr": 1e-6, "lr_new": 1e-4}})
    if not family_landed("gemdepth"):
        pytest.skip("gemdepth family has not landed")
    recipe = get_recipe(cfg)
    plan = plan_stages(cfg)
    model = recipe.build_model()
    groups = recipe.configure_stage(model, plan[0])
    lrs = {id(p): stage_lr(plan[0], 0) * recipe.lr_scale(plan[0], g["role"]) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lrs[id(named["camera_token"])] == pytest.approx(1e-4)  # GEM: new module
    assert lrs[id(next(p for n, p in named.items() if n.startswith("time_blocks")))] == pytest.approx(1e-4)  # ASTT
    assert lrs[id(next(p for n, p in named.items() if n.startswith("backbone.encoder")))] == pytest.approx(1e-6)
    # never used by the forward: frozen, so DDP needs no find_unused_parameters
    assert not named["backbone.embeddings.mask_token"].requires_grad
    assert not any(p.requires_grad for n, p in named.items() if n.startswith("frame_blocks.1."))
    recipe.configure_stage(model, plan[1])  # stage 2: GEM frozen
    assert not named["camera_token"].requires_grad and not any(
        p.requires_grad for n, p in named.items() if n.startswith(("frame_blocks", "global_blocks", "camera_head"))
    )
    assert all(p.requires_grad for n, p in named.items() if n.startswith(("spatial_blocks", "time_blocks", "head.")) and
               "fusion.3.residual_layer1" not in n)  # fmt: skip


def test_fiffdepth_needs_real_images_for_its_t_minus_1_term(tmp_path: Path) -> None:
    """Without `data.pseudo` the full recipe refuses to run (the paper's loss has the term); with
    an image folder and a labelling model folder the labels are made on the fly, cached by image,
    and every batch is half synthetic, half real."""
    import cv2
    import numpy as np
    from vdepth_training.data.pseudo import load_images

    from vdepth_ros.models import build_model, family_class

    full = load_config(CONFIGS / "fiffdepth.yaml")
    full["data"].pop("pseudo")
    with pytest.raises(ValueError, match=r"data\.pseudo"):
        get_recipe(full)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(images / f"{i}.png"), rng.integers(0, 255, (40, 56, 3), dtype=np.uint8))
    assert [len(s) for s in load_images(images)] == [1, 1]
    build_model("vda", **family_class("vda").tiny_config()).save_pretrained(tmp_path / "labeller")
    cfg = load_config(CONFIGS / "fiffdepth.yaml", tiny=True, overrides={
        "data": {"pseudo": {"sources": [{"name": "real", "layout": "images", "root": str(images)}],
                            "model": str(tmp_path / "labeller")}},
        "training": {"latent_cache": str(tmp_path / "cache")}})  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run")
    recipe, stage = trainer.recipe, trainer.plan[0]
    batch = recipe.batches(stage)[0]
    assert batch["frames"].shape[0] == batch["pseudo/frames"].shape[0] and batch["pseudo/frames"].shape[1] == 1
    assert not batch["pseudo/valid"].any()  # an image folder has no depth: the labeller provides it
    model = recipe.build_model()
    recipe.configure_stage(model, stage)
    recipe.start_stage(stage)
    loss, terms = recipe.loss(model, batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and {"t0_mae", "tm1_mae", "trajectory"} <= set(terms)
    entries = [p.parent.name.split("@")[0] for p in (tmp_path / "cache").rglob("*.safetensors")]
    assert entries.count("fiff_pseudo") == 1
    calls = []
    recipe.labeler = lambda *a: calls.append(a)  # a cache hit never runs the labeller again
    again, _ = recipe.loss(model, batch, torch.Generator().manual_seed(0))
    assert not calls and float(again.detach()) == float(loss.detach())
    # Another labeller with the same latent_cache (a better model, or the folder pulled again): its
    # labels are computed, not the first labeller's taken from the cache (they used to be, silently).
    torch.manual_seed(1)
    build_model("vda", **family_class("vda").tiny_config()).save_pretrained(tmp_path / "labeller2")
    cfg2 = load_config(CONFIGS / "fiffdepth.yaml", tiny=True, overrides={
        "data": {"pseudo": {"sources": [{"name": "real", "layout": "images", "root": str(images)}],
                            "model": str(tmp_path / "labeller2")}},
        "training": {"latent_cache": str(tmp_path / "cache")}})  # fmt: skip
    other = Trainer(cfg2, tmp_path / "run2").recipe
    other.start_stage(stage)
    labelled = []
    other.labeler = lambda frames: labelled.append(1) or torch.rand(frames.shape[0], *frames.shape[-2:])
    other.loss(model, batch, torch.Generator().manual_seed(0))
    assert labelled, "the first labeller's cached latents were used for the second"


def test_pseudo_labels_are_made_at_the_labellers_working_size(tmp_path: Path) -> None:
    """A large image is labelled at the labelling model's working size (here its recorded training
    size, `_trained`), not at the image's own size far beyond what it was trained on, and the labels
    come back at the image's size. Cached labels made under another labelling-size rule (an earlier
    version ran every image at its own size) are computed again, not reused."""
    import cv2
    import numpy as np
    import vdepth_training.data.pseudo as pseudo

    from vdepth_ros.models import build_model, family_class

    labeller = build_model("vda", **family_class("vda").tiny_config())
    labeller.trained = {"sizes": [[28, 42]], "clip_length": [1, 1], "recipe": "vda"}
    labeller.save_pretrained(tmp_path / "labeller")
    labeler = pseudo.PseudoLabeler(tmp_path / "labeller")
    seen: list[tuple[int, int]] = []
    predict = labeler.model.predict
    labeler.model.predict = lambda x: seen.append(tuple(x.shape[-2:])) or predict(x)
    frames = torch.rand(1, 3, 126, 224)
    out = labeler(frames)
    assert out.shape == (1, 126, 224) and torch.isfinite(out).all()
    assert seen and min(seen[0]) == 28 and seen[0][1] % 14 == 0, seen  # was 126x224
    # the cache: labels made at another labelling size, by the same folder (here: a released model
    # without `_trained`, whose default size changed, as a family's stride or default can), or under
    # an earlier rule (each image at its own size), are not taken for this run's
    build_model("vda", **family_class("vda").tiny_config()).save_pretrained(tmp_path / "released")
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "0.png"), np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8))
    cfg = load_config(CONFIGS / "fiffdepth.yaml", tiny=True, overrides={
        "data": {"pseudo": {"sources": [{"name": "real", "layout": "images", "root": str(images)}],
                            "model": str(tmp_path / "released")}},
        "training": {"latent_cache": str(tmp_path / "cache")}})  # fmt: skip

    def run(labeler: object = None) -> None:
        trainer = Trainer(cfg, tmp_path / "run")
        recipe, stage = trainer.recipe, trainer.plan[0]
        torch.manual_seed(0)  # the same frozen VAE each run (its weights name the entries too)
        model = recipe.build_model()
        recipe.configure_stage(model, stage)
        recipe.start_stage(stage)
        recipe.labeler = labeler
        recipe.loss(model, recipe.batches(stage)[0], torch.Generator().manual_seed(0))

    def counted(f: torch.Tensor) -> torch.Tensor:
        labelled.append(1)
        return torch.rand(f.shape[0], *f.shape[-2:])

    labelled: list[int] = []
    run()
    run(counted)
    assert not labelled  # same labeller, same size: a cache hit
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("vdepth_ros.runtime.shapes.DEFAULT_RESOLUTION", (56, 84))
        run(counted)
    assert labelled, "labels cached at another labelling size were reused"
    labelled.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pseudo, "LABEL_SIZE_RULE", ("each image at its own size",))
        run(counted)
    assert labelled, "labels cached under another labelling rule were reused"


def test_the_pseudo_label_tool_runs_on_the_device_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m vdepth_training.data.pseudo` ran the labeller on the CPU only, even on a GPU
    machine (200K images with DAv2-L); now it takes `--device` (default: the GPU when torch sees
    one). A device that is not there, or not a device, is one line naming the fix; nothing written."""
    import cv2
    import numpy as np
    from vdepth_training.data.pseudo import main as pseudo_main
    from vdepth_training.data.sequence import SequenceReader

    from vdepth_ros.models import build_model, family_class

    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((40, 60, 3), 100, np.uint8))
    build_model("vda", **family_class("vda").tiny_config()).save_pretrained(tmp_path / "labeller")
    args = ["--images", str(tmp_path / "images"), "--model", str(tmp_path / "labeller")]
    assert pseudo_main([*args, "--out", str(tmp_path / "bad"), "--device", "gpu"]) == 2
    assert "'gpu'" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    if not torch.cuda.is_available():
        assert pseudo_main([*args, "--out", str(tmp_path / "gpu"), "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert "--device cpu" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "gpu").exists()
    assert pseudo_main([*args, "--out", str(tmp_path / "labels"), "--device", "cpu"]) == 0
    (seq,) = [SequenceReader(p) for p in (tmp_path / "labels").iterdir()]
    assert seq.read().target.shape == (1, 40, 60)


def test_fiffdepth_real_images_without_labels_are_named_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`layout: images` with `data.pseudo.model: null` trained t = -1 on empty targets, in silence
    (every label invalid); a labelling model folder that is not there stopped the run at its first
    step, after the UNet was built. Both now stop before the model is built, naming the fix."""
    import cv2
    import numpy as np
    import yaml
    from vdepth_training.train import main as train_main

    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((40, 56, 3), 100, np.uint8))
    cfg = yaml.safe_load((CONFIGS / "fiffdepth.yaml").read_text())
    path, run = tmp_path / "fiff.yaml", tmp_path / "run"
    unlabelled = "data.pseudo.sources ['real'] are images without labels and data.pseudo.model is null"
    for model, said in ((None, unlabelled), (str(tmp_path / "modles" / "dav2"), "modles")):
        cfg["tiny"]["data"]["pseudo"] = {"sources": [{"name": "real", "layout": "images",
                                                      "root": str(tmp_path / "images")}], "model": model}  # fmt: skip
        path.write_text(yaml.safe_dump(cfg))
        assert train_main(["--config", str(path), "--tiny", "--output", str(run), "--max-steps", "1"]) == 2
        err = capsys.readouterr().err
        assert said in err, err
        assert not run.exists() or not any(run.iterdir())
    # labels precomputed by the tool, the shipped `model:` left in place and not there: the error
    # says how to use them (it named only the missing folder)
    from vdepth_training.data.pseudo import write_pseudo_labels

    from vdepth_ros.models import build_model, family_class

    build_model("vda", **family_class("vda").tiny_config()).save_pretrained(tmp_path / "labeller")
    write_pseudo_labels(tmp_path / "images", tmp_path / "labeller", tmp_path / "labels", device="cpu")
    mine = {"name": "mine", "layout": "sequence", "root": str(tmp_path / "labels")}
    cfg["tiny"]["data"]["pseudo"] = {"sources": [mine], "model": str(tmp_path / "modles" / "dav2")}
    path.write_text(yaml.safe_dump(cfg))
    assert train_main(["--config", str(path), "--tiny", "--output", str(run), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "modles" in err and "['mine'] hold labels of their own" in err and "model: null" in err, err


def test_the_pseudo_label_tool_fails_when_no_image_could_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every image unreadable (another format under an image suffix): the tool said "0 labelled
    images", exited 0 and left an empty folder, which training then refused. Now it exits 2 naming
    the images folder, writes nothing, and an earlier output given to --overwrite stays."""
    import numpy as np
    from vdepth_training.data.pseudo import main as pseudo_main

    from vdepth_ros.models import build_model, family_class

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"not an image")
    build_model("vda", **family_class("vda").tiny_config()).save_pretrained(tmp_path / "labeller")
    args = ["--images", str(tmp_path / "bad"), "--model", str(tmp_path / "labeller"), "--device", "cpu"]
    assert pseudo_main([*args, "--out", str(tmp_path / "labels")]) == 2
    assert "none of the 1 images" in capsys.readouterr().err and not (tmp_path / "labels").exists()
    (tmp_path / "good").mkdir()
    import cv2

    cv2.imwrite(str(tmp_path / "good" / "a.png"), np.full((20, 30, 3), 9, np.uint8))
    good = ["--images", str(tmp_path / "good"), "--model", str(tmp_path / "labeller"), "--device", "cpu"]
    assert pseudo_main([*good, "--out", str(tmp_path / "labels")]) == 0
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "labels").rglob("*"))
    assert pseudo_main([*args, "--out", str(tmp_path / "labels"), "--overwrite"]) == 2
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "labels").rglob("*")) == before


def test_every_recipe_trains_at_sizes_its_family_runs() -> None:
    """Every shipped recipe's crops (`data.size`, `data.aspects`, every stage) are multiples of its
    full model's stride: fiffdepth.yaml trained at 480x640 while the family ran only multiples of 64
    (the model built on the meta device: no weights are allocated)."""
    from vdepth_training.config import crop_sizes
    from vdepth_training.stages import plan_stages

    from vdepth_ros.models import build_model

    for path in sorted(CONFIGS.glob("*.yaml")):
        if path.name.startswith("accelerate"):
            continue
        cfg = load_config(path)
        with torch.device("meta"):
            model = build_model(cfg["model"]["family"], **(cfg["model"].get("config") or {}))
        m = model.input_constraints.multiple_of
        odd = {(h, w) for st in plan_stages(cfg) for h, w in crop_sizes(st.cfg["data"]) if h % m or w % m}
        assert not odd, f"{path.name}: crops {sorted(odd)} are not multiples of {m}"


def test_depthcrafter_stage_3_trains_on_its_own_sources() -> None:
    """One command: the third stage's `data.sources` replace the realistic set (DepthCrafter §4.1)."""
    from vdepth_training.stages import plan_stages

    cfg = load_config(CONFIGS / "depthcrafter.yaml", tiny=True)
    recipe = get_recipe(cfg)
    plan = plan_stages(cfg)
    names = [[s.name for s in recipe.batches(st).dataset.sources] for st in plan]
    assert names == [["toy"], ["toy"], ["toy_synthetic"]]
    assert not torch.equal(recipe.batches(plan[0])[0]["frames"][:, :1], recipe.batches(plan[2])[0]["frames"][:, :1])


def test_every_recipes_tiny_model_is_tiny() -> None:
    """`--tiny` is a recipe's CPU check: a model config left over from the full recipe (VDA's
    deep-merged `config: {}` kept ViT-S) made its tests train 28 M parameters and write GBs."""
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml") if not p.stem.startswith(("accelerate", "default")))
    for name in names:
        model = get_recipe(load_config(CONFIGS / f"{name}.yaml", tiny=True)).build_model()
        assert sum(p.numel() for p in model.parameters()) < 5_000_000, name
