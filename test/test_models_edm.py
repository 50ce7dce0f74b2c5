"""EDM constants and sampler math (models/edm.py), pinned to the paper/diffusers numbers."""

from __future__ import annotations

import math

import pytest
import torch

from vdepth_ros.models import edm


def test_karras_5_step_sigmas_pinned() -> None:
    sigmas = edm.karras_sigmas(5)
    assert sigmas.dtype == torch.float32
    expected = [700.0, 134.854, 15.590, 0.6781, 0.002, 0.0]
    assert sigmas.tolist() == pytest.approx(expected, rel=2e-4, abs=1e-7)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (1, [700.0, 0.0]),
        (2, [700.0, 0.002, 0.0]),
        (3, [700.0, 15.59, 0.002, 0.0]),
        (10, [700, 352.99, 165.26, 70.54, 26.757, 8.682, 2.269, 0.4308, 0.0485, 0.002, 0.0]),
    ],
)
def test_karras_other_step_counts(steps: int, expected: list[float]) -> None:
    # the digest rounds to 3-4 significant digits (0.0485 for 0.048549)
    assert edm.karras_sigmas(steps).tolist() == pytest.approx(expected, rel=1.5e-3, abs=1e-7)


def test_c_noise_values_pinned() -> None:
    sig = edm.karras_sigmas(5, append_zero=False)
    got = edm.c_noise(sig).tolist()
    assert got == pytest.approx([1.6378, 1.2260, 0.6867, -0.0971, -1.5537], abs=1e-4)
    assert edm.c_noise(700.0) == pytest.approx(0.25 * math.log(700.0))


def test_preconditioning_at_sigma_max() -> None:
    s = edm.SIGMA_MAX
    assert edm.c_skip(s) == pytest.approx(2.0408e-6, rel=1e-4)
    assert edm.c_out(s) == pytest.approx(-0.999999, abs=2e-6)
    assert edm.c_in(s) == pytest.approx(1 / math.sqrt(700.0**2 + 1))
    assert edm.init_noise_sigma() == pytest.approx(700.000714, rel=1e-9)
    # c_in · init_noise_sigma == 1: the UNet sees the unit-variance ε at the first step.
    assert edm.c_in(s) * edm.init_noise_sigma() == pytest.approx(1.0, abs=1e-12)
    # x_σ = x0 + σ·ε with F = the v-target: c_skip + c_out·(−σ)·c_in == 1 (x0 is recovered).
    for sig in (0.002, 1.0, 15.59, 700.0):
        assert edm.c_skip(sig) + edm.c_out(sig) * (-sig) * edm.c_in(sig) == pytest.approx(1.0)


def test_tensor_and_float_agree() -> None:
    sig = torch.tensor([0.5, 3.0, 700.0], dtype=torch.float64)
    for fn in (edm.c_in, edm.c_out, edm.c_skip, edm.c_noise):
        got = fn(sig)
        assert isinstance(got, torch.Tensor)
        assert got.tolist() == pytest.approx([fn(float(s)) for s in sig])


def test_matches_diffusers_svd_euler_scheduler() -> None:
    """Our schedule, timesteps and Euler update equal diffusers' with the SVD-XT scheduler config."""
    from diffusers import EulerDiscreteScheduler

    sched = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        use_karras_sigmas=True,
        sigma_min=0.002,
        sigma_max=700.0,
        timestep_spacing="leading",
        steps_offset=1,
        timestep_type="continuous",
    )
    sched.set_timesteps(5)
    ours = edm.karras_sigmas(5)
    torch.testing.assert_close(sched.sigmas, ours, rtol=1e-6, atol=0)
    torch.testing.assert_close(sched.timesteps, edm.c_noise(ours[:-1]), rtol=1e-5, atol=1e-6)
    assert float(sched.init_noise_sigma) == pytest.approx(edm.init_noise_sigma(), rel=1e-7)

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 5, 5, generator=g) * edm.init_noise_sigma()
    x_ref = x.clone()
    for i, t in enumerate(sched.timesteps):
        sig = float(ours[i])
        # a fixed linear "UNet" so both paths see the same model output
        f_ours = 0.3 * edm.c_in(sig) * x + 0.1
        f_ref = 0.3 * sched.scale_model_input(x_ref, t) + 0.1
        x = edm.euler_step(x, edm.denoise(x, f_ours, sig), sig, float(ours[i + 1]))
        x_ref = sched.step(f_ref, t, x_ref).prev_sample
    torch.testing.assert_close(x, x_ref, rtol=1e-4, atol=1e-5)


def test_euler_final_step_returns_x0_exactly() -> None:
    x = torch.randn(3, 4)
    x0 = torch.randn(3, 4)
    assert torch.equal(edm.euler_step(x, x0, 0.002, 0.0), x0)
    # the formula agrees up to rounding
    torch.testing.assert_close(x + (x - x0) / 0.002 * (0.0 - 0.002), x0, rtol=1e-4, atol=1e-4)
    # a non-final step moves towards x0 along the ODE direction
    step = edm.euler_step(x, x0, 2.0, 1.0)
    torch.testing.assert_close(step, (x + x0) / 2)


def test_sample_euler_recovers_clean_signal_with_oracle() -> None:
    """With an oracle denoiser (x̂0 = the clean signal) every schedule lands exactly on it."""
    clean = torch.randn(2, 3)
    eps = torch.randn(2, 3)
    calls: list[tuple[float, int]] = []

    def oracle(x: torch.Tensor, sigma: float, i: int) -> torch.Tensor:
        calls.append((sigma, i))
        return clean

    out = edm.sample_euler(oracle, edm.add_noise(clean, eps, edm.SIGMA_MAX), edm.karras_sigmas(5))
    assert torch.equal(out, clean)
    assert [i for _, i in calls] == [0, 1, 2, 3, 4]
    assert calls[0][0] == pytest.approx(700.0)


def test_noise_augment_seeded_and_switchable() -> None:
    frames = torch.zeros(2, 3, 4, 4)
    a = edm.noise_augment(frames, 0.02, torch.Generator().manual_seed(1))
    b = edm.noise_augment(frames, 0.02, torch.Generator().manual_seed(1))
    c = edm.noise_augment(frames, 0.02, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert 0.01 < float(a.std()) < 0.03
    assert edm.noise_augment(frames, 0.0) is frames


def test_karras_rejects_zero_steps() -> None:
    with pytest.raises(ValueError, match="num_steps"):
        edm.karras_sigmas(0)
