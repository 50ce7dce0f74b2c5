"""The SVD-XT parts DepthCrafter (`depthcrafter.py`) and the one-step student (`onestep.py`) build
on: `SpatioTemporalUNet` (diffusers' SVD UNet with DepthCrafter's per-frame CLIP token, see
`depthcrafter.py`'s docstring), the released and tiny configs of the UNet, VAE and CLIP image
encoder, and the strict `from_pretrained` loader of the released folders. Kept apart from the
sampler because they describe the released networks, not how DepthCrafter samples with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import UNetSpatioTemporalConditionModel
from torch import nn

from vdepth_ros.errors import ModelLoadError
from vdepth_ros.models import edm
from vdepth_ros.models.identify import (
    CheckpointKind,
    WrongCheckpointError,
    identify_checkpoint,
    identify_folder,
    part_of_class,
)
from vdepth_ros.paths import hub_download_problem

#: SVD-XT / DepthCrafter UNet: diffusers' defaults are exactly the released config (8 in, 4 out,
#: block_out (320, 640, 1280, 1280), cross-attention 1024, added-time 3 x 256).
RELEASED_UNET_CONFIG: dict[str, Any] = {}
#: SVD-XT `vae/config.json` (architecture keys).
RELEASED_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 768,
    "scaling_factor": edm.LATENT_SCALE,
    "force_upcast": True,
}
#: SVD-XT `image_encoder/config.json` (OpenCLIP ViT-H/14 vision tower, 1024-d projection).
RELEASED_CLIP_CONFIG: dict[str, Any] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "projection_dim": 1024,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}
_CLIP_KEYS = frozenset(RELEASED_CLIP_CONFIG) | {"attention_dropout", "initializer_range", "initializer_factor"}

#: Tiny CPU configs with the released *structure* (4 UNet levels, VAE factor 8 -> multiple of 64).
TINY_UNET_CONFIG: dict[str, Any] = {
    "in_channels": 8,
    "out_channels": 4,
    "block_out_channels": [32, 32, 64, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "num_attention_heads": [1, 1, 2, 2],
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 24,
    "num_frames": 8,
}
TINY_VAE_CONFIG: dict[str, Any] = {
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "block_out_channels": [32, 32, 32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
}
TINY_CLIP_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "projection_dim": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 28,
    "patch_size": 14,
}


#: Module names of diffusers' SVD blocks that act along time.
_TEMPORAL_PARTS = frozenset({"temporal_transformer_blocks", "temporal_res_block", "time_mixer", "time_pos_embed"})


class SpatioTemporalUNet(UNetSpatioTemporalConditionModel):
    """diffusers' SVD UNet with DepthCrafter's per-frame CLIP context and optional feature taps.

    Parameter names are diffusers', so released `diffusion_pytorch_model.safetensors` files load as is.
    """

    def forward(  # type: ignore[override]
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        added_time_ids: torch.Tensor,
        return_features: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the UNet on a batch of clips.

        Args:
            sample: `(B, T, in_channels, h, w)`; h, w multiples of `2 ** (levels - 1)`.
            timestep: c_noise, a float or a tensor broadcastable to `(B,)`.
            encoder_hidden_states: `(B, T, D)`, one CLIP token per frame.
            added_time_ids: `(B, 3)`.
            return_features: also return the decoder pyramid (see `feature_channels`).

        Returns:
            `(B, T, out_channels, h, w)`, and with `return_features` a list of 4 maps
            `(B*T, C_i, h / 2**i, w / 2**i)`, finest first: the last up block's output, the outputs of
            up blocks 1 and 0, and the mid block's output.
        """
        batch, frames = sample.shape[:2]
        t = timestep if torch.is_tensor(timestep) else torch.tensor(timestep, dtype=sample.dtype)
        t = t.reshape(-1).to(sample.device).expand(batch)
        emb = self.time_embedding(self.time_proj(t).to(sample.dtype))
        time_embeds = self.add_time_proj(added_time_ids.flatten()).reshape(batch, -1).to(emb.dtype)
        emb = (emb + self.add_embedding(time_embeds)).repeat_interleave(frames, dim=0)
        context = encoder_hidden_states.flatten(0, 1).unsqueeze(1)  # DepthCrafter: (B*T, 1, D)
        indicator = torch.zeros(batch, frames, dtype=sample.dtype, device=sample.device)

        h = self.conv_in(sample.flatten(0, 1))
        skips: tuple[torch.Tensor, ...] = (h,)
        for block in self.down_blocks:
            kw = {"encoder_hidden_states": context} if getattr(block, "has_cross_attention", False) else {}
            h, res = block(hidden_states=h, temb=emb, image_only_indicator=indicator, **kw)
            skips += res
        h = self.mid_block(hidden_states=h, temb=emb, encoder_hidden_states=context, image_only_indicator=indicator)
        taps = [h]
        for block in self.up_blocks:
            res, skips = skips[-len(block.resnets) :], skips[: -len(block.resnets)]
            kw = {"encoder_hidden_states": context} if getattr(block, "has_cross_attention", False) else {}
            h = block(hidden_states=h, temb=emb, res_hidden_states_tuple=res, image_only_indicator=indicator, **kw)
            taps.append(h)
        out = self.conv_out(self.conv_act(self.conv_norm_out(h)))
        out = out.reshape(batch, frames, *out.shape[1:])
        if not return_features:
            return out
        return out, [taps[-1], taps[2], taps[1], taps[0]]

    def is_temporal(self, name: str) -> bool:
        """Whether parameter `name` belongs to a *temporal* layer (paper Supp. A.2: temporal
        transformers and temporal resnet blocks, with their frame-position embeddings and the
        spatial/temporal mixing factors); everything else is spatial. Used to train one group only
        (DepthCrafter stages 2/3; the one-step student trains spatial layers only)."""
        return any(part in _TEMPORAL_PARTS for part in name.split("."))

    @property
    def feature_channels(self) -> list[int]:
        """Channels of the 4 pyramid maps returned with `return_features` (finest first).

        Our choice (the paper does not say): the final decoder features at the latent resolution,
        the up-block outputs at 1/2 and 1/4 and the bottleneck at 1/8 -- one map per UNet scale, all
        from the decoder half where the depth latent is formed. Needs exactly 4 up blocks (SVD).
        """
        if len(self.up_blocks) != 4:
            raise ValueError(f"the feature pyramid needs a 4-level UNet, this one has {len(self.up_blocks)}")
        rev = list(reversed(self.config.block_out_channels))
        return [rev[3], rev[1], rev[0], self.config.block_out_channels[-1]]


