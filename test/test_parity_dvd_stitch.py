"""DVD's stitching across windows in the `reference` mode against the authors' `generate_depth_sliced`.

The authors' `test_script/test_single_video.py` imports their whole training stack at module level
(accelerate, omegaconf, diffsynth, the Wan training module), and its model needs the 1.3B DiT; so
the functions of their stitching (`generate_depth_sliced`, `compute_scale_and_shift`,
`get_window_index`, `pad_time_mod4`) are taken from that file by name (`ast`, nothing copied into the
project) and run with a stand-in `model.pipe` that returns prepared window outputs. The package
stitches the same window outputs through `stream.WindowScheduler` + `stream.Stitcher` with the DVD
reference options (`PipelineConfig.for_family("dvd")`: least squares over all overlap pixels of
all three channels, scale clipped to [0.7, 1.5] keeping the unclipped shift, clamp at 0, linear
crossfade), then `mean_channels`. Compared: every frame of the channel mean, <= 1e-5 relative, for
a video the windows tile exactly. Where the authors move the last window back to end on the last
frame, they fit and crossfade over every frame it shares with the output so far (up to W - 1),
revising frames a causal stream has already output as final; the stream fits and blends only its
provisional overlap (the listed difference): there, the frames before that last window are
compared.
"""

from __future__ import annotations

import ast
import types

import numpy as np
import pytest
import torch
from reference_code import reference_folder

from vdepth_ros.config import PipelineConfig
from vdepth_ros.stream.align import FitOptions
from vdepth_ros.stream.stitch import Stitcher, mean_channels
from vdepth_ros.stream.windows import WindowScheduler

_FUNCTIONS = ("generate_depth_sliced", "compute_scale_and_shift", "get_window_index", "pad_time_mod4")


def _authors_stitching() -> types.SimpleNamespace:
    path = reference_folder("dvd") / "test_script" / "test_single_video.py"
    tree = ast.parse(path.read_text())
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in _FUNCTIONS]
    assert sorted(d.name for d in defs) == sorted(_FUNCTIONS), "the authors' script changed"
    namespace = {"np": np, "torch": torch, "tqdm": lambda x, **_: x, "print": lambda *a, **k: None}
    exec(compile(ast.Module(body=defs, type_ignores=[]), str(path), "exec"), namespace)
    return types.SimpleNamespace(**{name: namespace[name] for name in _FUNCTIONS})


def _window_output(frames: np.ndarray, start: int, n: int, rng_seed: int) -> np.ndarray:
    """A window's `(n, C, H, W)` output: each channel its own affine of the scene plus noise, per window."""
    rng = np.random.default_rng(rng_seed * 1000 + start)
    scale = rng.uniform(0.6, 1.8, size=(1, 3, 1, 1))
    shift = rng.uniform(-0.2, 0.3, size=(1, 3, 1, 1))
    clip = frames[start : start + n]
    noise = rng.normal(0.0, 0.02, size=(len(clip), 3, *clip.shape[1:]))
    out = (scale * clip[:, None] + shift + noise).astype(np.float32)
    if len(out) < n:  # padding frames (4n+1), as the model returns them
        out = np.concatenate([out, np.repeat(out[-1:], n - len(out), axis=0)])
    return out


