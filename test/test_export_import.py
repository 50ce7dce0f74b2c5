"""`vdepth-export import`: released checkpoints (in their own key layouts) -> model folders the tools load."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
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
from vdepth_ros.pipeline import identity_line
from vdepth_ros.runtime import create_engine
from vdepth_ros.runtime.provenance import model_identity


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
        (
            ["import", "gemdepth", str(ckpt), "-o", str(tmp_path / "a"), "--encoder", "vitb"],
            "builds vits and vitl only",
        ),
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


@pytest.fixture(scope="module")
def tiny_vda_release() -> tuple[VideoDepthAnything, dict[str, torch.Tensor]]:
    torch.manual_seed(4)  # a seed whose random tiny VDA gives a non-constant output
    tiny = VideoDepthAnything(**VideoDepthAnything.tiny_config()).eval()
    return tiny, tiny.released_state_dict()


def test_training_checkpoint_layouts_import_as_the_plain_release(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]],
) -> None:
    """Fine-tuned checkpoints come as their trainers save them: DDP's `module.` and torch.compile's
    `_orig_mod.` on every key, wrapped in one entry of a dict with optimizer state and epoch counters.
    `module.` used to end in 'missing keys [...], unexpected keys ['module.head...']', and any wrapper
    other than `state_dict`/`model` in 'unexpected keys ['model_ema']'."""
    tiny, sd = tiny_vda_release
    frames = torch.rand(4, 3, 70, 98, generator=torch.Generator().manual_seed(0))
    expected = tiny.predict(frames)
    assert float(expected.std()) > 0
    ddp = {"module." + k: v for k, v in sd.items()}
    layouts = {
        "ddp": ddp,
        "compiled_ddp": {"_orig_mod." + k: v for k, v in ddp.items()},
        "wrapped_ddp": {"model": ddp, "epoch": 3, "optimizer": {"state": {}, "param_groups": []}},
        "ema": {"model_ema": sd, "step": 10},
        "lightning": {
            "state_dict": {"model." + k: v for k, v in sd.items()},
            "epoch": 1,
            "global_step": 9,
            "hyper_parameters": {"lr": 1e-4},
        },
        "bf16": {k: v.bfloat16() if v.is_floating_point() else v for k, v in sd.items()},
    }
    sets = [*_sets(VideoDepthAnything.tiny_config()), "--set", "metric=false"]  # a renamed release: say which
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / f"{name}.pth")
        out = tmp_path / f"out_{name}"
        assert cli_main(["import", "vda", str(tmp_path / f"{name}.pth"), "-o", str(out), *sets]) == 0, name
        got = load_model(out).predict(frames)
        tol = 0.05 * float(expected.abs().max()) if name == "bf16" else 0.0
        torch.testing.assert_close(got, expected, rtol=0, atol=tol, msg=name)
    # two candidate state dicts, neither the trainers' usual name: refused by name, never one chosen silently
    torch.save({"student": sd, "teacher": sd}, tmp_path / "two.pth")
    assert cli_main(["import", "vda", str(tmp_path / "two.pth"), "-o", str(tmp_path / "two"), *sets]) == 2
    assert "several state dicts ('student', 'teacher')" in capsys.readouterr().err
    assert not (tmp_path / "two").exists()


def test_a_moving_average_is_never_dropped_silently(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]],
) -> None:
    """A fine-tune saved as `{"model": w, "model_ema": ema}` (or `state_dict` + `ema_state_dict`) used to
    import `model` without a word, though the EMA weights are usually the ones trained for; now refused,
    naming both and the command that saves the EMA on its own. torch's own EMA wrapper
    (`AveragedModel`: `module.` keys plus an `n_averaged` counter) used to fail as 'missing keys' and now
    imports as its weights."""
    tiny, sd = tiny_vda_release
    frames = torch.rand(4, 3, 70, 98, generator=torch.Generator().manual_seed(0))
    averaged = {k: v + 0.01 if v.is_floating_point() else v for k, v in sd.items()}
    sets = _sets(VideoDepthAnything.tiny_config())
    for name, obj, entry in (
        ("model_ema", {"model": sd, "model_ema": averaged, "epoch": 3}, "model_ema"),
        ("ema_state_dict", {"state_dict": sd, "ema_state_dict": averaged}, "ema_state_dict"),
    ):
        ckpt = tmp_path / f"{name}.pth"
        torch.save(obj, ckpt)
        assert cli_main(["import", "vda", str(ckpt), "-o", str(tmp_path / name), *sets]) == 2
        err = capsys.readouterr().err
        assert "and their moving average" in err and f"c = c['{entry}']; torch.save(c, " in err, err
        assert not (tmp_path / name).exists()
        _run_the_fix(err, tmp_path / f"{name}_weights.pth")  # it overwrote a checkpoint called weights.pth
        assert (
            cli_main(
                [
                    "import",
                    "vda",
                    str(tmp_path / f"{name}_weights.pth"),
                    "-o",
                    str(tmp_path / name),
                    *sets,
                    "--set",
                    "metric=false",
                ]
            )
            == 0
        )
        cls = load_model(tmp_path / name).state_dict()["backbone.embeddings.cls_token"]
        assert torch.equal(cls, averaged["pretrained.cls_token"])  # the EMA's weights
    swa = torch.optim.swa_utils.AveragedModel(VideoDepthAnything(**VideoDepthAnything.tiny_config()))
    swa.module.load_state_dict(tiny.state_dict())
    saved = swa.state_dict()  # a fine-tune with this package's key names, as torch's EMA wrapper saves it
    assert "n_averaged" in saved and all(k.startswith("module.") for k in saved if k != "n_averaged")
    torch.save(saved, tmp_path / "swa.pth")
    assert cli_main(["import", "vda", str(tmp_path / "swa.pth"), "-o", str(tmp_path / "swa"), *sets]) == 0
    torch.testing.assert_close(load_model(tmp_path / "swa").predict(frames), tiny.predict(frames), rtol=0, atol=0)


def test_a_trainer_checkpoint_folder_imports_as_the_release(
    tmp_path: Path, tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]]
) -> None:
    """accelerate's `save_state` folder (vdepth_training's `checkpoints/checkpoint_<step>`) holds the
    training step's `model.safetensors` (`model.` keys) beside `optimizer.bin`, `scheduler.bin` and the
    RNG states; given as the source it was refused ('a folder with model.safetensors, optimizer.bin,
    scheduler.bin: pass the checkpoint file itself'), though training read it."""
    from safetensors.torch import save_file

    tiny, sd = tiny_vda_release
    folder = tmp_path / "checkpoints" / "checkpoint_9"
    folder.mkdir(parents=True)
    save_file({"model." + k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    for name in ("optimizer.bin", "scheduler.bin"):
        torch.save({"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": []}, folder / name)
    (folder / "random_states_0.pkl").write_bytes(b"\x80\x04N.")
    (folder / "config.json").write_text('{"recipe": "vda"}')
    out = tmp_path / "imported"
    assert (
        cli_main(
            [
                "import",
                "vda",
                str(folder),
                "-o",
                str(out),
                *_sets(VideoDepthAnything.tiny_config()),
                "--set",
                "metric=false",
            ]
        )
        == 0
    )
    frames = torch.rand(4, 3, 70, 98, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(load_model(out).predict(frames), tiny.predict(frames), rtol=0, atol=0)


def test_files_that_are_not_weights_name_what_they_are(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]],
) -> None:
    """What a hand download really gives: a Git LFS pointer (a clone without git-lfs), the hub's HTML
    page (the /blob/ link), a cut-off file, a training checkpoint with an argparse.Namespace. These
    used to print torch's 'Unsupported operand 118 ... Re-running torch.load with weights_only=False
    will likely succeed' (wrong advice for a text file) or '[Errno 22] Invalid argument'."""
    _, sd = tiny_vda_release
    good = tmp_path / "good.pth"
    torch.save(sd, good)
    lfs = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 112000000\n"
    cases = {
        "lfs.pth": (lfs.encode(), r"Git LFS pointer.*git lfs pull"),
        "lfs.safetensors": (lfs.encode(), r"Git LFS pointer.*git lfs pull"),
        "page.pth": (b"\n<!DOCTYPE html>\n<html><body>Video-Depth-Anything</body></html>", r"HTML page.*/resolve/"),
        "empty.pth": (b"", r"empty.*download it again"),
        "cut.pth": (good.read_bytes()[: good.stat().st_size // 2], r"truncated or corrupt.*download it again"),
        "cut2.pth": (good.read_bytes()[:5000], r"truncated or corrupt.*download it again"),
    }
    torch.save({"model": sd, "args": argparse.Namespace(lr=1e-4)}, tmp_path / "ns.pth")
    sets = _sets(VideoDepthAnything.tiny_config())
    for name, (data, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    cases["ns.pth"] = (b"", r"argparse\.Namespace.*weights_only=False")
    for name, (_, match) in cases.items():
        assert cli_main(["import", "vda", str(tmp_path / name), "-o", str(tmp_path / "out"), *sets]) == 2, name
        err = capsys.readouterr().err
        assert re.search(match, err, re.S), (name, err)
        assert "likely succeed" not in err and "Unsupported operand" not in err, err
        assert err.startswith("vdepth-export import: error: ") and name in err, err
    assert not (tmp_path / "out").exists()
    # a whole module pickled (`torch.save(model)`), alone or as a checkpoint's entry: the command the error gives
    # failed ('Sequential' object has no attribute 'get'), or saved the module again, refused again
    whole = _authors_module(sd)
    for name, obj in (("whole.pth", whole), ("entry.pth", {"model": whole, "epoch": 2})):
        torch.save(obj, tmp_path / name)
        assert cli_main(["import", "vda", str(tmp_path / name), "-o", str(tmp_path / "out"), *sets]) == 2
        weights = tmp_path / name.replace(".pth", "_weights.pth")
        _run_the_fix(capsys.readouterr().err, weights)
        assert (
            cli_main(["import", "vda", str(weights), "-o", str(tmp_path / name[:-4]), *sets, "--set", "metric=false"])
            == 0
        )
        cls = load_model(tmp_path / name[:-4]).state_dict()["backbone.embeddings.cls_token"]
        assert torch.equal(cls, sd["pretrained.cls_token"]), name


def _run_the_fix(err: str, writes: Path) -> None:
    """Run the `python -c "..."` an error gives, in this process, and check it wrote `writes`."""
    command = re.search(r'python -c "([^"]+)"', err)
    assert command is not None and str(writes) in err, err
    exec(command[1], {})
    assert writes.is_file()


def _authors_module(released: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A module with the authors' names over `released` (a released state dict), Linear where the weight is 2D:
    what peft adapts and what `torch.save(model)` pickles, without the authors' code (no forward)."""
    root = torch.nn.Module()

    def child(parent: torch.nn.Module, name: str) -> torch.nn.Module:
        if name not in parent._modules:
            parent.add_module(name, torch.nn.Module())
        return parent._modules[name]  # type: ignore[return-value]

    for key, value in released.items():
        *path, leaf = key.split(".")
        parent = root
        for name in path[:-1]:
            parent = child(parent, name)
        if leaf == "weight" and value.ndim == 2 and path:
            parent.add_module(path[-1], torch.nn.Linear(value.shape[1], value.shape[0], f"{key[:-7]}.bias" in released))
        module = child(parent, path[-1]) if path else root
        if leaf not in dict(module.named_parameters(recurse=False)):
            module.register_parameter(leaf, torch.nn.Parameter(value.clone(), requires_grad=False))
    root.load_state_dict(released)
    return root


def test_a_checkpoint_of_another_size_or_family_names_the_one_it_is(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]],
) -> None:
    """`vdepth-export import vda video_depth_anything_vitb.pth` without `--encoder vitb`: the same key
    names at other widths. It used to end in a RuntimeError traceback with hundreds of 'size mismatch'
    lines; a GemDepth file given as `vda` (or the reverse) listed keys but not what to run."""
    _, sd = tiny_vda_release
    ckpt = tmp_path / "video_depth_anything_tiny.pth"
    torch.save(sd, ckpt)
    narrow = {**VideoDepthAnything.tiny_config(), "features": 8}  # the head at another width
    assert cli_main(["import", "vda", str(ckpt), "-o", str(tmp_path / "a"), *_sets(narrow)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "another shape: head.convs.0.weight (16, 8, 3, 3) (model (8, 8, 3, 3))" in err, err
    # a released size given the wrong --encoder: the error names the right one (ViT-S widths, ViT-B file)
    from vdepth_ros.models.vda import VDA_PRESETS

    small = {k: VDA_PRESETS["vits"][k] for k in ("hidden_size", "num_heads")}
    vitb_like = {k: (torch.zeros(*v.shape[:-1], 768) if k == "pretrained.cls_token" else v) for k, v in sd.items()}
    torch.save(vitb_like, tmp_path / "b.pth")
    assert cli_main(["import", "vda", str(tmp_path / "b.pth"), "-o", str(tmp_path / "a"), *_sets(small)]) == 2
    err = capsys.readouterr().err
    assert "--encoder vitb" in err and "Traceback" not in err, err
    # a GemDepth file as vda, a VDA file as gemdepth
    torch.manual_seed(1)
    torch.save(GemDepth(**GemDepth.tiny_config()).released_state_dict(), tmp_path / "gemdepth.pth")
    args = ["import", "vda", str(tmp_path / "gemdepth.pth"), "-o", str(tmp_path / "a")]
    assert cli_main([*args, *_sets(VideoDepthAnything.tiny_config())]) == 2
    err = capsys.readouterr().err
    assert "found a GemDepth checkpoint" in err and "import it as gemdepth: vdepth-export import gemdepth" in err, err
    args = ["import", "gemdepth", str(ckpt), "-o", str(tmp_path / "a"), *_sets(GemDepth.tiny_config())]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "expected a GemDepth checkpoint" in err and "found a Video Depth Anything checkpoint" in err, err
    assert "vdepth-export import vda" in err, err
    assert not (tmp_path / "a").exists()


def test_another_familys_file_or_the_releases_other_part_names_what_it_is(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]],
) -> None:
    """DVD's two sources swapped (the VAE first), a VDA file as DVD's DiT, DVD's DiT or VAE as a VDA file: each
    ended in 'missing keys [...] (69), unexpected keys [...]', ten key names of each, and nothing said the
    file was another family's or the release's other part. Now one line: expected, found, and what to run."""
    from safetensors.torch import save_file

    from vdepth_ros.models.dvd import DVD

    dvd = DVD(**DVD.tiny_config())
    save_file({k: v.contiguous() for k, v in dvd.transformer.state_dict().items()}, str(tmp_path / "dit.safetensors"))
    save_file({k: v.contiguous() for k, v in dvd.vae.state_dict().items()}, str(tmp_path / "vae.safetensors"))
    torch.save(tiny_vda_release[1], tmp_path / "vda.pth")
    dit, vae, vda, out = (str(tmp_path / n) for n in ("dit.safetensors", "vae.safetensors", "vda.pth", "out"))
    cases = [
        (["dvd", vae, dit], DVD, ["expected a Wan2.1 DiT", "found a Wan2.1 video VAE", "swap the two files"]),
        (["dvd", vda, vae], DVD, ["found a Video Depth Anything checkpoint", f"vdepth-export import vda {vda}"]),
        (["vda", dit], VideoDepthAnything, ["found a Wan2.1 DiT", "vdepth-export import dvd DIT_CHECKPOINT WAN_VAE"]),
        (["vda", vae], VideoDepthAnything, ["found a Wan2.1 video VAE", "vdepth-export import dvd"]),
    ]
    for args, cls, said in cases:
        assert cli_main(["import", *args, "-o", out, *_sets(cls.tiny_config())]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "missing keys" not in err and all(s in err for s in said), err
    assert not Path(out).exists()
    # the right order imports
    assert cli_main(["import", "dvd", dit, vae, "-o", out, *_sets(DVD.tiny_config())]) == 0


def test_sharded_safetensors_import_through_their_index_or_any_shard(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]],
) -> None:
    """Large checkpoints come as `model-0000i-of-0000n.safetensors` + `model.safetensors.index.json`
    (huggingface_hub's split_torch_state_dict_into_shards). Giving the index used to be a JSON error
    or a 'missing keys' list; giving one shard imported a model with half its keys missing."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    tiny, sd = tiny_vda_release
    folder = tmp_path / "release"
    folder.mkdir()
    split = split_torch_state_dict_into_shards(sd, max_shard_size=200_000)
    assert split.is_sharded and len(split.filename_to_tensors) >= 2
    for filename, names in split.filename_to_tensors.items():
        save_file({n: sd[n].contiguous() for n in names}, str(folder / filename))
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": split.metadata, "weight_map": split.tensor_to_filename}))
    (folder / "README.md").write_text("unrelated file next to the weights")
    frames = torch.rand(4, 3, 70, 98, generator=torch.Generator().manual_seed(0))
    sets = [*_sets(VideoDepthAnything.tiny_config()), "--set", "metric=false"]  # a renamed release: say which
    first_shard = folder / sorted(split.filename_to_tensors)[0]
    for i, source in enumerate((index, first_shard, folder)):
        out = tmp_path / f"out{i}"
        assert cli_main(["import", "vda", str(source), "-o", str(out), *sets]) == 0, capsys.readouterr().err
        assert torch.equal(load_model(out).predict(frames), tiny.predict(frames))
    capsys.readouterr()
    last = folder / sorted(split.filename_to_tensors)[-1]
    last.rename(tmp_path / "elsewhere.safetensors")  # one shard not downloaded
    assert cli_main(["import", "vda", str(index), "-o", str(tmp_path / "bad"), *sets]) == 2
    err = capsys.readouterr().err
    assert f"{last.name}" in err and "not found" in err and "download all" in err, err
    index.unlink()  # a lone shard without its index
    assert cli_main(["import", "vda", str(first_shard), "-o", str(tmp_path / "bad"), *sets]) == 2
    assert "shard 1 of" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_tilde_the_shell_did_not_expand_means_home(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]],
) -> None:
    """`--output=~/models/vda` (bash expands no `~` after `--opt=`), a quoted path or one from a script:
    the model used to be written to a folder literally named `~` in the working directory, and the
    printed `model: ~/models/vda` then named a folder that did not exist."""
    _, sd = tiny_vda_release
    home = tmp_path / "home"
    (home / "downloads").mkdir(parents=True)
    torch.save(sd, home / "downloads" / "vda.pth")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    sets = [*_sets(VideoDepthAnything.tiny_config()), "--set", "metric=false"]  # a renamed release: say which
    assert cli_main(["import", "vda", "~/downloads/vda.pth", "--output=~/models/vda", *sets]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == str(home / "models" / "vda")
    assert (home / "models" / "vda" / "config.json").is_file()
    assert not (tmp_path / "~").exists()
    # a relative -o: the printed folder is absolute, since the node and the tools run from elsewhere
    assert cli_main(["import", "vda", "~/downloads/vda.pth", "-o", "rel/vda", *sets]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"] == str(tmp_path / "rel" / "vda") and f"model: {tmp_path / 'rel' / 'vda'}" in printed["next"]
    args = ["onnx", "~/models/vda", "--frames", "4", "--height", "70", "--width", "98", "--no-parity"]
    assert cli_main(args) == 0
    assert (home / "models" / "vda" / "model.onnx").is_file() and not (tmp_path / "~").exists()


def test_a_released_checkpoint_given_as_the_model_says_to_import_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]],
) -> None:
    """`model: video_depth_anything_vits.pth` (the file just downloaded), or the folder it was saved in,
    used to answer 'unknown model file type (expected .onnx, .engine or a model folder)' or
    'config.json not found', without saying that the file has to be imported first."""
    from vdepth_ros.errors import ModelLoadError

    _, sd = tiny_vda_release
    (tmp_path / "dl").mkdir()
    for name in ("video_depth_anything_vits.pth", "model.safetensors"):
        ckpt = tmp_path / "dl" / name
        torch.save(sd, ckpt)
        with pytest.raises(ModelLoadError, match=rf"{re.escape(str(ckpt))}.*vdepth-export import FAMILY"):
            create_engine(ckpt)
        for backend in ("torch", "auto"):
            with pytest.raises(ModelLoadError, match=r"released checkpoint.*vdepth-export import FAMILY"):
                create_engine(tmp_path / "dl", backend=backend)
        for args in (["onnx", str(ckpt)], ["onnx", str(tmp_path / "dl")]):  # 'neither a model folder nor a family'
            assert cli_main(args) == 2
            assert "vdepth-export import FAMILY" in capsys.readouterr().err
        ckpt.unlink()
    assert cli_main(["split", str(tmp_path / "dl")]) == 2  # used to be 'input spec model.onnx.json not found'
    assert f"has no model.onnx: export it first with `vdepth-export onnx {tmp_path / 'dl'}`" in capsys.readouterr().err


def test_set_overrides_are_checked_against_the_family(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]],
) -> None:
    """`--set windw=16` (a typo), `--set window=abc`, `--set metric=yes`, `--set features=-1` used to end
    in TypeError/ValueError/RuntimeError tracebacks, or (metric=yes) a string where a bool belongs."""
    _, sd = tiny_vda_release
    ckpt = tmp_path / "video_depth_anything_vits.pth"
    torch.save(sd, ckpt)
    # the file's own sizes: a file of another width is refused before the model is built, and so before its values
    base = ["import", "vda", str(ckpt), "-o", str(tmp_path / "a"), *_sets(VideoDepthAnything.tiny_config())]
    cases = {
        "windw=16": "unknown --set key 'windw' for vda (did you mean 'window'?)",
        "window=abc": "--set window expects an integer, got 'abc'",
        "metric=yes": "--set metric expects true or false, got 'yes'",
        "features=-1": "cannot build vda with these --set values",
    }
    for item, message in cases.items():
        assert cli_main([*base, "--set", item]) == 2, item
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, (item, err)
    assert not (tmp_path / "a").exists()


def test_a_metric_release_is_not_imported_as_relative_by_mistake(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]],
) -> None:
    """`metric_video_depth_anything_vits.pth` has the relative release's layout: imported without
    `--set metric=true` it used to become a relative model, so the pipeline stitched metres as
    affine-invariant disparity (inverted, rescaled depth) without a word."""
    _, sd = tiny_vda_release
    ckpt = tmp_path / "metric_video_depth_anything_vits.pth"
    torch.save(sd, ckpt)
    sets = _sets(VideoDepthAnything.tiny_config())
    assert cli_main(["import", "vda", str(ckpt), "-o", str(tmp_path / "m"), *sets]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vdepth-export import: error: {ckpt.name} looks like a metric release"), err
    assert "--set metric=true" in err
    assert not (tmp_path / "m").exists()
    assert cli_main(["import", "vda", str(ckpt), "-o", str(tmp_path / "m"), *sets, "--set", "metric=true"]) == 0
    assert load_model(tmp_path / "m").input_constraints.output_kind == "depth"
    assert cli_main(["import", "vda", str(ckpt), "-o", str(tmp_path / "r"), *sets, "--set", "metric=false"]) == 0
    assert load_model(tmp_path / "r").input_constraints.output_kind == "disparity"
    # which one runs is in the node's start-up "model:" line (and /diagnostics, the tools' summaries)
    for folder, says in (("m", "vda (metric depth in metres) from"), ("r", "vda (relative disparity, no unit) from")):
        engine = create_engine(tmp_path / folder, backend="torch")
        assert identity_line({**model_identity(tmp_path / folder, engine), "windows": "-"}).startswith(says)


def test_a_relative_release_is_not_imported_as_metric_by_mistake(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]],
) -> None:
    """The other way round: `video_depth_anything_vits.pth` with `--set metric=true` (the flag taken for
    "make it metric") used to import; the node then published relative disparity as metres, near and far
    swapped. The name and the flag disagree: refused, naming the metric releases' file names."""
    _, sd = tiny_vda_release
    sets = _sets(VideoDepthAnything.tiny_config())
    for name in ("video_depth_anything_vits.pth", "Video_Depth_Anything_vitl.pth"):
        ckpt = tmp_path / name
        torch.save(sd, ckpt)
        assert cli_main(["import", "vda", str(ckpt), "-o", str(tmp_path / "m"), *sets, "--set", "metric=true"]) == 2
        err = capsys.readouterr().err
        assert f"{name} is the name of a relative release" in err and "metric_video_depth_anything_vit" in err, err
        assert not (tmp_path / "m").exists()
    renamed = tmp_path / "my_metric_finetune.pth"  # a name of the user's own: the flag decides
    torch.save(sd, renamed)
    assert cli_main(["import", "vda", str(renamed), "-o", str(tmp_path / "m"), *sets, "--set", "metric=true"]) == 0


def test_a_renamed_vda_release_is_told_by_its_bytes_or_asked_not_guessed(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]],
) -> None:
    """`metric_video_depth_anything_vits.pth` renamed `my_model.pth` and imported without `--set metric=` used to
    become a relative model: the node then fitted metres as disparity, near and far swapped, without a word. The
    two releases have the same keys and shapes (the authors' `VideoDepthAnything` takes `metric` only for its
    stitching), so what can tell is the file's bytes: a file whose sha256 is a release's the registry knows is
    that release under any name (and a `--set metric=` against it is refused); any other file in the authors'
    layout under a name of its own is refused, asking which it is. The package's own layout (what its training
    writes, relative only) still imports as relative without asking."""
    tiny, sd = tiny_vda_release
    sets = _sets(VideoDepthAnything.tiny_config())
    renamed = tmp_path / "my_model.pth"
    torch.save(sd, renamed)
    assert cli_main(["import", "vda", str(renamed), "-o", str(tmp_path / "m"), *sets]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "my_model.pth is a Video Depth Anything release under a name of its own" in err
    assert "--set metric=true" in err and "--set metric=false" in err, err
    assert not (tmp_path / "m").exists()
    assert cli_main(["import", "vda", str(renamed), "-o", str(tmp_path / "m"), *sets, "--set", "metric=true"]) == 0
    assert load_model(tmp_path / "m").input_constraints.output_kind == "depth"
    # a release file the registry has a sha256 for is known by its bytes, whatever its name now
    registry = tmp_path / "registry.json"
    digest = hashlib.sha256(renamed.read_bytes()).hexdigest()
    for metric, kind in ((True, "depth"), (False, "disparity")):
        stem = "metric_video_depth_anything" if metric else "video_depth_anything"
        entry = {"name": "vda-tiny", "family": "vda", "title": "tiny", "license": "apache-2.0", "non_commercial": False,
                 "files": [{"repo": "me/tiny", "filename": f"{stem}_vits.pth", "sha256": digest}],
                 "sources": [f"me/tiny:{stem}_vits.pth"], "overrides": {"metric": True} if metric else {}}  # fmt: skip
        registry.write_text(json.dumps([entry]))
        monkeypatch.setenv("VDEPTH_MODEL_REGISTRY", str(registry))
        out = tmp_path / f"known_{kind}"
        assert cli_main(["import", "vda", str(renamed), "-o", str(out), *sets]) == 0, capsys.readouterr().err
        assert load_model(out).input_constraints.output_kind == kind
        wrong = "false" if metric else "true"
        assert (
            cli_main(["import", "vda", str(renamed), "-o", str(tmp_path / "w"), *sets, "--set", f"metric={wrong}"]) == 2
        )
        err = capsys.readouterr().err
        assert "my_model.pth is vda-tiny's file by its contents (its sha256)" in err and "near and far swapped" in err
    monkeypatch.delenv("VDEPTH_MODEL_REGISTRY")
    own = tmp_path / "finetuned.pth"  # the package's key layout: its training writes relative models only
    torch.save(tiny.state_dict(), own)
    assert cli_main(["import", "vda", str(own), "-o", str(tmp_path / "own"), *sets]) == 0
    assert load_model(tmp_path / "own").input_constraints.output_kind == "disparity"


def test_another_familys_file_given_to_a_diffusers_import_names_the_family_not_a_folder(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_vda_release: tuple[VideoDepthAnything, dict[str, torch.Tensor]],
) -> None:
    """`vdepth-export import fiffdepth video_depth_anything_vits.pth` (or depthcrafter with it as the UNet) said
    'is a file: a diffusers release is imported as its folder ...: give <the folder it sits in>', sending the
    user to import their downloads folder as FiffDepth. The file is told by its keys, as for the other imports."""
    _, sd = tiny_vda_release
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    ckpt = downloads / "video_depth_anything_vits.pth"
    torch.save(sd, ckpt)
    for args in (["fiffdepth", str(ckpt)], ["depthcrafter", str(ckpt), str(downloads)]):
        assert cli_main(["import", *args, "-o", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "found a Video Depth Anything checkpoint" in err, err
        assert f"import it as vda: vdepth-export import vda {ckpt}" in err and f"give {downloads}" not in err, err
        assert not (tmp_path / "out").exists()


def test_a_diffusers_or_transformers_folder_given_as_the_model_says_to_import_it(tmp_path: Path) -> None:
    """The DepthCrafter UNet folder (a diffusers config.json + weights) given as `model:` used to
    answer 'config.json has no _family entry'."""
    from vdepth_ros.errors import ModelLoadError

    folder = tmp_path / "DepthCrafter"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "UNetSpatioTemporalConditionModel",
                                                    "_diffusers_version": "0.25.0"}))  # fmt: skip
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(ModelLoadError, match=r"released checkpoint.*vdepth-export import FAMILY"):
        create_engine(folder, backend="torch")


def test_a_users_own_fine_tune_imports_and_a_lora_adapter_is_refused_with_the_merge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A robotics engineer fine-tunes the package's VDA in their own loop (DDP, peft LoRA) and gives the
    result to `model:` / `vdepth-export import`. The state dict in the package's own key layout
    (`torch.save(model.state_dict())`, DDP's `module.` prefix) used to be refused by import with 'missing
    keys [head.projects...], unexpected keys [backbone...]'; the LoRA adapter folder peft saves was called
    'a released checkpoint: import it first', and import then failed on its keys."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from vdepth_ros.offline import video as videocli

    torch.manual_seed(6)
    cfg = VideoDepthAnything.tiny_config()
    VideoDepthAnything(**cfg).save_pretrained(tmp_path / "base")
    model = get_peft_model(load_model(tmp_path / "base"), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # a trained adapter changes the output
    model.save_pretrained(tmp_path / "adapter")
    adapter = tmp_path / "adapter"
    import cv2

    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (98, 70))
    for i in range(3):
        writer.write(np.full((70, 98, 3), 40 * i, np.uint8))
    writer.release()
    for given in (adapter, adapter / "adapter_model.safetensors"):
        assert videocli.main([str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "o"), "--model", str(given)]) == 2
        err = capsys.readouterr().err
        assert "LORA adapter" in err and f"--adapter {adapter} -o" in err and "import it first" not in err, err
        assert cli_main(["import", "vda", str(given), "-o", str(tmp_path / "x"), *_sets(cfg)]) == 2
        err = capsys.readouterr().err
        assert "LORA adapter" in err and "missing keys" not in err, err
    merged = PeftModel.from_pretrained(load_model(tmp_path / "base"), str(adapter)).merge_and_unload()
    frames = torch.rand(4, 3, 70, 98)
    expected = merged.predict(frames)
    assert not torch.equal(expected, load_model(tmp_path / "base").predict(frames))
    # the fix the message gives: --adapter merges it into the model it was trained on while importing (it gave a
    # python one-liner through peft that fails for an adapter trained on the authors' model, whose names differ)
    for base in (tmp_path / "base", tmp_path / "base" / "model.safetensors"):
        assert cli_main(["import", "vda", str(base), "--adapter", str(adapter), "-o", str(tmp_path / "ad")]) == 0
        assert _same_model(tmp_path / "ad", merged), base
        shutil.rmtree(tmp_path / "ad")
    _an_adapter_on_the_authors_layout_imports_as_peft_merges_it(tmp_path, adapter, capsys)
    for name, state in (
        ("merged.pth", merged.state_dict()),
        ("ddp.pth", {f"module.{k}": v for k, v in merged.state_dict().items()}),
        ("ft.safetensors", None),
    ):
        if state is None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in merged.state_dict().items()}, tmp_path / name)
        else:
            torch.save(state, tmp_path / name)
        out = tmp_path / f"model-{name.split('.')[0]}"
        assert cli_main(["import", "vda", str(tmp_path / name), "-o", str(out), *_sets(cfg)]) == 0, capsys.readouterr()
        # the same config and weights as the merged model: its output (checked once, the others cost seconds each)
        assert _same_model(out, merged) and (
            name != "merged.pth" or torch.equal(load_model(out).predict(frames), expected)
        )
    # another size than the checkpoint's: the tensors of another shape and the --encoder it is
    assert cli_main(["import", "vda", str(tmp_path / "merged.pth"), "-o", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert (
        "expected a Video Depth Anything ViT-S" in err
        and "found a Video Depth Anything checkpoint of ViT width 32" in err
    )
    assert "--set (hidden_size=32" in err, err


def _same_model(folder: Path, model: torch.nn.Module) -> bool:
    """Whether the model folder holds `model`: its config and every weight equal."""
    got = load_model(folder)
    want = model.state_dict()
    return (
        got.config == model.config
        and got.state_dict().keys() == want.keys()
        and all(torch.equal(v, want[k]) for k, v in got.state_dict().items())
    )


def _an_adapter_on_the_authors_layout_imports_as_peft_merges_it(
    tmp_path: Path, package_adapter: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A LoRA adapter trained on the authors' `VideoDepthAnything` (DINOv2's `qkv` under `pretrained.`) merged into
    the released file by `import --adapter` = peft's `merge_and_unload` on the same module names, imported."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(7)
    cfg = VideoDepthAnything.tiny_config()
    released = VideoDepthAnything(**cfg).released_state_dict()
    authors = _authors_module(released)
    tuned = get_peft_model(authors, LoraConfig(r=4, lora_alpha=8, target_modules=["qkv", "to_q"], use_rslora=True))
    for name, p in tuned.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    tuned.save_pretrained(tmp_path / "authors_adapter")
    merged_state = {k: v.clone() for k, v in tuned.merge_and_unload().state_dict().items()}
    for folder, state in (("release", released), ("peft_merged", merged_state)):
        (tmp_path / folder).mkdir()
        torch.save(state, tmp_path / folder / "video_depth_anything_vits.pth")
    sets = _sets(cfg)
    base = tmp_path / "release" / "video_depth_anything_vits.pth"
    ad = ["--adapter", str(tmp_path / "authors_adapter")]
    assert cli_main(["import", "vda", str(base), *ad, "-o", str(tmp_path / "a1"), *sets]) == 0
    peft_file = tmp_path / "peft_merged" / "video_depth_anything_vits.pth"
    assert cli_main(["import", "vda", str(peft_file), "-o", str(tmp_path / "a2"), *sets]) == 0
    got, want = load_model(tmp_path / "a1").state_dict(), load_model(tmp_path / "a2").state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert not torch.equal(
        merged_state["pretrained.blocks.0.attn.qkv.weight"], released["pretrained.blocks.0.attn.qkv.weight"]
    )
    # each adapter on the other's base: refused naming the layouts, nothing written
    assert (
        cli_main(["import", "vda", str(base), "--adapter", str(package_adapter), "-o", str(tmp_path / "a3"), *sets])
        == 2
    )
    err = capsys.readouterr().err
    assert "are not in" in err and "give the checkpoint it was trained on as the base" in err, err
    assert not (tmp_path / "a3").exists()
    # a setting the plain merge does not cover: refused naming it and peft's own merge, never merged without it
    config = json.loads((tmp_path / "authors_adapter" / "adapter_config.json").read_text())
    (tmp_path / "authors_adapter" / "adapter_config.json").write_text(json.dumps({**config, "modules_to_save": ["x"]}))
    assert cli_main(["import", "vda", str(base), *ad, "-o", str(tmp_path / "a3"), *sets]) == 2
    err = capsys.readouterr().err
    assert "LoRA with {'modules_to_save': ['x']} is not merged here" in err and "merge_and_unload" in err, err


def test_a_model_folder_given_to_import_says_it_needs_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`vdepth-export import vda FOLDER` (or FOLDER/model.safetensors) with a model folder the tools wrote (an
    earlier import, a pull, training's final/) failed with 'its ViT width 32 is no released size: give the model's
    own config with --set (hidden_size=32 and the other sizes ...)': a fix of many flags for a folder that needs
    no import. It now says so, and how to run or export it."""
    torch.manual_seed(0)
    folder = tmp_path / "my_model"
    VideoDepthAnything(**VideoDepthAnything.tiny_config()).save_pretrained(folder)
    assert cli_main(["import", "vda", str(folder / "model.safetensors"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{folder} is already a model folder" in err and f"model: {folder}" in err, err
    assert "--set" not in err and not (tmp_path / "out").exists()
    from vdepth_export.import_released import _already_a_model_folder

    assert _already_a_model_folder(folder) == _already_a_model_folder(folder / "model.safetensors")
    assert _already_a_model_folder(tmp_path) is None


def test_a_gemdepth_adapter_on_the_authors_layout_imports_as_peft_merges_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GemDepth's released training fine-tunes the network itself (no LoRA); a user's peft LoRA on the authors'
    `GemDepth` as their scripts load `gemdepth.pth` (the `qkv` of DINOv2 and of the GEM/ASTT blocks), given as
    `import gemdepth gemdepth.pth --adapter FOLDER`, is merged into the file and imported, bit-equal to importing
    peft's `merge_and_unload` of it."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    torch.manual_seed(8)
    cfg = GemDepth.tiny_config()
    released = GemDepth(**cfg).released_state_dict()
    for folder in ("release", "peft"):
        (tmp_path / folder).mkdir()
    torch.save(released, tmp_path / "release" / "gemdepth.pth")
    tuned = get_peft_model(_authors_module(released), LoraConfig(r=2, target_modules=["qkv"]))
    for name, p in tuned.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # B starts at zero: a trained adapter changes the weights
    tuned.save_pretrained(tmp_path / "adapter")
    torch.save(tuned.merge_and_unload().state_dict(), tmp_path / "peft" / "gemdepth.pth")
    ad = ["--adapter", str(tmp_path / "adapter")]
    release, merged = (str(tmp_path / folder / "gemdepth.pth") for folder in ("release", "peft"))
    assert cli_main(["import", "gemdepth", release, *ad, "-o", str(tmp_path / "a"), *_sets(cfg)]) == 0
    assert cli_main(["import", "gemdepth", merged, "-o", str(tmp_path / "p"), *_sets(cfg)]) == 0
    capsys.readouterr()
    got, want = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("a", "p"))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_a_hub_download_cut_short_or_copied_without_its_blobs_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights as the hub client leaves them: a snapshot's files are links into `blobs/`, and a file is linked only
    once its download completes (`blobs/<hash>.<id>.incomplete` until then). An interrupted download given to import
    (the repository, its snapshot, the file's path in it) read '... does not exist' or 'a folder with no
    .safetensors/... file: pass the checkpoint file itself'; a snapshot copied with `cp -r` (its links dangling)
    alike, also for a diffusers part folder (diffusers: 'no file named diffusion_pytorch_model.bin found'). Now
    each names the interrupted download or the lost links, and the command that fixes it."""
    from diffusers import AutoencoderKL

    from vdepth_ros.errors import ModelLoadError
    from vdepth_ros.models.svd_parts import load_part

    cfg = VideoDepthAnything.tiny_config()
    repo = tmp_path / "hub" / "models--depth-anything--Video-Depth-Anything-Small"
    snapshot = repo / "snapshots" / ("0" * 40)
    for folder in (repo / "blobs", snapshot, repo / "refs"):
        folder.mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    torch.save(VideoDepthAnything(**cfg).released_state_dict(), repo / "blobs" / "ab12")
    (snapshot / "video_depth_anything_vits.pth").symlink_to("../../blobs/ab12")
    shutil.copytree(snapshot, tmp_path / "copied", symlinks=True)  # as `cp -r` copies it
    (repo / "blobs" / "ab12").rename(repo / "blobs" / "ab12.0123abcd.incomplete")
    (snapshot / "video_depth_anything_vits.pth").unlink()
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    out = str(tmp_path / "out")
    for given in (
        repo,
        snapshot,
        snapshot / "video_depth_anything_vits.pth",
        "depth-anything/Video-Depth-Anything-Small",
    ):
        assert cli_main(["import", "vda", str(given), "-o", out, *_sets(cfg)]) == 2
        err = capsys.readouterr().err
        assert "download of depth-anything/Video-Depth-Anything-Small is incomplete" in err, err
        assert "ab12.0123abcd.incomplete" in err and "hf download depth-anything/Video-Depth-Anything-Small" in err
    for given in (tmp_path / "copied", tmp_path / "copied" / "video_depth_anything_vits.pth"):
        assert cli_main(["import", "vda", str(given), "-o", out, *_sets(cfg)]) == 2
        err = capsys.readouterr().err
        assert "video_depth_anything_vits.pth is a link to ../../blobs/ab12, which does not exist" in err, err
        assert "cp -rL" in err
    vae = tmp_path / "copied_vae"
    AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=2).save_pretrained(vae)
    (vae / "diffusion_pytorch_model.safetensors").unlink()
    (vae / "diffusion_pytorch_model.safetensors").symlink_to("../../blobs/cd34")
    with pytest.raises(ModelLoadError, match=r"diffusion_pytorch_model\.safetensors is a link to \.\./\.\./blobs/cd34"):
        load_part(AutoencoderKL, vae, None, None)
    assert not Path(out).exists()


def test_a_gemdepth_vit_s_checkpoint_imports_with_encoder_vits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The authors' GemDepth builds ViT-S and ViT-L (its `intermediate_layer_idx`; ViT-S on VDA's ViT-S sizes, which
    test_parity_gemdepth.py loads from their ViT-S model with `from_released`); a ViT-S checkpoint was refused
    naming sizes to `--set` one by one, and `--encoder vits` with 'gemdepth is released as ViT-L only'. Now
    `--encoder vits` builds those sizes (the refusal without it names `--encoder vits`: `_import_fix`), and ViT-B
    is refused with the reason. The sizes handed to the loader are checked here, not a ViT-S build (seconds)."""
    from vdepth_export import import_released as importer

    from vdepth_ros.models.identify import CheckpointKind, WrongCheckpointError
    from vdepth_ros.models.vda import VDA_PRESETS

    monkeypatch.setattr(GemDepth, "from_released", classmethod(lambda cls, path, **sizes: sizes))
    assert importer._gemdepth([tmp_path / "gemdepth.pth"], "vits", None, {}) == VDA_PRESETS["vits"]
    assert importer._gemdepth([tmp_path / "gemdepth.pth"], None, None, {"max_frames": 8}) == {"max_frames": 8}
    with pytest.raises(ConfigError, match="the authors' GemDepth builds vits and vitl only"):
        importer._gemdepth([tmp_path / "gemdepth.pth"], "vitb", None, {})
    found = CheckpointKind("gemdepth", "model", vit_width=384)
    err = WrongCheckpointError("x", expected=CheckpointKind("gemdepth", "model", 1024), found=found, path="g.pth")
    assert importer._import_fix("gemdepth", err) == "pass --encoder vits"


@pytest.mark.parametrize(("width", "fix"), [(384, "pass --encoder vits"), (768, "GemDepth has no vitb: the authors'")])
def test_a_gemdepth_file_of_another_size_is_refused_before_building_a_vit_l(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, width: int, fix: str
) -> None:
    """`import gemdepth` without --encoder builds the released ViT-L (~30 s on a CPU) and only then found that a
    ViT-S or ViT-B file does not fit it; a ViT-B one was told to give its sizes with --set, not that GemDepth has
    no ViT-B. Now the file's DINOv2 width is checked before any model is built (one built here fails the test)."""
    ckpt = tmp_path / "gemdepth.pth"
    torch.save({"pretrained.cls_token": torch.zeros(1, 1, width), "camera_token": torch.zeros(1, 2, 1, width)}, ckpt)

    def build(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was built for a file its width refuses")

    monkeypatch.setattr(GemDepth, "__init__", build)
    assert cli_main(["import", "gemdepth", str(ckpt), "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert f"found a GemDepth ViT-{'S' if width == 384 else 'B'} checkpoint;" in err and fix in err, err  # no release
    assert "Traceback" not in err and not (tmp_path / "a").exists(), err
    if width == 768:  # the sizes to build it with, as --set arguments the CLI parses
        assert "--set hidden_size=768 --set num_layers=12" in err and "--set layer_indices=[2,5,8,11]" in err, err
