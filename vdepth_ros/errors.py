"""Exceptions shared across vdepth_ros. One base class so callers can catch everything of ours."""

from __future__ import annotations


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