# -- helpers ------------------------------------------------------------------------------------
def clean_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Drop diffusers' bookkeeping keys (`_class_name`, `_diffusers_version`, ...)."""
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def clip_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Architecture keys of a `CLIPVisionConfig` (drops dtype/architectures/versions)."""
    return {k: v for k, v in cfg.items() if k in _CLIP_KEYS}


#: the class DepthCrafter's released `unet.py` defines: what its `save_pretrained` writes as `_class_name`
DEPTHCRAFTER_UNET_CLASS = "DiffusersUNetSpatioTemporalConditionModelDepthCrafter"
#: diffusers' own class: what Stable Video Diffusion's `unet/config.json` names (saved by diffusers itself)
SVD_UNET_CLASS = "UNetSpatioTemporalConditionModel"


def svd_unet_problem(unet_dir: Path, svd_dir: Path | None = None) -> str | None:
    """Why `unet_dir` is Stable Video Diffusion's own UNet rather than DepthCrafter's, or None.

    The two have the same keys, shapes and config sizes (8 in: the noisy latent beside the image latent;
    4 out; DepthCrafter's weights are a fine-tune of SVD's), so only the folder's `config.json` tells: the
    class that saved it. SVD's release was saved by diffusers' own `UNetSpatioTemporalConditionModel`,
    DepthCrafter's by its authors' subclass (`DEPTHCRAFTER_UNET_CLASS`), this package's by its own
    (`SpatioTemporalUNet`). Read from the folder's contents, not from where it sits: a `unet/` copied out of
    the SVD pipeline folder is still SVD's. A config that names another class is not refused, nor one naming
    diffusers' class whose `_name_or_path` (the folder or hub id it was loaded from before it was saved) names
    DepthCrafter: DepthCrafter's UNet re-saved through diffusers' class.

    Where the facts come from (the real files could not be downloaded here): the authors load their UNet with
    that subclass (`depthcrafter/unet.py` and `run.py` in /work/shared/reference-code/depthcrafter), and
    huggingface.co/tencent/DepthCrafter's top-level `config.json`, as a Nuke plug-in ships it beside the hub's
    weights (github.com/Theo-SAMINADIN-td/NukeDepthCrafter, DepthCrafterPlugin/config.json @ 89812480), names
    `"_class_name": "DiffusersUNetSpatioTemporalConditionModelDepthCrafter"` with `"_name_or_path":
    "diffusers/depthcrafter"` (diffusers 0.29.2, the v1.0 upload) and the same sizes as SVD-XT's `unet/config.json`
    (in_channels 8, out_channels 4, num_frames 25, block_out_channels 320-1280, cross_attention_dim 1024), which
    names `UNetSpatioTemporalConditionModel`. The v1.0.1 upload's config was not seen; were it re-saved through
    diffusers' class, its `_name_or_path` would still name DepthCrafter's folder."""
    import json

    try:
        config = json.loads((unet_dir / "config.json").read_text())
        cls = str(config.get("_class_name", ""))
        loaded_from = str(config.get("_name_or_path", ""))
    except (OSError, ValueError, AttributeError):
        return None  # the loader names a missing or unreadable config.json
    if cls != SVD_UNET_CLASS or "depthcrafter" in loaded_from.lower():
        return None
    svd = str(svd_dir.resolve()) if svd_dir is not None else "SVD_FOLDER"
    return (
        f"{unet_dir} is Stable Video Diffusion's own UNet, not DepthCrafter's: its config.json names diffusers' "
        f"class {SVD_UNET_CLASS}, as SVD's unet/ is saved (DepthCrafter's names {DEPTHCRAFTER_UNET_CLASS}). The "
        "two have the same keys and shapes, but SVD's generates video, so it would run and output noise as depth. "
        "Give the DepthCrafter UNet folder (huggingface.co/tencent/DepthCrafter: config.json and "
        "diffusion_pytorch_model.safetensors at its top level) first and the SVD folder second: vdepth-export "
        f"import depthcrafter DEPTHCRAFTER_FOLDER {svd} -o FOLDER, or vdepth-export pull depthcrafter. If it is "
        "DepthCrafter's UNet re-saved through diffusers' class, set \"_class_name\" in its config.json to "
        f'"{DEPTHCRAFTER_UNET_CLASS}"'
    )


def _plain_weights(part: Path) -> bool:
    """Whether a diffusers/transformers part folder has weights of no variant (`model.safetensors`, its shards
    `-00001-of-00002.safetensors` or index, `diffusion_pytorch_model.bin`); `*.fp16.*` files are a variant's."""
    return any(p.name.count(".") == 1 for p in (*part.glob("*.safetensors"), *part.glob("*.bin"))) or any(
        part.glob("*.safetensors.index.json")
    )


