"""EDM (Karras et al. 2022) math shared by the DepthCrafter teacher, the one-step student and training.

Stable Video Diffusion (and therefore DepthCrafter) uses EDM with σ_data = 1 in the
*v-prediction* form. With `x_t = x_0 + σ·ε` the denoiser is

    D(x_t; σ) = c_skip(σ)·x_t + c_out(σ)·F(c_in(σ)·x_t; c_noise(σ))

    c_in(σ)    = 1 / sqrt(1 + σ²)
    c_out(σ)   = −σ / sqrt(1 + σ²)
    c_skip(σ)  = 1 / (1 + σ²)
    c_noise(σ) = ¼ · ln σ           (the UNet's continuous "timestep")

Inference is deterministic Euler over Karras sigmas (σ_min 0.002, σ_max 700, ρ 7) followed by a
final σ = 0 (diffusers `EulerDiscreteScheduler` with the SVD-XT config: `use_karras_sigmas=True`,
`timestep_type="continuous"`, `prediction_type="v_prediction"`, `s_churn=0`). The initial latent is
`ε · sqrt(σ_max² + 1)` (`init_noise_sigma` for "leading" spacing).

Training-only choices (loss weight λ(σ) = (1+σ²)/σ², ln σ ~ N(0.7, 1.6²)) live in the training
package; everything here is shape-agnostic and works on tensors of any shape.

Example (teacher, 5 steps)::

    sigmas = karras_sigmas(5)                     # [700, 134.854, 15.590, 0.6781, 0.002, 0]
    x = init_noise_sigma() * eps
    x = sample_euler(lambda x, s: denoise(x, unet(c_in(s) * x, c_noise(s)), s), x, sigmas)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeAlias

import torch

SIGMA_MIN: float = 0.002
"""Smallest non-zero σ of the SVD-XT sampler."""
SIGMA_MAX: float = 700.0
"""Largest σ of the SVD-XT sampler; the one-step student's fixed noise level."""
RHO: float = 7.0
"""Karras schedule exponent."""
LATENT_SCALE: float = 0.18215
"""SVD VAE `scaling_factor`: denoised depth latents are divided by it before decoding; conditioning
latents are used *unscaled*."""

Sigma: TypeAlias = float | torch.Tensor


def karras_sigmas(
    num_steps: int,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
    append_zero: bool = True,
) -> torch.Tensor:
    """Karras et al. noise levels, high to low, as the SVD-XT Euler scheduler builds them.

    `σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`, computed in float64 and returned as
    float32 like diffusers (`EulerDiscreteScheduler._convert_to_karras`). With `num_steps == 1` the
    schedule is `[σ_max]` (diffusers' `linspace(0, 1, 1) == [0]`).

    Args:
        num_steps: number of sampler steps n ≥ 1.
        sigma_min: last non-zero σ.
        sigma_max: first σ.
        rho: schedule exponent.
        append_zero: append the final σ = 0 (the last Euler step then returns x̂0).

    Returns:
        `(n + 1,)` float32 tensor if `append_zero`, else `(n,)`.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    ramp = torch.linspace(0.0, 1.0, num_steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    if append_zero:
        sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    return sigmas.to(torch.float32)


def init_noise_sigma(sigma_max: float = SIGMA_MAX) -> float:
    """Scale of the initial latent, `sqrt(σ_max² + 1)` (diffusers, "leading" timestep spacing)."""
    return math.sqrt(sigma_max**2 + 1.0)


def c_in(sigma: Sigma) -> Sigma:
    """Input scaling `1/sqrt(1 + σ²)`; float in → float out, tensor in → tensor out."""
    return 1.0 / (1.0 + sigma**2) ** 0.5


def c_out(sigma: Sigma) -> Sigma:
    """Output scaling of the v-prediction `−σ/sqrt(1 + σ²)`."""
    return -sigma / (1.0 + sigma**2) ** 0.5


def c_skip(sigma: Sigma) -> Sigma:
    """Skip scaling `1/(1 + σ²)` (σ_data = 1)."""
    return 1.0 / (1.0 + sigma**2)


def c_noise(sigma: Sigma) -> Sigma:
    """The UNet's continuous timestep `¼ ln σ` (σ > 0)."""
    if isinstance(sigma, torch.Tensor):
        return 0.25 * torch.log(sigma)
    return 0.25 * math.log(sigma)


