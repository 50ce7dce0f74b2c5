"""Scale-and-shift fits between two disparity maps: `ref ≈ s * cur + t`.

The papers fit ordinary least squares (DVD Eq. 8-9; VDA `compute_scale_and_shift`: closed-form
2x2 normal equations, fallback s=1, t=0 when det == 0). Chained along a video, OLS is biased
when *both* sides are noisy (errors-in-variables attenuation shrinks s a little at every window,
and the shrinkage compounds; see docs / design note). The default here is therefore

* **symmetric**: the geometric-mean (reduced major axis) slope `s = sign(cov) * sd(ref) / sd(cur)`,
  consistent when both sides carry the same *relative* noise, which is the case for two windows
  of the same model mapped to the same canonical scale;
* **robust**: an LMedS start from deterministic random point pairs, then IRLS with Tukey (or
  Huber) weights on the residual normalised by its MAD, so outliers on *either* side (the
  previous window is the next window's reference) are rejected;
* in float64 on a deterministic subsample of the valid pixels (`max_points`), so the fit cost
  does not grow with the resolution;
* on pixels whose reference is > 0 (`pixels="positive_ref"`): below the stream's canonical zero
  is content farther than anything its first window saw, and a reference the papers' clamp set
  to 0 carries no information. VDA fits *all* pixels (`utils.util.compute_scale_and_shift` with an all-ones mask),
  clamped ones included; `VDA_FIT` (`pixels="all"`, OLS, no robust weights, no subsampling, no
  correlation test) reproduces its (scale, shift).

A fit with too few points, no variance, no correlation or a negative scale (the two sides' depth
ordering inverted: a model that outputs depth where disparity is expected) falls back to (1, 0) and
says so (`AffineFit.degenerate`, `reason`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from vdepth_ros.errors import ConfigError

FitMethod = Literal["symmetric", "ols"]
Robust = Literal["tukey", "huber", "none"]
FitPixels = Literal["positive_ref", "all"]

#: `AffineFit.reason` of a fit whose scale came out negative (module docstring)
INVERTED = "the values increase where the reference's decrease (inverted depth ordering)"

_MAD_TO_SIGMA = 1.4826  # MAD of a Gaussian = 0.6745 sigma
_TUKEY_C = 4.685  # 95 % Gaussian efficiency (Tukey biweight)
_HUBER_K = 1.345  # 95 % Gaussian efficiency (Huber)


@dataclass(frozen=True)
class FitOptions:
    """How to fit `ref ≈ s * cur + t`.

    Attributes:
        method: "symmetric" (geometric-mean slope, unbiased when both sides are noisy) or "ols"
            (the papers' least squares of ref on cur).
        robust: "tukey", "huber" or "none" (plain closed form, as in DVD/VDA).
        scale_clip: (lo, hi) clip of s (the DVD demo uses (0.7, 1.5)), or None.
        max_points: fit on at most this many valid pixels (deterministic stride); 0 = all.
        min_points: fewer valid pixels than this -> degenerate fit.
        min_correlation: |weighted correlation| below this -> degenerate fit.
        iterations: maximum IRLS iterations.
        pixels: "positive_ref" (pixels whose reference is > 0) or "all" (every finite pair, as
            VDA's `compute_scale_and_shift` with its all-ones mask).
        clip_keeps_shift: a clipped scale keeps the shift fitted with the unclipped one (DVD's
            demo, `np.clip(scale, 0.7, 1.5)` after the solve) instead of the shift refitted for
            the clipped scale (the default: the best shift for the scale used).
    """

    method: FitMethod = "symmetric"
    robust: Robust = "tukey"
    scale_clip: tuple[float, float] | None = None
    max_points: int = 65536
    min_points: int = 16
    min_correlation: float = 0.2
    iterations: int = 20
    pixels: FitPixels = "positive_ref"
    clip_keeps_shift: bool = False

    def __post_init__(self) -> None:
        if self.method not in ("symmetric", "ols"):
            raise ConfigError(f"fit method must be 'symmetric' or 'ols', got {self.method!r}")
        if self.robust not in ("tukey", "huber", "none"):
            raise ConfigError(f"robust must be 'tukey', 'huber' or 'none', got {self.robust!r}")
        if self.pixels not in ("positive_ref", "all"):
            raise ConfigError(f"fit pixels must be 'positive_ref' or 'all', got {self.pixels!r}")
        if self.scale_clip is not None:
            lo, hi = self.scale_clip
            if not 0 < lo <= hi:
                raise ConfigError(f"scale_clip must satisfy 0 < lo <= hi, got {self.scale_clip}")
        if self.max_points < 0 or self.min_points < 2:
            raise ConfigError(f"max_points must be >= 0 and min_points >= 2, got {self.max_points}, {self.min_points}")


DEFAULT_FIT_OPTIONS = FitOptions()
#: VDA's stitching fit: closed-form least squares of ref on cur over all overlap pixels.
VDA_FIT = FitOptions(method="ols", robust="none", max_points=0, min_correlation=0.0, pixels="all")


@dataclass(frozen=True)
class AffineFit:
    """Result of one fit `ref ≈ scale * cur + shift` (disparity units of ref).

    Attributes:
        scale, shift: the affine map.
        residual: robust residual scale (MAD sigma) of the inliers, in ref units.
        inlier_fraction: fraction of valid points with non-negligible weight.
        n_points: valid points used (after subsampling).
        degenerate: True when the fit fell back to (1, 0).
        clipped: True when the scale was clipped to `scale_clip`.
        scale_se, shift_se: approximate standard errors (for weighting a global solve).
        reason: why the fit is degenerate ("" otherwise).
    """

    scale: float = 1.0
    shift: float = 0.0
    residual: float = 0.0
    inlier_fraction: float = 1.0
    n_points: int = 0
    degenerate: bool = False
    clipped: bool = False
    scale_se: float = 0.0
    shift_se: float = 0.0
    reason: str = ""

    def apply(self, disparity: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """`scale * disparity + shift` in float32 (NaN stays NaN); `out` may be `disparity`."""
        out = np.multiply(disparity, np.float32(self.scale), out=out, dtype=np.float32)
        if self.shift:
            out += np.float32(self.shift)
        return out


IDENTITY = AffineFit()


def _degenerate(reason: str, n: int) -> AffineFit:
    return AffineFit(n_points=n, degenerate=True, inlier_fraction=0.0, reason=reason)


def sample_valid(
    cur: np.ndarray,
    ref: np.ndarray,
    mask: np.ndarray | None = None,
    max_points: int = 0,
    pixels: FitPixels = "positive_ref",
) -> tuple[np.ndarray, np.ndarray]:
    """Valid (finite on both sides, ref > 0 unless `pixels="all"`, inside `mask`) pairs as float64.

    Subsamples deterministically by a fixed stride *before* the validity test, so the cost is
    bounded by `max_points` rather than by the image size.
    """
    if cur.shape != ref.shape:
        raise ValueError(f"cur {cur.shape} and ref {ref.shape} must have the same shape")
    c, r = np.ravel(cur), np.ravel(ref)
    m = None if mask is None else np.ravel(mask)
    if max_points and c.size > max_points:
        step = -(-c.size // max_points)
        c, r = c[::step], r[::step]
        m = None if m is None else m[::step]
    valid = np.isfinite(c) & np.isfinite(r)
    if pixels == "positive_ref":
        valid &= r > 0
    if m is not None:
        valid &= m.astype(bool)
    return c[valid].astype(np.float64), r[valid].astype(np.float64)


def _affine_from_moments(
    mc: float, mr: float, vcc: float, vcr: float, vrr: float, method: FitMethod
) -> tuple[float, float, float]:
    """(s, t, correlation) of `r ≈ s c + t` from the means and (co)variances of `c` and `r`: the
    symmetric (geometric-mean) slope or the OLS one; NaN without variance."""
    if vcc <= 0 or vrr <= 0:
        return float("nan"), float("nan"), 0.0
    corr = vcr / np.sqrt(vcc * vrr)
    s = np.copysign(np.sqrt(vrr / vcc), vcr) if method == "symmetric" else vcr / vcc
    return float(s), float(mr - s * mc), float(corr)


def _plain_fit(c: np.ndarray, r: np.ndarray, method: FitMethod) -> tuple[float, float, float]:
    """(s, t, correlation) of the unweighted fit r ≈ s c + t."""
    n = float(c.size)
    mc, mr = float(c.mean()), float(r.mean())
    dc, dr = c - mc, r - mr
    return _affine_from_moments(mc, mr, float(dc @ dc) / n, float(dc @ dr) / n, float(dr @ dr) / n, method)


def _robust_sigma(res: np.ndarray, floor: float) -> float:
    """MAD sigma of the residuals (median over at most ~8k of them: it only sets a threshold)."""
    step = max(1, res.size // 8192)
    return max(_MAD_TO_SIGMA * float(np.median(np.abs(res[::step]))), floor)


def _weights(res: np.ndarray, sigma: float, robust: Robust, out: np.ndarray | None = None) -> np.ndarray:
    """Tukey or Huber IRLS weights of the residuals `res` at residual scale `sigma` (into `out`)."""
    out = np.abs(res, out=out)
    if robust == "tukey":
        out *= 1.0 / (sigma * _TUKEY_C)
        np.square(out, out=out)
        np.subtract(1.0, out, out=out)
        np.maximum(out, 0.0, out=out)
        return np.square(out, out=out)
    np.maximum(out, 1e-300, out=out)
    np.divide(_HUBER_K * sigma, out, out=out)
    return np.minimum(out, 1.0, out=out)


class _Moments:
    """Centred data of one fit and its stacked products, so each IRLS step is one matrix-vector pass.

    `c`, `r` are centred on their plain means (well-conditioned float64 sums); `stack` holds
    `c, r, c^2, c r, r^2` as rows, so `stack @ w` gives every weighted moment at once.
    """

    def __init__(self, c: np.ndarray, r: np.ndarray) -> None:
        self.mean_c, self.mean_r = float(c.mean()), float(r.mean())
        self.stack = np.empty((5, c.size))
        self.c, self.r = self.stack[0], self.stack[1]
        np.subtract(c, self.mean_c, out=self.c)
        np.subtract(r, self.mean_r, out=self.r)
        np.multiply(self.c, self.c, out=self.stack[2])
        np.multiply(self.c, self.r, out=self.stack[3])
        np.multiply(self.r, self.r, out=self.stack[4])

    def subsample(self, step: int) -> _Moments:
        sub = _Moments.__new__(_Moments)
        sub.mean_c, sub.mean_r = self.mean_c, self.mean_r
        sub.stack = np.ascontiguousarray(self.stack[:, ::step])
        sub.c, sub.r = sub.stack[0], sub.stack[1]
        return sub

    def fit(self, w: np.ndarray, method: FitMethod) -> tuple[float, float, float]:
        """(s, t0, correlation) of the weighted fit `r ≈ s c + t0` in centred coordinates."""
        sw = float(w.sum())
        mc, mr, ecc, ecr, err = (self.stack @ w) / sw
        return _affine_from_moments(mc, mr, ecc - mc * mc, ecr - mc * mr, err - mr * mr, method)

    def to_original(self, s: float, t0: float) -> tuple[float, float]:
        """`t` of `r ≈ s c + t` in the original (uncentred) coordinates."""
        return s, t0 + self.mean_r - s * self.mean_c


def _lmeds_start(c: np.ndarray, r: np.ndarray, method: FitMethod, hypotheses: int = 64) -> tuple[float, float]:
    """Least-median-of-squares start from random point pairs (breakdown ~50 %), deterministic."""
    rng = np.random.default_rng(12345)  # fixed: the same input always gives the same fit
    n = c.size
    i, j = rng.integers(0, n, hypotheses), rng.integers(0, n, hypotheses)
    dc = c[i] - c[j]
    ok = np.abs(dc) > 1e-12 * (np.abs(c[i]) + 1e-30)
    if not ok.any():
        return _plain_fit(c, r, method)[:2]
    s = (r[i] - r[j])[ok] / dc[ok]
    t = r[i][ok] - s * c[i][ok]
    probe = slice(None, None, max(1, n // 256))
    cp, rp = c[probe], r[probe]
    med = np.median(np.abs(rp[None, :] - (s[:, None] * cp[None, :] + t[:, None])), axis=1)
    k = int(np.argmin(med))
    return float(s[k]), float(t[k])


_COARSE_POINTS = 8192  # IRLS converges on this subsample first, then refines on all points
#: A model's errors are smooth over the image, so residuals of nearby pixels are correlated and a
#: fit's standard error (the weight of its edge in the graph solve) is computed as if only this
#: many points were independent: an edge of many frames of one window is no surer than one frame.
_INDEPENDENT_POINTS = 64
_TOL = 1e-7  # relative change of (s, t) that ends the IRLS
_COARSE_TOL = 1e-5  # the same on the subsample (the refinement on all points follows)
_REFINE_ITERATIONS = 3  # on all points after the subsample converged


def _irls(
    m: _Moments,
    s: float,
    t: float,
    sigma: float,
    options: FitOptions,
    iterations: int,
    spread: float,
    tol: float = _TOL,
) -> tuple[float, float, float, np.ndarray | None, float]:
    """IRLS from (s, t) in `m`'s centred coordinates: (s, t, corr, weights, sigma); weights None
    when too few points survive. `sigma <= 0`: the residual scale is re-estimated in the first
    three iterations, while the fit moves most, then kept."""
    corr = 0.0
    estimate = sigma <= 0
    res, w = np.empty_like(m.c), np.empty_like(m.c)
    for it in range(iterations):
        np.multiply(m.c, -s, out=res)
        res += m.r
        res -= t
        if estimate and it < 3:
            sigma = _robust_sigma(res, 1e-9 * spread)
        _weights(res, sigma, options.robust, out=w)
        if float(w.sum()) < options.min_points:
            return s, t, corr, None, sigma
        s_new, t_new, corr = m.fit(w, options.method)
        if not np.isfinite(s_new):
            break
        done = abs(s_new - s) <= tol * max(abs(s), 1e-30) and abs(t_new - t) <= tol * spread
        s, t = s_new, t_new
        if done:
            break
    return s, t, corr, w, sigma


def _refusal(s: float, t: float, corr: float, options: FitOptions) -> str:
    """Why the fitted `(s, t)` cannot be used ("" when it can)."""
    if not (np.isfinite(s) and np.isfinite(t)):
        return "no variance in the overlap (flat or constant disparity)"
    if abs(corr) < options.min_correlation:
        return f"|correlation| {abs(corr):.3f} < {options.min_correlation}"
    if s < 0:  # near in one is far in the other: applied, it turns the window's depth inside out
        return f"{INVERTED} (fitted scale {s:.3g})"
    return ""


def fit_pairs(c: np.ndarray, r: np.ndarray, options: FitOptions = DEFAULT_FIT_OPTIONS) -> AffineFit:
    """Fit `r ≈ s c + t` on already-valid float64 vectors `c`, `r` (see `align_scale_shift`).

    With many points the robust fit first converges on an evenly strided subsample of about
    8k points and then refines on all of them (a few iterations): the same fit at a third of
    the cost.
    """
    n = int(c.size)
    if n < options.min_points:
        return _degenerate(f"{n} valid points < min_points {options.min_points}", n)
    spread = float(np.ptp(r)) or 1.0
    w: np.ndarray | None = None
    if options.robust == "none":
        s, t, corr = _plain_fit(c, r, options.method)
    else:
        m = _Moments(c, r)
        s, t = _lmeds_start(m.c, m.r, options.method)
        sigma, iterations = 0.0, options.iterations
        if n >= 2 * _COARSE_POINTS:
            coarse = m.subsample(n // _COARSE_POINTS)
            s, t, _, w_coarse, sigma = _irls(coarse, s, t, 0.0, options, options.iterations, spread, _COARSE_TOL)
            if w_coarse is not None:  # converged: a few refining iterations on all points
                iterations = min(iterations, _REFINE_ITERATIONS)
            else:
                sigma = 0.0
        s, t, corr, w, _ = _irls(m, s, t, sigma, options, iterations, spread)
        if w is None:
            return _degenerate("robust weights rejected almost all points", n)
        s, t = m.to_original(s, t)
    refused = _refusal(s, t, corr, options)
    if refused:
        return _degenerate(refused, n)
    clipped = False
    if options.scale_clip is not None:
        lo, hi = options.scale_clip
        if not lo <= s <= hi:
            s, clipped = float(np.clip(s, lo, hi)), True
            if not options.clip_keeps_shift:
                ww = np.ones_like(c) if w is None else w
                t = float(ww @ (r - s * c)) / float(ww.sum())
    res = r - (s * c + t)
    if w is None:
        sigma, n_eff, inl = float(np.sqrt(np.mean(res * res))), float(n), 1.0
        var_c = float(np.var(c))
    else:
        sigma = _robust_sigma(res, 1e-12 * spread)
        n_eff, inl = float(w.sum()), float(np.count_nonzero(w > 1e-3)) / n
        mc = float(w @ c) / n_eff
        var_c = float(w @ ((c - mc) ** 2)) / n_eff
    n_se = min(n_eff, _INDEPENDENT_POINTS)  # smooth errors: neighbouring residuals are not independent
    scale_se = sigma / np.sqrt(max(n_se * var_c, 1e-300))
    shift_se = sigma / np.sqrt(max(n_se, 1.0))
    return AffineFit(
        scale=float(s),
        shift=float(t),
        residual=float(sigma),
        inlier_fraction=float(inl),
        n_points=n,
        clipped=clipped,
        scale_se=float(scale_se),
        shift_se=float(shift_se),
    )


def align_scale_shift(
    cur: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, options: FitOptions = DEFAULT_FIT_OPTIONS
) -> AffineFit:
    """Fit `ref ≈ scale * cur + shift` over the valid pixels of two same-shape arrays.

    Args:
        cur: `(..., H, W)` disparity of the new window (any affine frame), NaN = invalid.
        ref: same shape, the already-aligned reference disparity, NaN = invalid; pixels with
            `ref <= 0` are excluded unless `options.pixels == "all"` (values clamped to 0 carry
            no information).
        mask: optional boolean array of the same shape, False = excluded (sky, dynamic...).
        options: method, robustness, clip, subsampling.

    Returns:
        The fit; `degenerate=True` with (1, 0) when it cannot be estimated.
    """
    c, r = sample_valid(cur, ref, mask, options.max_points, options.pixels)
    return fit_pairs(c, r, options)
