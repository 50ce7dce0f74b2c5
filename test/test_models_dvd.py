"""DVD family: constants, 4n+1 padding, zero-context folding, LoRA merge, released-file loading (the
released layouts themselves are checked against the authors' modules in test_parity_dvd.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vdepth_ros.errors import ConfigError, ModelLoadError
from vdepth_ros.models import load_model
from vdepth_ros.models.dvd import DVD, pad_to_4n_plus_1


@pytest.fixture(scope="module")
def tiny() -> DVD:
    torch.manual_seed(0)
    return DVD(**DVD.tiny_config()).eval()


@pytest.mark.parametrize(("n", "padded"), [(1, 1), (2, 5), (4, 5), (5, 5), (6, 9), (45, 45), (46, 49)])
def test_pad_to_4n_plus_1(n: int, padded: int) -> None:
    assert pad_to_4n_plus_1(n) == padded


def test_window_must_be_4n_plus_1() -> None:
    with pytest.raises(ConfigError, match="4n\\+1"):
        DVD(**{**DVD.tiny_config(), "window": 10})


def test_paper_defaults() -> None:
    # DVD Tab. 5 / code: timestep 500 (τ=0.5 on the 0-1000 scale), window 45, overlap 9.
    sig = DVD.__init__.__signature__
    assert sig.parameters["timestep"].default == 500.0
    assert sig.parameters["window"].default == 45
    assert sig.parameters["overlap"].default == 9


def test_timestep_embedding_of_500_is_cos_sin(tiny: DVD) -> None:
    # Wan's sinusoidal_embedding_1d: cat(cos(t·f), sin(t·f)), f_i = 10000^(-i/half).
    dim = tiny.transformer.config.freq_dim
    half = dim // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half) / half)
    expected = np.concatenate([np.cos(500.0 * freqs), np.sin(500.0 * freqs)])
    got = tiny.transformer.condition_embedder.timesteps_proj(torch.tensor([500.0]))[0].double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_single_zero_token_equals_512_zero_tokens(tiny: DVD) -> None:
    torch.manual_seed(1)
    lat = torch.randn(1, 4, 2, 4, 6)
    with torch.no_grad():
        folded = tiny.denoise(lat)
        full = tiny.transformer(
            lat, timestep=torch.tensor([500.0]), encoder_hidden_states=torch.zeros(1, 512, 16), return_dict=False
        )[0]
    torch.testing.assert_close(folded, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("t", [1, 3, 5, 6])
def test_predict_shapes_range_determinism(tiny: DVD, t: int) -> None:
    x = torch.rand(t, 3, 32, 48, generator=torch.Generator().manual_seed(t))
    with torch.no_grad():
        a, b = tiny.predict(x), tiny.predict(x)
    assert a.shape == (t, 32, 48)
    assert torch.equal(a, b)
    assert torch.isfinite(a).all() and a.min() >= 0 and a.max() <= 1


def test_padding_repeats_last_frame(tiny: DVD) -> None:
    x = torch.rand(3, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    padded = torch.cat([x, x[-1:], x[-1:]])
    with torch.no_grad():
        torch.testing.assert_close(tiny.predict(x), tiny.predict(padded)[:3], atol=0, rtol=0)


def test_rejects_sizes_not_multiple_of_16(tiny: DVD) -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny.predict(torch.rand(1, 3, 30, 48))


def test_lora_targets_and_merge_equivalence() -> None:
    torch.manual_seed(0)
    model = DVD(**DVD.tiny_config(), lora_rank=4, lora_alpha=8.0).eval()
    names = [n for n, _ in model.named_parameters() if "lora_" in n]
    # q, k, v, o of self- and cross-attention + both FFN linears, A and B, in each of 2 blocks.
    assert len(names) == 2 * 10 * 2
    assert any("attn2.to_out.0.lora_A" in n for n in names) and any("ffn.net.2.lora_B" in n for n in names)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)  # B is zero-initialised; make the adapter matter
    x = torch.rand(5, 3, 32, 48, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        before = model.predict(x)
        model.merge_lora()
        after = model.predict(x)
    assert not any("lora_" in n for n, _ in model.named_parameters())
    assert model.config["lora_rank"] == 0
    torch.testing.assert_close(before, after, atol=1e-4, rtol=1e-4)


def test_from_released_refuses_a_model_without_its_vae_and_reports_wrong_keys(tmp_path, tiny: DVD) -> None:
    from safetensors.torch import save_file

    tiny.vae.save_pretrained(tmp_path / "vae")  # a diffusers AutoencoderKLWan folder
    path = tmp_path / "model.safetensors"
    save_file({"blocks.0.self_attn.q.weight": torch.zeros(16, 16)}, str(path))
    with pytest.raises(ModelLoadError, match="needs its VAE"):
        DVD.from_released(path, None, **DVD.tiny_config())  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match="needs its VAE"):
        DVD.from_released(path, tmp_path / "Wan2.1_VAE.pth", **DVD.tiny_config())
    with pytest.raises(ModelLoadError, match="missing"):
        DVD.from_released(path, tmp_path / "vae", **DVD.tiny_config())
    save_file({"blocks.0.self_attn.q.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelLoadError, match="does not fit"):
        DVD.from_released(path, tmp_path / "vae", **DVD.tiny_config())
    save_file(tiny.transformer.state_dict(), str(path))  # diffusers naming, merged: loads as is
    loaded = DVD.from_released(path, tmp_path / "vae", **DVD.tiny_config())
    x = torch.rand(5, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(loaded.predict(x), tiny.predict(x))
        assert torch.equal(tiny.predict_channels(x).mean(dim=1), tiny.predict(x))
    # a VAE folder missing a tensor (a cut download): one error naming it, not diffusers' 'Cannot copy out of
    # meta tensor' RuntimeError
    from safetensors.torch import load_file

    weights = next((tmp_path / "vae").glob("*.safetensors"))
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if k != "decoder.conv_in.bias"}, str(weights))
    with pytest.raises(ModelLoadError, match=r"vae: keys do not match the release: .*decoder\.conv_in\.bias"):
        DVD.from_released(path, tmp_path / "vae", **DVD.tiny_config())


def test_save_load_round_trip(tmp_path, tiny: DVD) -> None:
    tiny.save_pretrained(tmp_path / "dvd")
    again = load_model(tmp_path / "dvd")
    x = torch.rand(5, 3, 32, 48, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert torch.equal(again.predict(x), tiny.predict(x))


def test_predict_on_real_clip(tiny: DVD, evaldata) -> None:
    import cv2

    folder = evaldata / "dvmvs_hololens_000"
    files = sorted((folder / "sample-data" / "hololens-dataset" / "000" / "images").glob("*.png"))[:5]
    assert len(files) == 5, f"expected colour frames under {folder}"
    frames = [cv2.resize(cv2.imread(str(f))[:, :, ::-1], (48, 32), interpolation=cv2.INTER_AREA) for f in files]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        y = tiny.predict(x)
    assert y.shape == (5, 32, 48) and torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


def test_export_signature_asks_for_the_dynamo_exporter(tiny: DVD) -> None:
    """Legacy export fails on RMSNorm, so the signature names dynamo; `test_export_families[dvd]` exports it
    that way through `export_onnx` and checks parity on two inputs."""
    sig = tiny.export_signature(5, 32, 48)
    assert sig.extra["exporter"] == "dynamo"
    x = torch.rand(sig.input_shape, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(sig.module(x)[0], tiny.predict(x[0]))
