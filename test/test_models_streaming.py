"""Streaming temporal head (issue #29): causal motion modules and their frame-by-frame cache.

Streaming inference equals the same network run causally on the whole sequence (<= 1e-5); no
frame's output depends on later frames; the engine and the pipeline publish every frame one
inference after it arrives; a windowed model (causal_context 0) is unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vdepth_ros.errors import ConfigError, InputError
from vdepth_ros.models import load_model
from vdepth_ros.models.motion import TemporalCache, TemporalMotionModule, causal_mask
from vdepth_ros.models.vda_lite import VideoDepthAnythingLite
from vdepth_ros.pipeline import DepthPipeline, FrameInput, PipelineConfig
from vdepth_ros.runtime import create_engine

CONTEXT = 4


def causal_model(context: int = CONTEXT, seed: int = 1) -> VideoDepthAnythingLite:
    model = VideoDepthAnythingLite(**{**VideoDepthAnythingLite.tiny_config(), "causal_context": context}).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def clip(n: int, seed: int = 0) -> torch.Tensor:
    _, h, w = VideoDepthAnythingLite.tiny_input_shape()
    return torch.rand(1, n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def rel(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / (b.max() - b.min()))


def test_streaming_equals_the_causal_whole_sequence() -> None:
    model = causal_model()
    x = clip(13)  # longer than the context and than max_frames (8): positions are relative
    with torch.no_grad():
        whole = model(x)
        cache = model.new_stream()
        one_by_one = torch.cat([model.stream(x[:, t : t + 1], cache) for t in range(13)], 1)
        cache = model.new_stream()
        chunks = torch.cat([model.stream(x[:, a:b], cache) for a, b in ((0, 3), (3, 4), (4, 13))], 1)
    assert rel(one_by_one, whole) <= 1e-5
    assert rel(chunks, whole) <= 1e-5
    assert cache.n_past == CONTEXT - 1 and len(cache.states) == 8  # 4 modules x 2 attentions


def test_causal_outputs_never_depend_on_later_frames() -> None:
    model = causal_model()
    x = clip(10)
    y = x.clone()
    y[:, 6:] = clip(4, seed=5)
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.equal(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_causal_attention_sees_only_its_context() -> None:
    """One motion module (two causal attentions of 3 frames): frame 2 reaches frames 2..6 only."""
    mm = TemporalMotionModule(16, num_heads=2, max_frames=8, norm_groups=4, zero_init=False, causal_context=3).eval()
    x = torch.randn(10, 16, 2, 3)
    y = x.clone()
    y[2] = torch.randn(16, 2, 3)  # in the windows of frames 2, 3, 4 at the first attention, and of 5, 6 through them
    with torch.no_grad():
        a, b = mm(x, 10), mm(y, 10)
    changed = [t for t in range(10) if not torch.allclose(a[t], b[t])]
    assert changed == [2, 3, 4, 5, 6]
    assert causal_mask(2, 3, 1, torch.device("cpu")).tolist() == [[False, True, True], [True, True, True]]


def test_windowed_models_and_bad_configs() -> None:
    windowed = VideoDepthAnythingLite(**VideoDepthAnythingLite.tiny_config())
    assert not windowed.streamable
    with pytest.raises(ConfigError, match="causal"):
        windowed.new_stream()
    with pytest.raises(ConfigError, match="causal_context"):
        VideoDepthAnythingLite(**{**VideoDepthAnythingLite.tiny_config(), "causal_context": 9})  # > max_frames 8
    mm = TemporalMotionModule(16, num_heads=2, max_frames=8, norm_groups=4)
    with pytest.raises(ValueError, match="causal"):
        mm(torch.randn(2, 16, 2, 3), 2, TemporalCache(2))
    model = causal_model()
    c = model.input_constraints
    assert (c.window, c.overlap, c.keyframes, c.alignment, c.max_window) == (2, 1, None, "chain_ls", None)


def test_causal_config_round_trips(tmp_path) -> None:
    model = causal_model()
    model.save_pretrained(tmp_path)
    again = load_model(tmp_path)
    assert again.streamable and again.head.causal_context == CONTEXT
    x = clip(5)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_engine_and_pipeline_publish_each_frame_one_inference_after_it_arrives() -> None:
    model = causal_model()
    _, h, w = VideoDepthAnythingLite.tiny_input_shape()
    engine = create_engine(model, backend="torch", height=h, width=w)
    assert engine.streams and engine.input_spec.window == 2
    x = clip(9, seed=2)
    rgb = (x[0].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    with torch.no_grad():
        whole = model(torch.from_numpy(rgb).permute(0, 3, 1, 2)[None].float() / 255)[0].numpy()
    steps = []
    engine_calls = []
    inner_step = engine._step

    def step(frames, state):
        engine_calls.append(len(frames))
        return inner_step(frames, state)

    engine._step = step
    pipe = DepthPipeline(
        PipelineConfig(scale_source="none", publish="provisional", scene_cut_threshold=0.0), engine=engine
    )
    for i, img in enumerate(rgb):
        out = pipe.push(FrameInput(rgb=img, stamp_ns=i))
        steps.append([f.index for f in out])
    # the first frame waits for a second one (window 2); from then on each push publishes its frame
    assert steps == [[], [0, 1]] + [[i] for i in range(2, 9)]
    assert sum(engine_calls) == 9 and max(engine_calls) <= 2  # every frame inferred once
    # raw stream outputs are the causal forward of the whole sequence
    ids = list(range(9))
    engine.reset_stream()
    streamed = np.concatenate([engine.infer(rgb[[max(0, t - 1), t]], frame_ids=[max(0, t - 1), t])[-1:] for t in ids])
    assert rel(streamed, whole) <= 1e-5
    with pytest.raises(InputError, match="in order"):
        engine.infer(rgb[[0, 1]], frame_ids=[20, 19])


def test_a_causal_model_folder_runs_on_torch_only(tmp_path) -> None:
    model = causal_model()
    model.save_pretrained(tmp_path)
    _, h, w = VideoDepthAnythingLite.tiny_input_shape()
    (tmp_path / "model.onnx").write_bytes(b"not used")  # even beside an exported graph, auto picks torch
    with create_engine(tmp_path, height=h, width=w) as engine:
        assert engine.backend == "torch" and engine.streams
    with pytest.raises(ConfigError, match="torch backend only"):
        create_engine(tmp_path, backend="onnxruntime")
