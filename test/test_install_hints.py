"""The install path as a user outside this repository meets it.

A missing extra's hint gives the command that works for how vdepth_ros was installed: a clone's
`pip install -c CLONE/constraints.txt -e 'CLONE[extra]'` (it used to say `-c constraints.txt -e '.[extra]'`,
which works only from the clone's root), else `pip install 'vdepth_ros[extra]'` for a wheel or index install
(which has no constraints.txt), with torch's pinned version and PyTorch's CPU-only index where the extra
pulls torch in. constraints.txt pins torch's version, not its build, and says so; editing its comments
does not make `make install` reinstall.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vdepth_ros import errors
from vdepth_ros.errors import TORCH_CPU_INDEX, TORCH_VERSION, extra_hint

ROOT = Path(__file__).resolve().parents[1]


class _Dist:
    """An installed distribution's metadata as importlib.metadata gives it: only direct_url.json."""

    def __init__(self, direct_url: dict | None) -> None:
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        return json.dumps(self.direct_url) if name == "direct_url.json" and self.direct_url else None


def _installed_as(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, direct_url: dict | None) -> None:
    """Make vdepth_ros look installed with `direct_url` (None: from an index), its modules in site-packages."""
    monkeypatch.setattr(importlib.metadata, "distributions", lambda **_: iter([_Dist(direct_url)]))
    monkeypatch.setattr(errors, "__file__", str(tmp_path / "site-packages" / "vdepth_ros" / "errors.py"))


