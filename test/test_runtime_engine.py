"""create_engine, the torch and ONNX Runtime backends, provider selection and backend choice."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from test_runtime_tinynet import TinyVideoNet, tiny_registry  # noqa: F401 - pytest fixture

from vdepth_ros.errors import BackendUnavailableError, ConfigError, InputError, ModelLoadError
from vdepth_ros.runtime import create_engine, spec_from_model
from vdepth_ros.runtime.onnx_backend import CPU_EP, CUDA_EP, TRT_EP, OnnxRuntimeEngine, select_providers
from vdepth_ros.runtime.spec import InputSpec, spec_path_for
from vdepth_ros.runtime.torch_backend import TorchEngine

T, H, W = 4, 24, 40


def _clip(seed: int, t: int = T, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _export(model: TinyVideoNet, folder: Path, t: int = T, h: int = H, w: int = W) -> Path:
    """Minimal fixed-shape export (the full exporter is tested in test_export_*)."""
    spec = spec_from_model(model, t, h, w)
    sig = model.export_signature(t, h, w)
    path = folder / "model.onnx"
    torch.onnx.export(
        sig.module.eval(), (torch.rand(sig.input_shape),), str(path), dynamo=False, opset_version=17,
        input_names=["frames"], output_names=["disparity"],
    )  # fmt: skip
    spec.save(spec_path_for(path))
    return path


@pytest.fixture
def model_dir(tmp_path, request) -> Path:
    request.getfixturevalue("tiny_registry")  # load_model(folder) must find the test family
    model = TinyVideoNet(channels=4).eval()
    model.save_pretrained(tmp_path)
    _export(model, tmp_path)
    return tmp_path


def test_spec_from_model_validates_shape() -> None:
    model = TinyVideoNet(multiple_of=4, window=6)
    spec = spec_from_model(model, None, 24, 40)
    assert (spec.frames, spec.window, spec.overlap, spec.multiple_of) == (6, 6, 2, 4)
    assert spec_from_model(model, 2, 24, 40).overlap == 0  # overlap 2 does not fit a 2-frame window
    with pytest.raises(ConfigError, match="multiple of 4"):
        spec_from_model(model, 4, 25, 40)
    default = spec_from_model(model)
    assert default.height % 4 == 0
    assert default.width % 4 == 0
    assert default.width > default.height


def test_torch_and_onnxruntime_agree_through_create_engine(model_dir) -> None:
    clips = [_clip(1), _clip(2)[:3]]  # a full and a short (padded) window
    with (
        create_engine(model_dir, backend="torch", threads=1) as te,  # shape from model.onnx.json
        create_engine(model_dir, backend="onnxruntime", threads=1) as oe,
    ):
        assert isinstance(te, TorchEngine)
        assert isinstance(oe, OnnxRuntimeEngine)
        assert oe.providers == [CPU_EP]
        assert te.input_spec == oe.input_spec
        outs = []
        for clip in clips:
            a, b = te.infer(clip), oe.infer(clip)
            assert a.shape == b.shape == (clip.shape[0], H, W)
            assert a.dtype == np.float32
            rng = float(a.max() - a.min())
            assert rng > 0
            assert float(np.abs(a - b).max()) <= 1e-4 * rng
            outs.append(a)
        # the two inputs really differ (parity on identical outputs would prove nothing)
        assert float(np.abs(outs[0][:3] - outs[1]).max()) > 1e-3


def test_short_window_is_padded_not_truncated(model_dir) -> None:
    with create_engine(model_dir, backend="onnxruntime") as eng:
        clip = _clip(3)
        short = eng.infer(clip[:2])
        padded = np.concatenate([clip[:2], clip[1:2], clip[1:2]])
        np.testing.assert_allclose(short, eng.infer(padded)[:2], rtol=0, atol=1e-6)
        with pytest.raises(InputError, match=r"1\.\.4"):
            eng.infer(_clip(4, t=T + 1))
        with pytest.raises(InputError, match="resize"):
            eng.infer(_clip(4, h=H + 4))


def test_auto_prefers_onnx_then_torch(model_dir, caplog) -> None:
    caplog.set_level(logging.INFO, logger="vdepth_ros.runtime")
    with create_engine(model_dir, threads=1) as eng:
        assert eng.backend == "onnxruntime"
    assert "auto backend: onnxruntime" in caplog.text
    assert "no model.engine" in caplog.text
    (model_dir / "model.onnx").unlink()
    caplog.clear()
    with create_engine(model_dir, threads=1, height=H, width=W, frames=T) as eng:
        assert eng.backend == "torch"
    assert "auto backend: torch" in caplog.text


def test_create_engine_from_instance_and_files(model_dir) -> None:
    model = TinyVideoNet(channels=4).eval()
    with create_engine(model, frames=3, height=16, width=20) as eng:
        assert eng.backend == "torch"
        assert eng.infer(_clip(5, 3, 16, 20)).shape == (3, 16, 20)
    with pytest.raises(ConfigError, match="export it first"):
        create_engine(model, backend="onnxruntime")
    with create_engine(model_dir / "model.onnx") as eng:
        assert eng.backend == "onnxruntime"
    with pytest.raises(ConfigError, match="ONNX file"):
        create_engine(model_dir / "model.onnx", backend="torch")
    with pytest.raises(ConfigError, match="do not apply"):
        create_engine(model_dir, backend="onnxruntime", height=10)
    with pytest.raises(ModelLoadError, match=r"no model\.engine"):
        create_engine(model_dir, backend="tensorrt")
    with pytest.raises(ConfigError, match="backend must be"):
        create_engine(model_dir, backend="jax")
    with pytest.raises(ConfigError, match="precision"):
        create_engine(model_dir, precision="int4")


def test_onnx_spec_mismatch_is_refused(model_dir) -> None:
    spec = InputSpec.load(model_dir / "model.onnx.json")
    bad = InputSpec.from_dict({**spec.to_dict(), "height": H + 4})
    with pytest.raises(ModelLoadError, match="shape"):
        OnnxRuntimeEngine(model_dir / "model.onnx", bad)


def test_tensorrt_backend_reports_missing_extra(model_dir) -> None:
    engine = model_dir / "model.engine"
    engine.write_bytes(b"not an engine")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError, match="install the 'trt' extra"):
            create_engine(engine)
    else:  # pragma: no cover - only on machines with TensorRT
        pytest.skip("tensorrt is installed; the missing-extra path cannot be exercised")


def test_provider_selection_order_and_overrides(tmp_path) -> None:
    avail = [CPU_EP, CUDA_EP, TRT_EP, "AzureExecutionProvider"]
    chosen = select_providers(avail, precision="fp16", cache_dir=tmp_path)
    assert [n for n, _ in chosen] == [TRT_EP, CUDA_EP, CPU_EP]
    trt_opts = chosen[0][1]
    assert trt_opts["trt_fp16_enable"] is True
    assert trt_opts["trt_engine_cache_path"] == str(tmp_path)
    assert trt_opts["trt_timing_cache_enable"] is True
    assert [n for n, _ in select_providers([CPU_EP, "AzureExecutionProvider"])] == [CPU_EP]
    over = select_providers(avail, ["cpu", (TRT_EP, {"trt_fp16_enable": False})], precision="fp16")
    assert [n for n, _ in over] == [CPU_EP, TRT_EP]
    assert over[1][1]["trt_fp16_enable"] is False
    with pytest.raises(BackendUnavailableError, match="install the 'trt' extra"):
        select_providers([CPU_EP], ["cuda"])


def test_gpu_providers_unavailable_here_fail_clearly(model_dir) -> None:
    import onnxruntime as ort

    if CUDA_EP in ort.get_available_providers():  # pragma: no cover
        pytest.skip("CUDA EP present")
    with pytest.raises(BackendUnavailableError, match="unavailable"):
        create_engine(model_dir, backend="onnxruntime", providers=["cuda"])


def test_ort_threads_do_not_spin_by_default(model_dir) -> None:
    key = "session.intra_op.allow_spinning"
    with create_engine(model_dir, backend="onnxruntime", threads=2) as eng:
        opts = eng.session.get_session_options()
        assert opts.get_session_config_entry(key) == "0"
        assert opts.intra_op_num_threads == 2
    with create_engine(model_dir, backend="onnxruntime", spinning=True) as eng:
        assert eng.session.get_session_options().get_session_config_entry(key) == "1"


@pytest.fixture
def gpu_eps_listed_but_broken(monkeypatch, tmp_path) -> None:
    """onnxruntime-gpu on a machine whose CUDA/cuDNN/TensorRT libraries do not load (or without a GPU):
    it lists the GPU execution providers, and its sessions go on without them. The CPU build here does
    just that with the two names added to its list (the session drops them with its own warning). The
    TensorRT EP cache folders go under tmp_path, not the user's ~/.cache."""
    import warnings

    import onnxruntime as ort

    from vdepth_ros.runtime import onnx_backend

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    real = ort.get_available_providers
    monkeypatch.setattr(ort, "get_available_providers", lambda: [TRT_EP, CUDA_EP, *real()])
    monkeypatch.setattr(onnx_backend, "_WARNED_NOT_STARTED", set(), raising=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Specified provider")
        yield


def test_a_requested_gpu_provider_that_does_not_start_is_refused(model_dir, gpu_eps_listed_but_broken) -> None:
    with pytest.raises(BackendUnavailableError, match=r"could not start.*CUDA, cuDNN.*request the ones that run here"):
        create_engine(model_dir, backend="onnxruntime", providers=["cuda"])


def test_default_gpu_providers_that_do_not_start_warn_once_and_run_on_the_cpu(
    model_dir, gpu_eps_listed_but_broken, caplog
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="vdepth_ros.runtime.onnx_backend"),
        create_engine(model_dir, threads=1) as a,
        create_engine(model_dir, threads=1) as b,
    ):
        assert a.describe()["providers"] == b.describe()["providers"] == [CPU_EP]
        assert a.infer(_clip(1)).shape == (T, H, W)
    said = [r.getMessage() for r in caplog.records if "could not start" in r.getMessage()]
    assert len(said) == 1, said
    assert TRT_EP in said[0]
    assert CUDA_EP in said[0]
    assert "Running on CPUExecutionProvider" in said[0]


