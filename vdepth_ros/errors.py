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


def closest_name(name: object, known: Iterable[object], *, cutoff: float = 0.6) -> str | None:
    """The known name most like `name` (a misspelt key or parameter), for an error's "did you mean";
    None when none is close enough (`difflib`'s ratio >= `cutoff`). Non-string names compare as text."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=cutoff)
    return close[0] if close else None
