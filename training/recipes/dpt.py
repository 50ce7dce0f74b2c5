"""Recipes of the DINOv2 + temporal-DPT families: Video Depth Anything fine-tuning and GemDepth."""

from __future__ import annotations

import re

import torch
from torch import nn
from vdepth_training import losses as L
from vdepth_training.recipes.base import LossOut, Recipe, Tensor, dpt_unused_parameters


class VDARecipe(Recipe):
    """Video Depth Anything fine-tuning with GemDepth's depth losses (SSI + 0.5·GM + 10·TGM).

    The VDA family has no camera head, so L_cam is absent (GemDepth Eq. 3 with γ = 0).
    """

    name = "vda"
    family = "vda"
    normalization = "per_frame"
    loss_keys = frozenset(("w_gm", "w_tgm", *L.CLIP_LOSS_KEYS))

    def unused_parameters(self, model: nn.Module) -> list[str]:
        return dpt_unused_parameters(model)

    def predict_batch(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """(disparity (B, T, H, W), camera loss or None)."""
        return model(batch["frames"]), None

    def loss(self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> LossOut:
        pred, camera = self.predict_batch(model, batch)
        clip_terms = {k: float(self.loss_cfg[k]) for k in L.CLIP_LOSS_KEYS if k in self.loss_cfg}
        return L.gemdepth_loss(
            pred.float(),
            batch["target"],
            batch["valid"],
            camera=camera,
            w_gm=float(self.loss_cfg.get("w_gm", 0.5)),
            w_tgm=float(self.loss_cfg.get("w_tgm", 10.0)),
            w_cam=float(self.loss_cfg.get("w_cam", 0.2)),
            **clip_terms,
        )


class GemDepthRecipe(VDARecipe):
    """GemDepth (Eq. 1–3): SSI + 0.5·GM + 10·TGM + 0.2·L_cam; L_cam only on pose-annotated clips.

    Camera supervision as in the released `compute_camera_loss`: L1 on translation (clamped at
    100) and quaternion, each averaged over frames and components, at every iteration of the
    camera head, weighted γ^(n−1−i) with γ = 0.6 (`loss.camera_gamma`; the last iteration weighs 1)
    and averaged over the n iterations (`losses.camera_loss_iterations`; equal to the release's on
    the same encodings, `test_gemdepth_camera_loss_matches_the_release`). Poses (camera-from-world,
    VGGT encoding) are expressed relative to frame 0 and their translations divided by the clip's
    mean translation norm, with the model's own `relative_to_first` / `normalize_translations`;
    quaternions are sign-canonicalised (w ≥ 0). A known difference, effect not measured: the
    release divides only the GT translations (by their largest norm) and compares the raw
    predicted encoding. On a pose-free clip (or with `w_cam: 0`) the
    camera outputs enter the loss with weight 0, as in the release, so the camera head still takes
    part in every backward pass (DDP needs no unused parameters). Stage 2 freezes the GEM (config
    `exclude`).
    """

    name = "gemdepth"
    family = "gemdepth"
    loss_keys = VDARecipe.loss_keys | {"w_cam", "camera_gamma"}

    def unused_parameters(self, model: nn.Module) -> list[str]:
        """Also the GEM frame/global blocks past `gem_active` (the release runs only block 0)."""
        active = int(getattr(model, "gem_active", 1))
        pattern = re.compile(r"^(frame_blocks|global_blocks)\.(\d+)\.")
        idle = [n for n, _ in model.named_parameters() if (m := pattern.match(n)) and int(m.group(2)) >= active]
        return dpt_unused_parameters(model) + idle

    def predict_batch(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        from vdepth_ros.models.gemdepth_blocks import normalize_translations, relative_to_first

        deltas: list[Tensor] = []  # the camera head's per-iteration updates of the pose encoding
        hook = model.camera_head.pose_branch.register_forward_hook(lambda _m, _i, out: deltas.append(out))
        try:
            out = model.forward_geometry(batch["frames"])
        finally:
            hook.remove()
        iterations = torch.cumsum(torch.stack(deltas[: model.camera_head.iterations]), dim=0)  # (n, B, T, 9)
        if float(self.loss_cfg.get("w_cam", 0.2)) == 0 or not bool(batch["has_camera"].all()):
            return out.disparity, 0.0 * iterations.sum()  # keeps the camera head in the graph

        def relative(quat: Tensor, trans: Tensor) -> tuple[Tensor, Tensor]:
            q, t = relative_to_first(quat, trans)
            q = q * torch.where(q[..., 3:] < 0, -1.0, 1.0)
            return q, normalize_translations(t)[0]

        preds = [relative(enc[..., 3:7], enc[..., :3]) for enc in iterations.float()]
        w2c = torch.linalg.inv(batch["poses"].float())  # dataset poses are camera-to-world
        q_gt, t_gt = relative(matrix_to_quaternion(w2c[..., :3, :3]), w2c[..., :3, 3])
        gamma = float(self.loss_cfg.get("camera_gamma", 0.6))
        return out.disparity, L.camera_loss_iterations(preds, q_gt, t_gt, gamma=gamma)


def matrix_to_quaternion(r: Tensor) -> Tensor:
    """(..., 3, 3) rotations -> (..., 4) unit quaternions (x, y, z, w) with w >= 0."""
    m = r
    w = torch.sqrt((1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]).clamp_min(1e-12)) / 2
    x = torch.sqrt((1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2]).clamp_min(0)) / 2
    y = torch.sqrt((1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2]).clamp_min(0)) / 2
    z = torch.sqrt((1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]).clamp_min(0)) / 2
    x = x * torch.sign(m[..., 2, 1] - m[..., 1, 2])
    y = y * torch.sign(m[..., 0, 2] - m[..., 2, 0])
    z = z * torch.sign(m[..., 1, 0] - m[..., 0, 1])
    q = torch.stack([x, y, z, w], -1)
    return q / q.norm(dim=-1, keepdim=True)


__all__ = ["GemDepthRecipe", "VDARecipe", "matrix_to_quaternion"]
