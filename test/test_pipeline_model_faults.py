"""DepthPipeline under the outputs real engines produce and smooth-error fakes never do: NaN/Inf patches
(fp16 overflow), a collapsed (constant) window, an output of another size than the spec, fp16/float64
outputs, a model that outputs depth where disparity is expected. Nothing garbage reaches the outputs:
what carries no depth is NaN, and one line names the cause."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from fakes import AffineCorruptingEngine
from test_pipeline import _config, _frames, _global_affine_error, _latest, _run, _truth, _with_sparse_depth

from vdepth_ros.errors import ModelOutputError
from vdepth_ros.pipeline import DepthPipeline

N = 30  # frames: windows of 8 with overlap 3 start at 0, 5, 10, ...; the third (index 2) holds frames 10-17


KEYFRAMES = (0, 6, 12, 13, 14, 15)  # the bundled model's layout (16 frames, anchor and context slots)


class FaultyEngine(AffineCorruptingEngine):
    """`AffineCorruptingEngine` whose calls numbered in `bad` (1-based) pass through `fault`."""

    def __init__(self, fault, bad=(3,), **kw) -> None:
        super().__init__(**{"frames": 8, "overlap": 3, **kw})
        self.fault, self.bad = fault, set(bad)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = super()._run(batch)
        return self.fault(out) if self.calls in self.bad else out


def _patched(value: float):
    def fault(out: np.ndarray) -> np.ndarray:
        out = out.copy()
        out[..., 10:20, 10:30] = value
        return out

    return fault


def _outputs(engine, caplog, frames=None, **cfg) -> list:
    caplog.set_level(logging.WARNING, logger="vdepth_ros.pipeline")
    pipe = DepthPipeline(_config(publish="final", **cfg), engine)
    return _latest(_run(pipe, frames or _frames(N)), N)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_a_non_finite_patch_is_no_estimate_and_named_once(value, caplog):
    """fp16 overflow: +Inf became -Inf ("nearer than min_depth") in /depth, NaN blends; now NaN (no estimate)."""
    out = _outputs(FaultyEngine(_patched(value), bad=(3, 4)), caplog)
    disp, depth = np.stack([f.disparity for f in out]), np.stack([f.depth for f in out])
    assert not np.isinf(disp).any()  # (+Inf depth is REP 118's "beyond max_depth": the range source's far)
    assert np.isnan(depth[13, 10:20, 10:30]).all()  # frame 13: window 2's alone
    assert np.isfinite(disp[:10]).all() and np.isfinite(disp[25:]).all()
    lines = [r.getMessage() for r in caplog.records if "NaN or Inf" in r.getMessage()]
    assert len(lines) == 1 and "fp16" in lines[0], lines  # rate-limited: two bad windows, one line


@pytest.mark.parametrize("collapse", [lambda o: np.full_like(o, 0.37), np.zeros_like])
def test_a_collapsed_window_is_no_estimate_and_the_stream_goes_on(collapse, caplog):
    """A black or covered frame: the model's one constant value was published as a flat wall of depth. The
    window after it shares only NaN frames with the stream (chain_ls): it fell back to (1, 0), the model's raw
    scale, and the stream jumped there; it goes on in the scale of the window before now."""
    frames = _frames(N)
    engine = FaultyEngine(None, bad=(1, 3), scale_range=(1, 1), shift_range=(0, 0))
    # the stream's scale is its first window's, here twice the raw scale of the windows after it
    engine.fault = lambda out: 2 * out if engine.calls == 1 else collapse(out)
    out = _outputs(engine, caplog, frames)
    disp, depth = np.stack([f.disparity for f in out]), np.stack([f.depth for f in out])
    assert np.isnan(depth[13:15]).all() and np.isnan(disp[13:15]).all()  # window 2's frames no other one blends
    assert np.isfinite(disp[:10]).all() and np.isfinite(disp[20:]).all()
    kept = np.isfinite(disp).all(axis=(1, 2))
    assert _global_affine_error(disp[kept], _truth(frames)[kept]) < 1e-3  # one scale before and after ((1, 0): 0.34)
    assert any("one constant value" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_fp16_and_float64_outputs_stitch_as_float32(dtype, caplog):
    ref = np.stack([f.disparity for f in _outputs(AffineCorruptingEngine(frames=8, overlap=3), caplog)])
    out = _outputs(FaultyEngine(lambda o: o.astype(dtype), bad=range(1, 99)), caplog)
    assert all(f.disparity.dtype == np.float32 for f in out)
    np.testing.assert_allclose(np.stack([f.disparity for f in out]), ref, rtol=0, atol=5e-3 * np.ptp(ref))


@pytest.mark.parametrize(
    "fault",
    [lambda o: o[..., ::2, ::2], lambda o: np.ascontiguousarray(o.swapaxes(-1, -2))],
    ids=["half", "transposed"],
)
def test_an_output_of_another_size_than_the_spec_is_named(fault):
    """Half resolution raised numpy's "cannot reshape array"; a (W, H) output was silently scrambled."""
    pipe = DepthPipeline(_config(), FaultyEngine(fault, bad=(1,)))
    frames = _frames(8)
    for f in frames[:7]:
        pipe.push(f)
    with pytest.raises(ModelOutputError, match=r"input spec declares 8 frames of 48x64"):
        pipe.push(frames[7])  # completes the first window
    assert pipe.stats.resets == 1  # the stream restarts; the next frames are processed
    assert [f.index for f in _run(pipe, frames)] == list(range(8))


