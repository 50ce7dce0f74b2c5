"""Exact reuse of overlap work (issue #29): the cached paths equal the uncached ones.

torch and ONNX Runtime, on tiny VDA and VDA-Lite models with randomised heads (so the temporal
layers matter), over the families' own keyframe window schedules; the pipeline with and without
reuse; the cache's identity rules (reset, restarted ids, pooled handles).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vdepth_ros.models.gemdepth import GemDepth
from vdepth_ros.models.vda import VideoDepthAnything
from vdepth_ros.models.vda_lite import VideoDepthAnythingLite
from vdepth_ros.pipeline import DepthPipeline, FrameInput, PipelineConfig
from vdepth_ros.runtime import create_engine
from vdepth_ros.runtime.reuse import FrameFeatureCache, SplitMeta, split_files_for
from vdepth_ros.runtime.shared import FairLock, SharedEngine
from vdepth_ros.runtime.spec import InputSpec, spec_path_for
from vdepth_ros.runtime.trt_cache import EXTERNAL_DATA_KEY, onnx_sha256
from vdepth_ros.stream.windows import WindowScheduler

FAMILIES = [VideoDepthAnything, VideoDepthAnythingLite]
TOL = 1e-5  # of the output range


def tiny_model(cls: type, seed: int = 1, **overrides) -> torch.nn.Module:
    """A tiny model whose head (zero-initialised motion modules in a fresh model) is randomised."""
    model = cls(**{**cls.tiny_config(), **overrides}).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def schedule(window: int, overlap: int, keyframes, count: int) -> list[list[int]]:
    sched = WindowScheduler(window, overlap, schedule="keyframe", keyframes=keyframes)
    out: list[list[int]] = []
    while len(out) < count:
        sched.add_frame()
        while (w := sched.next_window()) is not None and len(out) < count:
            out.append(list(w.slots))
    return out


def frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / (b.max() - b.min()))


class CountingEncodes:
    """Wraps an engine's `_encode` to record how many frames each call encodes."""

    def __init__(self, engine) -> None:
        self.sizes: list[int] = []
        inner = engine._encode

        def encode(x):
            self.sizes.append(len(x))
            return inner(x)

        engine._encode = encode


@pytest.mark.parametrize("cls", [*FAMILIES, GemDepth], ids=lambda c: c.family)
def test_torch_reuse_equals_the_uncached_window_and_encodes_only_new_frames(cls) -> None:
    model = tiny_model(cls)
    _, h, w = cls.tiny_input_shape()
    plain = create_engine(model, backend="torch", frames=8, height=h, width=w, reuse=False)
    reuse = create_engine(model, backend="torch", frames=8, height=h, width=w)
    assert reuse.supports_reuse and not plain.supports_reuse and not reuse.streams
    spec = reuse.input_spec
    windows = schedule(spec.window, spec.overlap, spec.keyframes, 4)  # 8/4, keyframes (0, 3, 6, 7)
    clip = frames(max(max(w) for w in windows) + 1, h, w)
    count = CountingEncodes(reuse)
    for ids in windows:
        out = reuse.infer(clip[ids], frame_ids=ids)
        assert rel(out, plain.infer(clip[ids])) <= TOL
    # the first window encodes all 8, every later one only its 4 new frames (slots 0, 3, 6, 7 reused)
    assert count.sizes == [8, 4, 4, 4]
    assert (reuse.feature_cache.hits, reuse.feature_cache.misses) == (12, 20)
    assert len(reuse.feature_cache) == 8  # only the latest window is kept


@pytest.mark.parametrize("cls", FAMILIES, ids=lambda c: c.family)
def test_pipeline_output_is_unchanged_by_reuse(cls) -> None:
    model = tiny_model(cls)
    _, h, w = cls.tiny_input_shape()
    clip = frames(19, h, w, seed=3)  # a partial, padded last window too
    outs = []
    for reuse in (False, True):
        engine = create_engine(model, backend="torch", height=h, width=w, reuse=reuse)
        # noise frames are all scene cuts to the detector: off, so windows follow the schedule
        pipe = DepthPipeline(PipelineConfig(scale_source="none", scene_cut_threshold=0.0), engine=engine)
        got = [f for i, img in enumerate(clip) for f in pipe.push(FrameInput(rgb=img, stamp_ns=i))] + pipe.flush()
        outs.append(np.stack([f.disparity for f in got]))
        assert engine.feature_cache.hits == (12 if reuse else 0)
    assert outs[0].shape == outs[1].shape
    assert rel(outs[1], outs[0]) <= TOL


