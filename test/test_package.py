"""Package foundation: package.xml (format 3), what setup.py installs, console scripts (layers:
test_architecture.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Format-3 order and cardinality rules of the elements we use (REP 149).
REQUIRED_ONCE = ("name", "version", "description")
REQUIRED_SOME = ("maintainer", "license")


def test_package_xml_is_format_3_and_complete() -> None:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package"
    assert root.attrib.get("format") == "3"
    for tag in REQUIRED_ONCE:
        assert len(root.findall(tag)) == 1, f"<{tag}> must appear exactly once"
    for tag in REQUIRED_SOME:
        assert root.findall(tag), f"<{tag}> is required"
    assert root.findtext("name") == "vdepth_ros"
    assert root.find("maintainer").attrib.get("email"), "maintainer needs an email attribute"
    version = root.findtext("version")
    assert all(part.isdigit() for part in version.split(".")) and version.count(".") == 2
    assert root.find("export").findtext("build_type") == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "python3-numpy", "python3-opencv"} <= deps
    assert "stereo_msgs" not in deps  # declared once, never imported


def test_package_xml_version_matches_setup_and_module() -> None:
    import vdepth_ros

    root = ET.parse(REPO / "package.xml").getroot()
    setup_src = (REPO / "setup.py").read_text()
    assert f'version="{root.findtext("version")}"' in setup_src
    assert vdepth_ros.__version__ == root.findtext("version")


def test_ament_resource_marker_exists() -> None:
    assert (REPO / "resource" / "vdepth_ros").is_file()


def test_setup_cfg_installs_scripts_where_ros2_run_looks() -> None:
    cfg = (REPO / "setup.cfg").read_text()
    assert "script_dir=$base/lib/vdepth_ros" in cfg
    assert "install_scripts=$base/lib/vdepth_ros" in cfg


@pytest.fixture(scope="module")
def wheel(module_tmp: Path) -> zipfile.ZipFile:
    out = module_tmp
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("vdepth_ros-*.whl")
    return zipfile.ZipFile(whl)


def test_wheel_installs_launch_config_and_model_into_share(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    share = [n for n in names if ".data/data/share/vdepth_ros/" in n]
    assert any(n.endswith("share/vdepth_ros/launch/depth.launch.py") for n in share), share
    assert any(n.endswith("share/vdepth_ros/config/depth.yaml") for n in share), share
    assert any(n.endswith("share/vdepth_ros/config/fastdds_large_images.xml") for n in share), share
    assert any(n.endswith("share/vdepth_ros/package.xml") for n in share)
    assert any(n.endswith("share/ament_index/resource_index/packages/vdepth_ros") for n in names)
    # tools live at the top level of the repo but install as importable packages
    assert "vdepth_export/__init__.py" in names
    assert "vdepth_training/__init__.py" in names


def test_wheel_declares_console_scripts(wheel: zipfile.ZipFile) -> None:
    (ep,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    text = wheel.read(ep).decode()
    for script in ("vdepth-node", "vdepth-bag", "vdepth-video", "vdepth-export", "vdepth-eval"):
        assert f"{script} = " in text


def test_console_script_targets_exist() -> None:
    import importlib

    tree = ast.parse((REPO / "setup.py").read_text())
    targets = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and " = " in node.value and ":" in node.value
    ]
    assert len(targets) >= 5
    for target in targets:
        module, func = target.split(" = ")[1].split(":")
        assert callable(getattr(importlib.import_module(module), func)), target


def test_constraints_pin_cpu_torch() -> None:
    lines = [ln.strip() for ln in (REPO / "constraints.txt").read_text().splitlines() if ln.strip()]
    assert "torch==2.13.0" in lines
    assert "torch" not in " ".join(ln for ln in (REPO / "setup.py").read_text().splitlines() if "==" in ln)


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "make test" in (REPO / "README.md").read_text()


@pytest.mark.slow
def test_colcon_builds_the_package(tmp_path: Path) -> None:
    """docs/install.md's colcon route: `colcon build` in a workspace installs the node executable,
    launch file, parameters, Fast DDS profile and bundled model where `ros2 launch` looks."""
    pytest.importorskip("colcon_core", reason="colcon-common-extensions (dev extra) not installed")
    import shutil

    src = tmp_path / "src" / "vdepth_ros"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "install", "log", "out", "*.egg-info", "__pycache__")
    shutil.copytree(REPO, src, ignore=skip)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "colcon",
            "--log-base",
            str(tmp_path / "log"),
            "build",
            "--packages-select",
            "vdepth_ros",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    prefix = tmp_path / "install" / "vdepth_ros"
    for rel in (
        "lib/vdepth_ros/depth_node",
        "lib/vdepth_ros/vdepth-bag",
        "share/vdepth_ros/package.xml",
        "share/vdepth_ros/launch/depth.launch.py",
        "share/vdepth_ros/config/depth.yaml",
        "share/vdepth_ros/config/fastdds_large_images.xml",
        "share/vdepth_ros/models/default/model.onnx",
        "share/ament_index/resource_index/packages/vdepth_ros",
    ):
        assert (prefix / rel).is_file(), rel
