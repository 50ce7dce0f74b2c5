"""What a checkpoint is, from its key names and a few shapes: which family's file, which part, which size.

A released file given for another family, another size or another part of a release (DVD's VAE where its
DiT goes, a ViT-S file as vda-base) used to fail as a dump of missing and unexpected keys or hundreds of
tensors of another shape. The loaders call `refuse_other_checkpoint` when a state dict does not fit: the
error then says what was expected and what the file is, and the tools (`vdepth-export import`, `pull`)
name the fix from its `expected` and `found`.

The rules read key names only (the released layouts, as the authors' code names them, and this package's
own), never values; a file they do not recognise keeps the loader's own error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdepth_ros.errors import ModelLoadError

#: DINOv2 width -> (VDA's `--encoder` name, the paper's name): the ViT sizes VDA and GemDepth are released at
DINOV2_SIZES: dict[int, tuple[str, str]] = {384: ("vits", "ViT-S"), 768: ("vitb", "ViT-B"), 1024: ("vitl", "ViT-L")}
#: encoder name -> DINOv2 width (`VDA_PRESETS` takes its widths from here)
ENCODER_WIDTHS: dict[str, int] = {encoder: width for width, (encoder, _) in DINOV2_SIZES.items()}

#: (family, part) -> (what it is, the release file it is, or "")
_PARTS = {
    ("vda", "model"): ("Video Depth Anything", "video_depth_anything_{encoder}.pth"),
    ("gemdepth", "model"): ("GemDepth", "gemdepth.pth"),
    ("dvd", "dit"): ("Wan2.1 DiT", "DVD's model.safetensors / dvd_1.1.safetensors"),
    ("dvd", "vae"): ("Wan2.1 video VAE", "Wan2.1_VAE.pth"),
    (None, "video_unet"): ("diffusers video UNet", "a spatio-temporal UNet of SVD's layout: DepthCrafter's"),
    (None, "image_unet"): ("diffusers image UNet", "a 2D UNet of SD-2's layout: a FiffDepth folder's unet/"),
    (None, "image_vae"): ("diffusers image VAE", "a vae/ folder's weights: SVD's or SD-2's"),
    (None, "clip"): ("CLIP encoder", "an image_encoder/ or text_encoder/ folder's weights"),
    (None, "pipeline"): ("diffusers pipeline", "model_index.json: its parts are in subfolders"),
}
#: (family, part) -> the only sizes its release file is at (GemDepth's gemdepth.pth: ViT-L); another size names none
_RELEASED_ENCODERS = {("gemdepth", "model"): ("vitl",)}


@dataclass(frozen=True)
class CheckpointKind:
    """What a checkpoint holds.

    Attributes:
        family: the importer family it belongs to (`vda`, `gemdepth`, `dvd`), None for a part several
            families share (a diffusers UNet, VAE or CLIP encoder).
        part: `model` (the whole network), `dit`, `vae`, `video_unet`, `image_unet`, `image_vae`, `clip`.
        vit_width: the DINOv2 width of a VDA/GemDepth checkpoint (384, 768, 1024 for the releases), else None.
    """

    family: str | None
    part: str
    vit_width: int | None = None

    @property
    def encoder(self) -> str | None:
        """VDA's `--encoder` name of the width (`vits`, `vitb`, `vitl`), None for another width or part."""
        return DINOV2_SIZES[self.vit_width][0] if self.vit_width in DINOV2_SIZES else None

    def describe(self, noun: str = "checkpoint", *, file: bool = True) -> str:
        """E.g. 'a Video Depth Anything ViT-S checkpoint (video_depth_anything_vits.pth)'; `noun` names what
        it is ('checkpoint', 'model'), `file` adds the release file it is."""
        title, release_file = _PARTS[(self.family, self.part)]
        size = ""
        if self.vit_width is not None:
            size = f" {DINOV2_SIZES[self.vit_width][1]}" if self.encoder is not None else ""
            noun += "" if size else f" of ViT width {self.vit_width}"
        if "{encoder}" in release_file:
            release_file = release_file.format(encoder=self.encoder) if self.encoder is not None else ""
        if self.encoder not in _RELEASED_ENCODERS.get((self.family, self.part), (self.encoder,)):
            release_file = ""
        return f"a {title}{size} {noun}" + (f" ({release_file})" if file and release_file else "")

    def differs_from(self, expected: CheckpointKind) -> bool:
        """Another family or part, or a VDA of another ViT width, than `expected`."""
        if (self.family, self.part) != (expected.family, expected.part):
            return True
        return None not in (self.vit_width, expected.vit_width) and self.vit_width != expected.vit_width


