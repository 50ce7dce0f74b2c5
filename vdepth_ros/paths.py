"""Where bundled files live, in a source checkout and in an installed tree."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

_PKG_DIR = Path(__file__).resolve().parent
REPO_ROOT = _PKG_DIR.parent
#: written by `vdepth-export pull` next to config.json: which release and files the folder came from
#: (here, not in `models`: the runtime and the node read it without importing torch).
PROVENANCE_NAME = "release.json"


def share_dir() -> Path:
    """`share/vdepth_ros` of an installed tree, or the repository root in a source checkout."""
    if (REPO_ROOT / "package.xml").is_file():
        return REPO_ROOT
    for prefix in (sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        cand = Path(prefix) / "share" / "vdepth_ros"
        if cand.is_dir():
            return cand
    return REPO_ROOT


def default_model_dir() -> Path:
    """Folder of the bundled default model; `VDEPTH_DEFAULT_MODEL` overrides it."""
    env = os.environ.get("VDEPTH_DEFAULT_MODEL")
    return Path(env) if env else share_dir() / "models" / "default"


def config_dir() -> Path:
    return share_dir() / "config"


def evaldata_dir() -> Path | None:
    """`../shared/evaldata` next to the checkout (research-only data; never copied in)."""
    env = os.environ.get("VDEPTH_EVALDATA")
    cands = [Path(env)] if env else []
    cands += [REPO_ROOT.parent / "shared" / "evaldata", REPO_ROOT.parent.parent / "shared" / "evaldata"]
    for cand in cands:
        if cand.is_dir():
            return cand
    return None


def reference_code_dir() -> Path | None:
    """`../shared/reference-code` next to the checkout: the seed papers' own code, used only by tests and
    benchmarks to compare against numerically (never imported by the package). `VDEPTH_REFERENCE_CODE`
    overrides it; None when absent, so callers skip with a reason."""
    env = os.environ.get("VDEPTH_REFERENCE_CODE")
    cands = [Path(env)] if env else []
    cands += [REPO_ROOT.parent / "shared" / "reference-code", REPO_ROOT.parent.parent / "shared" / "reference-code"]
    for cand in cands:
        if cand.is_dir():
            return cand
    return None


def expand_home(args: Any) -> None:
    """`~` in every string argument of a parsed command line (`argparse.Namespace`) means the home
    folder, also where the shell left it (`--output=~/x`: bash expands no `~` after `--opt=`; quoted;
    from a script), so no folder literally named `~` is written and printed paths are real. Every
    console tool calls it right after parsing; `expanduser` changes only a leading `~` or `~user`."""

    def expand(value: Any) -> Any:
        if isinstance(value, str):
            return os.path.expanduser(value)
        if isinstance(value, Path):  # an argparse `type=Path`
            return Path(os.path.expanduser(value))
        return value

    for key, value in vars(args).items():
        setattr(args, key, [expand(v) for v in value] if isinstance(value, list) else expand(value))
