"""Scale/shift fits: exact on clean data, tolerant to noise and outliers, degenerate cases reported."""

from __future__ import annotations

import numpy as np
import pytest

from vdepth_ros.errors import ConfigError
from vdepth_ros.stream.align import INVERTED, FitOptions, align_scale_shift, sample_valid


def _scene(rng, shape=(6, 40, 50)):
    """Smooth, varied disparity in [0.2, 1.2] (like a real depth map, not white noise)."""
    t, h, w = shape
    v, u = np.mgrid[0:h, 0:w] / max(h, w)
    frames = [0.7 + 0.4 * np.sin(3 * u + k * 0.3) * np.cos(2 * v - k * 0.2) + 0.1 * u for k in range(t)]
    return np.stack(frames) + 0.0 * rng.random(shape)


@pytest.mark.parametrize("method", ["symmetric", "ols"])
@pytest.mark.parametrize("robust", ["tukey", "huber", "none"])
def test_recovers_known_affine_exactly_on_clean_data(method, robust):
    rng = np.random.default_rng(1)
    ref = _scene(rng)
    s, t = 1.7, -0.15
    cur = (ref - t) / s
    fit = align_scale_shift(cur, ref, options=FitOptions(method=method, robust=robust))
    assert not fit.degenerate
    assert fit.scale == pytest.approx(s, rel=1e-9)
    assert fit.shift == pytest.approx(t, abs=1e-9)
    assert fit.inlier_fraction == pytest.approx(1.0)


def test_noise_both_sides_symmetric_is_unbiased_ols_shrinks():
    """Errors-in-variables: OLS attenuates the slope, the geometric-mean fit does not."""
    rng = np.random.default_rng(2)
    truth = rng.uniform(0.4, 0.6, (8, 64, 64))  # low spread: noise matters, as on flat overlaps
    s, t = 0.8, 0.1
    ref = truth * (1 + 0.05 * rng.standard_normal(truth.shape))
    cur = ((truth - t / s * 0) * (1 + 0.05 * rng.standard_normal(truth.shape)) - t) / s
    opts = {"max_points": 0, "robust": "none"}
    sym = align_scale_shift(cur, ref, options=FitOptions(method="symmetric", **opts))
    ols = align_scale_shift(cur, ref, options=FitOptions(method="ols", min_correlation=0.0, **opts))
    assert sym.scale == pytest.approx(s, rel=0.01)
    assert ols.scale < 0.9 * s  # attenuation: var(noise) comparable to var(signal)


@pytest.mark.parametrize("method", ["symmetric", "ols"])
def test_thirty_percent_outliers_on_both_sides(method):
    rng = np.random.default_rng(3)
    truth = _scene(rng, (6, 60, 80))
    s, t = 0.6, 0.2
    ref = truth * (1 + 0.02 * rng.standard_normal(truth.shape))
    cur = ((truth * (1 + 0.02 * rng.standard_normal(truth.shape))) - t) / s
    bad_ref = rng.random(truth.shape) < 0.15
    bad_cur = rng.random(truth.shape) < 0.15
    ref[bad_ref] = rng.uniform(0, 3, bad_ref.sum())
    cur[bad_cur] = rng.uniform(-1, 4, bad_cur.sum())
    fit = align_scale_shift(cur, ref, options=FitOptions(method=method))
    plain = align_scale_shift(cur, ref, options=FitOptions(method=method, robust="none", min_correlation=0))
    # OLS keeps its small errors-in-variables attenuation (2 % noise on both sides).
    assert fit.scale == pytest.approx(s, rel=0.005 if method == "symmetric" else 0.02)
    assert fit.shift == pytest.approx(t, abs=0.01)
    assert 0.6 < fit.inlier_fraction < 0.8
    assert abs(plain.scale - s) > 0.05  # without robust weights the outliers win


def test_invalid_pixels_and_mask_are_excluded():
    rng = np.random.default_rng(4)
    ref = _scene(rng)
    cur = (ref - 0.1) / 2.0
    ref_bad, cur_bad = ref.copy(), cur.copy()
    ref_bad[:, :5] = np.nan
    cur_bad[:, -5:] = np.inf
    ref_bad[:, 10:12] = -1.0  # clamped / invalid reference
    mask = np.ones(ref.shape, bool)
    mask[:, 20:25] = False
    cur_bad[:, 20:25] = 100.0  # hidden by the mask (e.g. sky)
    fit = align_scale_shift(cur_bad, ref_bad, mask, FitOptions(robust="none"))
    assert fit.scale == pytest.approx(2.0, rel=1e-9) and fit.shift == pytest.approx(0.1, abs=1e-9)
    c, r = sample_valid(cur_bad, ref_bad, mask)
    assert np.isfinite(c).all() and np.isfinite(r).all() and (r > 0).all()


