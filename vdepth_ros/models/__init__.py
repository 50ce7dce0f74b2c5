"""Model families (PyTorch only; no ROS, no windowing policy).

`build_model(family, **config)` constructs a family by registry name; `load_model(dir)` rebuilds
a saved model from `config.json` + `model.safetensors`.
"""

from __future__ import annotations

import importlib
import inspect
import json
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vdepth_ros.errors import ConfigError, ModelLoadError, missing_extra
from vdepth_ros.models.base import (
    CONFIG_NAME,
    TRAINED_KEY,
    WEIGHTS_NAME,
    ExportSignature,
    InputConstraints,
    VideoDepthModel,
    load_state_dict_file,
    read_config,
    register_to_config,
    released_checkpoint_problem,
    shape_mismatches,
    state_fingerprint,
    trained_record,
)
from vdepth_ros.paths import PROVENANCE_NAME
from vdepth_ros.values import kind_of, kind_of_type, type_problem

# registry name -> "module:Class"; modules import lazily so a family's heavy deps load on demand.
MODEL_FAMILIES: dict[str, str] = {
    "vda": "vdepth_ros.models.vda:VideoDepthAnything",
    "vda_lite": "vdepth_ros.models.vda_lite:VideoDepthAnythingLite",
    "gemdepth": "vdepth_ros.models.gemdepth:GemDepth",
    "depthcrafter": "vdepth_ros.models.depthcrafter:DepthCrafter",
    "onestep": "vdepth_ros.models.onestep:OneStepDepth",
    "dvd": "vdepth_ros.models.dvd:DVD",
    "fiffdepth": "vdepth_ros.models.fiffdepth:FiffDepth",
}


def family_class(family: str) -> type[VideoDepthModel]:
    """The `VideoDepthModel` subclass registered as `family` in `MODEL_FAMILIES` (its module imported now).

    Raises:
        ConfigError: `family` is not a registered name (the message lists them).
        ModelLoadError: its module needs a package of the `ml` extra that is not installed.
    """
    try:
        target = MODEL_FAMILIES[family]
    except KeyError:
        raise ConfigError(f"unknown model family {family!r}; known: {sorted(MODEL_FAMILIES)}") from None
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:  # the smallest install (`.[ros,onnx]`) runs the bundled ONNX model only
        if (why := missing_extra(err)) is None:
            raise
        raise ModelLoadError(f"model family {family!r} {why}") from None
    return getattr(module, cls_name)