def denoise(x: torch.Tensor, model_output: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """x̂0 = c_skip(σ)·x + c_out(σ)·F, where F is the UNet output for input `c_in(σ)·x`.

    Args:
        x: noisy latent x_σ, any shape.
        model_output: UNet v-prediction F, same shape as `x`.
        sigma: noise level (float, or a tensor broadcastable to `x`).

    Returns:
        The denoised estimate x̂0, same shape as `x`.
    """
    return c_skip(sigma) * x + c_out(sigma) * model_output


def euler_step(x: torch.Tensor, x0: torch.Tensor, sigma: Sigma, sigma_next: Sigma) -> torch.Tensor:
    """One deterministic Euler step of the probability-flow ODE: `x + (x − x̂0)/σ · (σ' − σ)`.

    When `σ' == 0` (a Python float 0) this returns `x0` itself: mathematically identical, and exact,
    so a one-step sampler and a one-step student agree bitwise. diffusers evaluates the formula
    instead, which differs by float rounding only (≈1e-7 relative).

    Args:
        x: current latent at σ, any shape.
        x0: denoised estimate at σ, same shape.
        sigma: current noise level (> 0).
        sigma_next: next noise level (≥ 0).

    Returns:
        The latent at `sigma_next`.
    """
    if not isinstance(sigma_next, torch.Tensor) and sigma_next == 0.0:
        return x0
    return x + (x - x0) / sigma * (sigma_next - sigma)


DenoiseFn = Callable[[torch.Tensor, float, int], torch.Tensor]
"""`(x, σ, step_index) -> x̂0`: a preconditioned denoiser evaluated at one σ."""


def sample_euler(denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Deterministic Euler sampler (`s_churn = 0`) over `sigmas` (ending in 0).

    Args:
        denoise_fn: returns x̂0 for `(x, σ_i, i)`; σ_i is a Python float.
        x: initial latent at `sigmas[0]` (e.g. `init_noise_sigma() · ε`), any shape.
        sigmas: `(n + 1,)` noise levels, the last one 0 (see `karras_sigmas`).

    Returns:
        The latent at `sigmas[-1]` (x̂0 of the last step when the schedule ends in 0).
    """
    values = [float(s) for s in sigmas]
    for i in range(len(values) - 1):
        x = euler_step(x, denoise_fn(x, values[i], i), values[i], values[i + 1])
    return x


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """EDM forward process `x_σ = x0 + σ·ε` (paper Eq. 1 with the σ² typo fixed)."""
    return x0 + sigma * noise


def noise_augment(frames: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """SVD conditioning noise augmentation: `frames + strength·N(0, I)` on [-1, 1] RGB.

    The noise is drawn with `torch.randn(frames.shape, generator=generator)` on the frames' device
    (the draw order of diffusers' `randn_tensor` on CPU), so a seeded generator reproduces it.

    Args:
        frames: `(T, 3, H, W)` RGB in [-1, 1].
        strength: noise standard deviation (0.02 in SVD/DepthCrafter); 0 returns `frames` unchanged.
        generator: optional seeded generator.

    Returns:
        Augmented frames, same shape and dtype.
    """
    if strength == 0.0:
        return frames
    noise = torch.randn(frames.shape, generator=generator, device=frames.device, dtype=frames.dtype)
    return frames + strength * noise


__all__ = [
    "LATENT_SCALE",
    "RHO",
    "SIGMA_MAX",
    "SIGMA_MIN",
    "DenoiseFn",
    "add_noise",
    "c_in",
    "c_noise",
    "c_out",
    "c_skip",
    "denoise",
    "euler_step",
    "init_noise_sigma",
    "karras_sigmas",
    "noise_augment",
    "sample_euler",
]
