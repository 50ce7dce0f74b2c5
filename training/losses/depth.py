"""GemDepth / Video Depth Anything losses (GemDepth Eq. 1–3, MiDaS SSI/GM, VDA TGM), as in the
released VDA and GemDepth loss code where that code is exact (see each docstring)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from vdepth_training.losses.common import LossOut, Tensor, masked_mean

#: optional clip-level loss weights of ours (`gemdepth_loss`); absent = the paper's loss
CLIP_LOSS_KEYS = ("w_ssi", "w_ssi_sequence", "w_frame_level")


def _median_mad(d: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row masked median t and mean absolute deviation s of (N, P) `d` (MiDaS t(d), s(d))."""
    big = torch.finfo(d.dtype).max
    filled = torch.where(mask, d, torch.full_like(d, big))
    n = mask.sum(1)
    sorted_vals, _ = filled.sort(dim=1)
    k = ((n - 1).clamp_min(0) // 2).unsqueeze(1)  # lower median, like torch.median
    t = sorted_vals.gather(1, k).squeeze(1)
    t = torch.where(n > 0, t, torch.zeros_like(t))
    s = ((d - t[:, None]).abs() * mask).sum(1) / n.clamp_min(1)
    return t, s


def ssi_normalize(d: Tensor, mask: Tensor, eps: float = 1e-6, *, per: str = "frame") -> Tensor:
    """MiDaS scale-and-shift normalisation: (d − median) / mean|d − median|.

    Deliberate difference from the released VDA/GemDepth `normalize_prediction_robust`: the median
    is taken over the valid pixels only; the release takes it over all pixels with the invalid ones
    set to 0, which pulls it towards 0 on clips with invalid pixels (sky, holes). Same result when
    every pixel is valid; with 10 % invalid pixels the SSI + GM term stays within 5 % of the
    release's (`test_training_losses.py::test_vda_loss_matches_the_release`).

    Args:
        d: (B, T, H, W) disparity; mask: (B, T, H, W) bool.
        per: "frame" (MiDaS, VDA: one median/deviation per frame) or "sequence" (one per clip, over
            all T frames, so the normalised clip keeps how the frames' disparities relate).

    Returns:
        (B, T, H, W); invalid pixels are 0.
    """
    if per not in ("frame", "sequence"):
        raise ValueError(f"per must be 'frame' or 'sequence', got {per!r}")
    shape = d.shape
    row = shape[1] * shape[2] * shape[3] if per == "sequence" else shape[2] * shape[3]
    flat, m = d.reshape(-1, row), mask.reshape(-1, row)
    t, s = _median_mad(flat, m)
    out = (flat - t[:, None]) / (s[:, None] + eps)
    return torch.where(m, out, torch.zeros_like(out)).reshape(shape)


def ssi_loss(pred: Tensor, target: Tensor, mask: Tensor, *, per: str = "frame") -> Tensor:
    """GemDepth Eq. 3 L_ssi (MiDaS scale-and-shift-invariant MAE).

    Both maps are normalised by `ssi_normalize` (per frame in the paper); the loss is
    Σ|d̂ − d̂*| / ΣM over the whole batch (released VDA/GemDepth code: no ½ factor, trim 0).
    `per="sequence"` is our addition (see `gemdepth_loss`).
    """
    r = (ssi_normalize(pred, mask, per=per) - ssi_normalize(target, mask, per=per)).abs()
    return masked_mean(r, mask)


def multiscale_gradient_loss(pred: Tensor, target: Tensor, mask: Tensor, scales: int = 4) -> Tensor:
    """GemDepth Eq. 3 L_gm (MiDaS multi-scale gradient matching on SSI-normalised maps).

    R = d̂ − d̂*; at scale k ∈ {0..scales−1} R and M are subsampled with stride 2^k, and
    Σ(|∇x R|·Mx + |∇y R|·My) / ΣM is summed over the scales (batch-based reduction).

    Args:
        pred, target: (B, T, H, W); mask: bool (B, T, H, W).
    """
    r = ssi_normalize(pred, mask) - ssi_normalize(target, mask)
    total = r.new_zeros(())
    for k in range(scales):
        step = 2**k
        rk, mk = r[..., ::step, ::step], mask[..., ::step, ::step]
        if rk.shape[-1] < 2 and rk.shape[-2] < 2:
            break
        mkf = mk.to(rk.dtype)
        gx = (rk[..., :, 1:] - rk[..., :, :-1]).abs() * (mkf[..., :, 1:] * mkf[..., :, :-1])
        gy = (rk[..., 1:, :] - rk[..., :-1, :]).abs() * (mkf[..., 1:, :] * mkf[..., :-1, :])
        total = total + (gx.sum() + gy.sum()) / mkf.sum().clamp_min(1)
    return total


def align_scale_shift(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Least-squares (s, t) per sequence: argmin Σ_M (s·pred + t − target)²; returns s·pred + t.

    Args:
        pred, target: (B, T, H, W); mask: bool (B, T, H, W). s and t are shared by all T frames.
    """
    m = mask.flatten(1).to(pred.dtype)
    p, g = pred.flatten(1), target.flatten(1)
    a00, a01, a11 = (m * p * p).sum(1), (m * p).sum(1), m.sum(1)
    b0, b1 = (m * p * g).sum(1), (m * g).sum(1)
    det = a00 * a11 - a01 * a01
    ok = det.abs() > 1e-12
    safe = torch.where(ok, det, torch.ones_like(det))
    s = torch.where(ok, (a11 * b0 - a01 * b1) / safe, torch.ones_like(det))
    t = torch.where(ok, (a00 * b1 - a01 * b0) / safe, torch.zeros_like(det))
    return pred * s.view(-1, *([1] * (pred.dim() - 1))) + t.view(-1, *([1] * (pred.dim() - 1)))


def temporal_gradient_matching_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    threshold: float = 0.05,
    absolute: bool = False,
) -> Tensor:
    """GemDepth Eq. 3 L_tgm, from Video Depth Anything (VDA Eq. for TGM).

    The prediction is first aligned to the target by one least-squares scale/shift per sequence
    (`align_scale_shift`). With Δd_i = d_{i+1} − d_i and Δg_i likewise, the loss is the mean of
    |Δd − Δg| over pixels valid in both frames whose target change is small,
    |Δg_i| < threshold·(max g_{i+1} − min g_{i+1}) (range of frame i+1's valid target, as in the
    released VDA and GemDepth losses), i.e. static regions.
    `absolute=True` uses VDA's paper form ||Δd| − |Δg|| instead of the released signed form.

    Args:
        pred, target: (B, T, H, W), T ≥ 2 (returns 0 for T = 1); mask: bool (B, T, H, W).
    """
    if pred.shape[1] < 2:
        return pred.new_zeros(())
    aligned = align_scale_shift(pred, target, mask)
    dd = aligned[:, 1:] - aligned[:, :-1]
    dg = target[:, 1:] - target[:, :-1]
    big = torch.finfo(target.dtype).max
    gmax = torch.where(mask, target, torch.full_like(target, -big)).amax(dim=(-2, -1))[:, 1:]
    gmin = torch.where(mask, target, torch.full_like(target, big)).amin(dim=(-2, -1))[:, 1:]
    rng = (gmax - gmin).clamp_min(0)[..., None, None]
    m = mask[:, 1:] & mask[:, :-1] & (dg.abs() < threshold * rng)
    diff = (dd.abs() - dg.abs()).abs() if absolute else (dd - dg).abs()
    return masked_mean(diff, m)


def frame_level_loss(pred: Tensor, target: Tensor, mask: Tensor, eps: float = 1e-6) -> Tensor:
    """Our addition (not in the papers): does each frame's mean disparity follow the target's?

    The prediction is aligned to the target by one least-squares scale/shift per clip
    (`align_scale_shift`, as in L_tgm); then, per frame f, the masked means μ̂_f and μ_f of the
    aligned prediction and of the target are compared: Σ_f |μ̂_f − μ_f| / (T·s), with s the
    clip's mean absolute deviation of the target from its median (so the loss has SSI units).
    Per-pixel SSI terms carry this signal too, but weakly (see `gemdepth_loss`).

    Args:
        pred, target: (B, T, H, W); mask: bool (B, T, H, W). Frames without valid pixels are skipped.
    """
    aligned = align_scale_shift(pred, target, mask)
    m = mask.to(pred.dtype)
    count = m.sum(dim=(-2, -1))
    mu_p = (aligned * m).sum(dim=(-2, -1)) / count.clamp_min(1)
    mu_g = (target * m).sum(dim=(-2, -1)) / count.clamp_min(1)
    _, s = _median_mad(target.flatten(1), mask.flatten(1))
    err = (mu_p - mu_g).abs() / (s[:, None] + eps)
    has = count > 0
    return (err * has).sum() / has.sum().clamp_min(1)


def camera_loss(
    pred_quat: Tensor,
    gt_quat: Tensor,
    pred_trans: Tensor,
    gt_trans: Tensor,
    *,
    lam_trans: float = 1.0,
    kind: str = "l1",
    huber_delta: float = 1.0,
) -> Tensor:
    """GemDepth Eq. 1–2 as released (`compute_camera_loss.camera_loss_single`):
    L_cam = mean|Q̂ − Q| + λ·mean min(|T̂ − T|, 100), each mean over frames and components.

    `kind="l1"` is the released form (its comment: L1 was more stable than the paper's smooth L1);
    `kind="huber"` uses the paper's Huber ‖·‖_ε (VGGT) with the same reduction. λ = 1 (code).

    Args:
        pred_quat, gt_quat: (B, N, 4); pred_trans, gt_trans: (B, N, 3) scale-normalised.
    """
    if kind == "l1":
        rot = (pred_quat - gt_quat).abs()
        trans = (pred_trans - gt_trans).abs()
    elif kind == "huber":
        rot = F.huber_loss(pred_quat, gt_quat, reduction="none", delta=huber_delta)
        trans = F.huber_loss(pred_trans, gt_trans, reduction="none", delta=huber_delta)
    else:
        raise ValueError(f"camera loss kind must be 'l1' or 'huber', got {kind!r}")
    return rot.mean() + lam_trans * trans.clamp(max=100.0).mean()


def camera_loss_iterations(
    preds: list[tuple[Tensor, Tensor]], gt_quat: Tensor, gt_trans: Tensor, *, gamma: float = 0.6, **kwargs: Any
) -> Tensor:
    """The camera loss over the camera head's refinement iterations, as released:
    (1/n) Σ_i γ^(n−1−i) L_cam(pred_i) with γ = 0.6, so the last iteration weighs 1.

    Args:
        preds: per iteration (pred_quat (B, N, 4), pred_trans (B, N, 3)), first to last.
        gt_quat, gt_trans: the targets; kwargs: `camera_loss` options.
    """
    n = len(preds)
    total = sum(gamma ** (n - 1 - i) * camera_loss(q, gt_quat, t, gt_trans, **kwargs) for i, (q, t) in enumerate(preds))
    return total / n  # type: ignore[return-value]


def gemdepth_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    camera: Tensor | None = None,
    w_gm: float = 0.5,
    w_tgm: float = 10.0,
    w_cam: float = 0.2,
    w_ssi: float = 1.0,
    w_ssi_sequence: float = 0.0,
    w_frame_level: float = 0.0,
) -> LossOut:
    """GemDepth Eq. 3: L = L_ssi + 0.5·L_gm + 10·L_tgm + 0.2·L_cam (VDA: the same without L_cam).

    `w_ssi_sequence` > 0 adds our own term (not in VDA/GemDepth): L_ssi with one median/deviation
    per clip instead of per frame (`ssi_loss(per="sequence")`). The per-frame L_ssi forgives any
    change of scale from frame to frame, and L_tgm only sees near-static pixels, so a model
    trained without it need not follow how near the scene gets as the camera moves; the papers'
    evaluation (one affine per sequence) scores exactly that.

    Args:
        pred, target: (B, T, H, W) disparity; mask: bool (B, T, H, W).
        camera: L_cam (`camera_loss_iterations`), or None (VDA, pose-free data) without the term.
        w_ssi, w_ssi_sequence: weights of the per-frame (paper: 1) and per-clip (ours: 0) L_ssi.
        w_frame_level: weight of `frame_level_loss` (ours: 0), the same signal made explicit.
    """
    l_ssi = ssi_loss(pred, target, mask)
    l_gm = multiscale_gradient_loss(pred, target, mask)
    l_tgm = temporal_gradient_matching_loss(pred, target, mask)
    total = w_ssi * l_ssi + w_gm * l_gm + w_tgm * l_tgm
    terms = {"ssi": l_ssi.detach(), "gm": l_gm.detach(), "tgm": l_tgm.detach()}
    if w_ssi_sequence > 0:
        l_seq = ssi_loss(pred, target, mask, per="sequence")
        total = total + w_ssi_sequence * l_seq
        terms["ssi_sequence"] = l_seq.detach()
    if w_frame_level > 0:
        l_level = frame_level_loss(pred, target, mask)
        total = total + w_frame_level * l_level
        terms["frame_level"] = l_level.detach()
    if camera is not None:
        total = total + w_cam * camera
        terms["camera"] = camera.detach()
    return total, terms
