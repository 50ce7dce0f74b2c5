"""FiffDepth family: t=0 one-step pass on the posterior mean, per-frame independence, loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vdepth_ros.errors import ConfigError, ModelLoadError
from vdepth_ros.models import load_model
from vdepth_ros.models.fiffdepth import LATENT_SCALE, SD2_UNET, FiffDepth


@pytest.fixture(scope="module")
def tiny() -> FiffDepth:
    torch.manual_seed(0)
    model = FiffDepth(**FiffDepth.tiny_config()).eval()
    with torch.no_grad():
        model.empty_text_embedding.normal_()
    return model


def test_sd2_defaults() -> None:
    assert SD2_UNET["in_channels"] == 4 and SD2_UNET["cross_attention_dim"] == 1024
    assert LATENT_SCALE == 0.18215
    with pytest.raises(ConfigError, match="4-channel"):
        FiffDepth(**{**FiffDepth.tiny_config(), "unet": {**FiffDepth.tiny_config()["unet"], "in_channels": 8}})


def test_predict_matches_explicit_recipe(tiny: FiffDepth) -> None:
    """unet(vae_mean(2x-1)·0.18215, t=0, empty) -> decode(/0.18215) -> mean(3ch) -> clip -> [0,1]."""
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = tiny.vae.encode(x * 2 - 1).latent_dist.mean * 0.18215
        d = tiny.unet(z, 0, encoder_hidden_states=tiny.empty_text_embedding.expand(2, -1, -1)).sample
        img = tiny.vae.decode(d / 0.18215).sample.mean(1).clamp(-1, 1)
        expected = 1.0 - (img + 1) / 2
        got = tiny.predict(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_depth_output_is_one_minus_disparity(tiny: FiffDepth) -> None:
    depth_model = FiffDepth(**{**FiffDepth.tiny_config(), "output": "depth"}).eval()
    depth_model.load_state_dict(tiny.state_dict())
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(depth_model.predict(x), 1.0 - tiny.predict(x), atol=1e-6, rtol=0)


def test_frames_are_independent_and_deterministic(tiny: FiffDepth) -> None:
    x = torch.rand(3, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full, again = tiny.predict(x), tiny.predict(x)
        single = tiny.predict(x[1:2])
    assert torch.equal(full, again)
    assert full.shape == (3, 32, 48) and full.min() >= 0 and full.max() <= 1
    torch.testing.assert_close(full[1:2], single, atol=1e-5, rtol=1e-5)


def test_rejects_bad_size(tiny: FiffDepth) -> None:
    with pytest.raises(ValueError, match="multiples of 2"):  # the tiny VAE's factor
        tiny.predict(torch.rand(1, 3, 31, 48))


def test_runs_every_multiple_of_the_vae_factor() -> None:
    """The released structure (SD-2: 4 UNet levels, an 8x VAE) runs any multiple of 8, as the
    authors' pipeline does (long edge `processing_res`, the other side not rounded) and as its
    480x640 training crops need; it was limited to multiples of 64, so 480x640 was refused."""
    cfg = FiffDepth.tiny_config()
    four = ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    cfg["unet"] = {**cfg["unet"], "down_block_types": four[0], "up_block_types": four[1],
                   "block_out_channels": [16, 16, 32, 32], "attention_head_dim": [2, 2, 4, 4]}  # fmt: skip
    cfg["vae"] = {**cfg["vae"], "down_block_types": ["DownEncoderBlock2D"] * 4,
                  "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [16, 16, 32, 32]}  # fmt: skip
    model = FiffDepth(**cfg).eval()
    assert model.input_constraints.multiple_of == 8
    with torch.no_grad():
        for h, w in ((120, 160), (72, 136)):  # 480x640 / 4; neither side of the second a multiple of 16
            out = model.predict(torch.rand(1, 3, h, w))
            assert out.shape == (1, h, w) and torch.isfinite(out).all()


def test_save_load_round_trip(tmp_path, tiny: FiffDepth) -> None:
    tiny.save_pretrained(tmp_path / "fiff")
    again = load_model(tmp_path / "fiff")
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(again.predict(x), tiny.predict(x))


def _write_released_folder(root, model: FiffDepth) -> None:
    model.unet.save_pretrained(str(root / "unet"))
    model.vae.save_pretrained(str(root / "vae"))


def test_from_released_with_precomputed_embedding(tmp_path, tiny: FiffDepth) -> None:
    from safetensors.torch import save_file

    _write_released_folder(tmp_path, tiny)
    save_file({"embedding": tiny.empty_text_embedding.clone()}, str(tmp_path / "empty_text_embedding.safetensors"))
    loaded = FiffDepth.from_released(tmp_path)
    x = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(x), tiny.predict(x), atol=1e-6, rtol=0)


def test_from_released_is_strict_and_names_a_folder_of_another_part(tmp_path, tiny: FiffDepth) -> None:
    """A UNet file missing a tensor (a cut or edited download) ended in a RuntimeError 'Cannot copy out of meta
    tensor' traceback (diffusers' from_pretrained alone); a VAE in unet/ was not named. Both are now one
    ModelLoadError naming the folder and the key, or what the folder holds."""
    from safetensors.torch import load_file, save_file

    _write_released_folder(tmp_path, tiny)
    save_file({"embedding": tiny.empty_text_embedding.clone()}, str(tmp_path / "empty_text_embedding.safetensors"))
    weights = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if k != "conv_in.weight"}, str(weights))
    with pytest.raises(ModelLoadError, match=r"unet: keys do not match the release: .*conv_in\.weight"):
        FiffDepth.from_released(tmp_path)
    # a cut download, or a clone without git-lfs: 'Unable to load weights from checkpoint file' named no cause
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"unet/diffusion_pytorch_model.safetensors is not a readable .*download"):
        FiffDepth.from_released(tmp_path)
    weights.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1234\n")
    with pytest.raises(ModelLoadError, match=r"unet/diffusion_pytorch_model.safetensors is a Git LFS pointer"):
        FiffDepth.from_released(tmp_path)
    save_file(state, str(weights))
    (tmp_path / "unet" / "config.json").write_text((tmp_path / "vae" / "config.json").read_text())
    with pytest.raises(ModelLoadError, match=r"unet: expected a diffusers image UNet folder, found a diffusers image"):
        FiffDepth.from_released(tmp_path)


def test_from_released_computes_empty_prompt_with_text_encoder(tmp_path, tiny: FiffDepth) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    _write_released_folder(tmp_path, tiny)
    tok_dir = tmp_path / "tokenizer"
    tok_dir.mkdir()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "a": 3}
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt")).save_pretrained(str(tok_dir))
    cfg = CLIPTextConfig(
        vocab_size=4, hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
        max_position_embeddings=8, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    torch.manual_seed(7)
    encoder = CLIPTextModel(cfg).eval()
    encoder.save_pretrained(str(tmp_path / "text_encoder"))
    loaded = FiffDepth.from_released(tmp_path)
    with torch.no_grad():
        expected = encoder(torch.tensor([[0, 1]]))[0]
    assert loaded.empty_text_embedding.shape == (1, 2, 32)
    torch.testing.assert_close(loaded.empty_text_embedding, expected)


def test_from_released_names_missing_parts(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="unet"):
        FiffDepth.from_released(tmp_path)


def test_predict_on_real_clip(tiny: FiffDepth, evaldata) -> None:
    import cv2

    files = sorted((evaldata / "7scenes_tsdf_fusion" / "data").rglob("*color*.png"))[:3]
    if len(files) < 3:
        files = sorted((evaldata / "7scenes_tsdf_fusion" / "data").rglob("*.jpg"))[:3]
    assert len(files) == 3, "expected 7-Scenes colour frames"
    frames = [cv2.resize(cv2.imread(str(f))[:, :, ::-1], (48, 32), interpolation=cv2.INTER_AREA) for f in files]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        y = tiny.predict(x)
    assert y.shape == (3, 32, 48) and torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


def test_export_onnx_parity(tmp_path, tiny: FiffDepth) -> None:
    ort = pytest.importorskip("onnxruntime")
    sig = tiny.export_signature(2, 32, 48)
    x = torch.rand(sig.input_shape, generator=torch.Generator().manual_seed(6))
    path = tmp_path / "fiff.onnx"
    torch.onnx.export(sig.module, (x,), str(path), dynamo=False, opset_version=17)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seed in (6, 7):
        x = torch.rand(sig.input_shape, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            ref = sig.module(x).numpy()
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert np.abs(got - ref).max() <= 1e-4


def test_depthcrafters_and_fiffdepths_unets_given_to_the_other_name_what_each_is(
    tmp_path, tiny: FiffDepth, capsys
) -> None:
    """FiffDepth's SD-2 UNet given as DepthCrafter's UNet folder ended in a TypeError traceback from inside
    diffusers ('object of type NoneType has no len()'), DepthCrafter's in a FiffDepth folder in diffusers'
    'not possible to define the number of attention heads', and the DepthCrafter UNet folder given as the
    FiffDepth folder in 'unet/config.json not found'. The two UNets are told apart by their config's class
    (spatio-temporal or 2D) and each error names the other family's import command; nothing is written."""
    import shutil

    from vdepth_export.cli import main as cli_main

    from vdepth_ros.models.depthcrafter import DepthCrafter

    crafter = DepthCrafter(**DepthCrafter.tiny_config()).eval()
    crafter.unet.save_pretrained(tmp_path / "depthcrafter")
    crafter.vae.save_pretrained(tmp_path / "svd" / "vae")
    crafter.image_encoder.save_pretrained(tmp_path / "svd" / "image_encoder")
    fiff = tmp_path / "fiff"
    _write_released_folder(fiff, tiny)
    out = str(tmp_path / "out")
    fiff_command = f"vdepth-export import fiffdepth {fiff} -o FOLDER"
    crafter_command = "vdepth-export import depthcrafter DEPTHCRAFTER_UNET_FOLDER SVD_FOLDER -o FOLDER"
    for args, says in (
        (["depthcrafter", str(fiff / "unet"), str(tmp_path / "svd")],
         ["expected a diffusers video UNet folder, found a diffusers image UNet folder (UNet2DConditionModel)",
          fiff_command]),
        (["fiffdepth", str(tmp_path / "depthcrafter")],
         ["expected a diffusers pipeline folder with unet/, found a diffusers video UNet folder", crafter_command]),
    ):  # fmt: skip
        assert cli_main(["import", *args, "-o", out]) == 2
        err = capsys.readouterr().err
        assert all(part in err for part in says), err
    # one file of a diffusers folder: the folder to give instead (it said '<file>/unet/config.json not found')
    weights = fiff / "unet" / "diffusion_pytorch_model.safetensors"
    with pytest.raises(ModelLoadError, match=rf"{weights} is a file: .*in its unet/\): give {fiff}$"):
        FiffDepth.from_released(weights)
    shutil.rmtree(fiff / "unet")
    shutil.copytree(tmp_path / "depthcrafter", fiff / "unet")
    with pytest.raises(ModelLoadError, match=r"unet: expected a diffusers image UNet folder, found a diffusers video"):
        FiffDepth.from_released(fiff)
    assert not (tmp_path / "out").exists()