def config_parameters(*functions: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword parameters of `functions` (a family's `__init__`, its `from_released`) by name,
    each with its annotation resolved (`typing.get_type_hints`; the modules write annotations as
    strings), for `config_type_problem`. `self` and `*args`/`**kwargs` are left out."""
    out: dict[str, inspect.Parameter] = {}
    for function in functions:
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # an annotation that does not resolve: judged by the defaults alone
            hints = {}
        for name, param in inspect.signature(function).parameters.items():
            if name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                out.setdefault(name, param.replace(annotation=hints.get(name, param.annotation)))
    return out


def config_type_problem(params: Mapping[str, inspect.Parameter], config: Mapping[str, Any]) -> str | None:
    """ "KEY expects WHAT, got VALUE" for the first `config` value that is not of its parameter's
    kind (`vdepth_ros.values`, the rule every setting obeys: true/false, integer, number, string,
    list, mapping, and null where the type allows None), else None. The kind is the declared type's
    (`params` from `config_parameters`) where it has one, else the default's: so a setting whose
    default is None (`overlap: int | None = None`) is held to its type too. A parameter of neither
    (an `Any`, a class) takes anything; keys `params` lacks are the caller's to refuse.
    `config.json` (`load_model`), `vdepth-export import --set` and a recipe's `model.config` are all
    checked with it."""
    for key, value in config.items():
        if key not in params:
            continue
        param = params[key]
        kind = kind_of_type(param.annotation)
        if kind is None:
            kind = kind_of(param.default) if param.default is not inspect.Parameter.empty else None
        if (problem := type_problem(kind, value)) is not None:
            return f"{key} expects {problem}"
    return None


def build_model(family: str, **config: Any) -> VideoDepthModel:
    """A new, untrained model of `family` built from its constructor `config` (the keys of its `config.json`)."""
    return family_class(family)(**config)


def _fix_hint(directory: Path) -> str:
    """How to get a good copy of a model folder: pull a pulled release again, else re-create it."""
    try:
        name = json.loads((directory / PROVENANCE_NAME).read_text())["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return "import or export it again"
    return f"pull it again: `vdepth-export pull {name} --overwrite`"


def read_weight_shapes(directory: str | Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a model folder's `model.safetensors` (its header only).

    Raises:
        ModelLoadError: the file is missing or unreadable; the message says how to get it again.
    """
    from safetensors import SafetensorError, safe_open

    directory = Path(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelLoadError(f"{weights} not found; {_fix_hint(directory)}")
    try:
        with safe_open(str(weights), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError) as err:
        raise ModelLoadError(f"{weights} is not a readable safetensors file ({err}); {_fix_hint(directory)}") from None


def _refuse_other_weights(model: VideoDepthModel, shapes: dict[str, tuple[int, ...]], directory: Path) -> None:
    """`WrongCheckpointError` when the folder's weights are another model's than its config.json builds (a
    ViT-B's model.safetensors copied beside a ViT-S config): both named, and how to get a consistent folder."""
    import torch

    from vdepth_ros.models.identify import WrongCheckpointError, refuse_other_checkpoint

    kind_of_model = getattr(model, "checkpoint_kind", None)
    expected = kind_of_model() if kind_of_model is not None else None
    if expected is None:  # a family identify has no layout for: the shapes' own error stands
        return
    try:
        refuse_other_checkpoint(
            {k: torch.empty(v, device="meta") for k, v in shapes.items()}, expected, directory / WEIGHTS_NAME
        )
    except WrongCheckpointError as err:
        raise WrongCheckpointError(
            f"{directory / WEIGHTS_NAME} holds the weights of {err.found.describe('model', file=False)}, but "
            f"{directory / CONFIG_NAME} builds {err.expected.describe('model', file=False)}: the two files are "
            f"of two models; {_fix_hint(directory)}",
            expected=err.expected,
            found=err.found,
            path=err.path,
        ) from None


def _module_names(names: Any) -> frozenset[str]:
    """The first two components of each weight name (`backbone.embeddings`, `unet.conv_in`): what a family's
    modules are called, whatever its sizes."""
    return frozenset(".".join(str(name).split(".")[:2]) for name in names)


def family_of_weights(names: Any) -> str | None:
    """The one family whose modules the weight `names` (a model folder's `model.safetensors`) are, else None
    (no family, or several: e.g. the one-step student with a VAE head has the teacher's modules). Each family is
    built at its tiny config on the meta device (no memory), so only a load that already failed pays for it."""
    import torch

    given = _module_names(names)
    found = []
    for family in MODEL_FAMILIES:
        cls = family_class(family)
        try:
            with torch.device("meta"):
                modules = _module_names(cls(**cls.tiny_config()).state_dict())
        except Exception:  # a family that cannot be built on the meta device is not guessed
            continue
        if modules == given:
            found.append(family)
    return found[0] if len(found) == 1 else None


def _refuse_other_family(model: VideoDepthModel, names: Any, directory: Path) -> None:
    """`ModelLoadError` when the folder's weights are another family's model than its config.json's `_family`
    (a model.safetensors copied from another folder): both named, instead of a list of missing keys. Weights
    with the modules of the model the config builds are its own family's, of other sizes: not named here."""
    if _module_names(model.state_dict()) == _module_names(names):
        return
    other = family_of_weights(names)
    if other is not None and other != model.family:
        raise ModelLoadError(
            f"{directory / WEIGHTS_NAME} holds the weights of a model of family {other}, but {directory / CONFIG_NAME} "
            f"builds one of family {model.family} (_family): the two files are of two models; {_fix_hint(directory)}"
        )


def load_model(directory: str | Path, *, strict: bool = True) -> VideoDepthModel:
    """Rebuild a model saved by `VideoDepthModel.save_pretrained`.

    Raises:
        ModelLoadError: no or unreadable `config.json`, a config the family does not take, an
            unreadable `model.safetensors`, or (with `strict`) weights whose keys or shapes do not
            fit; the message names the file and the keys.
    """
    from safetensors.torch import load_model as load_into

    directory = Path(directory)
    cfg = read_config(directory)
    family = cfg.pop("_family", None)
    cfg.pop("_class_name", None)
    trained = trained_record(cfg, directory / CONFIG_NAME)
    if family is None:  # e.g. a diffusers/transformers folder of a release, not imported yet
        why = released_checkpoint_problem(directory)
        raise ModelLoadError(why or f"{directory / CONFIG_NAME} has no _family entry")
    problem = config_type_problem(config_parameters(family_class(family).__init__), cfg)
    if problem is not None:  # "metric": "false" would be a truthy string: a metric model
        raise ModelLoadError(f"{directory / CONFIG_NAME}: {problem}")
    try:
        model = build_model(family, **cfg)
    except TypeError as err:  # a key the family's constructor does not take
        raise ModelLoadError(f"{directory / CONFIG_NAME} does not fit family {family!r}: {err}") from None
    weights = directory / WEIGHTS_NAME
    shapes = read_weight_shapes(directory)
    wrong = shape_mismatches({k: tuple(v.shape) for k, v in model.state_dict().items()}, shapes)
    if wrong:
        _refuse_other_weights(model, shapes, directory)
        _refuse_other_family(model, shapes, directory)
        raise ModelLoadError(
            f"{weights} does not fit its config.json: {len(wrong)} tensor(s) of another shape: {', '.join(wrong[:10])}"
        )
    missing, unexpected = load_into(model, str(weights), strict=False)
    if strict and (missing or unexpected):
        _refuse_other_family(model, shapes, directory)
        raise ModelLoadError(
            f"{weights} does not fit its config.json: missing keys {sorted(missing)[:10]} ({len(missing)}), "
            f"unexpected keys {sorted(unexpected)[:10]} ({len(unexpected)})"
        )
    model.trained = trained
    return model.eval()


def folder_max_window(directory: str | Path) -> tuple[bool, int | None]:
    """The longest window the model of a model folder takes (`input_constraints.max_window`: a
    temporal position table; None = no limit), from its `config.json` alone (built on the meta
    device: no weights read, no memory used). Returns (known, limit); (False, None) when the folder
    has no usable config or the family cannot be built that way."""
    import torch

    try:
        cfg = read_config(Path(directory))
        family = cfg.pop("_family")
        cfg.pop("_class_name", None)
        cfg.pop(TRAINED_KEY, None)
        with torch.device("meta"):
            limit = build_model(family, **cfg).input_constraints.max_window
    except Exception:  # no config, another family's keys, a constructor that needs real tensors
        return False, None
    return True, None if limit is None else int(limit)


__all__ = [
    "CONFIG_NAME",
    "MODEL_FAMILIES",
    "TRAINED_KEY",
    "WEIGHTS_NAME",
    "ExportSignature",
    "InputConstraints",
    "VideoDepthModel",
    "build_model",
    "config_parameters",
    "config_type_problem",
    "family_class",
    "family_of_weights",
    "folder_max_window",
    "load_model",
    "load_state_dict_file",
    "read_config",
    "read_weight_shapes",
    "register_to_config",
    "state_fingerprint",
]
