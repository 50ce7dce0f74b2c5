"""Test environment: isolated ROS discovery, temp logs, offline hubs, GPU tests skipped with a reason."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The ROS domains the tests take (0 is everybody's default; above 101 Fast DDS's ports reach Linux's
#: ephemeral range), and where their reservations are kept: the machine's /tmp, whatever TMPDIR says,
#: since every process on this machine shares the localhost discovery the tests use.
TEST_DOMAINS = range(1, 101)
DOMAIN_LOCKS = Path("/tmp" if os.access("/tmp", os.W_OK) else tempfile.gettempdir()) / "vdepth-ros-domains"
_domain_lock: int | None = None  # held open (flock) for this process's life: the kernel frees it at exit


def _lock_free_domain(start: int) -> tuple[int, int | None]:
    """(domain, flock'd fd): the first domain from TEST_DOMAINS[start] on that no other process holds (fd None and
    a warning where all are held: sharing one)."""
    import fcntl

    DOMAIN_LOCKS.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # every user's tests share it (only its owner can widen it)
        DOMAIN_LOCKS.chmod(0o1777)
    for k in range(len(TEST_DOMAINS)):
        domain = TEST_DOMAINS[(start + k) % len(TEST_DOMAINS)]
        path = DOMAIN_LOCKS / f"{domain}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            try:  # another user's lock file (the umask kept it theirs): a lock is taken on a reading fd too
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return domain, fd
    warnings.warn(f"all ROS domains {TEST_DOMAINS} are held by other test processes; sharing one", stacklevel=2)
    return TEST_DOMAINS[start % len(TEST_DOMAINS)], None


def reserve_ros_domain() -> int:
    """A ROS domain no other test process on this machine holds, reserved with an flock until this
    process exits. Each test process needs its own: with localhost discovery, two that share a domain
    see each other's /image and /depth (xdist's two workers, two clones tested at once, a CI runner's
    parallel jobs). A domain derived from the pid alone collided for 1 in 50 pairs of sessions. The
    search starts at a pid-derived domain, so concurrent sessions rarely contend for the same lock."""
    global _domain_lock
    domain, _domain_lock = _lock_free_domain(os.getpid() * 7 % len(TEST_DOMAINS))
    return domain


@contextlib.contextmanager
def ros_domain_of_its_own() -> Iterator[int]:
    """A domain no other process holds (nor this one: flock is per open file), for the block's time: node processes
    run side by side, each in its own (`run_nodes_at_once` in test_ros_process.py), and each test file's
    (`_ros_domain_of_its_own`). Searched from the one after the last taken, so a domain is reused as late as can be."""
    global _next_domain
    domain, fd = _lock_free_domain(_next_domain)
    _next_domain = TEST_DOMAINS.index(domain) + 1
    try:
        yield domain
    finally:
        if fd is not None:
            os.close(fd)  # (the flock goes with it)


# Must be set before rclpy/transformers are imported anywhere in the session.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
WORKER_DOMAIN = reserve_ros_domain()
os.environ["ROS_DOMAIN_ID"] = str(WORKER_DOMAIN)
_next_domain = TEST_DOMAINS.index(WORKER_DOMAIN) + 1  # each file's own: `_ros_domain_of_its_own`
_OWN_ROS_LOG_DIR = None
if "ROS_LOG_DIR" not in os.environ:
    _OWN_ROS_LOG_DIR = os.environ["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="vdepth-roslog-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Each xdist worker gets its share of the cores (`make test` runs 2 on 2): two workers of 2 OpenMP threads each
# on 2 cores spin-wait on each other; the in-process torch files ran 20 % faster with 1 (138 s -> 110 s, the four
# model/export files with -n 2). Processes a test starts with its own OMP_NUM_THREADS keep it.
# (xdist's workers inherit the controller's environment: what the user set is kept apart from this default)
_USERS_THREADS = os.environ.setdefault("VDEPTH_TEST_USERS_OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", ""))
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
os.environ["OMP_NUM_THREADS"] = _USERS_THREADS or str(max(1, min(2, (os.cpu_count() or 2) // _WORKERS)))
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


@pytest.fixture(scope="module", autouse=True)
def _ros_domain_of_its_own() -> Iterator[None]:
    """Each test file's ROS nodes and processes in a domain no earlier file of this process used. A node named
    /depth_node alive in the worker's one domain when a later file's node started was named by it as "another node
    named /depth_node is running" (test_ros_replay: once in a CI run and twice in fresh-clone runs, never alone;
    which earlier file left it was not found). Module scope: a file's module-scoped ROS fixtures share its domain
    with its tests."""
    before = os.environ["ROS_DOMAIN_ID"]
    with ros_domain_of_its_own() as domain:
        os.environ["ROS_DOMAIN_ID"] = str(domain)
        try:
            yield
        finally:
            os.environ["ROS_DOMAIN_ID"] = before


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