def _refuse_another_familys_file(file: Path, expected: CheckpointKind) -> None:
    """`WrongCheckpointError` for a file given where a diffusers folder goes that is another family's whole
    checkpoint (a VDA, GemDepth or DVD file), which 'give its folder' would misdirect; a diffusers part's own
    weights file, or one no rule knows, returns (the caller then names the folder)."""
    from vdepth_ros.models.base import load_state_dict_file

    try:
        found = identify_checkpoint(load_state_dict_file(file))
    except ModelLoadError:
        return
    if found is not None and found.family is not None:
        raise WrongCheckpointError(
            f"{file}: expected {expected.describe('folder', file=False)}, found {found.describe()}",
            expected=expected,
            found=found,
            path=str(file),
        )


def _unreadable_weights(part: Path) -> str | None:
    """Why a weights file of a diffusers part folder cannot be read (a Git LFS pointer of a clone without git-lfs,
    a saved web page, a cut-off download), in the words `load_state_dict_file` uses for one file; None when
    each is readable. diffusers' own error named neither the cause nor the fix ('Unable to load weights from
    checkpoint file')."""
    from safetensors import safe_open

    from vdepth_ros.models.base import _not_weights

    for file in sorted((*part.glob("*.safetensors"), *part.glob("*.bin"))):
        if (why := _not_weights(file)) is not None:
            return why
        if file.suffix == ".safetensors":
            try:
                with safe_open(str(file), "np") as f:  # the header against the file size
                    f.keys()
            except Exception as err:  # safetensors' own SafetensorError, OSError
                return f"{file} is not a readable safetensors file ({err}): truncated or corrupt; download it again"
    return None