_THREADS_SCRIPT = """
import os, sys
import numpy as np
from vdepth_ros.runtime import create_engine
from vdepth_ros.runtime.onnx_backend import usable_cores

def threads_added(**opts):
    before = len(os.listdir("/proc/self/task"))
    with create_engine(sys.argv[1], backend="onnxruntime", **opts) as eng:
        eng.infer(np.zeros((eng.input_spec.frames, eng.input_spec.height, eng.input_spec.width, 3), np.uint8))
        return len(os.listdir("/proc/self/task")) - before

threads_added(threads=1)  # once-per-process threads (ONNX Runtime's) start here, not below
print(threads_added(), threads_added(threads=1), threads_added(threads=usable_cores()), usable_cores())
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux CPU affinity")
def test_default_onnxruntime_threads_follow_the_cores_the_process_may_use(model_dir) -> None:
    """A node pinned to some of the machine's cores (taskset, a container's cpuset): ONNX Runtime's own
    default started a thread per core of the machine, all crowding the allowed ones."""
    import os
    import subprocess
    import sys

    def added(cores: set[int]) -> list[int]:
        out = subprocess.run(
            [sys.executable, "-c", _THREADS_SCRIPT, str(model_dir / "model.onnx")],
            capture_output=True, text=True, timeout=120, check=True, preexec_fn=lambda: os.sched_setaffinity(0, cores),
        )  # fmt: skip
        return [int(n) for n in out.stdout.split()]

    allowed = os.sched_getaffinity(0)
    default, one, every, cores = added({min(allowed)})
    assert cores == 1
    assert default == one == every == 0  # one core: the calling thread alone
    default, one, every, cores = added(allowed)
    assert cores <= len(allowed)  # at most the affinity (a cgroup CPU quota may lower it)
    assert default == every  # ORT with a thread per usable core


def test_tensorrt_ep_engines_are_cached_per_graph_and_never_handed_to_another(
    model_dir, gpu_eps_listed_but_broken, monkeypatch, tmp_path
) -> None:
    """The TensorRT EP (onnxruntime-gpu on a Jetson, the first of the default order) builds its engine at
    every start unless given a cache folder, and names its cached engines by the model's path, not its weights: a
    retrained model exported again would load the old weights' engine from a shared folder. The options
    ONNX Runtime would get (it cannot run the EP here) say where its engines go."""
    import onnxruntime as ort

    given: list[dict] = []
    real = ort.InferenceSession

    def recording(path, sess_options=None, providers=None, provider_options=None, **kw):
        given.append(dict(zip(providers, provider_options, strict=True)))
        return real(path, sess_options=sess_options, providers=providers, provider_options=provider_options, **kw)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    def engine_cache(**opts) -> Path:
        with create_engine(model_dir, threads=1, **opts):
            trt = given[-1][TRT_EP]
        assert trt["trt_engine_cache_enable"] is True
        assert trt["trt_timing_cache_path"] == trt["trt_engine_cache_path"]
        return Path(trt["trt_engine_cache_path"])

    first = engine_cache()
    assert first.is_dir()
    assert first.is_relative_to(tmp_path / "xdg" / "vdepth_ros")  # the user's cache, not the model folder
    assert engine_cache() == first  # the next start finds its engine
    assert engine_cache(precision="fp16") != first
    assert engine_cache(cache_dir=tmp_path / "mine").parent == tmp_path / "mine"
    torch.manual_seed(7)  # retrained: the same layers and file name, other weights
    _export(TinyVideoNet(channels=4).eval(), model_dir)
    assert engine_cache() not in (first, None)


def test_fp16_on_the_cpu_runs_in_fp32_with_one_warning(model_dir, monkeypatch, caplog) -> None:
    """`precision: fp16` on a machine without a GPU (a config copied from the Jetson): PyTorch's CPU fp16
    kernels made every window about 13x slower (tiny VDA, 8x280x504: 11.8 s instead of 0.9 s), silently."""
    from vdepth_ros.runtime import torch_backend

    monkeypatch.setattr(torch_backend, "_NOTED_CPU_FP16", [], raising=False)
    with caplog.at_level(logging.WARNING, logger="vdepth_ros.runtime"):
        with create_engine(model_dir, backend="torch", precision="fp32", threads=1) as ref:
            want = ref.infer(_clip(3))
        for _ in range(2):
            with create_engine(model_dir, backend="torch", precision="fp16", threads=1) as eng:
                assert eng.describe()["precision"] == "fp32"
                np.testing.assert_array_equal(eng.infer(_clip(3)), want)
    said = [r.getMessage() for r in caplog.records if "fp16 is not applied on the CPU" in r.getMessage()]
    assert len(said) == 1
    assert "precision fp32" in said[0]


_HOLD_SCRIPT = """
import sys, warnings
import onnxruntime as ort
from vdepth_ros.runtime import create_engine
from vdepth_ros.runtime.onnx_backend import CUDA_EP, TRT_EP

