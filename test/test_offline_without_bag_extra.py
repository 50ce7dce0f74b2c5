"""The smallest documented install (`.[ros,onnx]`, no `bag` extra; docs/install.md): `vdepth-video` works,
and the tools that need bags say so in one line instead of an import traceback.

Each case runs in a fresh interpreter in which `rosbags` cannot be imported (None in sys.modules).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

BLOCK = "import sys; sys.modules['rosbags'] = None\n"
ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_vdepth_video_runs_without_rosbags(tmp_path) -> None:
    """It used to fail at import: `offline/synth.py` (bag writing) held the assumed intrinsics it needs.
    Without torch too (docs/install.md: the bundled ONNX model needs only onnxruntime): the model
    registry's import pulled torch in, so no offline tool started where torch is not installed."""
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(frames / f"{i:03d}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    proc = _run(
        f"""
        sys.modules["torch"] = None
        from vdepth_ros.offline.video import main
        rc = main([{str(frames)!r}, "-o", {str(tmp_path / "out")!r}])
        assert "rosbags" not in sys.modules or sys.modules["rosbags"] is None
        raise SystemExit(rc)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(("tool", "args"), [("bag", ["in.bag", "-o", "out"]), ("flicker", ["in.bag"])])
def test_bag_tools_name_the_missing_extra_in_one_line(tool, args, tmp_path) -> None:
    proc = _run(
        f"""
        from vdepth_ros.offline import entry
        raise SystemExit(entry.{tool}({args!r}))
        """,
        tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert not (tmp_path / "out").exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith(f"vdepth-{tool}: needs the Python package 'rosbags'") and f"'{ROOT}[bag]'" in lines[0]


@pytest.mark.parametrize("tool", ["bag", "flicker"])
def test_help_without_the_bag_extra_prints_the_options(tool, tmp_path) -> None:
    """docs/offline.md: every tool prints its options with --help; without the `bag` extra `vdepth-bag --help`
    printed only the missing-extra line, exit 2. Now the same option list as with the extra, the line on
    stderr, exit 0: the tool's module imports without rosbags (it imports rosbags only once its arguments are
    parsed), so its own parser prints the help (no stand-in modules)."""
    pytest.importorskip("rosbags")
    from vdepth_ros.offline import bag, flicker

    proc = _run(
        f"""
        from vdepth_ros.offline import entry
        try:
            entry.{tool}(["--help"])
        finally:
            assert "vdepth_ros.offline.{tool}" in sys.modules and sys.modules["rosbags"] is None
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == {"bag": bag, "flicker": flicker}[tool].build_parser().format_help().strip()
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"vdepth-{tool}: needs the Python package 'rosbags'") and "[bag]" in line, line


