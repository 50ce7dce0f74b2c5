"""DepthCrafter teacher (models/depthcrafter.py): windows, noise reuse, stitching, conditioning, loaders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vdepth_ros.errors import InputError, ModelLoadError
from vdepth_ros.models import edm, load_model
from vdepth_ros.models.depthcrafter import (
    ADDED_TIME_IDS,
    RELEASED_CLIP_CONFIG,
    Conditioning,
    DepthCrafter,
    SpatioTemporalUNet,
    _window_noise,
    window_bounds,
)


@pytest.fixture(scope="module")
def tiny() -> DepthCrafter:
    torch.manual_seed(0)
    return DepthCrafter(**DepthCrafter.tiny_config())


def _frames(t: int, h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(t, 3, h, w, generator=torch.Generator().manual_seed(seed))


# -- long-video schedule ------------------------------------------------------------------------
def test_window_schedule_300_frames() -> None:
    assert window_bounds(300, 110, 25) == [(0, 110), (85, 195), (170, 280), (255, 300)]
    assert window_bounds(110) == [(0, 110)]
    assert window_bounds(111) == [(0, 110), (85, 111)]
    assert window_bounds(7) == [(0, 7)]
    with pytest.raises(InputError):
        window_bounds(10, 5, 5)


def test_noise_reuse_for_overlapped_frames_300() -> None:
    """Overlapped frames get the same ε in both windows; all ε come from one window-length tensor."""
    noise = torch.arange(110, dtype=torch.float32).view(110, 1, 1, 1)
    bounds = window_bounds(300)
    eps = [e.flatten().long().tolist() for e in _window_noise(noise, bounds, 25)]
    assert [len(e) for e in eps] == [110, 110, 110, 45]
    # frame f of window k is absolute frame start_k + j: same ε index in both windows on the overlap
    for k in range(1, len(bounds)):
        prev_start, cur_start = bounds[k - 1][0], bounds[k][0]
        for j in range(25):
            assert eps[k][j] == eps[k - 1][cur_start - prev_start + j]
    assert eps[0] == list(range(110))
    # the release's rotation cat(noise[-25:], noise[:85]) for the second window
    assert eps[1] == list(range(85, 110)) + list(range(0, 85))


def test_sample_windows_anchor_and_crossfade(tiny: DepthCrafter) -> None:
    """Oracle denoiser: check the first-step anchor z_prev + σ0·ε and the linear latent crossfade."""
    model = DepthCrafter(**{**DepthCrafter.tiny_config(), "window": 5, "overlap": 2})
    n, h = 11, 2
    lat = torch.randn(n, 4, h, h)
    # clip[:, 0] carries the absolute frame index so the oracle knows its window
    clip = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)
    cond = Conditioning(lat, clip)
    seen: list[tuple[float, torch.Tensor, int]] = []

    def oracle(x: torch.Tensor, sigma: float, c: Conditioning) -> torch.Tensor:
        start = int(c.clip[0, 0])
        seen.append((sigma, x.clone(), start))
        return c.latents + start  # window-dependent clean latent

    model.denoise = oracle  # type: ignore[method-assign]
    eps = torch.randn(5, 4, h, h)
    sigmas = edm.karras_sigmas(3)
    out = model.sample_windows(cond, sigmas, eps)
    assert out.shape == (n, 4, h, h)
    starts = [s for _, _, s in seen]
    assert starts == [0, 0, 0, 3, 3, 3, 6, 6, 6]
    firsts = [(x, s) for sig, x, s in seen if sig == pytest.approx(700.0)]
    scale = edm.init_noise_sigma()
    torch.testing.assert_close(firsts[0][0], eps * scale)
    # window 1, step 0: overlapped frames = stitched latents of window 0 + 700·ε (same ε as frames 3,4)
    x1 = firsts[1][0]
    eps_frames_3_4 = eps[3:5]
    torch.testing.assert_close(x1[:2], (lat[3:5] + 0) + 700.0 * eps_frames_3_4)
    torch.testing.assert_close(x1[2:], scale * eps[:3])  # rotated: non-overlap frames reuse eps[0:3]
    # crossfade: new weight linspace(0,1,2) = [0, 1] -> frame 3 from window 0, frame 4 from window 1
    torch.testing.assert_close(out[:3], lat[:3] + 0)
    torch.testing.assert_close(out[3], lat[3] + 0)
    torch.testing.assert_close(out[4], lat[4] + 3)
    torch.testing.assert_close(out[6], lat[6] + 3)
    torch.testing.assert_close(out[7], lat[7] + 6)
    torch.testing.assert_close(out[8:], lat[8:] + 6)


def test_crossfade_weights_interior(tiny: DepthCrafter) -> None:
    model = DepthCrafter(**{**DepthCrafter.tiny_config(), "window": 6, "overlap": 3})
    lat = torch.zeros(9, 4, 1, 1)
    clip = torch.arange(9, dtype=torch.float32)[:, None]
    model.denoise = lambda x, s, c: c.latents + float(c.clip[0, 0])  # type: ignore[method-assign]
    out = model.sample_windows(Conditioning(lat, clip), edm.karras_sigmas(1), torch.randn(6, 4, 1, 1))
    # overlap frames 3,4,5: old (0) weights 1, .5, 0; new (3) weights 0, .5, 1
    assert out[:, 0, 0, 0].tolist() == pytest.approx([0, 0, 0, 0, 1.5, 3, 3, 3, 3])


# -- the UNet ---------------------------------------------------------------------------------
def test_unet_equals_diffusers_with_shared_token() -> None:
    """With one CLIP token repeated per frame our forward is diffusers' SVD forward."""
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(1)
    cfg = DepthCrafter.tiny_config()["unet"]
    ours = SpatioTemporalUNet(**cfg).eval()
    ref = UNetSpatioTemporalConditionModel(**cfg).eval()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 8, 8, 8)
    tok = torch.randn(1, 1, 32)
    ids = torch.tensor([list(ADDED_TIME_IDS)])
    with torch.no_grad():
        a = ours(x, 1.6378, tok.expand(1, 3, 32), ids)
        b = ref(x, torch.tensor([1.6378]), tok, ids).sample
        out, feats = ours(x, 1.6378, tok.expand(1, 3, 32), ids, return_features=True)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.equal(a, out)
    assert [tuple(f.shape) for f in feats] == [(3, 32, 8, 8), (3, 64, 4, 4), (3, 64, 2, 2), (3, 64, 1, 1)]
    assert ours.feature_channels == [32, 64, 64, 64]


