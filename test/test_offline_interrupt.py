"""Ctrl-C at any moment of an offline tool is one line and exit status 130, also while it starts."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[1] / "setup.py"


def _console_script(prog: str) -> tuple[str, str]:
    """The `module:function` setup.py installs as `prog` (what the user's shell runs)."""
    found = re.search(rf'"{re.escape(prog)} = ([\w.]+):(\w+)"', SETUP.read_text())
    assert found, prog
    return found.group(1), found.group(2)


@pytest.mark.parametrize("prog", ["vdepth-bag", "vdepth-video", "vdepth-flicker"])
def test_ctrl_c_while_the_tool_starts_is_one_line_and_exit_130(tmp_path: Path, prog: str) -> None:
    """Importing torch takes seconds, so Ctrl-C right after a typo'd command lands in an import:
    it printed a 30-line KeyboardInterrupt traceback through importlib."""
    module, function = _console_script(prog)
    code = textwrap.dedent(
        f"""
        import sys

        class CtrlC:  # SIGINT arriving while numpy (every tool needs it) is being imported
            def find_spec(self, name, path=None, target=None):
                if name == "numpy":
                    raise KeyboardInterrupt
                return None

        sys.meta_path.insert(0, CtrlC())
        from {module} import {function}
        sys.exit({function}([{str(tmp_path / "in")!r}, "-o", {str(tmp_path / "out")!r}]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: interrupted"), proc.stderr
    assert not (tmp_path / "out").exists()


def test_ctrl_c_after_the_output_is_complete_says_it_was_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C during --flicker, which measures the finished output: the line said "no output was
    written under the final name" while the output bag was complete and in place."""
    from fakes import LuminanceEngine

    from vdepth_ros.offline import bag as bagcli
    from vdepth_ros.offline import flicker
    from vdepth_ros.offline.synth import synthetic_frames, write_image_bag
    from vdepth_ros.pipeline import DepthPipeline

    def interrupted(*args: object, **kw: object) -> None:
        raise KeyboardInterrupt

    engine = LuminanceEngine(height=48, width=64, frames=8, overlap=3)
    monkeypatch.setattr(bagcli, "build_pipeline", lambda config, **kw: DepthPipeline(config, engine))
    monkeypatch.setattr(flicker, "measure_flicker", interrupted)
    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(10, 36, 52))
    params = tmp_path / "params.yaml"
    params.write_text("depth_node:\n  ros__parameters:\n    scale_source: range\n")
    out = tmp_path / "out"
    rc = bagcli.main([str(src), "-o", str(out), "--params", str(params), "--flicker", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 130
    (line,) = [x for x in err.splitlines() if x.startswith("vdepth-bag:")]
    assert str(out) in line and "no output was written" not in line, line
    assert out.is_dir()