def load_part(cls: Any, folder: Path, subfolder: str | None, variant: str | None) -> nn.Module:
    """`cls.from_pretrained(folder, subfolder=, variant=, local_files_only=True)`, strict: a missing,
    unexpected or mis-shaped key is a `ModelLoadError` (from_pretrained itself only warns and fills
    missing weights randomly). `variant` applies where files of that variant exist (DepthCrafter's
    UNet is released as plain fp32 next to SVD-XT's fp16 parts); a part with fp16 files only is read as the
    fp16 variant without being asked."""
    expected = CheckpointKind(None, part_of_class(cls.__name__) or "video_unet")
    if folder.is_file():  # a diffusers release is its folder (config.json beside the weights), not one file
        _refuse_another_familys_file(folder, expected)
        where = folder.parent.parent if subfolder and folder.parent.name == subfolder else folder.parent
        inside = f", in its {subfolder}/" if subfolder else ""
        raise ModelLoadError(
            f"{folder} is a file: a diffusers release is imported as its folder (config.json beside the weights"
            f"{inside}): give {where}"
        )
    part = folder / subfolder if subfolder else folder
    found = identify_folder(part)
    if found is not None and found[0].differs_from(expected):  # from_pretrained would fail on its config
        what = found[0].describe("folder", file=False)
        raise WrongCheckpointError(
            f"{part}: expected {expected.describe('folder', file=False)}, found {what} ({found[1]})",
            expected=expected,
            found=found[0],
            path=str(part),
        )
    whole = identify_folder(folder) if subfolder and not part.is_dir() else None
    if whole is not None and whole[0].part != "pipeline":  # one part's folder given where its pipeline goes
        wanted = CheckpointKind(None, "pipeline")
        raise WrongCheckpointError(
            f"{folder}: expected {wanted.describe('folder', file=False)} with {subfolder}/, found "
            f"{whole[0].describe('folder', file=False)} ({whole[1]})",
            expected=wanted,
            found=whole[0],
            path=str(folder),
        )
    if not (part / "config.json").is_file():
        raise ModelLoadError(
            hub_download_problem(part)
            or f"{part / 'config.json'} not found: expected a diffusers/transformers model folder"
        )
    use = variant if variant and any(part.glob(f"*.{variant}.*")) else None
    if use is None and not _plain_weights(part) and any(part.glob("*.fp16.*")):
        use = "fp16"  # a part downloaded with its fp16 files only (`hf download ... --include "*fp16*"`)
    kwargs = {"subfolder": subfolder} if subfolder else {}
    try:
        module, info = cls.from_pretrained(
            str(folder), variant=use, local_files_only=True, output_loading_info=True, **kwargs
        )
    except (OSError, ValueError, RuntimeError) as err:  # no weights file, shape mismatch
        # a weights file missing from a hub download ('no file named diffusion_pytorch_model.bin found')
        raise ModelLoadError(hub_download_problem(part) or _unreadable_weights(part) or f"{part}: {err}") from err
    bad = {k: v for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if (v := list(info.get(k, [])))}
    if bad:
        raise ModelLoadError(f"{part}: keys do not match the release: {bad}")
    return module.float()