def _stitch_both(frames: int, window: int, overlap: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(ours, theirs, first frame of the last window) for the same window outputs."""
    authors = _authors_stitching()
    yy, xx = np.mgrid[0:12, 0:16].astype(np.float32)
    scene = np.stack([0.5 + 0.3 * np.sin(0.3 * xx + 0.1 * t) + 0.02 * yy for t in range(frames)])

    class Pipe:  # the authors' `model.pipe`: the window's first frame index rides in the input
        device = "cpu"

        def __call__(self, input_video: torch.Tensor, num_frames: int, **_: object) -> dict[str, np.ndarray]:
            start = int(input_video[0, 0, 0, 0, 0])
            out = _window_output(scene, start, num_frames, 0)  # (n, C, H, W)
            return {"depth": out.transpose(0, 2, 3, 1)[None]}  # theirs: (B, T, H, W, C)

    model = types.SimpleNamespace(pipe=Pipe(), args=types.SimpleNamespace(mode="regression", denoise_step=1))
    video = torch.zeros(1, frames, 3, 4, 4)
    video[0, :, 0, 0, 0] = torch.arange(frames, dtype=torch.float32)
    theirs = authors.generate_depth_sliced(model, video, window_size=window, overlap=overlap)[0].mean(axis=-1)

    config = PipelineConfig().for_family("dvd")
    options = FitOptions(
        method=config.fit_method,
        robust=config.robust,
        scale_clip=config.scale_clip,
        max_points=config.fit_max_points,
        pixels=config.fit_pixels,
        min_correlation=0.0,
        clip_keeps_shift=True,
    )  # what DepthPipeline builds in reference mode
    stitcher = Stitcher(config.alignment, options)
    ours = np.full((frames, *scene.shape[1:]), np.nan, np.float32)
    clipped = 0
    windows = WindowScheduler(window, overlap, frames_rule="4n+1").plan(frames)
    assert [(w.slots[0], w.slots[-1] + 1) for w in windows] == authors.get_window_index(frames, window, overlap)
    for w in windows:
        out = _window_output(scene, w.slots[0], len(w.slots) + w.pad, 0)
        for sf in mean_channels(stitcher.add(w, out)):
            ours[sf.index] = sf.disparity
        clipped += stitcher.last_fit.clipped
    for sf in mean_channels(stitcher.finish()):
        ours[sf.index] = sf.disparity
    assert clipped > 0  # the scale clip is exercised
    assert theirs.shape == ours.shape
    return ours, theirs, windows[-1].slots[0]


def _relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.mark.parametrize(("frames", "window", "overlap"), [(53, 21, 5), (57, 17, 9)])
def test_three_channel_stitching_equals_generate_depth_sliced(frames: int, window: int, overlap: int) -> None:
    ours, theirs, _ = _stitch_both(frames, window, overlap)  # windows tile the video exactly
    assert _relative(ours, theirs) <= 1e-5


def test_a_moved_back_last_window_is_the_listed_difference() -> None:
    ours, theirs, last = _stitch_both(61, 21, 5)  # windows 0, 16, 32, then 40 (moved back from 48)
    assert _relative(ours[:last], theirs[:last]) <= 1e-5
    assert _relative(ours[last:], theirs[last:]) > 1e-3  # the authors revise frames 40..52


@pytest.mark.slow
def test_the_pipeline_stitches_dvds_three_channels_as_the_authors() -> None:
    """`DepthPipeline` (reference mode, torch engine, a tiny random DVD) against the authors'
    `generate_depth_sliced` around the same network's `predict_channels` (their `WanVideoPipeline`
    cannot run here; `test_parity_dvd.py` compares the network with theirs): every frame <= 1e-4."""
    from vdepth_ros.models.dvd import DVD
    from vdepth_ros.offline.synth import synthetic_frames
    from vdepth_ros.pipeline import DepthPipeline, FrameInput
    from vdepth_ros.runtime import create_engine

    authors = _authors_stitching()
    torch.manual_seed(0)
    model = DVD(**DVD.tiny_config()).eval()
    _, h, w = DVD.tiny_input_shape()
    rgb = np.stack(list(synthetic_frames(21, h, w)))  # windows 0, 6, 12 of 9 frames tile 21 exactly
    engine = create_engine(model, backend="torch", height=h, width=w)
    pipe = DepthPipeline(PipelineConfig(scale_source="none", publish="final"), engine=engine)
    assert pipe.config.inference == "reference" and pipe.fit_options.scale_clip == (0.7, 1.5)
    out = [f for i, img in enumerate(rgb) for f in pipe.push(FrameInput(rgb=img, stamp_ns=i))] + pipe.flush()
    ours = np.stack([f.disparity for f in out])

    class Pipe:
        device = "cpu"

        def __call__(self, input_video: torch.Tensor, **_: object) -> dict[str, np.ndarray]:
            with torch.no_grad():
                channels = model.predict_channels(input_video[0]).numpy()  # (n, 3, H, W)
            return {"depth": channels.transpose(0, 2, 3, 1)[None]}

    stub = types.SimpleNamespace(pipe=Pipe(), args=types.SimpleNamespace(mode="regression", denoise_step=1))
    video = torch.from_numpy(rgb).permute(0, 3, 1, 2)[None].float() / 255.0
    theirs = authors.generate_depth_sliced(stub, video, window_size=9, overlap=3)[0].mean(axis=-1)
    assert [f.index for f in out] == list(range(21)) and pipe.stats.windows == 3
    assert float(theirs.std()) > 1e-3 * float(np.abs(theirs).max())
    print(f"pipeline vs generate_depth_sliced: {_relative(ours, theirs):.2e} relative")
    assert _relative(ours, theirs) <= 1e-4