def test_spatial_temporal_split(tiny: DepthCrafter) -> None:
    names = [n for n, _ in tiny.unet.named_parameters()]
    temporal = [n for n in names if tiny.unet.is_temporal(n)]
    assert temporal and len(temporal) < len(names)
    assert any("temporal_transformer_blocks" in n for n in temporal)
    assert any("temporal_res_block" in n for n in temporal)
    assert not any("spatial_res_block" in n or ".transformer_blocks." in n for n in temporal)
    assert not tiny.unet.is_temporal("conv_in.weight")


def test_encode_depth_roundtrip_shapes(tiny: DepthCrafter) -> None:
    disp = torch.rand(3, 64, 64)
    with torch.no_grad():
        z = tiny.encode_depth(disp)
        ref = tiny.vae.encode(disp[:, None].repeat(1, 3, 1, 1) * 2 - 1).latent_dist.mode() * 0.18215
    assert z.shape == (3, 4, 8, 8)
    torch.testing.assert_close(z, ref)
    assert tiny.decode_disparity(z).shape == (3, 64, 64)


def test_per_frame_token_changes_that_frame(tiny: DepthCrafter) -> None:
    x = torch.randn(1, 3, 8, 8, 8)
    ids = torch.tensor([list(ADDED_TIME_IDS)])
    tok = torch.randn(1, 3, 32)
    tok2 = tok.clone()
    tok2[0, 1] += 1.0
    with torch.no_grad():
        a = tiny.unet(x, 0.5, tok, ids)
        b = tiny.unet(x, 0.5, tok2, ids)
    assert not torch.allclose(a[0, 1], b[0, 1])


