"""GemDepth (arXiv 2605.10525): VDA + geometry-embedded features (GEM) + ASTT -> disparity and poses.

Forward, per `seeds-dvd-gemdepth-fiffdepth.md` §2 and the released `model/gemdepth.py`:

1. DINOv2 (`models/dinov2.py`) gives 4 token levels; only the last one is changed below.
2. **GEM**: a camera token and register tokens (slot 0 for the first frame, slot 1 for the others, as
   VGGT) are prepended to the last-level tokens; a frame-attention block then a global-attention block
   (VGGT blocks: qk-norm, 2-D RoPE freq 100, LayerScale 0.01) run; the camera head (VGGT's iterative
   AdaLN trunk over the concatenated frame/global camera tokens) predicts `absT_quaR_FoV`
   = translation(3), quaternion xyzw(4), FoV(2) per frame.
3. **Pose embedding**: poses are made relative to window slot 0, translations divided by
   `Z = mean_{t_i != 0} ||t_i||`; quaternion, normalised translation and `log Z` go through three
   MLP+LayerNorm encoders (MapAnything's GlobalRepresentationEncoder) whose sum is added to every
   token; then LayerNorm (`dec_norm`) and a sin-cos frame-index embedding (table of 50).
4. **ASTT**: `astt_depth` x (global spatial attention over all `T*L` tokens with 2-D RoPE, then
   temporal attention over `T` at each token location), plain torch ops (exportable).
5. VDA's temporal DPT head, bilinear to the input size, ReLU.

Deliberate differences from the released code (documented, all deterministic):
* Pose injection is **always on**: the release draws `torch.rand` masks inside `forward` (90 % x 95 %
  x 50 %, not gated by `self.training`), so ~half the windows run without pose embedding and
  inference is stochastic. The paper's 100 % setting (Tab. 9) is slightly better.
* No dropout at inference. The release's ASTT blocks (`model/tools/blocks.py`, `flash_attention`)
  pass `dropout_p=0.1` to `scaled_dot_product_attention`, which applies it whether or not the module
  is in eval mode, and run that attention under bf16 autocast on CUDA: on a GPU the authors'
  inference is stochastic and bf16 in those 4 blocks. Their nn.Dropout / DropPath modules (0.1) are
  gated by eval mode and match. Effect with the released weights: not measurable here (no GPU, no
  weights); with random weights, the parity test forces the reference's `dropout_p` to 0 and
  compares fp32 on the CPU (`test/test_parity_gemdepth.py`).
* The per-clip translation scale is broadcast per sample (the release's `repeat(T, 1)` tiles it in the
  wrong order when B > 1; identical for B = 1, the only inference case).
* curope / flash attention are replaced by `scaled_dot_product_attention` and a plain-torch RoPE.
* The unused VDA-style `pos_encoder.pe` table of the release is kept as a buffer only so the released
  key set round-trips; it does not enter the computation (as in the release).
* 24 released keys are dropped on import because the authors' forward never reads them (checked in
  `model/dpt_temporal.py` and `model/motion_module/motion_module.py`): `head.proj.{0..3}` (4 Linear
  layers built in `DPTHeadTemporal.__init__`, not called by `forward`) and, per motion module,
  `temporal_transformer.fusion_gate1.0` and `temporal_transformer.layer_norm` (built in
  `TemporalTransformer3DModel.__init__`, not called). The authors load with `strict=True` because their
  module has them; the importer accepts exactly these and refuses anything else.

Output extrinsics are **relative to window slot 0** (slot 0 is the identity) with translations
normalised by `Z`: a per-window, up-to-scale geometry, not metric odometry.

`inference: reference` (the default for this family) runs the pipeline as the authors'
`infer_video_depth`, the same as VDA's (see `models/vda.py`; checked end to end for VDA only:
GemDepth's entry is VDA's with this network).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from vdepth_ros.errors import ConfigError, InputError
from vdepth_ros.models.base import register_to_config
from vdepth_ros.models.dinov2 import build_dinov2_backbone
from vdepth_ros.models.dpt import TemporalDPTHead
from vdepth_ros.models.gemdepth_blocks import (
    Block,
    CameraHead,
    PoseEncoder,
    normalize_translations,
    quat_to_matrix,
    relative_to_first,
    rope_2d,
    sincos_1d,
    vda_sinusoid,
)
from vdepth_ros.models.split import PerFrameSplit
from vdepth_ros.models.vda import VDA_PRESETS, DinoVideoDepthBase

#: FoV clamp (radians) when building intrinsics, so degenerate head outputs give finite focals.
MIN_FOV = 1e-3


@dataclass
class GemDepthOutput:
    """Per-window outputs of `GemDepth.forward_geometry`.

    Attributes:
        disparity: `(B, T, H, W)` non-negative relative disparity.
        pose_encoding: `(B, T, 9)` raw camera-head output: T(3), quat xyzw(4), FoV h, w (radians).
        extrinsics: `(B, T, 4, 4)` pose of slot i relative to slot 0 (slot 0 = identity), rotation from
            the normalised relative quaternion, translation divided by `translation_scale`.
        intrinsics: `(B, T, 3, 3)` pinhole at the input resolution from the FoV (clamped to
            [MIN_FOV, pi - MIN_FOV]), principal point at the image centre.
        translation_scale: `(B,)` `Z` = mean norm of the non-zero relative translations.
    """

    disparity: torch.Tensor
    pose_encoding: torch.Tensor
    extrinsics: torch.Tensor
    intrinsics: torch.Tensor
    translation_scale: torch.Tensor


class GemDepth(PerFrameSplit, DinoVideoDepthBase):
    """GemDepth-VDA: DINOv2 + GEM (camera/pose embedding) + ASTT + temporal DPT head -> disparity.

    Args:
        hidden_size, num_layers, num_heads, layer_indices, patch_size, image_size: DINOv2 (as VDA;
            released: vitl 1024/24/16, [4, 11, 17, 23], 518).
        features, out_channels, head_features, max_frames, motion_heads, motion_norm_groups: temporal
            DPT head (as VDA; released vitl 256, [256, 512, 1024, 1024]).
        num_register_tokens: GEM register tokens per frame (4).
        gem_heads: heads of the GEM frame/global blocks (16 = 32 // 2).
        gem_depth: frame/global block pairs built (2 in the release).
        gem_active: pairs run in `forward` (1: the release calls only index 0).
        camera_trunk_depth, camera_heads, camera_iterations: camera head (4, 16, 4).
        pose_mlp_dims: hidden widths of the three pose encoders ([128, 256, 512]).
        astt_depth: spatial/temporal block pairs (2).
        astt_heads: heads of the ASTT spatial blocks (32); temporal blocks use 4x as many (128).
        rope_freq: 2-D RoPE base (100).
        frame_index_len: length of the frame-index sin-cos table (50); T must not exceed it.
        window, overlap, keyframes: inference schedule (VDA's; presets 32/16/8).
    """

    family: ClassVar[str] = "gemdepth"
    _unused_released_keys: ClassVar[tuple[str, ...]] = (
        r"head\.proj\.\d+\.(weight|bias)",
        r"head\.motion_modules\.\d+\.temporal_transformer\.fusion_gate1\.0\.(weight|bias)",
        r"head\.motion_modules\.\d+\.temporal_transformer\.layer_norm\.(weight|bias)",
    )

    @register_to_config
    def __init__(
        self,
        hidden_size: int = 1024,
        num_layers: int = 24,
        num_heads: int = 16,
        layer_indices: Sequence[int] = (4, 11, 17, 23),
        patch_size: int = 14,
        image_size: int = 518,
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        head_features: int = 32,
        max_frames: int = 32,
        motion_heads: int = 8,
        motion_norm_groups: int = 32,
        num_register_tokens: int = 4,
        gem_heads: int = 16,
        gem_depth: int = 2,
        gem_active: int = 1,
        camera_trunk_depth: int = 4,
        camera_heads: int = 16,
        camera_iterations: int = 4,
        pose_mlp_dims: Sequence[int] = (128, 256, 512),
        astt_depth: int = 2,
        astt_heads: int = 32,
        rope_freq: float = 100.0,
        frame_index_len: int = 50,
        window: int = 32,
        overlap: int | None = None,
        keyframes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not 1 <= gem_active <= gem_depth:
            raise ConfigError(f"gem_active={gem_active} must be in [1, gem_depth={gem_depth}]")
        if max_frames > frame_index_len:
            raise ConfigError(f"max_frames={max_frames} exceeds the frame-index table ({frame_index_len})")
        self._init_io(patch_size, max_frames, window, overlap, keyframes)
        c = int(hidden_size)
        self.backbone = build_dinov2_backbone(c, num_layers, num_heads, layer_indices, patch_size, image_size)
        # GEM: tokens are (1, 2, n, C): index 0 for the window's first frame, 1 for the others (VGGT).
        self.camera_token = nn.Parameter(torch.randn(1, 2, 1, c))
        self.register_token = nn.Parameter(torch.randn(1, 2, num_register_tokens, c))
        self.num_special = 1 + int(num_register_tokens)
        self.gem_active = int(gem_active)

        def gem_block() -> Block:
            return Block(c, gem_heads, qk_norm=True, rope_freq=rope_freq, layer_scale=0.01)

        self.frame_blocks = nn.ModuleList(gem_block() for _ in range(gem_depth))
        self.global_blocks = nn.ModuleList(gem_block() for _ in range(gem_depth))
        self.camera_head = CameraHead(2 * c, camera_trunk_depth, camera_heads, camera_iterations)
        self.cam_rot_encoder = PoseEncoder(4, c, pose_mlp_dims)
        self.cam_trans_encoder = PoseEncoder(3, c, pose_mlp_dims)
        self.cam_trans_scale_encoder = PoseEncoder(1, c, pose_mlp_dims)
        self.dec_norm = nn.LayerNorm(c, eps=1e-6)
        self.register_buffer("image_idx_emb", sincos_1d(c, frame_index_len), persistent=False)
        self.register_buffer("pos_encoder_pe", vda_sinusoid(c, max_frames))  # released, unused (see module doc)
        # ASTT
        self.spatial_blocks = nn.ModuleList(
            Block(c, astt_heads, rope_freq=rope_freq, eps=1e-6) for _ in range(astt_depth)
        )
        self.time_blocks = nn.ModuleList(Block(c, astt_heads * 4, eps=1e-6) for _ in range(astt_depth))
        self.head = TemporalDPTHead(
            [c] * 4,
            features=features,
            out_channels=out_channels,
            head_features=head_features,
            patch_size=patch_size,
            num_frames=max_frames,
            num_heads=motion_heads,
            norm_groups=motion_norm_groups,
        )

    # -- constructors ----------------------------------------------------------------------------
    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """A small config for CPU tests (GEM/ASTT at width 32, 6x6 position table)."""
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
            "num_register_tokens": 2,
            "gem_heads": 2,
            "camera_trunk_depth": 1,
            "camera_heads": 2,
            "camera_iterations": 2,
            "pose_mlp_dims": [8, 16],
            "astt_heads": 2,
            "window": 8,
        }

    @classmethod
    def tiny_input_shape(cls) -> tuple[int, int, int]:
        """(T, H, W) valid for `tiny_config`: non-square and not the table's size."""
        return (4, 70, 98)

    @classmethod
    def from_released(cls, path: str | Path, **overrides: Any) -> GemDepth:
        """Load the released `gemdepth.pth` (ViT-L; read with `weights_only=True`).

        Raises:
            ModelLoadError: unreadable file, or any missing/unexpected key after renaming.
            WrongCheckpointError: a file of another family or ViT size, before the model is built.
        """
        sizes = {**VDA_PRESETS["vitl"], **overrides}
        state = cls.read_released_file(path, sizes["hidden_size"])
        model = cls(**sizes)
        model.load_released_file(path, state)
        return model.eval()

    # -- forward ----------------------------------------------------------------------------------
    @staticmethod
    def _grid_positions(h: int, w: int, device: torch.device) -> torch.Tensor:
        """`(h*w, 2)` (y, x) integer positions, row-major, +1 so special tokens own position 0 (VGGT)."""
        ys = torch.arange(h, device=device).repeat_interleave(w)
        xs = torch.arange(w, device=device).repeat(h)
        return torch.stack((ys, xs), dim=-1) + 1

    def _special_tokens(self, b: int, t: int) -> torch.Tensor:
        """`(B*T, 1 + registers, C)`: slot-0 tokens for frame 0, slot-1 tokens for frames 1..T-1."""
        tok = torch.cat((self.camera_token, self.register_token), dim=2)  # (1, 2, S, C)
        per_frame = torch.cat((tok[:, :1], tok[:, 1:].expand(1, t - 1, -1, -1)), dim=1)
        return per_frame.expand(b, -1, -1, -1).reshape(b * t, *tok.shape[2:])

    def _gem(self, tokens: torch.Tensor, b: int, t: int, pos: torch.Tensor) -> torch.Tensor:
        """Frame/global attention over special + patch tokens -> `(B, T, 9)` pose encoding."""
        x = torch.cat((self._special_tokens(b, t), tokens), dim=1)  # (B*T, P, C)
        p, c = x.shape[1], x.shape[2]
        pos_all = torch.cat((torch.zeros(self.num_special, 2, dtype=pos.dtype, device=pos.device), pos), dim=0)
        for i in range(self.gem_active):
            x = self.frame_blocks[i](x, pos_all)
            frame_out = x.reshape(b, t, p, c)
            x = self.global_blocks[i](x.reshape(b, t * p, c), pos_all.repeat(t, 1))
            global_out = x.reshape(b, t, p, c)
            x = x.reshape(b * t, p, c)
        camera = torch.cat((frame_out[:, :, 0], global_out[:, :, 0]), dim=-1)  # (B, T, 2C)
        return self.camera_head(camera)

    def _pose_embedding(self, enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(B, T, 9)` -> per-frame embedding `(B*T, C)`, relative quats/normalised trans, scale Z."""
        enc = enc.detach()  # the release feeds `.data`: no gradient from depth into the camera head
        quat_rel, trans_rel = relative_to_first(enc[..., 3:7], enc[..., :3])
        trans_n, scale = normalize_translations(trans_rel)
        b, t = enc.shape[:2]
        log_scale = torch.log(scale + 1e-8)[:, None, None].expand(b, t, 1)
        emb = self.cam_rot_encoder(quat_rel) + self.cam_trans_encoder(trans_n) + self.cam_trans_scale_encoder(log_scale)
        return emb.reshape(b * t, -1), quat_rel, torch.cat((trans_n, scale[:, None, None].expand(b, t, 1)), -1)

    def _astt(self, x: torch.Tensor, b: int, t: int, pos: torch.Tensor) -> torch.Tensor:
        """Global spatial (RoPE) then per-location temporal attention: `(B*T, L, C)` -> same."""
        l, c = x.shape[1], x.shape[2]
        x = x.reshape(b, t * l, c)
        pos_all = pos.repeat(t, 1)
        for spatial, temporal in zip(self.spatial_blocks, self.time_blocks, strict=True):
            x = spatial(x, pos_all)
            x = x.reshape(b, t, l, c).transpose(1, 2).reshape(b * l, t, c)
            x = temporal(x)
            x = x.reshape(b, l, t, c).transpose(1, 2).reshape(b, t * l, c)
        return x.reshape(b * t, l, c)

    def forward_geometry(self, frames: torch.Tensor) -> GemDepthOutput:
        """Disparity and per-frame cameras of clips.

        Args:
            frames: `(B, T, 3, H, W)` RGB in [0, 1], H and W multiples of `patch_size`, T <= max_frames.

        Returns:
            `GemDepthOutput` (see its attributes for shapes and conventions).
        """
        b, t, _, h, w = frames.shape
        return self._geometry(self.encode(frames), b, t, h, w)

    def _geometry(self, maps: list[torch.Tensor], b: int, t: int, h: int, w: int) -> GemDepthOutput:
        """Everything after the per-frame DINOv2 maps (4 x `(B*T, C, H/14, W/14)`): GEM, pose
        embedding, ASTT, head. `forward_geometry` = `_geometry(encode(frames))`."""
        gh, gw = h // self.patch_size, w // self.patch_size
        c = maps[3].shape[1]
        pos = self._grid_positions(gh, gw, maps[3].device)
        last = maps[3].flatten(2).transpose(1, 2)  # (B*T, L, C)

        pose_enc = self._gem(last, b, t, pos)  # (B, T, 9)
        emb, quat_rel, trans_scale = self._pose_embedding(pose_enc)
        x = self.dec_norm(last + emb[:, None])
        x = x + self.image_idx_emb[:t].repeat(b, 1)[:, None]
        x = self._astt(x, b, t, pos)
        maps[3] = x.transpose(1, 2).reshape(b * t, c, gh, gw)

        disparity = self.disparity_output(self.head(maps, num_frames=t), b, t, h, w)

        extrinsics = torch.eye(4, dtype=pose_enc.dtype, device=pose_enc.device).repeat(b, t, 1, 1)
        extrinsics[..., :3, :3] = quat_to_matrix(quat_rel)
        extrinsics[..., :3, 3] = trans_scale[..., :3]
        fov = pose_enc[..., 7:9].clamp(MIN_FOV, math.pi - MIN_FOV)  # ReLU'd FoV may be 0 -> infinite focal
        fy = (h / 2.0) / torch.tan(fov[..., 0] / 2.0)
        fx = (w / 2.0) / torch.tan(fov[..., 1] / 2.0)
        intrinsics = torch.zeros(b, t, 3, 3, dtype=pose_enc.dtype, device=pose_enc.device)
        intrinsics[..., 0, 0], intrinsics[..., 1, 1] = fx, fy
        intrinsics[..., 0, 2], intrinsics[..., 1, 2], intrinsics[..., 2, 2] = w / 2.0, h / 2.0, 1.0
        return GemDepthOutput(disparity, pose_enc, extrinsics, intrinsics, trans_scale[:, 0, 3])

    # Exact reuse: only DINOv2 is per frame here (GEM's camera/register tokens, frame-slot 0 vs the
    # others, and the global and ASTT attention all depend on the window), so the split keeps the
    # DINOv2 maps of frames a window shares with the previous one (`models/split.py`).
    def encode_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`(N, 3, H, W)` in [0, 1] -> the 4 DINOv2 maps of N independent frames."""
        return tuple(self.encode(frames[None]))

    def decode_window(
        self, levels: Sequence[torch.Tensor], num_frames: int, height: int, width: int, cache: Any = None
    ) -> torch.Tensor:
        """The maps of `B` clips of `num_frames` frames -> `(B, T, height, width)` disparity."""
        if cache is not None:
            raise ConfigError("GemDepth has no causal (streaming) mode")
        b = levels[0].shape[0] // num_frames
        return self._geometry(list(levels), b, num_frames, height, width).disparity

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """`(B, T, 3, H, W)` in [0, 1] -> `(B, T, H, W)` disparity (the exported graph)."""
        return self.forward_geometry(frames).disparity

    def predict_geometry(self, frames: torch.Tensor) -> GemDepthOutput:
        """`predict` with cameras: frames `(T, 3, H, W)` -> `GemDepthOutput` with the batch dim removed."""
        if frames.dim() != 4:
            raise InputError(f"predict_geometry expects frames (T, 3, H, W), got {tuple(frames.shape)}")
        clip = frames[None].to(self.pixel_mean.device, torch.float32)
        self.check_input(clip)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = self.forward_geometry(clip)
        finally:
            self.train(was_training)
        return GemDepthOutput(*(v[0] for v in vars(out).values()))

    # -- released checkpoint naming -------------------------------------------------------------
    def _extra_released_names(self) -> Callable[[str], list[str]]:
        """Our names -> released names for GEM/ASTT parameters (pose encoders nest as UniCeption's)."""
        n_hidden = len(self.cam_rot_encoder.layers) - 1

        def names(key: str) -> list[str]:
            if key == "pos_encoder_pe":
                return ["pos_encoder.pe"]
            for enc in ("cam_rot_encoder", "cam_trans_encoder", "cam_trans_scale_encoder"):
                if key.startswith(enc + ".layers."):
                    k, rest = key[len(enc) + 8 :].split(".", 1)
                    i = int(k)
                    path = "0." * n_hidden + "0" if i == 0 else ("0." * (n_hidden - i) + "1")
                    return [f"{enc}.encoder.{path}.{rest}"]
                if key.startswith(enc + ".norm."):
                    return [f"{enc}.norm_layer." + key[len(enc) + 6 :]]
            return [key]  # every other name is the release's own

        return names


__all__ = [
    "CameraHead",
    "GemDepth",
    "GemDepthOutput",
    "normalize_translations",
    "quat_to_matrix",
    "relative_to_first",
    "rope_2d",
]
