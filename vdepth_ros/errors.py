"""Exceptions shared across vdepth_ros. One base class so callers can catch everything of ours."""

from __future__ import annotations

import difflib
import json
import shlex
import urllib.parse
from collections.abc import Iterable
from pathlib import Path


class VdepthError(Exception):
    """Base class of every error raised on purpose by vdepth_ros."""


class ConfigError(VdepthError, ValueError):
    """A configuration value is invalid; the message names the field and the value."""


class ModelLoadError(VdepthError):
    """A checkpoint or model folder cannot be loaded (missing file, wrong keys, wrong family)."""


class BackendUnavailableError(VdepthError, ImportError):
    """A runtime backend's library is missing; the message names the extra to install."""


class InputError(VdepthError, ValueError):
    """An input frame/message cannot be processed (encoding, shape, size)."""


class ModelOutputError(VdepthError, ValueError):
    """A model's output does not have the shape its input spec declares; the message names both."""


#: the import names of the packages of the extras that the smallest install (`.[ros,onnx]`) leaves out (setup.py)
EXTRA_PACKAGES = {
    "bag": ("rosbags", "mcap", "mcap_ros2"),
    "ml": ("huggingface_hub", "diffusers", "transformers", "peft"),
}


#: the torch version constraints.txt pins (a test keeps them equal): a wheel install has no constraints.txt
TORCH_VERSION = "2.13.0"
#: the extras that pull torch in (setup.py); PyPI's Linux wheel of torch bundles CUDA (several GB)
TORCH_EXTRAS = frozenset({"onnx", "ml", "train"})
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: what an extra needs beyond its pip command (setup.py's comments), said after it
EXTRA_NOTES = {
    "trt": "TensorRT >= 10 from NVIDIA's index and onnxruntime-gpu; they need a CUDA GPU and a CUDA build of torch",
    "deepspeed": "with DS_BUILD_OPS=0, the default on Linux, it installs without CUDA; training also needs 'train'",
}


def source_folder() -> tuple[Path, bool] | None:
    """(the folder, editable) where vdepth_ros was installed from a local folder that still holds
    constraints.txt (a clone: `pip install -e .` or `pip install .`, per pip's direct_url.json), or runs from
    one uninstalled; None where it came from a wheel or an index (`pip install vdepth_ros`)."""
    import importlib.metadata  # here: every module imports this one, and only a hint needs the metadata

    for dist in importlib.metadata.distributions(name="vdepth_ros"):
        text = dist.read_text("direct_url.json")
        if not text:
            continue  # an index install, or the clone's own egg-info found first on sys.path
        info = json.loads(text)
        url = urllib.parse.urlparse(info.get("url", ""))
        if "dir_info" not in info or url.scheme != "file":
            return None  # a wheel or archive file, or a VCS URL: no clone to point at
        folder = Path(urllib.parse.unquote(url.path))  # POSIX: what url2pathname does
        editable = bool(info["dir_info"].get("editable"))
        return (folder, editable) if (folder / "constraints.txt").is_file() else None
    here = Path(__file__).resolve().parents[1]  # run from a checkout without pip (PYTHONPATH)
    return (here, True) if (here / "constraints.txt").is_file() and (here / "setup.py").is_file() else None


def extra_hint(extra: str) -> str:
    """How to install `extra`, for a message naming what it lacks: the command that works for how vdepth_ros
    was installed (a clone's `-c constraints.txt -e 'FOLDER[extra]'`, else `pip install 'vdepth_ros[extra]'`),
    and for an extra that pulls torch in, its version and PyTorch's CPU-only index."""
    source = source_folder()
    if source is None:
        command = f"pip install {shlex.quote(f'vdepth_ros[{extra}]')}"
        if extra in TORCH_EXTRAS:
            command += f" torch=={TORCH_VERSION}"
    else:
        folder, editable = source
        target = shlex.quote(f"{folder}[{extra}]")
        command = f"pip install -c {shlex.quote(str(folder / 'constraints.txt'))} {'-e ' if editable else ''}{target}"
    hint = f"install the '{extra}' extra: {command}"
    if extra in TORCH_EXTRAS:
        hint += f" (without a GPU, first: pip install torch=={TORCH_VERSION} --index-url {TORCH_CPU_INDEX})"
    if extra in EXTRA_NOTES:
        hint += f" ({EXTRA_NOTES[extra]})"
    return hint


def missing_extra(err: ModuleNotFoundError) -> str | None:
    """ "needs the Python package 'X', which is not installed; install the 'E' extra: ..." where `err` reports
    a package of an extra missing, else None (another module: a bug to show as it is)."""
    root = (err.name or "").split(".")[0]
    for extra, packages in EXTRA_PACKAGES.items():
        if root in packages:
            return f"needs the Python package '{root}', which is not installed; {extra_hint(extra)}"
    return None


def closest_name(name: object, known: Iterable[object], *, cutoff: float = 0.6) -> str | None:
    """The known name most like `name` (a misspelt key or parameter), for an error's "did you mean";
    None when none is close enough (`difflib`'s ratio >= `cutoff`). Non-string names compare as text."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=cutoff)
    return close[0] if close else None