@pytest.mark.parametrize("tool", ["bag", "flicker"])
def test_a_wrong_option_without_the_bag_extra_is_the_usage_error(tool, tmp_path) -> None:
    """A mistyped option without the extra said only that rosbags was missing (the user installs it and then
    learns the option was wrong); now argparse's usage error, as with the extra, exit 2, and nothing written."""
    proc = _run(
        f"""
        from vdepth_ros.offline import entry
        raise SystemExit(entry.{tool}(["in.bag", "-o", "out", "--no-such-option"]))
        """,
        tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "usage:" in proc.stderr and "unrecognized arguments:" in proc.stderr, proc.stderr
    assert "--no-such-option" in proc.stderr.splitlines()[-1], proc.stderr
    assert "Traceback" not in proc.stderr and "rosbags" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tool", ["bag", "flicker"])
def test_bag_tools_run_through_the_entry_point(tool, capsys) -> None:
    pytest.importorskip("rosbags")
    from vdepth_ros.offline import entry

    with pytest.raises(SystemExit) as done:
        getattr(entry, tool)(["--help"])
    assert done.value.code == 0
    assert f"vdepth-{tool}" in capsys.readouterr().out


def test_entry_points_of_the_bag_tools() -> None:
    text = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
    assert '"vdepth-bag = vdepth_ros.offline.entry:bag"' in text
    assert '"vdepth-flicker = vdepth_ros.offline.entry:flicker"' in text


def test_demo_without_rosbags_is_one_line_and_writes_nothing(tmp_path) -> None:
    proc = _run(
        f"""
        from vdepth_ros.demo import main
        raise SystemExit(main(["--out", {str(tmp_path / "demo")!r}]))
        """,
        tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "'rosbags' is not installed" in proc.stderr
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("layout", ["file", "folder"])
def test_a_released_checkpoint_without_torch_says_to_import_it(layout, tmp_path) -> None:
    """Where torch is not installed (an ONNX-only install), `--model` pointing at a paper's released
    `.pth` (or a folder of one) used to end in ImportError: the check that recognises a released
    checkpoint imported the torch model code."""
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "000.png"), np.zeros((48, 64, 3), np.uint8))
    ckpt = tmp_path / "release" / "video_depth_anything_vits.pth"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"PK\x03\x04 not read")
    model = ckpt if layout == "file" else ckpt.parent
    proc = _run(
        f"""
        sys.modules["torch"] = None
        from vdepth_ros.offline.video import main
        raise SystemExit(main([{str(frames)!r}, "-o", {str(tmp_path / "out")!r}, "--model", {str(model)!r}]))
        """,
        tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "ImportError" not in proc.stderr, proc.stderr[-2000:]
    assert "released checkpoint" in proc.stderr and "vdepth-export import" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_a_model_folder_without_onnx_and_without_torch_is_one_line(backend, tmp_path) -> None:
    """A model folder with no exported graph (config.json + weights only) on an ONNX-only install
    ended in a ModuleNotFoundError traceback from the model code instead of naming what to do."""
    import cv2
    from safetensors.numpy import save_file

    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "000.png"), np.zeros((48, 64, 3), np.uint8))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"_family": "vda", "_class_name": "VideoDepthAnything"}\n')
    save_file({"weight": np.zeros(4, np.float32)}, str(model / "model.safetensors"))  # complete: passes the file check
    proc = _run(
        f"""
        sys.modules["torch"] = None
        from vdepth_ros.offline.video import main
        args = [{str(frames)!r}, "-o", {str(tmp_path / "out")!r}, "--model", {str(model)!r}, "--backend", {backend!r}]
        raise SystemExit(main(args))
        """,
        tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()
    assert "needs PyTorch" in line and f"'{ROOT}[ml]'" in line, line
    assert not (tmp_path / "out").exists()


def test_pull_without_the_ml_extra_names_it_in_one_line(tmp_path) -> None:
    """`vdepth-export pull vda-small`, as README and the node's "not in the model cache" error tell a user to
    run, in the smallest documented install (`.[ros,onnx]`: no huggingface_hub) ended in a traceback's
    `ModuleNotFoundError: No module named 'huggingface_hub'`; now one line names the `ml` extra, exit 2."""
    proc = _run(
        f"""
        sys.modules["huggingface_hub"] = None
        from vdepth_export.cli import main
        raise SystemExit(main(["pull", "vda-small", "--cache", {str(tmp_path / "cache")!r}]))
        """,
        tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "'huggingface_hub'" in lines[0] and f"'{ROOT}[ml]'" in lines[0], lines[0]
    assert not (tmp_path / "cache").exists()


def test_a_model_family_without_the_ml_extra_names_it_in_one_line(tmp_path) -> None:
    """A VDA model folder (a training export, a colleague's import) given to `vdepth-video --model` in the smallest
    install (no transformers) ended in a traceback, `ModuleNotFoundError: No module named 'transformers'`, and the
    node said "cannot be loaded (ModuleNotFoundError: ...)" without naming the `ml` extra; now the model's
    load names it, so every tool and the node give one line, exit 2."""
    from vdepth_ros.models.vda import VideoDepthAnything

    VideoDepthAnything(**VideoDepthAnything.tiny_config()).save_pretrained(tmp_path / "vda")
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((48, 64, 3), 100 + i, np.uint8))
    proc = _run(
        f"""
        sys.modules["transformers"] = None
        from vdepth_ros.offline.entry import video
        args = [{str(frames)!r}, "-o", {str(tmp_path / "out")!r}, "--model", {str(tmp_path / "vda")!r}]
        raise SystemExit(video(args))
        """,
        tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if "transformers" in ln]
    assert "'vda'" in line and f"'{ROOT}[ml]'" in line, line
    assert not (tmp_path / "out").exists()


def test_every_offline_module_imports_without_rosbags(tmp_path) -> None:
    """docs/architecture.md: no module of the offline tools imports rosbags when it is imported, only where it reads
    or writes a bag, so their parsers (--help, argument errors) work without the `bag` extra. A top-level import
    added to any of them (bag_writer, bag_messages and bag_types had them) fails here."""
    modules = sorted(p.stem for p in (ROOT / "vdepth_ros" / "offline").glob("*.py") if p.stem != "__init__")
    proc = _run(
        f"""
        import importlib
        for name in {modules!r}:
            importlib.import_module("vdepth_ros.offline." + name)
        assert sys.modules["rosbags"] is None
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