def _depth_model(out: np.ndarray) -> np.ndarray:
    return 1.0 / out  # a fine-tuned model that outputs depth: larger = farther


@pytest.mark.parametrize("alignment", ["graph", "keyframe"])
def test_a_window_in_depth_is_no_estimate_names_the_cause_and_the_next_window_recovers(alignment, caplog):
    """Fitted to the stream, a depth window came out with a negative scale and was applied (keyframe: near and
    far swapped, |error| up to 1.4x the scene's range) or, in graph mode, given the previous window's affine
    (up to 5x), with a line about a covered lens; its frames are NaN now, and the next window is fitted again."""
    engine = FaultyEngine(_depth_model, frames=16, overlap=6, keyframes=KEYFRAMES, alignment=alignment)
    frames = _frames(50)
    pipe = DepthPipeline(_config(publish="final"), engine)
    caplog.set_level(logging.WARNING, logger="vdepth_ros.pipeline")
    out = _latest(_run(pipe, frames), 50)
    disp = np.stack([f.disparity for f in out])
    dropped = np.flatnonzero(np.isnan(disp).all(axis=(1, 2)))
    assert list(dropped) == list(range(26, 32))  # window 2's own frames (its first ones blend into window 1's)
    kept = np.isfinite(disp).all(axis=(1, 2))
    assert kept.sum() == 44 and _global_affine_error(disp[kept], _truth(frames)[kept]) < 1e-3  # windows 0-1 and 3-4
    lines = [r.getMessage() for r in caplog.records if "increasing with depth" in r.getMessage()]
    assert len(lines) == 1 and "is it a depth model?" in lines[0] and "output_kind 'depth'" in lines[0], lines


def test_a_depth_model_from_the_start_is_named_by_the_sparse_depth(caplog):
    """Every window in depth: the windows agree with each other, only a sensor can tell; its fit came out
    negative and was dropped without a word (no metric scale, the stream silent)."""
    frames = _frames(N)
    true_depth = 1.0 / (2.0 * _truth(frames) + 0.1)
    engine = FaultyEngine(_depth_model, bad=range(1, 99), scale_range=(1, 1), shift_range=(0, 0))
    _outputs(engine, caplog, _with_sparse_depth(frames, true_depth), scale_source="sparse", sparse_min_points=20)
    lines = [r for r in caplog.records if "increasing with depth against the sparse depth" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR and "is it a depth model?" in lines[0].getMessage()


def test_an_offline_window_in_depth_is_named_as_the_stream_names_it(caplog):
    """`run_offline` (vdepth-bag, vdepth-video --mode offline) dropped the inverted window without a word; the
    stream asked `is it a depth model?`: one rule for both now."""
    engine = FaultyEngine(_depth_model, frames=16, overlap=6, keyframes=KEYFRAMES, alignment="graph")
    frames = _frames(50)
    caplog.set_level(logging.WARNING, logger="vdepth_ros.pipeline")
    out = list(DepthPipeline(_config(), engine).run_offline(frames))
    disp = np.stack([f.disparity for f in out])
    assert np.isnan(disp[26:32]).all() and np.isfinite(disp[:20]).all() and np.isfinite(disp[38:]).all()
    lines = [r.getMessage() for r in caplog.records if "increasing with depth" in r.getMessage()]
    assert len(lines) == 1 and "is it a depth model?" in lines[0] and "output_kind 'depth'" in lines[0], lines
