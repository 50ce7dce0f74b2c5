"""The latency benchmarks' own logic (not their timings): the authors' VDA windows equal the
package's keyframe schedule, the einops stub reproduces the authors' patterns, and the prepared GPU
script runs end to end on the CPU at tiny sizes and writes its JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vdepth_ros.paths import reference_code_dir
from vdepth_ros.stream.windows import WindowScheduler

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


STAND_INS = ("torchvision", "einops", "easydict", "video_depth_anything", "utils")


@pytest.fixture(autouse=True)
def _restore_stand_ins():
    """The benchmarks put stand-ins (torchvision, einops, easydict) and the authors' modules into
    `sys.modules` for the life of their process; in the test process they must not outlive the test,
    or a later parity test imports the authors' code against a stand-in missing what it needs."""

    def ours(name: str) -> bool:
        return name.split(".")[0] in STAND_INS

    before = {n: m for n, m in sys.modules.items() if ours(n)}
    yield
    for name in [n for n in sys.modules if ours(n)]:
        del sys.modules[name]
    sys.modules.update(before)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_authors_windows_are_the_package_keyframe_schedule() -> None:
    va = _load("vs_authors_vda")
    # 5 windows, the last one padded. (At n = 98, i.e. n - 10 a multiple of 22, the authors' loop runs
    # a 5th window whose new slots are all padding, which only re-blends the last 8 frames; the
    # package's stream ends after 4: a difference at the very end of a clip, left to the stream core.)
    n = 100
    theirs = va.authors_windows(n)
    sched = WindowScheduler(32, 10, schedule="keyframe", keyframes=va.KEYFRAMES)
    ours = []
    for _ in range(n):
        sched.add_frame()
        while (w := sched.next_window()) is not None:
            ours.append(list(w.slots))
    while (w := sched.next_window(final=True)) is not None:
        ours.append(list(w.slots) + [w.slots[-1]] * w.pad)
    assert len(ours) == len(theirs) == 5
    for a, b in zip(ours, theirs, strict=True):  # their padding slots are copies of the last frame
        assert a == [min(i, n - 1) for i in b]


def test_einops_stub_matches_the_patterns_the_authors_use() -> None:
    rearrange = _load("vs_authors_vda")._einops_stub().rearrange
    x = torch.arange(2 * 3 * 4 * 5 * 6).reshape(2, 3, 4, 5, 6).float()  # b c f h w
    y = rearrange(x, "b c f h w -> (b f) c h w")
    assert torch.equal(y, x.permute(0, 2, 1, 3, 4).reshape(8, 3, 5, 6))
    assert torch.equal(rearrange(y, "(b f) c h w -> b c f h w", f=4), x)
    h = torch.randn(2 * 4, 7, 3)  # (b f) d c
    z = rearrange(h, "(b f) d c -> (b d) f c", f=4)
    assert torch.equal(z, h.reshape(2, 4, 7, 3).permute(0, 2, 1, 3).reshape(14, 4, 3))
    assert torch.equal(rearrange(z, "(b d) f c -> (b f) d c", d=7), h)
    e = torch.randn(2, 5, 3)
    assert torch.equal(rearrange(e, "b n c -> (b d) n c", d=4), e.repeat_interleave(4, 0))


@pytest.mark.slow
def test_gpu_script_runs_on_the_cpu_at_tiny_sizes(tmp_path: Path) -> None:
    if reference_code_dir() is None:
        pytest.skip("../shared/reference-code is absent: the script's authors' section cannot run")
    gpu = _load("gpu_h200")
    args = ["--device", "cpu", "--tiny", "--precisions", "fp32", "bf16", "--vda-frames", "40", "--input-size", "42"]
    rc = gpu.main([*args, "--out", str(tmp_path)])
    report = json.loads((tmp_path / "gpu_h200.json").read_text())
    assert rc == 0, report
    vda, dvd = report["sections"]["vits"], report["sections"]["dvd"]
    for row in (vda["package_fp32"]["reuse"], vda["package_fp32"]["no_reuse"], dvd["package_fp32"]):
        assert row["frames_per_s"] > 0 and np.isfinite(row["window_ms_median"])
    assert vda["authors_fp32"]["forward_diff_to_package_rel"] <= 1e-4  # same weights, same windows
    assert 0 < vda["package_bf16"]["diff_to_fp32_rel"] < 0.5 and "diff_to_fp32_rel" in dvd["package_bf16"]
    assert report["environment"]["device"] == "cpu"
