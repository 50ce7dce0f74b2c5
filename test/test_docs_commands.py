"""What the docs tell a user to type must exist: every link between docs points at a file and heading
that exist, and every `--flag` written after a command (vdepth-*, benchmarks/*.py, python -m ...)
is one that command's `--help` lists (a flag renamed in code but not in the docs is a typical break), as is
every one a message or docstring of the code names in backquotes; every such command the docs name, with
flags or without (a benchmark script, a `python -m` module), exists and answers `--help`.
Likewise every parameter they set (`-p NAME:=`, `ros2 param set`) and launch argument (`depth.launch.py NAME:=`).
docs/model-history.md is history: its old commands are left as they were."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: Subcommands with their own --help.
SUBCOMMANDS = {"vdepth-export": ("pull", "import", "onnx", "engine", "split", "stream")}
#: The ROS arguments a node takes, not argparse flags.
ROS_ARGS = {"--ros-args", "--params-file", "--remap", "--param", "--log-level"}


def _doc_files() -> list[Path]:
    docs = [p for p in sorted((ROOT / "docs").glob("*.md")) if p.name != "model-history.md"]
    return [ROOT / "README.md", *docs, ROOT / "export/README.md", ROOT / "training/README.md"] + [
        ROOT / "models/default/README.md"
    ]


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    out: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        m = re.match(r"#+\s+(.*)", line)
        if m:
            s = _slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
        out.update(re.findall(r'<a (?:name|id)="([^"]+)"', line))
    return out


def _commands(text: str) -> list[str]:
    """Command lines of code blocks (continuations joined, comments cut) and inline code spans."""
    out: list[str] = []
    in_code, pending = False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            line = pending + " " + line.split("  #")[0] if pending else line.split("  #")[0]
            pending = ""
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1]
                continue
            out.append(line)
        else:
            out += re.findall(r"`([^`]+)`", line)
    return out


def _program(command: str) -> tuple[str, str] | None:
    """(program, the rest of the line) for a command this package ships, else None."""
    # not `.vdepth-partial-*` (a folder) nor `vdepth-seq/1` (a format name)
    if m := re.search(r"(?<![\w.-])(vdepth-[a-z]+)(?![\w/-])(?:\s+(\w+))?", command):
        prog = m.group(1)
        if m.group(2) in SUBCOMMANDS.get(prog, ()):
            prog += " " + m.group(2)
        return prog, command[m.end(1) :]
    if m := re.search(r"(benchmarks/\w+\.py)", command):
        return m.group(1), command[m.end() :]
    if m := re.search(r"python -m ((?:vdepth_ros|vdepth_training)[\w.]*)", command):
        return "-m " + m.group(1), command[m.end() :]
    return None


def _help(prog: str) -> str:
    if prog.startswith("vdepth-"):
        name, *sub = prog.split()
        cmd = [str(BIN / name), *sub, "--help"]
    elif prog.startswith("-m "):
        cmd = [sys.executable, "-m", prog[3:], "--help"]
    else:
        cmd = [sys.executable, prog, "--help"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, f"`{' '.join(cmd)}` failed ({r.returncode}):\n{r.stderr[-2000:]}"
    return r.stdout


def test_links_between_docs_point_at_existing_files_and_headings() -> None:
    bad = []
    for doc in [*_doc_files(), ROOT / "docs/model-history.md"]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path) if path else doc
            if not linked.exists():
                bad.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                bad.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_every_flag_the_docs_give_a_command_is_in_its_help() -> None:
    wanted: dict[str, list[tuple[str, str, str]]] = {}
    for doc in _doc_files():
        for command in _commands(doc.read_text()):
            found = _program(command)
            if found is None:
                continue
            prog, rest = found
            wanted.setdefault(prog, [])  # named without flags, it must still exist and start
            for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
                if flag not in ROS_ARGS:
                    wanted[prog].append((flag, str(doc.relative_to(ROOT)), command.strip()))
    for source in sorted(p for d in ("vdepth_ros", "training", "export") for p in (ROOT / d).rglob("*.py")):
        for command in re.findall(r"`([^`\n]+)`", source.read_text()):  # messages and docstrings tell users too
            if (found := _program(command)) is not None:
                prog, rest = found
                for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
                    if flag not in ROS_ARGS:
                        wanted.setdefault(prog, []).append((flag, str(source.relative_to(ROOT)), command.strip()))
    assert "vdepth-bag" in wanted and "-m vdepth_training.train" in wanted, "the docs' commands were not found"
    with ThreadPoolExecutor(4) as pool:
        helps = dict(zip(wanted, pool.map(_help, wanted), strict=True))
    missing = [
        f"{doc}: `{prog}` has no {flag} ({command[:100]})"
        for prog, uses in wanted.items()
        for flag, doc, command in uses
        if not re.search(re.escape(flag) + r"(?![\w-])", helps[prog])
    ]
    assert not missing, "flags the docs name that the commands do not take:\n" + "\n".join(missing)


def test_the_docs_relative_params_file_from_another_folder_names_the_bundled_one(tmp_path: Path) -> None:
    """The docs write `--params-file config/depth.yaml` / `--params config/depth.yaml`, relative to the
    repository. A user who runs the command from their own folder got "config/depth.yaml: no such params
    file" (node) or "parameter file config/depth.yaml not found" (offline tools), with no word on where the
    file is; now each names the bundled file's path."""
    from vdepth_ros.paths import config_dir

    bundled = str(config_dir() / "depth.yaml")
    commands = {
        "vdepth-node": ["--ros-args", "--params-file", "config/depth.yaml"],
        "vdepth-video": ["clip.mp4", "-o", "out", "--params", "config/depth.yaml"],
        "vdepth-bag": ["in_bag", "-o", "out", "--params", "config/depth.yaml"],
        "vdepth-eval": ["--params", "config/depth.yaml", "--out", "out"],
    }
    env = dict(os.environ, HF_HUB_OFFLINE="1", ROS_LOG_DIR=str(tmp_path / "log"))

    def run(item: tuple[str, list[str]]) -> tuple[str, subprocess.CompletedProcess]:
        name, args = item
        return name, subprocess.run(
            [str(BIN / name), *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
        )

    with ThreadPoolExecutor(4) as pool:
        results = dict(pool.map(run, commands.items()))
    for name, r in results.items():
        assert r.returncode == 2, (name, r.returncode, r.stderr[-2000:])
        assert bundled in r.stderr, (name, r.stderr[-2000:])
    assert not (tmp_path / "out").exists()


def test_calibration_file_options_name_every_format_they_read() -> None:
    """`vdepth-video --camera-info` and `vdepth-bag --camera-info-file` read camera_calibration's YAML,
    OpenCV's FileStorage YAML/XML and a one-camera Kalibr camchain (docs/offline.md), but their --help said
    "camera_calibration's format" only, so a user holding OpenCV's or Kalibr's output thought it unusable."""
    for prog, option in (("vdepth-video", "--camera-info"), ("vdepth-bag", "--camera-info-file")):
        text = " ".join(_help(prog).split())
        described = text[text.index(option + " ", text.index("options:")) :][:400]
        for fmt in ("camera_calibration", "OpenCV", "XML", "Kalibr"):
            assert fmt in described, (prog, option, fmt, described)


#: Names the docs write on purpose as wrong or as placeholders (`-p rectfy:=true`: the start-up WARN's example).
NOT_PARAMETERS = {"rectfy", "NAME", "name"}
#: rclpy's own parameters and qos_overrides.<topic>... (docs/node.md, QoS).
RCLPY_PARAMETERS = ("use_sim_time", "start_type_description_service", "qos_overrides.")


def test_every_parameter_and_launch_argument_the_docs_set_exists() -> None:
    """`-p NAME:=VALUE`, `--param NAME:=VALUE` and `ros2 param set|get|describe NODE NAME` in the docs (and in
    the code's messages, which tell users too) name a parameter the node declares, and `NAME:=VALUE` after
    `depth.launch.py` an argument the launch file declares: a renamed parameter left in the docs is ignored
    by rcl (only a WARN) and an unknown launch argument is silently unused, so a user copying the line gets
    a node that is not configured as the docs say."""
    import ast

    from vdepth_ros.node_params import node_param_specs

    params = {s.name for s in node_param_specs()}
    launch = ROOT / "launch" / "depth.launch.py"
    launch_args = {
        node.args[0].value
        for node in ast.walk(ast.parse(launch.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"
    }
    assert {"image", "camera_info", "params_file"} <= launch_args
    code = sorted(p for d in ("vdepth_ros", "export", "training") for p in (ROOT / d).rglob("*.py"))
    sources = [*_doc_files(), *code]
    bad = []
    for source in sources:
        text = source.read_text()
        where = str(source.relative_to(ROOT))
        for name in re.findall(r"(?:(?<![\w-])-p|--param)\s+([A-Za-z_][\w./]*):=", text) + re.findall(
            r"ros2 param (?:set|get|describe) \S+ ([A-Za-z_][\w./]*)", text
        ):
            if name not in params and name not in NOT_PARAMETERS and not name.startswith(RCLPY_PARAMETERS):
                bad.append(f"{where}: parameter {name}")
        for line in re.findall(r"depth\.launch\.py([^`\n]*)", text):
            for name in re.findall(r"(?<![\w-])([a-z_]+):=", line):
                if name not in launch_args:
                    bad.append(f"{where}: launch argument {name} ({line.strip()[:80]})")
    assert not bad, "names the docs set that the node or launch file does not have:\n" + "\n".join(bad)


#: `[.venv/bin/python ]benchmarks/X.py ARGS   # ... ~25 s`: a command line with the time it takes
_TIMED_COMMAND = re.compile(
    r"^\s*(?:\S*python3? )?(benchmarks/\w+\.py(?:\s+[^#\n]*?)?)\s*#[^\n]*?~\s*([\d.]+\s*(?:s|min|h))\b", re.M
)


def _timed_commands(text: str) -> dict[str, str]:
    return {" ".join(m.group(1).split()): m.group(2) for m in _TIMED_COMMAND.finditer(text)}


def test_the_docs_give_a_benchmark_command_the_time_its_script_gives() -> None:
    """`benchmarks/ros_delivery.py --quick` was "~1 min" in its --help and "~40 s" in docs/node.md; it took
    25-26 s. Where both the docs and the script's docstring give a command's time, they give the same one."""
    import ast

    bad, compared = [], 0
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        own = _timed_commands(ast.get_docstring(ast.parse(script.read_text())) or "")
        for doc in _doc_files():
            for command, took in _timed_commands(doc.read_text()).items():
                if command in own:
                    compared += 1
                    if took != own[command]:
                        bad.append(f"{command}: ~{took} in {doc.relative_to(ROOT)}, ~{own[command]} in its docstring")
    assert compared, "no command found in both: the pattern no longer matches the docs"
    assert not bad, "\n".join(bad)
