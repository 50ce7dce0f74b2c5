"""Test environment: isolated ROS discovery, temp logs, offline hubs, GPU tests skipped with a reason."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

# Must be set before rclpy/transformers are imported anywhere in the session.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_worker_num = int("".join(c for c in _worker if c.isdigit()) or 0)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# A unique domain per test process (0..101 valid): the session's pid (xdist's controller, the parent of
# its workers) spreads parallel CI runs apart, and each of its two workers takes its own half.
_session_pid = os.getppid() if "PYTEST_XDIST_WORKER" in os.environ else os.getpid()
os.environ["ROS_DOMAIN_ID"] = str((_session_pid * 7) % 50 * 2 + _worker_num % 2 + 1)
_OWN_ROS_LOG_DIR = None
if "ROS_LOG_DIR" not in os.environ:
    _OWN_ROS_LOG_DIR = os.environ["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="vdepth-roslog-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")
warnings.filterwarnings("ignore", category=DeprecationWarning, module="lark")

REPO = Path(__file__).resolve().parent.parent


def _has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (TensorRT / CUDA EP); none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


#: What `make test` needs free under TMPDIR (docs/install.md: its measured peak, rounded up).
NEEDED_DISK_GIB = 1.0


def pytest_sessionstart(session: pytest.Session) -> None:
    """Say so first when the disk the tests write to is nearly full: a full disk fails every later
    test in setup, far from its cause (-q hides report headers, so this is a line of its own)."""
    where = tempfile.gettempdir()
    free = shutil.disk_usage(where).free / 2**30
    if free < 2 * NEEDED_DISK_GIB:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"only {free:.1f} GiB free under {where}; "
                f"the suite needs about {NEEDED_DISK_GIB:g} GiB (docs/install.md)",
                yellow=True,
            )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _OWN_ROS_LOG_DIR is not None and exitstatus == 0:  # kept for a failure's logs
        shutil.rmtree(_OWN_ROS_LOG_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A folder for one module's shared fixtures, removed when the module ends. The suite writes
    over 20 GB in all (checkpoints, bags, exports); kept to the end of the session, a CI machine's
    disk filled up halfway through and every later test failed in setup."""
    folder = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def evaldata() -> Path:
    """`../shared/evaldata`; tests that need it skip with a reason when it is absent."""
    from vdepth_ros.paths import evaldata_dir

    path = evaldata_dir()
    if path is None:
        pytest.skip("../shared/evaldata not present (research-only data is never copied into the repo)")
    return path


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """Each test starts with the session's environment. Code run in this process may set variables
    for the process it takes as its own (the node's main points FASTDDS_DEFAULT_PROFILES_FILE at the
    bundled profile before rclpy starts), and every later test's subprocesses inherited them: a node
    started by a later test took the profile for the user's and said nothing (order-dependent)."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _seed() -> None:
    import numpy as np

    np.random.seed(0)  # noqa: NPY002 - legacy global seed for code under test that uses it
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch):
    """A `FakeTensorRT` (test_runtime_tensorrt.py) installed as the `tensorrt` module."""
    import sys

    from test_runtime_tensorrt import FakeTensorRT

    trt = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt
