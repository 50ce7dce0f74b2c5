"""Exceptions shared across vdepth_ros. One base class so callers can catch everything of ours."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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


#: the import names of the packages of the extras that the smallest install (`.[ros,onnx]`) leaves out (setup.py)
EXTRA_PACKAGES = {
    "bag": ("rosbags", "mcap", "mcap_ros2"),
    "ml": ("huggingface_hub", "diffusers", "transformers", "peft"),
}


def extra_hint(extra: str) -> str:
    """How to install `extra`, for a message naming what it lacks."""
    return f"install the '{extra}' extra: pip install -c constraints.txt -e '.[{extra}]' (docs/install.md)"


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
