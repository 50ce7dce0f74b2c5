"""Losses of the diffusion-based recipes: DepthCrafter (EDM), one-step self-distillation (003),
DVD and FiffDepth."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from vdepth_training.losses.common import LossOut, Tensor, gradient_l1

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