def test_reset_and_restarted_ids_never_serve_stale_features() -> None:
    model = tiny_model(VideoDepthAnythingLite)
    _, h, w = VideoDepthAnythingLite.tiny_input_shape()
    plain = create_engine(model, backend="torch", frames=8, height=h, width=w, reuse=False)
    reuse = create_engine(model, backend="torch", frames=8, height=h, width=w)
    a, b = frames(12, h, w, seed=1), frames(8, h, w, seed=2)
    ids = list(range(8))
    for window in schedule(8, 4, (0, 3, 6, 7), 2):  # stream a: frames 0..11
        reuse.infer(a[window], frame_ids=window)
    # a new stream whose ids restart at 0 without reset_stream: frames 1, 2, 4, 5 are not cached and
    # older than frame 11, so the cache is dropped and every frame encoded again
    assert rel(reuse.infer(b, frame_ids=ids), plain.infer(b)) <= TOL
    assert reuse.feature_cache.hits == 4  # only stream a's second window reused anything
    reuse.reset_stream()
    assert len(reuse.feature_cache) == 0
    assert rel(reuse.infer(a[:8], frame_ids=ids), plain.infer(a[:8])) <= TOL
    # the pipeline resets the engine's stream with its own state
    pipe = DepthPipeline(PipelineConfig(scale_source="none"), engine=reuse)
    reuse.infer(a[:8], frame_ids=ids)
    pipe.reset("test")
    assert len(reuse.feature_cache) == 0


def test_feature_cache_rules() -> None:
    cache = FrameFeatureCache()
    assert cache.missing([0, 1, 1, 2]) == [0, 1, 2]
    for i in (0, 1, 2):
        cache.put(i, (np.full(1, i),))
    assert cache.missing([0, 2, 3, 3]) == [3]
    cache.put(3, (np.full(1, 3),))
    assert [f[0][0] for f in cache.get([0, 2, 3, 3], new=[3])] == [0, 2, 3, 3]
    assert cache.hits == 2
    cache.retain([2, 3])
    assert len(cache) == 2 and 0 not in cache
    assert cache.missing([1, 2]) == [1, 2]  # 1 is older than the newest frame: a new stream, dropped
    assert len(cache) == 0


def test_pooled_handles_keep_their_own_caches() -> None:
    model = tiny_model(VideoDepthAnythingLite)
    _, h, w = VideoDepthAnythingLite.tiny_input_shape()
    engine = create_engine(model, backend="torch", frames=8, height=h, width=w)
    front, rear = SharedEngine(engine, lock := FairLock()), SharedEngine(engine, lock)
    assert front.supports_reuse and front.inner is rear.inner
    a, b = frames(8, h, w, seed=1), frames(8, h, w, seed=2)
    ids = list(range(8))
    out_front = front.infer(a, frame_ids=ids)
    out_rear = rear.infer(b, frame_ids=ids)  # same ids, other camera: its own frames
    assert rel(out_rear, engine.infer(b)) <= TOL and rel(out_front, engine.infer(a)) <= TOL
    assert front.feature_cache.hits == rear.feature_cache.hits == 0 and front.calls == rear.calls == 1


@pytest.fixture(scope="module")
def split_folder(module_tmp: Path) -> Path:
    from vdepth_export.export_onnx import export_onnx
    from vdepth_export.export_split import export_split_onnx

    folder = module_tmp
    model = tiny_model(VideoDepthAnythingLite)
    _, h, w = VideoDepthAnythingLite.tiny_input_shape()
    # dynamic frames: the whole graph also runs windows of other lengths, the split graphs only the exported one
    # weights in model.onnx.data (as over 2 GB): the split graphs, whose own weights are in them, record none
    export_onnx(
        model, folder, frames=8, height=h, width=w, parity=False, dynamic_frames=True, external_data_threshold=1
    )
    meta = export_split_onnx(folder, folder / "model.onnx", evaldata=None)
    assert meta.parity is not None and meta.parity["passed"]
    return folder


