"""Training losses of the five papers, one function per term, with the paper's equation numbers.

Shapes: disparity maps are (B, T, H, W) (a single image is T = 1); latents are (B, T, C, h, w)
(frame-major like the models' `(B, T, ...)` inputs); masks are bool of the disparity shape.
Every composite returns `(total, {term: value})` so trainers can log each term.

Reductions (where the papers leave them open, documented per function):
- "mean" over the finite-difference tensor of each axis, i.e. `mean|R[...,1:]-R[...,:-1]|` per axis
  (`gradient_l1`), shared by the one-step latent-gradient and decoder gradient losses, DVD's LMR and
  FiffDepth's GM, so the four recipes use one implementation.
- GemDepth's SSI/GM/TGM follow the released VDA/GemDepth loss code (batch-based Σ/ΣM reduction,
  no ½ on SSI; signed temporal differences in TGM), see each docstring.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
LossOut = tuple[Tensor, dict[str, Tensor]]


# -- shared pieces ----------------------------------------------------------------------------


def gradient_l1(residual: Tensor, mask: Tensor | None = None) -> Tensor:
    """`mean|∇x R| + mean|∇y R|` over the last two axes (forward differences).

    Args:
        residual: (..., H, W) residual R = prediction - target.
        mask: optional bool (..., H, W); a difference counts only when both its pixels are valid.

    Returns:
        Scalar. Each axis is averaged over its own (valid) differences.
    """
    dx = (residual[..., :, 1:] - residual[..., :, :-1]).abs()
    dy = (residual[..., 1:, :] - residual[..., :-1, :]).abs()
    if mask is None:
        # An axis of length 1 has no differences and contributes 0 (not NaN).
        return sum((d.mean() for d in (dx, dy) if d.numel()), residual.new_zeros(()))
    mx = (mask[..., :, 1:] & mask[..., :, :-1]).to(dx.dtype)
    my = (mask[..., 1:, :] & mask[..., :-1, :]).to(dy.dtype)
    return (dx * mx).sum() / mx.sum().clamp_min(1) + (dy * my).sum() / my.sum().clamp_min(1)


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1)


# -- DepthCrafter (EDM) ---------------------------------------------------------------------------


def edm_loss_weight(sigma: Tensor) -> Tensor:
    """DepthCrafter Eq. 6: λ_σ = 1 / c_out(σ)² = (1 + σ²) / σ²."""
    return (1.0 + sigma**2) / sigma**2


def sample_edm_sigma(
    n: int,
    *,
    p_mean: float = 0.7,
    p_std: float = 1.6,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """DepthCrafter Eq. 7: ln σ ~ N(0.7, 1.6²) (SVD fine-tuning values). Returns (n,) float32."""
    z = torch.randn(n, generator=generator, device="cpu").to(device)
    return torch.exp(p_mean + p_std * z)


def edm_denoising_loss(denoised: Tensor, clean: Tensor, sigma: Tensor) -> Tensor:
    """DepthCrafter Eq. 2 with Eq. 6 weights: E[λ_σ · ||D_θ(x_σ; σ) − x_0||²].

    Args:
        denoised: (B, ...) preconditioned denoiser output D_θ (DepthCrafter Eq. 3/5).
        clean: (B, ...) clean depth latents x_0.
        sigma: (B,) noise level of each sample.

    Returns:
        Scalar: per-sample mean squared error, weighted by λ_σ, averaged over the batch.
    """
    per_sample = (denoised - clean).pow(2).flatten(1).mean(1)
    return (edm_loss_weight(sigma.to(per_sample.dtype)) * per_sample).mean()


# -- One-step self-distillation (003) ---------------------------------------------------------------


def latent_distillation_loss(student: Tensor, teacher: Tensor, lam: float = 0.5) -> LossOut:
    """003 §3.2.1: L_latent = (1 − λ)·L_sm + λ·L_g, λ = 0.5.

    L_sm = mean ||F(x_t; σ_max) − x̂_{0;5}||² (score-matching distillation to the 5-step teacher);
    L_g = (1/M) Σ (|∇x D| + |∇y D|), D = student − teacher (latent-gradient distillation), over the
    latent's spatial axes, every channel and frame (`gradient_l1`).

    Args:
        student: (..., h, w) one-step student latent.
        teacher: (..., h, w) cached teacher latent.
        lam: λ.
    """
    residual = student - teacher
    l_sm = residual.pow(2).mean()
    l_g = gradient_l1(residual)
    return (1.0 - lam) * l_sm + lam * l_g, {"score_matching": l_sm.detach(), "latent_gradient": l_g.detach()}


def silog_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    *,
    alpha: float = 10.0,
    lam: float = 0.85,
    eps: float = 1e-6,
) -> Tensor:
    """003 §3.3 (AdaBins SILog): α·sqrt( mean(g²) − λ·mean(g)² ), g = log d_s − log d_t.

    Computed per batch element over its valid pixels (both maps are clamped to ≥ eps before the
    log; non-positive target pixels are masked out), then averaged over the batch.

    Args:
        pred: (B, ...) student disparity d_s.
        target: (B, ...) teacher disparity d_t.
        mask: optional bool (B, ...).
    """
    valid = target > eps
    if mask is not None:
        valid = valid & mask
    g = torch.log(pred.clamp_min(eps)) - torch.log(target.clamp_min(eps))
    m = valid.flatten(1).to(g.dtype)
    g = g.flatten(1) * m
    n = m.sum(1).clamp_min(1)
    mean_g2 = g.pow(2).sum(1) / n
    mean_g = g.sum(1) / n
    return (alpha * torch.sqrt((mean_g2 - lam * mean_g**2).clamp_min(1e-12))).mean()


def affinity_feature_loss(student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
    """003 §3.3 feature distillation: (1/hw) Σ_ij (a_s^ij − a_t^ij)², a^ij = cos(m(i), m(j)).

    Channel counts may differ (the affinity is hw × hw); spatial sizes must match.

    Args:
        student_feat: (N, C_s, h, w) student decoder features (N = batch·frames).
        teacher_feat: (N, C_t, h, w) teacher VAE-decoder features.

    Returns:
        Scalar averaged over N.
    """
    if student_feat.shape[-2:] != teacher_feat.shape[-2:]:
        raise ValueError(f"affinity maps need equal h×w, got {tuple(student_feat.shape)} / {tuple(teacher_feat.shape)}")
    hw = student_feat.shape[-1] * student_feat.shape[-2]

    def affinity(x: Tensor) -> Tensor:
        v = F.normalize(x.flatten(2), dim=1, eps=1e-8)  # (N, C, hw)
        return v.transpose(1, 2) @ v  # (N, hw, hw)

    diff = affinity(student_feat) - affinity(teacher_feat)
    return (diff.pow(2).flatten(1).sum(1) / hw).mean()


def onestep_decoder_loss(
    pred: Tensor,
    target: Tensor,
    student_feat: Tensor | None,
    teacher_feat: Tensor | None,
    mask: Tensor | None = None,
    *,
    w_feature: float = 0.1,
    w_grad: float = 2.0,
) -> LossOut:
    """003 §3.3: L_final = L_silog(α=10, λ=0.85) + 0.1·L_feature + 2·L_grad, L_grad on K = d_s − d_t.

    Args:
        pred, target: (B, T, H, W) DPT-head and VAE-decoded disparities.
        student_feat, teacher_feat: (N, C, h, w) features for the affinity loss (None skips it).
        mask: optional bool (B, T, H, W).
    """
    l_silog = silog_loss(pred, target, mask)
    l_grad = gradient_l1(pred - target, mask)
    terms = {"silog": l_silog.detach(), "grad": l_grad.detach()}
    total = l_silog + w_grad * l_grad
    if student_feat is not None and teacher_feat is not None:
        l_feat = affinity_feature_loss(student_feat, teacher_feat)
        total = total + w_feature * l_feat
        terms["feature"] = l_feat.detach()
    return total, terms


# -- DVD --------------------------------------------------------------------------------------------


def lmr_loss(pred: Tensor, target: Tensor, *, w_spatial: float = 0.5, w_temporal: float = 0.5) -> LossOut:
    """DVD Eq. 6: latent-manifold rectification, L1 between first differences of latents.

    L_sp = mean|∇h ẑ − ∇h z| + mean|∇w ẑ − ∇w z| over all latent frames; L_temp =
    mean|∇t ẑ − ∇t z| over consecutive latent frames (0 with one frame, i.e. images). The
    difference operator is linear, so both are computed on R = ẑ − z.

    Args:
        pred, target: (B, F, C, h, w) predicted / ground-truth depth latents.
        w_spatial, w_temporal: λ_sp, λ_temp (0.5 each, DVD Tab. 5).

    Returns:
        (λ_sp·L_sp + λ_temp·L_temp, {"lmr_spatial", "lmr_temporal"}).
    """
    r = pred - target
    l_sp = gradient_l1(r)
    l_temp = (r[:, 1:] - r[:, :-1]).abs().mean() if r.shape[1] > 1 else r.new_zeros(())
    return w_spatial * l_sp + w_temporal * l_temp, {"lmr_spatial": l_sp.detach(), "lmr_temporal": l_temp.detach()}


def dvd_loss(pred: Tensor, target: Tensor, *, w_spatial: float = 0.5, w_temporal: float = 0.5) -> LossOut:
    """DVD Eq. 7: L_video = ||ẑ_d − z_d||² + λ_sp·L_sp + λ_temp·L_temp, λ_sp = λ_temp = 0.5.

    The data term is the mean squared error (released code), not Eq. 7's un-squared norm.
    Image samples (F = 1) have no temporal term, so the same function serves Eq. 10's L_image.

    Args:
        pred, target: (B, F, C, h, w) latents.
    """
    mse = (pred - target).pow(2).mean()
    lmr, terms = lmr_loss(pred, target, w_spatial=w_spatial, w_temporal=w_temporal)
    return mse + lmr, {"mse": mse.detach(), **terms}


# -- GemDepth / Video Depth Anything ---------------------------------------------------------------------


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
    return _masked_mean(r, mask)


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
    |Δg_i| < threshold·(max g_i − min g_i) (range of frame i's valid target), i.e. static regions.
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
    gmax = torch.where(mask, target, torch.full_like(target, -big)).amax(dim=(-2, -1))[:, :-1]
    gmin = torch.where(mask, target, torch.full_like(target, big)).amin(dim=(-2, -1))[:, :-1]
    rng = (gmax - gmin).clamp_min(0)[..., None, None]
    m = mask[:, 1:] & mask[:, :-1] & (dg.abs() < threshold * rng)
    diff = (dd.abs() - dg.abs()).abs() if absolute else (dd - dg).abs()
    return _masked_mean(diff, m)


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
    """GemDepth Eq. 1–2: L_cam = (1/N) Σ_i (‖Q̂_i − Q_i‖ + λ‖T̂_i − T_i‖).

    `kind="l1"` (released code, "more stable") sums absolute component errors per frame;
    `kind="huber"` uses the paper's Huber ‖·‖_ε (VGGT). λ = 1 (code).

    Args:
        pred_quat, gt_quat: (B, N, 4); pred_trans, gt_trans: (B, N, 3) scale-normalised.
    """
    if kind == "l1":
        rot = (pred_quat - gt_quat).abs().sum(-1)
        trans = (pred_trans - gt_trans).abs().sum(-1)
    elif kind == "huber":
        rot = F.huber_loss(pred_quat, gt_quat, reduction="none", delta=huber_delta).sum(-1)
        trans = F.huber_loss(pred_trans, gt_trans, reduction="none", delta=huber_delta).sum(-1)
    else:
        raise ValueError(f"camera loss kind must be 'l1' or 'huber', got {kind!r}")
    return (rot + lam_trans * trans).mean()


def gemdepth_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    camera: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
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
        camera: optional (pred_quat, gt_quat, pred_trans, gt_trans) for `camera_loss`; None (VDA,
            stage-2 pose-free data) drops the term.
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
        l_cam = camera_loss(*camera)
        total = total + w_cam * l_cam
        terms["camera"] = l_cam.detach()
    return total, terms


# -- FiffDepth ----------------------------------------------------------------------------------------


def mae_gm_loss(pred: Tensor, target: Tensor, *, w_mae: float = 1.0, w_gm: float = 0.5) -> LossOut:
    """FiffDepth Eq. 5–6 on latents: λ_MAE·(1/M)Σ|d − d*| + λ_GM·(1/M)Σ(|∇x R| + |∇y R|), R = d − d*.

    Single-scale, no scale/shift normalisation (latent space). Shapes: (..., h, w).
    """
    r = pred - target
    mae = r.abs().mean()
    gm = gradient_l1(r)
    return w_mae * mae + w_gm * gm, {"mae": mae.detach(), "gm": gm.detach()}


def trajectory_target(
    x0: Tensor, d0: Tensor, noise: Tensor, alpha_bar: Tensor, gamma: float = 0.5
) -> tuple[Tensor, Tensor]:
    """FiffDepth Eq. 2–3: b_0 = γx_0 + (1−γ)d_0, b_t = √ᾱ b_0 + √(1−ᾱ) ε, v_t = √ᾱ ε − √(1−ᾱ) b_0.

    Args:
        x0: (B, ...) RGB latent; d0: (B, ...) GT depth latent; noise: ε like x0.
        alpha_bar: (B,) ᾱ_t of each sample's timestep.

    Returns:
        (b_t, v_t), both like x0.
    """
    a = alpha_bar.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    b0 = gamma * x0 + (1.0 - gamma) * d0
    return a.sqrt() * b0 + (1 - a).sqrt() * noise, a.sqrt() * noise - (1 - a).sqrt() * b0


def fiffdepth_loss(
    d0_pred: Tensor,
    d0_target: Tensor,
    dm1_pred: Tensor | None,
    dm1_target: Tensor | None,
    v_pred: Tensor | None,
    v_target: Tensor | None,
    *,
    w_mae: float = 1.0,
    w_gm: float = 0.5,
    w_k: float = 0.2,
) -> LossOut:
    """FiffDepth Eq. 7: Σ_{t∈{0,−1}} (λ_MAE·L_MAE + λ_GM·L_GM)(d_t, d*_t) + λ_k·L_k, L_k = ||v_t − v̂||².

    λ_MAE = 1, λ_GM = 0.5, λ_k = 0.2. The t = −1 term (DAv2 pseudo-labels) and the trajectory term
    are optional (None) so batches without real images or trajectory samples still train.
    """
    total, t0 = mae_gm_loss(d0_pred, d0_target, w_mae=w_mae, w_gm=w_gm)
    terms = {"t0_mae": t0["mae"], "t0_gm": t0["gm"]}
    if dm1_pred is not None and dm1_target is not None:
        l1, t1 = mae_gm_loss(dm1_pred, dm1_target, w_mae=w_mae, w_gm=w_gm)
        total = total + l1
        terms.update({"tm1_mae": t1["mae"], "tm1_gm": t1["gm"]})
    if v_pred is not None and v_target is not None:
        l_k = (v_pred - v_target).pow(2).mean()
        total = total + w_k * l_k
        terms["trajectory"] = l_k.detach()
    return total, terms


def ddpm_alpha_bar(num_steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> Tensor:
    """ᾱ_t table of the SD "scaled_linear" DDPM schedule (FiffDepth keeps SD's 1000-step scheduler)."""
    betas = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), num_steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


__all__ = [
    "affinity_feature_loss",
    "align_scale_shift",
    "camera_loss",
    "ddpm_alpha_bar",
    "dvd_loss",
    "edm_denoising_loss",
    "edm_loss_weight",
    "fiffdepth_loss",
    "frame_level_loss",
    "gemdepth_loss",
    "gradient_l1",
    "latent_distillation_loss",
    "lmr_loss",
    "mae_gm_loss",
    "multiscale_gradient_loss",
    "onestep_decoder_loss",
    "sample_edm_sigma",
    "silog_loss",
    "ssi_loss",
    "ssi_normalize",
    "temporal_gradient_matching_loss",
    "trajectory_target",
]