def test_constants(tiny: DepthCrafter) -> None:
    assert tiny.added_time_ids.flatten().tolist() == pytest.approx([7.0, 127.0, 0.02])
    assert RELEASED_CLIP_CONFIG["image_size"] == 224
    assert tiny.clip_mean.flatten().tolist() == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert tiny.clip_std.flatten().tolist() == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    c = tiny.input_constraints
    assert (c.multiple_of, c.window, c.overlap, c.value_range) == (64, 110, 25, (0.0, 1.0))
    assert tiny.config["num_inference_steps"] == 2
    assert DepthCrafter.tiny_input_shape() == (4, 64, 64)


def test_conditioning_clip_before_noise_and_unscaled_mode(tiny: DepthCrafter) -> None:
    frames = _frames(3)
    with torch.no_grad():
        clean = tiny.condition(frames, None)
        aug = tiny.condition(frames, torch.randn(3, 3, 64, 64))
        direct = tiny.vae.encode(frames * 2 - 1).latent_dist.mode()
    assert torch.equal(clean.clip, aug.clip)  # CLIP sees the clean frames
    assert not torch.equal(clean.latents, aug.latents)
    torch.testing.assert_close(clean.latents, direct)  # unscaled mode


def test_decode_divides_by_latent_scale(tiny: DepthCrafter) -> None:
    z = torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        got = tiny.decode_disparity(z)
        ref = tiny.vae.decode(z / 0.18215, num_frames=3).sample
    torch.testing.assert_close(got, (ref / 2 + 0.5).clamp(0, 1).mean(1))


# -- predict ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("t", "h", "w"), [(1, 64, 64), (3, 64, 128), (5, 128, 64)])
def test_predict_shapes_odd_frames(tiny: DepthCrafter, t: int, h: int, w: int) -> None:
    d = tiny.predict(_frames(t, h, w))
    assert d.shape == (t, h, w)
    assert torch.isfinite(d).all() and d.min() >= 0 and d.max() <= 1


def test_predict_long_video_mode() -> None:
    torch.manual_seed(0)
    model = DepthCrafter(**{**DepthCrafter.tiny_config(), "window": 4, "overlap": 1, "num_inference_steps": 1})
    d = model.predict(_frames(7))
    assert d.shape == (7, 64, 64) and torch.isfinite(d).all()


def test_predict_bitwise_deterministic_and_seeded(tiny: DepthCrafter) -> None:
    x = _frames(3)
    a, b = tiny.predict(x), tiny.predict(x.clone())
    assert torch.equal(a, b)
    other = DepthCrafter(**{**DepthCrafter.tiny_config(), "seed": 7})
    other.load_state_dict(tiny.state_dict())
    no_aug = DepthCrafter(**{**DepthCrafter.tiny_config(), "augment_noise": False})
    no_aug.load_state_dict(tiny.state_dict())
    c = other.predict(x)
    assert not torch.equal(a, c)
    # without augmentation the conditioning is deterministic: latents are the clean VAE modes
    with torch.no_grad():
        aug, eps = no_aug.draw_noise(3, 64, 64)
    assert aug is None and eps is not None and eps.shape == (3, 4, 8, 8)
    assert torch.equal(no_aug.predict(x), no_aug.predict(x))


def test_rejects_bad_shapes(tiny: DepthCrafter) -> None:
    with pytest.raises(InputError, match="multiples of 64"):
        tiny.predict(torch.rand(2, 3, 64, 96))
    with pytest.raises(InputError):
        tiny.predict(torch.rand(3, 64, 64))