@pytest.mark.slow
def test_onnxruntime_split_graphs_equal_the_whole_graph(split_folder: Path) -> None:
    files = split_files_for(split_folder / "model.onnx")
    assert files.exist()
    meta = SplitMeta.load(files.meta)
    assert meta.feature_names == ("level1", "level2", "level3", "level4") and meta.frames == 8
    data = [
        InputSpec.load(spec_path_for(g)).extra[EXTERNAL_DATA_KEY]
        for g in (split_folder / "model.onnx", files.frame, files.window)
    ]
    assert data == ["model.onnx.data", None, None]
    whole = create_engine(split_folder, backend="onnxruntime", reuse=False)
    split = create_engine(split_folder, backend="onnxruntime")
    assert split.supports_reuse and not whole.supports_reuse
    spec = split.input_spec
    windows = schedule(spec.window, spec.overlap, spec.keyframes, 3)
    clip = frames(max(max(w) for w in windows) + 1, spec.height, spec.width)
    for ids in windows:
        reference = whole.infer(clip[ids])
        assert rel(split.infer(clip[ids], frame_ids=ids), reference) <= TOL
        assert rel(split.infer(clip[ids]), reference) <= TOL  # no ids: both graphs on every frame
    assert split.feature_cache.hits == 8
    # a dynamic-frames graph's shorter window (a stream's first or last) runs whole: the window graph has 8
    # frames, and ONNX Runtime refused 5 ("Got: 5 Expected: 8"); the next full window reuses what it can
    assert spec.dynamic_frames
    for ids in ([11, 12, 13, 14, 15], list(range(8, 16))):
        assert rel(split.infer(clip[ids], frame_ids=ids), whole.infer(clip[ids])) <= TOL
        assert rel(split.infer(clip[ids]), whole.infer(clip[ids])) <= TOL


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    [{"onnx_sha256": "0" * 64}, {"width": 64}, {"parity": {"passed": False, "max_abs_rel": 0.5}}],
    ids=["other-onnx", "other-shape", "failed-parity"],
)
def test_stale_split_graphs_are_not_used(split_folder: Path, tmp_path: Path, caplog, change: dict) -> None:
    folder = tmp_path / "m"
    shutil.copytree(split_folder, folder)
    files = split_files_for(folder / "model.onnx")
    meta = SplitMeta.load(files.meta)
    spec = InputSpec.load(folder / "model.onnx.json")
    assert meta.mismatch(spec, onnx_sha256(folder / "model.onnx")) is None
    files.meta.write_text(json.dumps({**meta.to_dict(), **change}))  # a re-export of model.onnx / another shape
    caplog.set_level(logging.WARNING, logger="vdepth_ros.runtime")
    with create_engine(folder, backend="onnxruntime") as engine:
        assert not engine.supports_reuse  # the whole-window graph runs instead
        assert engine.infer(frames(8, spec.height, spec.width)).shape == (8, spec.height, spec.width)
    assert "not reusing overlap work" in caplog.text


def test_reuse_in_reduced_precision() -> None:
    """The engine casts the model first; the split graphs run in that precision too."""
    model = tiny_model(VideoDepthAnythingLite)
    _, h, w = VideoDepthAnythingLite.tiny_input_shape()
    engine = create_engine(model, backend="torch", precision="bf16", frames=8, height=h, width=w)
    clip = frames(12, h, w)
    for ids in schedule(8, 4, (0, 3, 6, 7), 2):
        assert rel(engine.infer(clip[ids], frame_ids=ids), engine.infer(clip[ids])) <= 1e-2
    assert engine.feature_cache.hits == 4


def test_a_split_half_given_as_the_model_names_the_whole_graph(split_folder: Path) -> None:
    """`model: .../model.frame.onnx` (the per-frame half `vdepth-export split` writes) stopped the node with
    "graph has no output named 'disparity' (has ['level1', ...])", and the per-window half with its own
    input error: now what the file is and the whole graph or folder to give."""
    from vdepth_ros.errors import ModelLoadError
    from vdepth_ros.runtime.checks import checked_model

    for half, name in (("per-frame", "model.frame.onnx"), ("per-window", "model.window.onnx")):
        with pytest.raises(ModelLoadError) as err:
            checked_model(str(split_folder / name))
        assert str(err.value) == (
            f"{split_folder / name} is the {half} half of a split export (vdepth-export split), not a whole model: "
            f"give {split_folder / 'model.onnx'} or the folder {split_folder} (the whole graph runs its split "
            "halves itself where they match it)"
        )
    assert checked_model(str(split_folder / "model.onnx")) == str(split_folder / "model.onnx")


def test_a_machines_split_engine_given_as_the_model_names_its_whole_engine(tmp_path: Path) -> None:
    """One machine's split engine beside another's (`model.frame.<platform>.engine`, `reuse.split_files_for`)
    given as the model was taken for a whole engine; it is refused as the split halves are, naming that
    machine's whole engine."""
    from vdepth_ros.errors import ModelLoadError
    from vdepth_ros.runtime.checks import checked_model

    platform = "trt10.13.0.35-nvidia-jetson-agx-orin-sm8.7"
    half = tmp_path / f"model.window.{platform}.engine"
    for path in (half, tmp_path / "model.split.json"):
        path.write_text("{}")
    with pytest.raises(ModelLoadError, match="per-window half of a split export") as err:
        checked_model(str(half))
    assert f"give {tmp_path / f'model.{platform}.engine'} or the folder {tmp_path}" in str(err.value)