def test_the_hint_in_a_clone_names_its_constraints_and_folder_from_any_directory(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # the old `-c constraints.txt -e '.[bag]'` failed anywhere but the clone's root
    hint = extra_hint("bag")
    assert f"pip install -c {ROOT}/constraints.txt -e '{ROOT}[bag]'" in hint, hint
    assert "torch" not in hint  # the bag extra does not pull torch in


@pytest.mark.parametrize(
    "direct_url",
    [None, {"url": "file:///tmp/dist/vdepth_ros-0.1.0-py3-none-any.whl", "archive_info": {}}],
    ids=["index", "wheel-file"],
)
def test_the_hint_after_a_wheel_or_index_install_names_the_package(direct_url, monkeypatch, tmp_path) -> None:
    _installed_as(monkeypatch, tmp_path, direct_url)
    hint = extra_hint("bag")
    assert hint.endswith("pip install 'vdepth_ros[bag]'"), hint
    assert "-c " not in hint and "-e " not in hint and "constraints.txt" not in hint
    ml = extra_hint("ml")
    assert f"pip install 'vdepth_ros[ml]' torch=={TORCH_VERSION}" in ml, ml
    assert f"pip install torch=={TORCH_VERSION} --index-url {TORCH_CPU_INDEX}" in ml, ml


def test_the_hint_after_a_non_editable_install_from_a_clone_has_no_dash_e(monkeypatch, tmp_path) -> None:
    _installed_as(monkeypatch, tmp_path, {"url": ROOT.as_uri(), "dir_info": {}})
    assert f"pip install -c {ROOT}/constraints.txt '{ROOT}[onnx]'" in extra_hint("onnx")


def test_the_hint_where_the_clone_is_gone_names_the_package(monkeypatch, tmp_path) -> None:
    _installed_as(monkeypatch, tmp_path, {"url": (tmp_path / "deleted").as_uri(), "dir_info": {"editable": True}})
    assert extra_hint("bag").endswith("pip install 'vdepth_ros[bag]'")


def test_the_torch_backend_hint_follows_the_install(monkeypatch, tmp_path) -> None:
    """It said "(with PIP_CONSTRAINT=constraints.txt to keep the CPU wheel)": a wheel install has no
    constraints.txt, and the pin keeps only the version."""
    _installed_as(monkeypatch, tmp_path, None)
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    from vdepth_ros.errors import BackendUnavailableError
    from vdepth_ros.runtime.torch_backend import import_torch

    with pytest.raises(BackendUnavailableError) as err:
        import_torch()
    assert "CPU wheel" not in str(err.value) and TORCH_CPU_INDEX in str(err.value), err.value


def test_one_torch_version_in_constraints_makefile_and_hints() -> None:
    pins = re.findall(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert pins == [TORCH_VERSION]
    assert re.findall(r"torch==(\S+)", (ROOT / "Makefile").read_text()) == [TORCH_VERSION]


def test_constraints_says_it_pins_the_version_not_the_cpu_build() -> None:
    """It said "Pins torch to the CPU wheel", which holds only where the CPU wheel is already installed."""
    comment = " ".join(ln for ln in (ROOT / "constraints.txt").read_text().splitlines() if ln.startswith("#"))
    assert "to the CPU wheel" not in comment
    assert "version, not its build" in comment and TORCH_CPU_INDEX in comment


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_a_comment_edit_of_constraints_does_not_reinstall(tmp_path) -> None:
    """`make install`'s stamp hashed the bytes of constraints.txt, so a comment edit reinstalled every extra."""

    def stamp(constraints: str) -> str:
        for name in ("Makefile", "setup.py"):
            shutil.copy(ROOT / name, tmp_path / name)
        (tmp_path / "constraints.txt").write_text(constraints)
        dry = subprocess.run(["make", "-n", "install"], cwd=tmp_path, capture_output=True, text=True, check=True)
        return re.search(r"touch (\S+)", dry.stdout).group(1)

    pinned = (ROOT / "constraints.txt").read_text()
    assert stamp(pinned) == stamp("# another comment\n" + pinned)
    assert stamp(pinned) != stamp(pinned.replace(f"torch=={TORCH_VERSION}", "torch==9.9.9"))


def _clone_hint(extra: str) -> str:
    return f"pip install -c {ROOT}/constraints.txt -e '{ROOT}[{extra}]'"


def test_the_tensorrt_and_deepspeed_hints_follow_the_install(monkeypatch, tmp_path) -> None:
    """They said `pip install 'vdepth_ros[trt]'` / `pip install deepspeed` / `pip install 'vdepth_ros[deepspeed]'`
    whatever the install: from a clone the first installs the package a second time from the index, the second
    misses the extra's version. Now each is `extra_hint`'s command, as every other missing extra."""
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    for name in ("deepspeed", "deepspeed.utils", "deepspeed.utils.zero_to_fp32"):  # (imported by an earlier test:
        monkeypatch.setitem(__import__("sys").modules, name, None)  # a cached submodule skips its parent's entry)
    from vdepth_ros.errors import BackendUnavailableError, ModelLoadError
    from vdepth_ros.models.base import load_state_dict_file
    from vdepth_ros.runtime.onnx_backend import select_providers
    from vdepth_ros.runtime.tensorrt_backend import import_tensorrt

    with pytest.raises(BackendUnavailableError) as trt:
        import_tensorrt()
    assert _clone_hint("trt") in str(trt.value) and "CUDA GPU" in str(trt.value), trt.value
    with pytest.raises(BackendUnavailableError) as provider:
        select_providers(["CPUExecutionProvider"], ["CUDAExecutionProvider"])
    assert _clone_hint("trt") in str(provider.value), provider.value
    (tmp_path / "checkpoint_3" / "pytorch_model").mkdir(parents=True)  # accelerate's ZeRO checkpoint folder
    with pytest.raises(ModelLoadError) as zero:
        load_state_dict_file(tmp_path / "checkpoint_3")
    assert _clone_hint("deepspeed") in str(zero.value) and "zero_to_fp32.py" in str(zero.value), zero.value
    _installed_as(monkeypatch, tmp_path, None)
    with pytest.raises(BackendUnavailableError) as trt:
        import_tensorrt()
    assert "pip install 'vdepth_ros[trt]'" in str(trt.value) and "-e " not in str(trt.value), trt.value