@pytest.mark.evaldata
def test_predict_on_real_clip(tiny: DepthCrafter, evaldata: Path) -> None:
    import cv2

    files = sorted((evaldata / "7scenes_tsdf_fusion" / "data").glob("frame-*.color.jpg"))[:3]
    assert len(files) == 3
    frames = [cv2.resize(cv2.imread(str(f))[:, :, ::-1], (64, 64), interpolation=cv2.INTER_AREA) for f in files]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    d = tiny.predict(x)
    assert d.shape == (3, 64, 64)
    assert torch.isfinite(d).all() and d.min() >= 0 and d.max() <= 1


# -- persistence ------------------------------------------------------------------------------
def _save_released(model: DepthCrafter, root: Path, variant: str | None = None) -> tuple[Path, Path]:
    """Write the released layout with the libraries that produced it (diffusers/transformers)."""
    unet_dir, svd_dir = root / "depthcrafter", root / "svd-xt"
    model.unet.save_pretrained(unet_dir, variant=variant)
    model.vae.save_pretrained(svd_dir / "vae", variant=variant)
    model.image_encoder.save_pretrained(svd_dir / "image_encoder")
    return unet_dir, svd_dir


@pytest.fixture(scope="module")
def released(tiny: DepthCrafter, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`tiny`'s released layout, written once for the tests that only read it (each write costs seconds)."""
    return _save_released(tiny, tmp_path_factory.mktemp("released"))


def test_load_released_layout_roundtrip(tiny: DepthCrafter, released: tuple[Path, Path]) -> None:
    unet_dir, svd_dir = released
    assert (unet_dir / "diffusion_pytorch_model.safetensors").is_file()
    assert (svd_dir / "image_encoder" / "model.safetensors").is_file()
    loaded = DepthCrafter.from_released(unet_dir, svd_dir, num_inference_steps=2)
    ref, got = tiny.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    x = _frames(2)
    assert torch.equal(loaded.predict(x), tiny.predict(x))


def test_load_released_fp16_variant_and_key_errors(tiny: DepthCrafter, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    unet_dir, svd_dir = _save_released(tiny, tmp_path, variant="fp16")
    assert (unet_dir / "diffusion_pytorch_model.fp16.safetensors").is_file()
    loaded = DepthCrafter.from_released(unet_dir, svd_dir, variant="fp16")
    w = tiny.unet.conv_in.weight
    torch.testing.assert_close(loaded.unet.conv_in.weight, w, rtol=0, atol=0)  # fp32 file written, fp32 read
    # a missing key is an error, not a silent random init
    path = unet_dir / "diffusion_pytorch_model.fp16.safetensors"
    state = load_file(str(path))
    state.pop("conv_in.weight")
    save_file(state, str(path))
    with pytest.raises(ModelLoadError, match=r"conv_in\.weight"):
        DepthCrafter.from_released(unet_dir, svd_dir, variant="fp16")
    with pytest.raises(ModelLoadError):
        DepthCrafter.from_released(tmp_path / "nowhere", svd_dir)


def test_a_folder_of_another_part_or_the_folders_swapped_names_what_each_is(
    released: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vdepth-export import depthcrafter SVD_FOLDER UNET_FOLDER` (the two folders swapped) said only
    'svd-xt/config.json not found: expected a diffusers/transformers model folder', and SVD's vae/ given as
    the UNet folder 'DownEncoderBlock2D does not exist.': now what was expected, what the folder is, and the
    order the importer takes; nothing is written."""
    from vdepth_export.cli import main as cli_main

    unet_dir, svd_dir = released
    out = str(tmp_path / "out")
    order = "depthcrafter takes the DepthCrafter UNet folder, then the SVD-XT folder"
    for given, found in (
        ([svd_dir, unet_dir], "found a diffusers pipeline folder (parts image_encoder/, vae/)"),
        ([svd_dir / "vae", svd_dir], "found a diffusers image VAE folder (AutoencoderKLTemporalDecoder)"),
    ):
        assert cli_main(["import", "depthcrafter", *map(str, given), "-o", out]) == 2
        err = capsys.readouterr().err
        assert "expected a diffusers video UNet folder" in err and found in err and order in err, err
    assert not Path(out).exists()


def test_save_pretrained_load_model(tiny: DepthCrafter, tmp_path: Path) -> None:
    tiny.save_pretrained(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert isinstance(back, DepthCrafter)
    x = _frames(2)
    assert torch.equal(back.predict(x), tiny.predict(x))


# -- export -----------------------------------------------------------------------------------
def test_export_signature_matches_predict(tiny: DepthCrafter) -> None:
    """The export graph is `predict`. Its ONNX export is checked once, the product's way:
    `test_export_families[depthcrafter]` (`export_onnx`, the 2-step graph, 1e-4 of the range on two
    inputs, then through both engines); the one-UNet-call graph with the same VAE decoder and
    normalisation is `test_models_onestep`'s VAE-head student. (A second, raw legacy export of a
    1-step teacher here cost 5-110 s for ops both of those already export.)"""
    sig = tiny.export_signature(3, 64, 64)
    assert sig.input_shape == (1, 3, 3, 64, 64)
    x = _frames(3)
    with torch.no_grad():
        y = sig.module(x[None])
    assert torch.equal(y[0], tiny.predict(x))


@pytest.mark.slow  # ~10 s: builds the released-size modules on the meta device (no memory)
def test_released_architecture_sizes() -> None:
    """Default configs are the release: SVD UNet ~1.52 B params (8 in / 4 out, 1024-d context,
    3 x 256 added-time ids), OpenCLIP ViT-H/14 vision tower 632 M with a 1024-d projection."""
    with torch.device("meta"):
        model = DepthCrafter()
    unet = sum(p.numel() for p in model.unet.parameters())
    clip = sum(p.numel() for p in model.image_encoder.parameters())
    assert 1.50e9 < unet < 1.55e9
    assert 6.25e8 < clip < 6.40e8
    cfg = model.unet.config
    assert (cfg.in_channels, cfg.out_channels, cfg.cross_attention_dim) == (8, 4, 1024)
    assert cfg.projection_class_embeddings_input_dim == 3 * cfg.addition_time_embed_dim == 768
    assert model.image_encoder.config.projection_dim == 1024
    assert model.multiple_of == 64 and model.vae_factor == 8
    assert model.vae.config.scaling_factor == pytest.approx(edm.LATENT_SCALE)


def test_svds_own_unet_given_as_depthcrafters_is_refused_by_its_config_wherever_it_sits(
    tiny: DepthCrafter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SVD-XT's `unet/` has DepthCrafter's keys, shapes and channels (8 in, 4 out): `import depthcrafter
    svd-xt/unet svd-xt` used to import it without a word, and the node then published SVD's video
    generation as depth. It was then refused only inside its SVD pipeline folder: a user who copied just
    `unet/` elsewhere (or renamed it) imported SVD again. What tells them apart wherever the folder is: the
    class its config.json names (diffusers' own for SVD's, the authors' subclass for DepthCrafter's)."""
    from vdepth_export.cli import main as cli_main

    unet_dir, svd_dir = _save_released(tiny, tmp_path)
    tiny.unet.save_pretrained(svd_dir / "unet")  # the hub's SVD-XT snapshot: unet/ beside vae/, image_encoder/
    config = json.loads((svd_dir / "unet" / "config.json").read_text())
    config["_class_name"] = "UNetSpatioTemporalConditionModel"  # as SVD-XT's unet/config.json names it
    (svd_dir / "unet" / "config.json").write_text(json.dumps(config))
    (svd_dir / "model_index.json").write_text(
        json.dumps(
            {"_class_name": "StableVideoDiffusionPipeline", "unet": ["diffusers", "UNetSpatioTemporalConditionModel"]}
        )
    )
    copied = tmp_path / "copies" / "my_depth_unet"  # only unet/ copied out of the pipeline folder, renamed
    shutil.copytree(svd_dir / "unet", copied)
    out = tmp_path / "out"
    for svd_unet in (svd_dir / "unet", copied):
        with pytest.raises(ModelLoadError, match=r"Stable Video Diffusion's own UNet.*not DepthCrafter's"):
            DepthCrafter.from_released(svd_unet, svd_dir)
        assert cli_main(["import", "depthcrafter", str(svd_unet), str(svd_dir), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "config.json names diffusers' class UNetSpatioTemporalConditionModel" in err
        assert "tencent/DepthCrafter" in err and f"import depthcrafter DEPTHCRAFTER_FOLDER {svd_dir.resolve()}" in err
        assert not out.exists()
    config["_class_name"] = "DiffusersUNetSpatioTemporalConditionModelDepthCrafter"  # DepthCrafter's unet.py class
    for unet in (svd_dir / "unet", copied):
        (unet / "config.json").write_text(json.dumps(config))
        DepthCrafter.from_released(
            unet, svd_dir
        )  # DepthCrafter's UNet, wherever it sits (a pipeline assembled with it)
    DepthCrafter.from_released(unet_dir, svd_dir)  # the package's own save (SpatioTemporalUNet) is untouched
    # DepthCrafter's UNet loaded and saved again through diffusers' class: its config names diffusers' class, and
    # the folder it was loaded from (`_name_or_path`, which diffusers saves), DepthCrafter's
    config.update(_class_name="UNetSpatioTemporalConditionModel", _name_or_path="tencent/DepthCrafter")
    (copied / "config.json").write_text(json.dumps(config))
    DepthCrafter.from_released(copied, svd_dir)


def test_an_svd_folder_with_its_fp16_files_only_loads_without_variant(tiny: DepthCrafter, tmp_path: Path) -> None:
    """SVD-XT downloaded with its fp16 files only (`hf download ... --include "*fp16*"`, half the size) and
    imported without `--variant fp16` stopped with diffusers' 'no file named diffusion_pytorch_model.bin
    found in directory': such a part is now read as its fp16 variant (FiffDepth's folders already were)."""
    unet_dir = tmp_path / "depthcrafter"
    tiny.unet.save_pretrained(unet_dir)  # DepthCrafter's UNet: plain fp32 files only, as released
    tiny.vae.save_pretrained(tmp_path / "svd" / "vae", variant="fp16")
    tiny.image_encoder.save_pretrained(tmp_path / "svd" / "image_encoder", variant="fp16")
    assert not list((tmp_path / "svd").rglob("*model.safetensors"))  # only *.fp16.safetensors
    loaded = DepthCrafter.from_released(unet_dir, tmp_path / "svd", num_inference_steps=2)
    ref, got = tiny.state_dict(), loaded.state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_a_lora_adapter_on_the_unet_imports_as_peft_merges_it(
    tiny: DepthCrafter, released: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DepthCrafter's released training fine-tunes the UNet itself (no LoRA); a user's peft LoRA on it
    (`get_peft_model(unet, ...)`, `save_pretrained`) given as `import depthcrafter UNET SVD --adapter FOLDER` is
    merged into the loaded UNet, bit-equal to peft's `merge_and_unload` (it was refused: 'merges into one checkpoint
    file; depthcrafter's sources are diffusers folders', with peft steps to run by hand)."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from vdepth_export.cli import main as cli_main

    unet_dir, svd_dir = released
    torch.manual_seed(3)
    unet = type(tiny.unet).from_pretrained(unet_dir)  # the UNet as a user loads it to train
    tuned = get_peft_model(unet, LoraConfig(r=2, lora_alpha=4, target_modules=["to_q", "to_v"]))
    for name, p in tuned.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # B starts at zero: a trained adapter changes the weights
    tuned.save_pretrained(tmp_path / "adapter")
    want = {f"unet.{k}": v for k, v in tuned.merge_and_unload().state_dict().items()}
    ad = ["--adapter", str(tmp_path / "adapter")]
    assert cli_main(["import", "depthcrafter", str(unet_dir), str(svd_dir), *ad, "-o", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    got = load_file(str(tmp_path / "a" / "model.safetensors"))
    assert all(torch.equal(got[k], want[k]) for k in want)
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    assert not torch.equal(got[key], tiny.state_dict()[key])
