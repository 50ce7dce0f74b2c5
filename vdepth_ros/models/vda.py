"""Video Depth Anything (VDA, arXiv 2501.12375): DINOv2 encoder + temporal DPT head -> disparity.

`VideoDepthAnything` is the "vda" family. The encoder is `transformers`' `Dinov2Backbone`
(`models/dinov2.py`), the decoder `TemporalDPTHead` (`models/dpt.py`); ImageNet normalisation is
inside `forward`, so inputs are RGB in [0, 1]. Every size is a constructor argument: the presets
`vits` / `vitb` / `vitl` reproduce the released models (`VideoDepthAnything.preset("vits")`), and
compact from-scratch models just pass smaller numbers.

Inference constants follow `video_depth_anything/video_depth.py`: window 32, overlap 10, keyframes
(0, 12, 24..31), keyframe alignment; the README's memory presets 16/6/(0,6,12..15) and 8/4/(0,3,6,7)
are `window=16` / `window=8`.

Deliberate differences from the released code: position embeddings are interpolated in fp32
without autocast (VDA runs under fp16 autocast); `predict` requires H, W to be multiples of 14
instead of resizing (resizing is the pipeline's job); no streaming mode (`video_depth_stream.py` runs
the bidirectionally trained network on a cache of past frames, which the VDA paper reports costs
accuracy; here only a model built with causal attention streams, `models/motion.py`). The forward
is split at the head's first temporal layer (`models/split.py`), the same operations in the same
order, so windows can reuse the features of frames they share with the previous window. A model
built without weights starts its output conv's bias at `OUTPUT_BIAS_INIT` instead of PyTorch's
random draw (VDA always starts from Depth Anything V2's weights, so its code sets none): a negative
draw left the final ReLU dead on every pixel and the model never trained (seeds 0-9: 4 of the
default recipe's models, 9 tiny ones; none with the init: `benchmarks/weightless_vda.py`,
`test_models_vda.py`). Loaded weights are unaffected.

Checked against the authors' code (`test/test_parity_vda.py`): the released key layouts of
vits/vitb/vitl equal the authors' `VideoDepthAnything.state_dict()` (0 missing / 0 unexpected on
import), and their `forward` and `from_released` agree to <= 1e-5 relative on the same random vits
weights. The metric releases are the same network (`metric=True`: output in metres).

`inference: reference` (the default for this family, `PipelineConfig.for_family`) runs the pipeline
as `infer_video_depth`: bicubic keep-aspect resize to `resize.vda_working_size`, keyframe stitching
with each window upsampled (`align_corners=True`) to the output size before an all-pixel least-squares
fit, clamp and crossfade; `test/test_parity_vda_e2e.py` checks it against `infer_video_depth` on 80
HoloLens frames (<= 1e-4 per frame). Remaining differences (docs/models.md, "The reference inference
mode"): fp32 instead of fp16 autocast on a GPU; fixed-shape exports run their exported size (the
torch engine runs the authors' size). Stitching at the working resolution and upsampling after
(`inference: package` order) changes frames after the first window by up to 2.1e-3 relative
(`benchmarks/reference_mode_effects.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vdepth_ros.errors import ConfigError, InputError, ModelLoadError
from vdepth_ros.models.base import (
    ExportSignature,
    InputConstraints,
    VideoDepthModel,
    load_state_checked,
    load_state_dict_file,
    register_to_config,
)
from vdepth_ros.models.dinov2 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_dinov2_backbone,
    hf_to_released,
    released_to_hf,
)
from vdepth_ros.models.dpt import ConvDetailEncoder, TemporalDPTHead, released_head_names
from vdepth_ros.models.identify import ENCODER_WIDTHS, CheckpointKind, refuse_other_checkpoint
from vdepth_ros.models.split import PerFrameSplit, SplitSignature

#: Start of the head's output-conv bias in a model built without weights (see the module docstring).
OUTPUT_BIAS_INIT = 0.1

#: Released encoder sizes (DINOv2 ViT-S/B/L) with their DPT widths and tapped layers (0-based),
#: from VDA's `run.py` model_configs and `intermediate_layer_idx`.
VDA_PRESETS: dict[str, dict[str, Any]] = {
    "vits": {
        "hidden_size": ENCODER_WIDTHS["vits"],
        "num_layers": 12,
        "num_heads": 6,
        "layer_indices": [2, 5, 8, 11],
        "features": 64,
        "out_channels": [48, 96, 192, 384],
    },
    "vitb": {
        "hidden_size": ENCODER_WIDTHS["vitb"],
        "num_layers": 12,
        "num_heads": 12,
        "layer_indices": [2, 5, 8, 11],
        "features": 128,
        "out_channels": [96, 192, 384, 768],
    },
    "vitl": {
        "hidden_size": ENCODER_WIDTHS["vitl"],
        "num_layers": 24,
        "num_heads": 16,
        "layer_indices": [4, 11, 17, 23],
        "features": 256,
        "out_channels": [256, 512, 1024, 1024],
    },
}

#: window -> (overlap, keyframes). 32 is VDA's "do not change" setting (INFER_LEN, OVERLAP,
#: KEYFRAMES); 16 and 8 are the lower-memory presets published with GemDepth's VDA-style loop.
WINDOW_PRESETS: dict[int, tuple[int, tuple[int, ...]]] = {
    32: (10, (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)),
    16: (6, (0, 6, 12, 13, 14, 15)),
    8: (4, (0, 3, 6, 7)),
}


def resolve_window(
    window: int, overlap: int | None, keyframes: Sequence[int] | None, max_frames: int
) -> tuple[int, tuple[int, ...]]:
    """Overlap and keyframe slots for `window` (preset unless both are given), validated."""
    if overlap is None and keyframes is None:
        if window not in WINDOW_PRESETS:
            raise ConfigError(
                f"window={window} has no preset ({sorted(WINDOW_PRESETS)}); pass overlap and keyframes explicitly"
            )
        overlap, kf = WINDOW_PRESETS[window]
    elif overlap is None or keyframes is None:
        raise ConfigError("pass both overlap and keyframes, or neither (to use the window preset)")
    else:
        kf = tuple(int(k) for k in keyframes)
    if not 0 < window <= max_frames:
        raise ConfigError(f"window={window} must be in [1, max_frames={max_frames}] (temporal position table)")
    if not 0 <= overlap < window or len(kf) != overlap or any(not 0 <= k < window for k in kf):
        raise ConfigError(
            f"keyframes {kf} must be {overlap} (= overlap) slots in [0, window={window}), overlap < window"
        )
    return int(overlap), kf


class DinoVideoDepthBase(VideoDepthModel):
    """Shared I/O of the DINOv2-based video families (VDA, GemDepth); not a registry family.

    Subclasses build `self.backbone`, `self.head`, call `_init_io(...)`, and implement
    `forward(frames (B, T, 3, H, W) in [0, 1]) -> (B, T, H, W)` disparity.
    """

    patch_size: int
    max_frames: int
    #: outputs metric depth in metres (VDA's metric releases) instead of relative disparity.
    metric: bool = False

    def _init_io(
        self,
        patch_size: int,
        max_frames: int,
        window: int,
        overlap: int | None,
        keyframes: Any,
        pixel_mean: Sequence[float] = IMAGENET_MEAN,
        pixel_std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        """Input rules and the RGB normalisation `normalise` applies (ImageNet's unless given)."""
        self.patch_size = int(patch_size)
        self.max_frames = int(max_frames)
        self.window = int(window)
        self.overlap, self.keyframes = resolve_window(self.window, overlap, keyframes, self.max_frames)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 1, 3, 1, 1), persistent=False)

    @property
    def input_constraints(self) -> InputConstraints:
        return InputConstraints(
            multiple_of=self.patch_size,
            window=self.window,
            overlap=self.overlap,
            keyframes=self.keyframes,
            alignment="keyframe",
            value_range=(0.0, 1.0),
            output_kind="depth" if self.metric else "disparity",
            max_window=self.max_frames,
        )

    def check_input(self, frames: torch.Tensor) -> None:
        """Raise `InputError` unless `frames` is `(B, T, 3, H, W)` with H, W multiples of the patch."""
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise InputError(f"expected frames (B, T, 3, H, W), got {tuple(frames.shape)}")
        t, h, w = frames.shape[1], frames.shape[3], frames.shape[4]
        p = self.patch_size
        if h % p or w % p or h == 0 or w == 0:
            raise InputError(
                f"H and W must be positive multiples of {p}, got {h}x{w} (resize to e.g. {max(p, h // p * p)}x"
                f"{max(p, w // p * p)})"
            )
        if not 0 < t <= self.max_frames:
            raise InputError(f"{t} frames: windows hold 1..{self.max_frames} frames (temporal position table)")

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] `(B, T, 3, H, W)` -> ImageNet-normalised `(B*T, 3, H, W)`."""
        return ((frames - self.pixel_mean) / self.pixel_std).flatten(0, 1)

    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames `(T, 3, H, W)` RGB in [0, 1], H and W multiples of 14 -> `(T, H, W)` disparity >= 0."""
        if frames.dim() != 4:
            raise InputError(f"predict expects frames (T, 3, H, W), got {tuple(frames.shape)}")
        frames = frames[None].to(self.pixel_mean.device, torch.float32)
        self.check_input(frames)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self(frames)[0]
        finally:
            self.train(was_training)

    def export_signature(self, frames: int, height: int, width: int) -> ExportSignature:
        """Fixed-shape graph `(1, frames, 3, height, width)` in [0, 1] -> `(1, frames, height, width)`."""
        self.check_input(torch.empty(1, frames, 3, height, width, device="meta"))
        return ExportSignature(
            module=self.eval(),
            frames=int(frames),
            height=int(height),
            width=int(width),
            extra={"family": self.family, "patch_size": self.patch_size},
        )

    @staticmethod
    def disparity_output(disparity: torch.Tensor, b: int, t: int, h: int, w: int) -> torch.Tensor:
        """Head output `(B*T, h', w')` -> `(B, T, h, w)` ReLU'd disparity, resized only when the
        head's grid x patch differs from the input size."""
        if disparity.shape[-2:] != (h, w):
            disparity = F.interpolate(disparity[:, None], size=(h, w), mode="bilinear", align_corners=True)[:, 0]
        return F.relu(disparity).reshape(b, t, h, w)

    def encode(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Normalise and run DINOv2: `(B, T, 3, H, W)` -> 4 maps `(B*T, hidden, H/14, W/14)`."""
        return list(self.backbone(self.normalise(frames)).feature_maps)

    # -- released checkpoints ----------------------------------------------------------------
    #: model-prefix pairs (ours, released) for the backbone and the head.
    _released_prefixes: ClassVar[tuple[tuple[str, str], tuple[str, str]]] = (
        ("backbone.", "pretrained."),
        ("head.", "head."),
    )

    #: regexes of released keys the authors' module builds but its forward never reads; the importer
    #: drops exactly these (each family's docstring says which and why) and is strict about the rest.
    _unused_released_keys: ClassVar[tuple[str, ...]] = ()

    def _extra_released_names(self) -> Callable[[str], list[str]] | None:
        """Name map for parameters outside backbone/head (GemDepth overrides)."""
        return None

    def released_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights in the released checkpoint's key layout (for round-trip tests/export)."""
        ours = {k: v.detach().clone() for k, v in self.state_dict().items()}
        (bb_ours, bb_rel), (hd_ours, hd_rel) = self._released_prefixes
        out = hf_to_released(ours, bb_ours, bb_rel)
        extra = self._extra_released_names()
        for key in list(ours):
            if key.startswith(hd_ours):
                t = ours.pop(key)
                for name in released_head_names(key[len(hd_ours) :]):
                    out[hd_rel + name] = t.clone()
            elif extra is not None:
                t = ours.pop(key)
                for name in extra(key):
                    out[name] = t.clone()
        if ours:
            raise RuntimeError(f"no released names for {sorted(ours)[:5]}")
        return out

    def load_released_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights in the released key layout; `ModelLoadError` on any missing/unexpected key
        (other than the family's `_unused_released_keys`, which are dropped)."""
        unused = [re.compile(p) for p in self._unused_released_keys]
        state = {k: v for k, v in state.items() if not any(p.fullmatch(k) for p in unused)}
        (bb_ours, bb_rel), (hd_ours, hd_rel) = self._released_prefixes
        num_layers = len(self.backbone.encoder.layer)
        mapped = released_to_hf(state, bb_rel, bb_ours, num_layers)
        extra = self._extra_released_names()
        missing: list[str] = []
        for key in self.state_dict():
            if key.startswith(bb_ours):
                continue
            if key.startswith(hd_ours):
                names = [hd_rel + n for n in released_head_names(key[len(hd_ours) :])]
            elif extra is not None:
                names = extra(key)
            else:
                names = [key]
            if names[0] not in state:
                missing.append(names[0])
                continue
            mapped[key] = state.pop(names[0])
            for dup in names[1:]:  # duplicated constant buffers (sinusoidal tables)
                state.pop(dup, None)
        missing += [k for k in self.state_dict() if k.startswith(bb_ours) and k not in mapped]
        if missing or state:
            raise ModelLoadError(
                f"released checkpoint: missing keys {missing[:10]}, unexpected keys {sorted(state)[:10]}"
            )
        load_state_checked(self, mapped, "released checkpoint")

    @classmethod
    def read_released_file(cls, path: str | Path, hidden_size: int | None) -> dict[str, torch.Tensor]:
        """The state dict of the checkpoint file `path`, read before the model of DINOv2 width `hidden_size`
        is built (`from_released`): a file of another family or ViT size raises `identify.WrongCheckpointError`
        at once, not after building a model it cannot fill (a ViT-L takes ~30 s on a CPU). None: no check."""
        state = load_state_dict_file(path)
        if hidden_size is not None and (kind := cls.released_kind(int(hidden_size))) is not None:
            refuse_other_checkpoint(state, kind, path)
        return state

    def load_released_file(self, path: str | Path, state: dict[str, torch.Tensor] | None = None) -> None:
        """`load_released_state_dict` of a checkpoint file (`state`: its state dict, when already read by
        `read_released_file`); a file of another family or VDA size raises `identify.WrongCheckpointError`
        (expected and found, for the tools to name the fix), any other misfit a `ModelLoadError` naming the
        file and the keys.

        A file in this package's own key layout (`model.state_dict()` saved by a user's own fine-tuning
        loop, with or without DDP's `module.` prefix, or a peft adapter merged into the model) loads
        as it is, strictly: the released names start the backbone with `pretrained.`, ours with `backbone.`.
        """
        state = load_state_dict_file(path) if state is None else state
        (bb_ours, bb_rel), _ = self._released_prefixes
        own = any(k.startswith(bb_ours) for k in state) and not any(k.startswith(bb_rel) for k in state)
        try:
            if own:
                load_state_checked(self, state, "checkpoint in this package's key layout")
            else:
                self.load_released_state_dict(state)
        except ModelLoadError as err:
            if (kind := self.checkpoint_kind()) is not None:
                refuse_other_checkpoint(state, kind, path)
            raise ModelLoadError(f"{path}: {err}") from None

    def checkpoint_kind(self) -> CheckpointKind | None:
        """The kind of checkpoint this model loads (`identify`): its family at its DINOv2 width; None for a
        family released in no layout `identify` knows (vda_lite, on another encoder)."""
        return self.released_kind(int(self.config["hidden_size"])) if "hidden_size" in self.config else None

    @classmethod
    def released_kind(cls, hidden_size: int) -> CheckpointKind | None:
        """The kind of checkpoint (`identify`) the family's model of DINOv2 width `hidden_size` loads; None for
        a family released in no layout `identify` knows (vda_lite, on another encoder)."""
        return CheckpointKind(cls.family, "model", hidden_size) if cls.family in ("vda", "gemdepth") else None


class VideoDepthAnything(PerFrameSplit, DinoVideoDepthBase):
    """Video Depth Anything: per-frame DINOv2 tokens -> temporal DPT head -> ReLU disparity.

    Args:
        hidden_size: DINOv2 width (vits 384, vitb 768, vitl 1024).
        num_layers: DINOv2 depth (12, 12, 24); blocks after the last tapped layer are not built.
        num_heads: DINOv2 heads (6, 12, 16).
        layer_indices: 0-based DINOv2 blocks feeding the head (vits/vitb [2,5,8,11], vitl [4,11,17,23]).
        patch_size: ViT patch (14); H and W must be multiples of it.
        image_size: square training size of the position table (518 -> 37x37).
        features: DPT fusion width (64, 128, 256).
        out_channels: DPT per-level widths ([48,96,192,384], [96,192,384,768], [256,512,1024,1024]).
        head_features: DPT output conv width (32).
        max_frames: temporal position table length = longest window (32).
        motion_heads: heads per temporal motion module (8).
        motion_norm_groups: GroupNorm groups in the motion modules (32).
        window: default inference window (32, 16 or 8 use the published overlap/keyframes).
        overlap: window overlap; `None` -> preset of `window`.
        keyframes: keyframe slots (length `overlap`); `None` -> preset of `window`.
        conv_stem: convolutional patch embedding (`ConvPatchStem`) instead of DINOv2's linear
            patchify. A deliberate difference for compact models trained from scratch (the bundled
            default model); released checkpoints never have it, so `from_released` refuses it.
        detail_width: > 0 adds a `ConvDetailEncoder` of this first-stage width whose 1/4 and 1/8
            maps are added to the head's two finest levels (DPT-Hybrid-style; from-scratch compact
            models only, refused by `from_released` like `conv_stem`). 0 = the released architecture.
        metric: the weights are a metric release (`metric_video_depth_anything_vit*.pth`): the same
            network, whose output is depth in metres (`output_kind="depth"`), so the pipeline skips
            the affine fit as VDA's `infer_video_depth(metric=True)` does (scale 1, shift 0).
    """

    family: ClassVar[str] = "vda"

    @register_to_config
    def __init__(
        self,
        hidden_size: int = 384,
        num_layers: int = 12,
        num_heads: int = 6,
        layer_indices: Sequence[int] = (2, 5, 8, 11),
        patch_size: int = 14,
        image_size: int = 518,
        features: int = 64,
        out_channels: Sequence[int] = (48, 96, 192, 384),
        head_features: int = 32,
        max_frames: int = 32,
        motion_heads: int = 8,
        motion_norm_groups: int = 32,
        window: int = 32,
        overlap: int | None = None,
        keyframes: Sequence[int] | None = None,
        conv_stem: bool = False,
        detail_width: int = 0,
        metric: bool = False,
    ) -> None:
        super().__init__()
        self._init_io(patch_size, max_frames, window, overlap, keyframes)
        self.metric = bool(metric)
        self.conv_stem = bool(conv_stem)
        self.backbone = build_dinov2_backbone(
            hidden_size, num_layers, num_heads, layer_indices, patch_size, image_size, conv_stem=self.conv_stem
        )
        self.head = TemporalDPTHead(
            [hidden_size] * 4,
            features=features,
            out_channels=out_channels,
            head_features=head_features,
            patch_size=patch_size,
            num_frames=max_frames,
            num_heads=motion_heads,
            norm_groups=motion_norm_groups,
        )
        # The random features before the output conv are small, so it gives about its bias: a
        # negative draw would leave the final ReLU dead on every pixel (module docstring).
        nn.init.constant_(self.head.head.conv3.bias, OUTPUT_BIAS_INIT)
        self.detail_width = int(detail_width)
        self.detail = ConvDetailEncoder(self.detail_width, out_channels[:2]) if self.detail_width > 0 else None

    @classmethod
    def preset(cls, encoder: str = "vits", **overrides: Any) -> VideoDepthAnything:
        """A released size (`vits`, `vitb`, `vitl`), randomly initialised; `overrides` win."""
        if encoder not in VDA_PRESETS:
            raise ConfigError(f"unknown VDA encoder {encoder!r}; known: {sorted(VDA_PRESETS)}")
        return cls(**{**VDA_PRESETS[encoder], **overrides})

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """A ~0.1 M-parameter config for CPU tests (6x6 position table, so most inputs interpolate)."""
        return {
            "hidden_size": 32,
            "num_layers": 4,
            "num_heads": 2,
            "layer_indices": [0, 1, 2, 3],
            "image_size": 84,
            "features": 16,
            "out_channels": [8, 16, 16, 32],
            "head_features": 8,
            "max_frames": 8,
            "motion_heads": 2,
            "motion_norm_groups": 8,
            "window": 8,
        }

    @classmethod
    def tiny_input_shape(cls) -> tuple[int, int, int]:
        """(T, H, W) valid for `tiny_config`: non-square and not the table's size."""
        return (4, 70, 98)

    @classmethod
    def from_released(cls, path: str | Path, encoder: str = "vits", **overrides: Any) -> VideoDepthAnything:
        """Load `video_depth_anything_vit{s,b,l}.pth` (read with `weights_only=True`).

        Raises:
            ModelLoadError: unreadable file, or any missing/unexpected key after renaming.
        """
        for key in ("conv_stem", "detail_width"):
            if overrides.get(key):
                raise ConfigError(f"{key} models are not released; load them with load_model(dir)")
        state = cls.read_released_file(path, {**VDA_PRESETS.get(encoder, {}), **overrides}.get("hidden_size"))
        model = cls.preset(encoder, **overrides)
        model.load_released_file(path, state)
        return model.eval()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Disparity of clips.

        Args:
            frames: `(B, T, 3, H, W)` RGB in [0, 1], H and W multiples of `patch_size`, T <= max_frames.

        Returns:
            `(B, T, H, W)` non-negative relative disparity (affine-invariant inverse depth), or depth in
            metres for a `metric` model.
        """
        _, t, _, h, w = frames.shape
        return self.decode_window(self.encode_frames(frames.flatten(0, 1)), t, h, w)

    def frame_skips(self, clip: torch.Tensor) -> list[torch.Tensor] | None:
        return self.detail(self.normalise(clip)) if self.detail is not None else None


__all__ = [
    "VDA_PRESETS",
    "WINDOW_PRESETS",
    "DinoVideoDepthBase",
    "PerFrameSplit",
    "SplitSignature",
    "VideoDepthAnything",
    "resolve_window",
]
