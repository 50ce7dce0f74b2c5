"""Reductions shared by the losses (see the package docstring)."""

from __future__ import annotations

import torch

Tensor = torch.Tensor
LossOut = tuple[Tensor, dict[str, Tensor]]


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


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1)