class WrongCheckpointError(ModelLoadError):
    """A checkpoint of another family, size or part than the one being loaded: `found` and `expected` say which."""

    def __init__(self, message: str, *, expected: CheckpointKind, found: CheckpointKind, path: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.found = found
        self.path = path


#: a diffusers/transformers class name -> the part it is (first match). The two UNets are told apart: a
#: spatio-temporal one (SVD, DepthCrafter) and a 2D one (SD-2, FiffDepth) build from each other's config.json
#: only as a TypeError deep in diffusers
_CLASS_PARTS = (
    ("SpatioTemporal", "video_unet"),
    ("UNet", "image_unet"),
    ("Autoencoder", "image_vae"),
    ("VAE", "image_vae"),
    ("CLIP", "clip"),
)
#: which family each UNet belongs to, and how it is imported (the fix when it is given to the other)
UNET_OWNERS: dict[str, tuple[str, str]] = {
    "video_unet": ("depthcrafter", "vdepth-export import depthcrafter DEPTHCRAFTER_UNET_FOLDER SVD_FOLDER -o FOLDER"),
    "image_unet": ("fiffdepth", "vdepth-export import fiffdepth FOLDER_WITH_UNET_AND_VAE -o FOLDER"),
}


def part_of_class(name: str) -> str | None:
    """The part (`video_unet`, `image_unet`, `image_vae`, `clip`) a diffusers/transformers class name is, or None."""
    return next((part for word, part in _CLASS_PARTS if word in name), None)


def identify_folder(folder: Path) -> tuple[CheckpointKind, str] | None:
    """The kind of a diffusers/transformers model folder and the class its config names (`_class_name`, or
    the first of `architectures`; a pipeline folder's `model_index.json`, or its parts' subfolders), or None
    when none tells."""
    import json

    for name, part in (("config.json", None), ("model_index.json", "pipeline")):
        try:
            config = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(config, dict):
            continue
        cls = config.get("_class_name") or (config.get("architectures") or [""])[0]
        found = part or part_of_class(str(cls))
        if found is not None:
            return CheckpointKind(None, found), str(cls)
    try:  # the parts of a pipeline downloaded without its model_index.json
        parts = sorted(f"{p.name}/" for p in folder.iterdir() if (p / "config.json").is_file())
    except OSError:
        return None
    return (CheckpointKind(None, "pipeline"), f"parts {', '.join(parts)}") if parts else None


def _width(state: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        tensor = state.get(name)
        if tensor is not None and getattr(tensor, "ndim", 0) >= 1:
            return int(tensor.shape[-1])
    return None


def identify_checkpoint(state: Mapping[str, Any]) -> CheckpointKind | None:
    """The kind of checkpoint `state` (a state dict, unwrapped) is, by its key names, or None when no rule knows it.

    VDA and GemDepth are told by DINOv2's class token under the released (`pretrained.`) or this package's
    (`backbone.embeddings.`) name, GemDepth by its camera token; Wan's DiT by its patch embedding and blocks
    (under DVD's checkpoint prefixes too), Wan's VAE by its RMS norms' `gamma`; diffusers' UNet, image VAE and
    CLIP encoders by their own top-level names."""
    keys = list(state)
    width = _width(state, "pretrained.cls_token", "backbone.embeddings.cls_token")
    if width is not None:
        gem = any(k == "camera_token" or k.endswith(".camera_token") for k in keys)
        return CheckpointKind("gemdepth", "model", width) if gem else CheckpointKind("vda", "model", width)
    if any(k.endswith("patch_embedding.weight") for k in keys) and any(".blocks.0." in f".{k}" for k in keys):
        return CheckpointKind("dvd", "dit")
    if any(k.startswith(("encoder.", "decoder.")) and k.endswith(".gamma") for k in keys):
        return CheckpointKind("dvd", "vae")
    if "conv_in.weight" in state and "time_embedding.linear_1.weight" in state:
        video = any(".temporal_" in k for k in keys)  # SVD's temporal_transformer_blocks / temporal_res_block
        return CheckpointKind(None, "video_unet" if video else "image_unet")
    if "encoder.conv_in.weight" in state and "decoder.conv_in.weight" in state:
        return CheckpointKind(None, "image_vae")
    if any(k.startswith(("text_model.", "vision_model.")) for k in keys):
        return CheckpointKind(None, "clip")
    return None


def refuse_other_checkpoint(state: Mapping[str, Any], expected: CheckpointKind, path: str | Path) -> None:
    """Raise `WrongCheckpointError` when `state`, which did not load, is another kind of checkpoint than
    `expected`; return when it is not recognised or is of the expected kind (the loader's own error, which
    names the keys, then stands).

    Raises:
        WrongCheckpointError: '<path>: expected <expected>, found <what it is>'.
    """
    found = identify_checkpoint(state)
    if found is None or not found.differs_from(expected):
        return
    raise WrongCheckpointError(
        f"{path}: expected {expected.describe()}, found {found.describe()}",
        expected=expected,
        found=found,
        path=str(path),
    )


__all__ = [
    "DINOV2_SIZES",
    "ENCODER_WIDTHS",
    "UNET_OWNERS",
    "CheckpointKind",
    "WrongCheckpointError",
    "identify_checkpoint",
    "identify_folder",
    "part_of_class",
    "refuse_other_checkpoint",
]
