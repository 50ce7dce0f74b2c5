"""Frames of one window that the model got wrong alone: a flash, a frame off by a large affine or with
its structure scrambled, inside an otherwise consistent window.

A video-depth model's window is temporally consistent: two consecutive frames of it relate by about
the identity (the same scale, little change of content). A single frame the model got wrong relates
to neither neighbour while the neighbours relate to each other; published as is it is a flash of
wrong depth, and as a reference (an overlap frame) it biases the next window's fit. `odd_frames`
names such frames so the pipeline can treat them as frames without an estimate (NaN: left out of
every fit, the other window's reading where a blend has one). Only single frames are named: two
wrong frames in a row, or a window the model got wrong as a whole, are not told apart from a real
change this way (the fit to the stream and the fit health see those).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: pixels per frame compared (an even stride): the relations sought are gross, a few k pixels tell them
ODD_FRAME_POINTS = 2048
#: two frames relate when the affine that maps one's 10th-50th-90th percentiles onto the other's (the
#: symmetric fit's slope from their spreads) moves its 10th and 90th percentiles by at most this share
#: of the frame's values (the larger of its 10-90 spread and its median; consecutive frames of a
#: consistent window: a few percent; a frame off by a scale of 1.5: ~50 %) ...
ODD_FRAME_TOLERANCE = 0.25
#: ... and their pixels correlate: the two frames a frame is compared with by at least this much, the
#: frame with each of them by at least this share of their own correlation (a scrambled frame: about 0;
#: a camera panning a few pixels per frame: > 0.9; a dark render changing fast: 0.4-0.6 between frames one
#: or two apart, which an absolute bar for the frame itself named)
ODD_FRAME_CORRELATION = 0.5
_MIN_POINTS = 64


def odd_frames(disparity: np.ndarray, slots: Sequence[int]) -> list[int]:
    """Positions in the window of frames unlike both their neighbours while those agree (module docstring).

    Args:
        disparity: `(n, H, W)` the window's output (any affine frame), NaN where there is no estimate.
        slots: the frame index of each position; only runs of 3 or more consecutive frames with values are
            compared, so a keyframe layout's anchor and older frame, and frames without any, are left alone.
    """
    n = len(slots)
    if n < 3:
        return []
    step = max(1, disparity[0].size // ODD_FRAME_POINTS)
    samples = np.asarray(disparity).reshape(n, -1)[:, ::step].astype(np.float64)
    finite = np.isfinite(samples)
    has_values = finite.sum(axis=1) >= _MIN_POINTS
    odd: list[int] = []
    start = 0
    for end in range(1, n + 1):
        if end < n and has_values[end] and has_values[end - 1] and slots[end] == slots[end - 1] + 1:
            continue
        if end - start >= 3 and has_values[start]:
            odd += [start + p for p in _odd_in_run(samples[start:end], finite[start:end])]
        start = end
    return odd


def _odd_in_run(samples: np.ndarray, finite: np.ndarray) -> list[int]:
    """`odd_frames` within one run of consecutive frames' samples `(m, P)`, m >= 3."""
    ok = finite.all(axis=0)  # the same pixels in every frame
    if np.count_nonzero(ok) < _MIN_POINTS:
        return []
    samples = samples[:, ok]
    q10, q50, q90 = np.percentile(samples, (10.0, 50.0, 90.0), axis=1)
    spread = q90 - q10
    centred = samples - samples.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", centred, centred))
    if not (spread > 0).all() or not (norm > 0).all():
        return []  # a flat frame (`_usable` names those)
    corr = (centred @ centred.T) / np.outer(norm, norm)
    unit = np.maximum(spread, np.abs(q50))

    def relate(p: int, q: int, correlation: float) -> bool:
        scale = spread[q] / spread[p]  # the symmetric slope from p's values onto q's
        moved = np.abs((scale - 1.0) * np.array([q10[p], q90[p]]) + q50[q] - scale * q50[p])
        return bool(corr[p, q] >= correlation and moved.max() <= ODD_FRAME_TOLERANCE * unit[q])

    m = len(samples)
    odd = []
    for p in range(m):
        # the two closest other frames: both neighbours, or the two on the one side at an end
        a, b = (p - 1, p + 1) if 0 < p < m - 1 else (p + 1, p + 2) if p == 0 else (p - 2, p - 1)
        if not relate(a, b, ODD_FRAME_CORRELATION):
            continue
        bar = ODD_FRAME_CORRELATION * corr[a, b]
        if not relate(p, a, bar) and not relate(p, b, bar):
            odd.append(p)
    return odd
