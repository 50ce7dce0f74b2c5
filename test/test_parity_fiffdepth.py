"""FiffDepth against the authors' code (`reference-code/fiffdepth`, fiffdepth/direct_pipeline.py).

Compared: the authors' `DirectPipeline.__call__` (their inference entry: [0, 255] image -> [-1, 1] ->
VAE posterior mean x 0.18215 -> UNet at t = 0 with the empty-prompt CLIP embedding -> decode -> mean
of the 3 channels -> clip -> [0, 1]) and `FiffDepth.from_released(folder, output="depth").predict`, on
the same random tiny UNet / VAE / CLIP text encoder saved as the authors' folder layout, once with
fp32 files and once saved as the fp16 variant only (what `run_direct.py --fp16` loads; both sides
read the fp16 files into float32 modules). `processing_res=0`: their resize to the long edge is a
separate, documented step (see the FiffDepth module docstring). Tolerance <= 1e-5 relative.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from reference_code import randomize_, reference_import, relative_error

from vdepth_ros.models.fiffdepth import FiffDepth


def _write_folder(root: Path, variant: str | None) -> None:
    """A tiny random FiffDepth checkpoint in the authors' DirectPipeline folder layout."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    model = randomize_(FiffDepth(**FiffDepth.tiny_config()), seed=11)
    tok = root / "tokenizer"
    tok.mkdir(parents=True)
    (tok / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "a": 3}))
    (tok / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(tok / "vocab.json"), str(tok / "merges.txt"), model_max_length=8).save_pretrained(str(tok))
    cfg = CLIPTextConfig(
        vocab_size=4, hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
        max_position_embeddings=8, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    encoder = randomize_(CLIPTextModel(cfg), seed=12)
    dtype = torch.float16 if variant == "fp16" else torch.float32
    for name, module in (("unet", model.unet), ("vae", model.vae), ("text_encoder", encoder)):
        module.to(dtype).save_pretrained(str(root / name), variant=variant)


def _authors_pipeline(root: Path, variant: str | None) -> object:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    with reference_import("fiffdepth", ("fiffdepth",)):
        from fiffdepth.direct_pipeline import DirectPipeline

    parts = {"variant": variant, "torch_dtype": torch.float32, "local_files_only": True}
    return DirectPipeline(
        unet=UNet2DConditionModel.from_pretrained(str(root), subfolder="unet", **parts),
        vae=AutoencoderKL.from_pretrained(str(root), subfolder="vae", **parts),
        text_encoder=CLIPTextModel.from_pretrained(str(root), subfolder="text_encoder", **parts),
        tokenizer=CLIPTokenizer.from_pretrained(str(root), subfolder="tokenizer"),
    )


@pytest.mark.parametrize("variant", [None, "fp16"])
def test_depth_equals_the_authors_pipeline(tmp_path: Path, variant: str | None) -> None:
    _write_folder(tmp_path, variant)
    if variant:
        assert not list((tmp_path / "unet").glob("diffusion_pytorch_model.safetensors"))  # fp16 files only
    pipe = _authors_pipeline(tmp_path, variant)
    ours = FiffDepth.from_released(tmp_path, output="depth")  # variant detected from the file names
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        theirs = torch.from_numpy(pipe(image * 255.0, processing_res=0, match_input_res=False, color_map=None).depth_np)
        got = ours.predict(image)[0]
    assert float(theirs.std()) > 1e-3
    assert relative_error(got, theirs) <= 1e-5