real = ort.get_available_providers
ort.get_available_providers = lambda: [TRT_EP, CUDA_EP, *real()]  # as gpu_eps_listed_but_broken
warnings.filterwarnings("ignore", message="Specified provider")
with create_engine(sys.argv[1], threads=1, precision="fp16"):
    print("open", flush=True)
    sys.stdin.readline()
"""


def test_tensorrt_ep_caches_are_bounded_oldest_first_never_one_in_use_or_the_users(
    model_dir, gpu_eps_listed_but_broken, monkeypatch, tmp_path
) -> None:
    """Each graph, precision, ONNX Runtime/TensorRT version and GPU gets its own TensorRT EP cache folder
    (engines of hundreds of MB for a ViT), and none was ever removed: every re-export, precision tried and
    upgrade left one more in ~/.cache for good. The least recently used beyond the bound go, never one a
    running node (another process) uses, never a folder the package did not create."""
    import os
    import subprocess
    import sys

    from vdepth_ros.runtime import trt_cache

    monkeypatch.setattr(trt_cache, "ORT_TRT_CACHE_KEEP", 2)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "xdg" / "vdepth_ros" / "ort-trt"
    mine = root / "model-fp32-0123456789abcdef"  # the user's own, named like ours
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")

    def use(precision: str) -> None:
        with create_engine(model_dir, threads=1, precision=precision):
            pass

    def ours() -> set[str]:
        return {p.name.split("-")[1] for p in root.iterdir() if p != mine}

    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_SCRIPT, str(model_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        assert ours() == {"fp16"}
        use("fp32")
        use("bf16")
        assert ours() == {"fp16", "fp32", "bf16"}  # the oldest, fp16, is the running node's
    finally:
        holder.communicate("\n", timeout=60)
    use("bf16")
    assert ours() == {"fp32", "bf16"}  # no longer in use: the least recently used went
    use("fp16")
    use("bf16")
    assert ours() == {"bf16", "fp16"}
    use("fp16")  # found again, not built again: it is the newest now
    use("fp32")
    assert ours() == {"fp16", "fp32"}
    assert (mine / "notes.txt").read_text() == "mine"


def test_a_read_only_tensorrt_ep_cache_is_still_used(
    model_dir, gpu_eps_listed_but_broken, monkeypatch, tmp_path, caplog
) -> None:
    """A cache folder prepared once and mounted read-only (a robot's image): the engines in it are used, not
    refused for want of writing the folder's marker or its last-use time, and nothing is removed from it."""
    import errno
    import os
    import shutil

    import onnxruntime as ort

    from vdepth_ros.runtime import trt_cache

    given: list[dict] = []
    real = ort.InferenceSession

    def recording(path, sess_options=None, providers=None, provider_options=None, **kw):
        given.append(dict(zip(providers, provider_options, strict=True)))
        return real(path, sess_options=sess_options, providers=providers, provider_options=provider_options, **kw)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    monkeypatch.setattr(trt_cache, "ORT_TRT_CACHE_KEEP", 0)
    root = tmp_path / "prepared"
    with create_engine(model_dir, threads=1, cache_dir=root):
        folder = Path(given[-1][TRT_EP]["trt_engine_cache_path"])
    (folder / "engine.trt").write_bytes(b"built")
    (root / "older").mkdir()
    shutil.copy(folder / trt_cache.ORT_TRT_CACHE_MARKER, root / "older")  # another graph's, not in use
    (folder / trt_cache.ORT_TRT_CACHE_MARKER).unlink()  # prepared by an earlier version: no marker

    def read_only(*args: object, **kw: object) -> None:  # what a read-only mount answers (root included)
        raise OSError(errno.EROFS, "Read-only file system")

    for name in ("utime", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, read_only)
    monkeypatch.setattr(Path, "write_text", read_only)
    monkeypatch.setattr(shutil, "rmtree", read_only)
    with caplog.at_level(logging.WARNING, logger="vdepth_ros.runtime"):
        for _ in range(2):
            with create_engine(model_dir, threads=1, cache_dir=root):
                assert given[-1][TRT_EP].get("trt_engine_cache_path") == str(folder)
    assert (folder / "engine.trt").read_bytes() == b"built"
    assert (root / "older").is_dir()
    said = [r.getMessage() for r in caplog.records if "older" in r.getMessage()]
    assert len(said) == 1 and "Read-only" in said[0], said  # once, not at every start
