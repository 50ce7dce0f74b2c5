"""DVD against the authors' code (`reference-code/dvd`, DiffSynth's Wan modules as DVD ships them).

Compared, with the authors' `WanModel` (diffsynth/models/wan_video_dit.py) and `VideoVAE_`
(diffsynth/models/wan_video_vae.py) imported from their folder:
(a) the released layouts at the released configuration (parameters on the meta device): the DiT of
    Wan2.1-T2V-1.3B with DVD's peft LoRA (rank 512 on q, k, v, o, ffn.0, ffn.2, `WanTrainingModule`),
    saved under `pipe.dit.` as DVD's `model.safetensors` is, and the original `Wan2.1_VAE.pth` layout:
    after diffusers' converters they are exactly the package's transformer (+ LoRA) and
    AutoencoderKLWan keys and shapes;
(b) the forward pass on the same random weights at a tiny configuration: the authors' DiT (their
    unmerged LoRA active) against the imported transformer (LoRA merged by peft), their VAE
    encode/decode against the imported AutoencoderKLWan, and DVD's one-window inference composed from
    their modules (VAE encode -> DiT at timestep 500 with their 512 zero text tokens -> VAE decode ->
    clamp to [-1, 1] -> [0, 1], `pipe.__call__` with `training_target: x`) against
    `DVD.predict_channels`: each module <= 1e-5 relative, computed in float64 (see the test), and the
    composed window <= 1e-4 (the DiT's 1.5e-6 amplified by the random decoder).
Their full `WanVideoPipeline` (model manager, prompter, tiler) is not run: the composition above uses
the same modules and constants as its `regression` path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from reference_code import empty_weights, randomize_, reference_import, relative_error

from vdepth_ros.models.dvd import DVD, WAN21_1_3B_TRANSFORMER

_BARE = ("diffsynth", "diffsynth.models")
#: DVD's `lora_target_modules='q,k,v,o,ffn.0,ffn.2'` (WanTrainingModule) in the authors' module names
_AUTHORS_LORA_TARGETS = ["q", "k", "v", "o", "ffn.0", "ffn.2"]
_TINY_DIT = {"dim": 16, "in_dim": 4, "ffn_dim": 32, "out_dim": 4, "text_dim": 16, "freq_dim": 16, "eps": 1e-6,
             "patch_size": (1, 2, 2), "num_heads": 2, "num_layers": 2, "has_image_input": False}  # fmt: skip
_TINY_VAE = {"dim": 4, "z_dim": 4, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
             "temperal_downsample": [False, True, True]}  # fmt: skip
_MEAN, _STD = [0.1, -0.2, 0.05, 0.0], [1.5, 0.8, 1.2, 1.0]


def _authors_dit(config: dict, lora_rank: int) -> torch.nn.Module:
    from peft import LoraConfig, inject_adapter_in_model

    with reference_import("dvd", _BARE):
        from diffsynth.models.wan_video_dit import WanModel

        dit = WanModel(**config)
    lora = LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=_AUTHORS_LORA_TARGETS)
    return inject_adapter_in_model(lora, dit).eval()


def _authors_vae(config: dict) -> torch.nn.Module:
    with reference_import("dvd", _BARE):
        from diffsynth.models.wan_video_vae import VideoVAE_

        return VideoVAE_(**config).eval()


def _ours_tiny() -> dict:
    cfg = DVD.tiny_config()
    cfg["vae"] = {"base_dim": 4, "z_dim": 4, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
                  "temperal_downsample": [False, True, True], "latents_mean": _MEAN, "latents_std": _STD}  # fmt: skip
    return cfg


@pytest.mark.slow
def test_released_layouts_convert_to_the_package_modules() -> None:
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import (
        convert_wan_transformer_to_diffusers,
        convert_wan_vae_to_diffusers,
    )

    cfg = {**WAN21_1_3B_TRANSFORMER}
    authors_cfg = {**_TINY_DIT, "dim": 1536, "in_dim": 16, "ffn_dim": 8960, "out_dim": 16, "text_dim": 4096}
    authors_cfg.update(freq_dim=256, num_heads=12, num_layers=30)  # Wan2.1-T2V-1.3B
    with empty_weights():
        dit = {f"pipe.dit.{k}": v for k, v in _authors_dit(authors_cfg, 512).state_dict().items()}
        vae = _authors_vae({}).state_dict()
        ours = DVD(transformer=cfg, lora_rank=512)
        ours_vae = AutoencoderKLWan()
    converted = convert_wan_transformer_to_diffusers({k[len("pipe.dit.") :]: v for k, v in dit.items()})
    layout = {k: tuple(v.shape) for k, v in ours.transformer.state_dict().items()}
    assert sorted(set(converted) ^ set(layout)) == []
    assert {k: tuple(v.shape) for k, v in converted.items() if layout[k] != tuple(v.shape)} == {}
    assert sum(".lora_A." in k for k in layout) == 30 * 10  # q, k, v, o of both attentions + 2 FFN linears
    vae_layout = {k: tuple(v.shape) for k, v in ours_vae.state_dict().items()}
    vae_converted = convert_wan_vae_to_diffusers(vae)
    assert sorted(set(vae_converted) ^ set(vae_layout)) == []
    assert {k: tuple(v.shape) for k, v in vae_converted.items() if vae_layout[k] != tuple(v.shape)} == {}


@pytest.mark.slow
def test_dit_vae_and_window_equal_the_authors_on_random_weights(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    dit = randomize_(_authors_dit(_TINY_DIT, lora_rank=4), seed=7)
    vae = randomize_(_authors_vae(_TINY_VAE), seed=8)
    save_file(
        {f"pipe.dit.{k}": v.contiguous() for k, v in dit.state_dict().items()}, str(tmp_path / "model.safetensors")
    )
    torch.save(vae.state_dict(), tmp_path / "Wan2.1_VAE.pth")
    ours = DVD.from_released(tmp_path / "model.safetensors", tmp_path / "Wan2.1_VAE.pth", **_ours_tiny())
    assert ours.lora_rank == 0 and not any("lora" in k for k in ours.state_dict())  # merged by peft
    # float64: with random weights the VAE decoder amplifies float32 rounding to ~1.1e-5 of its output
    # range (measured), which would hide a real difference of that size. diffusers' Wan embeddings keep
    # some float32 constants, which leaves ~2e-6 on the DiT even in float64.
    ours, dit, vae = ours.double(), dit.double(), vae.double()
    gen = torch.Generator().manual_seed(9)
    frames = torch.rand(5, 3, 32, 48, generator=gen, dtype=torch.float64)
    video = (frames * 2 - 1).permute(1, 0, 2, 3)[None]
    scale = [torch.tensor(_MEAN, dtype=torch.float64), 1.0 / torch.tensor(_STD, dtype=torch.float64)]
    t = torch.tensor([500.0], dtype=torch.float64)
    with torch.no_grad():
        latents = vae.encode(video, scale)
        assert relative_error(ours.encode(video), latents) <= 1e-5
        x = torch.randn(latents.shape, generator=gen, dtype=torch.float64)
        context = torch.zeros(1, 512, _TINY_DIT["text_dim"], dtype=torch.float64)
        depth = dit(x, t, context)
        ours_depth = ours.transformer(x, timestep=t, encoder_hidden_states=ours.context, return_dict=False)[0]
        assert relative_error(ours_depth, depth) <= 1e-5
        # their `WanVideoVAE.single_decode` clamps to [-1, 1], as diffusers' decode does
        assert relative_error(ours.decode(x), vae.decode(x, scale).clamp(-1, 1)) <= 1e-5
        window = vae.decode(dit(latents, t, context), scale)
        expected = (window.clamp(-1, 1)[0].permute(1, 0, 2, 3) + 1) / 2  # (T, 3, H, W), vae_output_to_video
        assert float(expected.std()) > 1e-3
        # the composition checks the glue (4n+1 padding, [-1, 1] mapping, latent scaling, clamp, channel
        # order), where a mistake is O(1): the DiT's 1.5e-6 (diffusers' float32 timestep sinusoid)
        # passes through the random decoder, which amplifies it ~15x (measured 2.5e-5)
        assert relative_error(ours.predict_channels(frames), expected) <= 1e-4


def test_an_adapter_trained_on_dvd_as_the_authors_load_it_merges_as_peft_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DVD's training is LoRA (rank 512 on q, k, v, o, ffn.0, ffn.2; its release holds those pairs unmerged under
    `pipe.dit.`). A user fine-tunes DVD further with peft as the authors' test script loads it (their LoRA merged,
    `merge_lora_layer`) and gives `import dvd RELEASE VAE --adapter FOLDER`: the result is bit-equal to importing
    peft's own `merge_and_unload` of that model. Before, the merge ran on the release file's keys and refused the
    adapter as 'trained on another model's layout'."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer
    from safetensors.torch import save_file
    from vdepth_export.cli import main as cli_main

    from vdepth_ros.models import load_model

    dvd = randomize_(_authors_dit(_TINY_DIT, lora_rank=4), seed=7)
    save_file(
        {f"pipe.dit.{k}": v.contiguous() for k, v in dvd.state_dict().items()}, str(tmp_path / "model.safetensors")
    )
    torch.save(randomize_(_authors_vae(_TINY_VAE), seed=8).state_dict(), tmp_path / "Wan2.1_VAE.pth")
    for module in dvd.modules():  # the authors' `merge_lora_layer`
        if isinstance(module, BaseTunerLayer):
            module.merge()
    with reference_import("dvd", _BARE):
        from diffsynth.models.wan_video_dit import WanModel

        loaded = WanModel(**_TINY_DIT)
    loaded.load_state_dict({k.replace(".base_layer", ""): v for k, v in dvd.state_dict().items() if "lora_" not in k})
    tuned = get_peft_model(loaded, LoraConfig(r=2, lora_alpha=3, target_modules=_AUTHORS_LORA_TARGETS))
    for name, p in tuned.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # B starts at zero: a trained adapter changes the weights
    tuned.save_pretrained(tmp_path / "adapter")
    peft_merged = {k: v.contiguous() for k, v in tuned.merge_and_unload().state_dict().items()}
    assert not torch.equal(peft_merged["blocks.0.ffn.2.weight"], dvd.state_dict()["blocks.0.ffn.2.base_layer.weight"])
    save_file(peft_merged, str(tmp_path / "peft_merged.safetensors"))
    sets = [a for k, v in _ours_tiny().items() for a in ("--set", f"{k}={json.dumps(v)}")]
    vae = str(tmp_path / "Wan2.1_VAE.pth")
    ad = ["--adapter", str(tmp_path / "adapter")]
    assert (
        cli_main(["import", "dvd", str(tmp_path / "model.safetensors"), vae, *ad, "-o", str(tmp_path / "a"), *sets])
        == 0
    )
    assert (
        cli_main(["import", "dvd", str(tmp_path / "peft_merged.safetensors"), vae, "-o", str(tmp_path / "p"), *sets])
        == 0
    )
    capsys.readouterr()
    got, want = load_model(tmp_path / "a").state_dict(), load_model(tmp_path / "p").state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