def test_subsampling_bounds_points_and_is_deterministic():
    rng = np.random.default_rng(5)
    ref = _scene(rng, (10, 100, 100))
    cur = ref * 1.3 + 0.05 * rng.standard_normal(ref.shape)
    a = align_scale_shift(cur, ref, options=FitOptions(max_points=5000))
    b = align_scale_shift(cur, ref, options=FitOptions(max_points=5000))
    assert a.n_points <= 5000
    assert a == b


@pytest.mark.parametrize(
    ("cur", "ref", "reason"),
    [
        (np.full((2, 10, 10), 0.5), np.random.default_rng(0).random((2, 10, 10)), "variance"),
        (np.ones((1, 2, 2)), np.ones((1, 2, 2)), "min_points"),
        (np.full((2, 10, 10), np.nan), np.ones((2, 10, 10)), "min_points"),
        (np.random.default_rng(1).random((2, 30, 30)), np.random.default_rng(2).random((2, 30, 30)), "correlation"),
    ],
)
def test_degenerate_fits_fall_back_to_identity_and_say_why(cur, ref, reason):
    fit = align_scale_shift(cur, ref)
    assert fit.degenerate
    assert (fit.scale, fit.shift) == (1.0, 0.0)
    assert reason in fit.reason


def test_scale_clip_like_dvd_demo():
    rng = np.random.default_rng(6)
    ref = _scene(rng)
    cur = ref / 3.0
    fit = align_scale_shift(cur, ref, options=FitOptions(scale_clip=(0.7, 1.5), robust="none"))
    assert fit.clipped and fit.scale == 1.5
    # the shift is refitted for the clipped scale: mean residual zero
    assert np.mean(ref - (fit.scale * cur + fit.shift)) == pytest.approx(0.0, abs=1e-9)


def test_bad_options_raise():
    with pytest.raises(ConfigError, match="method"):
        FitOptions(method="tls")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="scale_clip"):
        FitOptions(scale_clip=(1.5, 0.7))


def _vda_compute_scale_and_shift():
    """The authors' VDA fit (`utils/util.py`), imported from the reference code (never copied)."""
    import importlib.util

    from vdepth_ros.paths import reference_code_dir

    root = reference_code_dir()
    path = None if root is None else root / "video-depth-anything" / "utils" / "util.py"
    if path is None or not path.is_file():
        pytest.skip("reference code (../shared/reference-code/video-depth-anything) not present")
    spec = importlib.util.spec_from_file_location("vda_reference_util", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_scale_and_shift


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vda_fit_option_reproduces_the_authors_compute_scale_and_shift(seed):
    """`VDA_FIT` (all pixels, plain least squares) gives VDA's (scale, shift), zeros included."""
    from vdepth_ros.stream.align import VDA_FIT

    vda_fit = _vda_compute_scale_and_shift()
    rng = np.random.default_rng(seed)
    cur = rng.random((2, 48, 64)).astype(np.float32)  # VDA's two context frames
    ref = (rng.uniform(0.5, 2.0) * cur + rng.uniform(-0.3, -0.1) + 0.05 * rng.standard_normal(cur.shape)).astype(
        np.float32
    )
    ref[ref < 0] = 0  # VDA clamps aligned references at 0 and still fits those pixels
    assert (ref == 0).mean() > 0.01
    s_ref, t_ref = vda_fit(np.concatenate(cur), np.concatenate(ref), np.concatenate(np.ones_like(ref) == 1))
    fit = align_scale_shift(cur, ref, options=VDA_FIT)
    assert fit.scale == pytest.approx(float(s_ref), rel=1e-6, abs=1e-6)
    assert fit.shift == pytest.approx(float(t_ref), rel=1e-6, abs=1e-6)
    default = align_scale_shift(cur, ref, options=FitOptions(method="ols", robust="none", max_points=0))
    assert abs(default.scale - float(s_ref)) > 1e-3  # the package default drops ref <= 0: a different fit


def test_an_inverted_fit_is_refused_as_degenerate():
    """A window in depth against a reference in disparity: its negative scale, applied, swapped near and far."""
    ref = np.random.default_rng(0).uniform(0.2, 1.0, (2, 16, 16)).astype(np.float32)
    for options in (FitOptions(), FitOptions(method="ols", robust="none")):
        fit = align_scale_shift(1.0 / ref, ref, options=options)
        assert fit.degenerate and (fit.scale, fit.shift) == (1.0, 0.0) and fit.reason.startswith(INVERTED)
