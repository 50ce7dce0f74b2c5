"""Streaming temporal head (issue #29): causal motion modules and their frame-by-frame cache.

Streaming inference equals the same network run causally on the whole sequence (<= 1e-5); no
frame's output depends on later frames; the engine and the pipeline publish every frame one
inference after it arrives; a windowed model (causal_context 0) is unchanged.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from fakes import PastSummingEngine
from onnx import helper
from vdepth_export.cli import main as cli_main
from vdepth_export.export_onnx import export_onnx
from vdepth_export.export_stream import export_stream_onnx

from vdepth_ros.errors import ConfigError, InputError, ModelLoadError
from vdepth_ros.models import load_model
from vdepth_ros.models.motion import TemporalCache, TemporalMotionModule, causal_mask
from vdepth_ros.models.vda_lite import VideoDepthAnythingLite
from vdepth_ros.offline.errors import OutputExistsError
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
    # the start-up line and /diagnostics say so: "windows of 2 frames, overlap 1" alone read as 2-frame windows
    assert pipe.model_identity()["windows"].endswith(
        "; a stream: each new frame inferred once, attending to the earlier ones"
    )
    # raw stream outputs are the causal forward of the whole sequence
    ids = list(range(9))
    engine.reset_stream()
    streamed = np.concatenate([engine.infer(rgb[[max(0, t - 1), t]], frame_ids=[max(0, t - 1), t])[-1:] for t in ids])
    assert rel(streamed, whole) <= 1e-5
    with pytest.raises(InputError, match="in order"):
        engine.infer(rgb[[0, 1]], frame_ids=[20, 19])


def test_a_causal_model_folder_without_its_stream_graph_runs_on_torch_only(tmp_path) -> None:
    model = causal_model()
    model.save_pretrained(tmp_path)
    _, h, w = VideoDepthAnythingLite.tiny_input_shape()
    (tmp_path / "model.onnx").write_bytes(b"not used")  # a whole-window graph holds no stream state: auto picks torch
    with create_engine(tmp_path, height=h, width=w) as engine:
        assert engine.backend == "torch" and engine.streams
    with pytest.raises(ModelLoadError, match=f"no stream-step graph.*`vdepth-export stream {tmp_path}`"):
        create_engine(tmp_path, backend="onnxruntime")
    with pytest.raises(ModelLoadError, match=f"no TensorRT stream-step engine.*`vdepth-export stream {tmp_path}`"):
        create_engine(tmp_path, backend="tensorrt")
    (tmp_path / "model.stream.onnx").write_bytes(b"the user's own graph")  # no spec of vdepth-export's beside it
    with pytest.raises(OutputExistsError, match="not written by `vdepth-export stream`"):
        export_stream_onnx(tmp_path, overwrite=True)
    assert (tmp_path / "model.stream.onnx").read_bytes() == b"the user's own graph"


def test_the_stream_step_exported_to_onnx_streams_on_onnxruntime_as_torch_does(tmp_path) -> None:
    """`vdepth-export stream`: the cache as graph inputs and outputs; ONNX Runtime's stream equals torch's over
    more frames than the context (the cache fills, then slides), each new frame inferred once, and restarts."""
    model = causal_model()
    model.save_pretrained(tmp_path)
    _, h, w = VideoDepthAnythingLite.tiny_input_shape()
    assert cli_main(["stream", str(tmp_path), "--height", str(h), "--width", str(w), "--threads", "1"]) == 0
    report = json.loads((tmp_path / "model.stream.onnx.parity.json").read_text())
    assert report["passed"] and report["checks"][0]["name"].endswith(f"stream{CONTEXT + 3}")
    reference = create_engine(model, backend="torch", height=h, width=w)
    with create_engine(tmp_path, backend="onnxruntime", threads=1) as engine:
        assert engine.backend == "onnxruntime" and engine.streams and engine.input_spec.window == 2
        rgb = (clip(11, seed=3)[0].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        windows = [[max(0, t - 1), t] for t in range(11)]
        runs = []
        for eng in (reference, engine, engine):  # the second ONNX Runtime pass: a restarted stream (ids from 0)
            runs.append(np.stack([eng.infer(rgb[ids], frame_ids=ids)[-1] for ids in windows]))
        assert rel(runs[1], runs[0]) <= 1e-4 and np.array_equal(runs[2], runs[1])
        assert engine.feature_cache.misses == 22  # each frame once per pass
        assert rel(engine.infer(rgb[:2]), reference.infer(rgb[:2])) <= 1e-4  # no ids: a stream of the window
        # in the pipeline (the node's and vdepth-bag's path) too: each frame stepped once on the stream's cache;
        # it had no split graphs, so the pipeline passed no frame ids and every 2-frame window was a new stream
        config = PipelineConfig(scale_source="none", publish="provisional", scene_cut_threshold=0.0)
        piped = []
        for eng in (reference, engine):
            eng.reset_stream()
            pipe = DepthPipeline(config, engine=eng)
            piped.append([f.disparity for i, img in enumerate(rgb) for f in pipe.push(FrameInput(rgb=img, stamp_ns=i))])
        assert rel(np.stack(piped[1]), np.stack(piped[0])) <= 1e-4
        assert engine.feature_cache.misses == 22 + 11  # each frame once
    # a camera of another aspect: `--variant` exports the stream graph at its shape beside model.stream.onnx, and
    # the runtime runs that camera on it (a stream of its own) instead of stretching its frames
    with pytest.raises(ConfigError, match="give --height and --width"):
        export_stream_onnx(tmp_path, variant=True)
    assert cli_main(["stream", str(tmp_path), "--height", str(w), "--width", str(h), "--variant", "--no-parity"]) == 0
    portrait = (clip(3, seed=4)[0].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8).transpose(0, 2, 1, 3)
    with create_engine(tmp_path, threads=1) as engine:
        assert engine.backend == "onnxruntime" and engine.streams  # auto takes the stream graph
        assert sorted(engine.resolutions()) == sorted([(h, w), (w, h)])
        turned = engine.at_resolution(w, h)
        assert turned.streams and turned.input_spec.height == w
        ids = [[0, 0], [0, 1], [1, 2]]
        torch_turned = create_engine(model, backend="torch", height=w, width=h)
        runs = [np.stack([e.infer(portrait[i], frame_ids=i)[-1] for i in ids]) for e in (turned, torch_turned)]
        assert rel(runs[0], runs[1]) <= 1e-4
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_stream_onnx(tmp_path)
    other = tmp_path / "other.onnx"  # a graph that is not the stream step its spec describes: named, not run
    frame = helper.make_tensor_value_info("frame", onnx.TensorProto.FLOAT, [1, 3, h, w])
    out = helper.make_tensor_value_info("disparity", onnx.TensorProto.FLOAT, [1, 3, h, w])
    graph = helper.make_graph([helper.make_node("Identity", ["frame"], ["disparity"])], "g", [frame], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), other)
    shutil.copy(tmp_path / "model.stream.onnx.json", tmp_path / "other.onnx.json")
    with pytest.raises(ModelLoadError, match=r"not the stream-step graph.*`vdepth-export stream"):
        create_engine(other)
    causal_model(seed=2).save_pretrained(tmp_path)  # retrained: the graph would run the old weights
    with pytest.raises(ModelLoadError, match=r"other weights.*`vdepth-export stream"):
        create_engine(tmp_path, backend="onnxruntime")
    with create_engine(tmp_path) as engine:  # torch, at the stream graph's shape (not the 280x504 default)
        assert engine.backend == "torch" and (engine.input_spec.height, engine.input_spec.width) == (h, w)
    with pytest.raises(ConfigError, match=f"`vdepth-export stream {tmp_path}`"):
        export_onnx(tmp_path, frames=2, height=h, width=w)  # a window graph would see one earlier frame
    windowed = tmp_path / "windowed"
    VideoDepthAnythingLite(**VideoDepthAnythingLite.tiny_config()).save_pretrained(windowed)
    with pytest.raises(ConfigError, match="not a causal model"):
        export_stream_onnx(windowed)


def test_a_stream_restarts_from_an_empty_cache_at_a_gap_and_a_change_of_size() -> None:
    """The stream state belongs to one stream of frames: after frames of another size (stretched to the one shape a
    stream graph has) or a gap the outputs equal a fresh pipeline's, not a continuation of the earlier frames."""
    config = PipelineConfig(scale_source="none", publish="provisional", scene_cut_threshold=0.0)
    engine = PastSummingEngine(48, 64, frames=2, overlap=1)  # as a stream graph: one shape, no split graphs
    pipe = DepthPipeline(config, engine=engine)
    rng = np.random.default_rng(0)
    landscape = [rng.integers(0, 255, (48, 64, 3), np.uint8) for _ in range(4)]
    wide = [rng.integers(0, 255, (36, 64, 3), np.uint8) for _ in range(4)]

    def run(pipeline: DepthPipeline, frames: list[np.ndarray], t0: float) -> list[np.ndarray]:
        """The outputs of `frames` (stamped from `t0` tenths of a second on), without ending the stream."""
        stamps = [int((t0 + i) * 1e8) for i in range(len(frames))]
        out = [f for img, stamp in zip(frames, stamps, strict=True) for f in pipeline.push(FrameInput(img, stamp))]
        return [f.disparity for f in out if f.stamp_ns in stamps]

    run(pipe, landscape, 0)
    for frames, t0 in ((wide, 4), (landscape, 100)):  # a change of size, then a gap (the node's reset at max_gap)
        if t0 == 100:
            pipe.reset("gap: 9.6 s without input")
        fresh = run(DepthPipeline(config, engine=PastSummingEngine(48, 64, frames=2, overlap=1)), frames, t0)
        np.testing.assert_allclose(run(pipe, frames, t0), fresh, rtol=1e-6)
    assert engine.feature_cache.misses == 12  # each frame stepped once (the pipeline passed no frame ids: 0)
