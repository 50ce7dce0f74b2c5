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
