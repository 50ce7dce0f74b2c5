"""Recipe YAML -> a validated config dict, plus builders for the model, data and optimizer.

A recipe file (see `training/configs/*.yaml` and `training/README.md`) has the sections
`recipe`, `model`, `data`, `optimizer`, `training`, `loss`, `stages` and an optional `tiny`
section that is deep-merged over the rest by `--tiny` (dicts merge, lists and scalars replace).
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from vdepth_training.data.dataset import ClipDataset, ClipSampling, Source
from vdepth_training.data.layouts import LAYOUTS, load_layout
from vdepth_training.data.toy import load_toy
from vdepth_training.data.transforms import GEMDEPTH_ASPECTS
from vdepth_training.stages import OPTIMIZER_KEYS, refuse_unknown_keys

from vdepth_ros.errors import ConfigError
from vdepth_ros.values import kind_of_type, load_yaml, type_problem

log = logging.getLogger("vdepth_training")

#: the bundled default model's recipe (v7)
DEFAULT_RECIPE = Path(__file__).resolve().parent / "configs" / "default_v7.yaml"

SECTIONS = ("recipe", "model", "data", "optimizer", "training", "loss", "stages", "augment", "tiny")

DEFAULT_TRAINING: dict[str, Any] = {
    "batch_size": 1,  # per process and micro-step
    "deepspeed": None,  # a DeepSpeed JSON config (ZeRO-2: configs/deepspeed_zero2.json); unusable = an error
    "init": None,  # weights to start from: a model folder, a checkpoint folder or a legacy checkpoint.pt
    "init_new_modules": [],  # modules absent from `init` (they keep their initialisation)
    "threads": None,  # torch intra-op threads per process (None: torch's default)
    "stop_at": None,  # end the run at this global step, as if the stages ended there
    "export_weights_dtype": None,  # e.g. float16: the final model's stored weights
    "latent_cache": None,
    "grad_accum": 1,  # micro-batches per process and optimizer step (derived from `global_batch` when it is set)
    "global_batch": None,  # samples per optimizer step, all processes together: sets grad_accum (resolve_global_batch)
    "mixed_precision": "no",
    "gradient_checkpointing": False,
    "seed": 0,
    "log_every": 10,
    "checkpoint_every": 1000,
    "keep_checkpoints": 3,
    "num_workers": 0,
    "log_with": None,
    "find_unused_parameters": False,  # DDP; recipes freeze what they never use instead (Recipe.unused_parameters)
    "validate_every": 0,  # global steps between validations on `data.validation` (0: none)
    "validate_batches": 4,  # batches of the validation stream per validation, split across the ranks
    "stall_timeout": 600.0,  # seconds a rank of several may wait for one batch before it ends the run (0: never)
    "collective_timeout": None,  # seconds the ranks wait for each other in one exchange (None: torch's, 30 min on gloo)
}
MIXED_PRECISIONS = ("no", "fp16", "bf16", "fp8")  # accelerate's
DEFAULT_OPTIMIZER: dict[str, Any] = {
    "name": "adamw",
    "lr": 1e-4,
    "betas": [0.9, 0.999],
    "eps": 1e-8,
    "weight_decay": 0.0,
    "grad_clip": None,
    "warmup_steps": 0,
    "schedule": "constant",  # or "cosine" (to min_lr_ratio x lr over each stage; `stages.stage_lr`)
    "min_lr_ratio": 0.05,
    "new_params": None,
    "lr_new": None,
}

#: the type of each `training` / `optimizer` key whose default is None (the others have their
#: default's: `vdepth_ros.values.kind_of`); `log_with` (accelerate's trackers) takes anything
NONE_DEFAULT_TYPES: dict[str, Any] = {
    "training.deepspeed": str | None,
    "training.init": str | None,
    "training.threads": int | None,
    "training.global_batch": int | None,
    "training.stop_at": int | None,
    "training.collective_timeout": float | None,
    "training.export_weights_dtype": str | None,
    "training.latent_cache": str | None,
    "optimizer.grad_clip": float | None,
    "optimizer.new_params": str | None,
    "optimizer.lr_new": float | None,
}
#: the type of the `data:` keys `build_dataset` reads (`aspects`, `sources`: checked by their readers)
DATA_TYPES: dict[str, Any] = {
    "clip_length": list[int],
    "size": list[int],
    "normalization": str,
    "flip_p": float,
    "random_crop": bool,
    "stride": int,
    "num_samples": int,
    "fixed_clips": bool,
}
#: the type of the stage keys `stages.plan_stages` reads besides the `optimizer` ones
STAGE_TYPES: dict[str, Any] = {"steps": int, "trainable": str, "clip_length": list[int], "restart": bool}


def value_types(data: dict[str, Any] | None = None) -> dict[str, Any]:
    """ "<section>.<key>" -> the type its value must be of (`check_types`): `training.*` and
    `optimizer.*` by their defaults (`NONE_DEFAULT_TYPES` for the None ones), `stage.*` (a stage's
    own keys: `STAGE_TYPES` and the optimizer keys it may override) and `data.*` (`data`: the
    recipe's, default `DATA_TYPES`). A recipe adds its own (`Recipe.value_types`)."""
    types: dict[str, Any] = {f"training.{k}": type(v) for k, v in DEFAULT_TRAINING.items() if v is not None}
    types |= {f"optimizer.{k}": type(v) for k, v in DEFAULT_OPTIMIZER.items() if v is not None}
    types |= {"optimizer.betas": list[float], "training.init_new_modules": list[str]}
    types |= NONE_DEFAULT_TYPES
    types |= {f"stage.{k}": types[f"optimizer.{k}"] for k in OPTIMIZER_KEYS}
    types |= {f"stage.{k}": t for k, t in STAGE_TYPES.items()}
    return types | {f"data.{k}": t for k, t in (DATA_TYPES if data is None else data).items()}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: nested dicts merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out


def _read_yaml(path: str | Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"config {path} not found")
    try:
        raw = load_yaml(Path(path).read_text()) or {}  # `lr: 1e-4` is a number, not PyYAML's string
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path, *, tiny: bool = False, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a recipe YAML, apply `tiny` and `overrides`, fill defaults and validate.

    Raises:
        FileNotFoundError: no file at `path`.
        ConfigError: not a YAML mapping, unknown section, no stages, a stage without positive
            `steps`, or no recipe (a ValueError too).
    """
    raw = _read_yaml(path)
    if "train" in raw and "recipe" not in raw:  # the former train_default schema
        from vdepth_training.legacy import convert_train_default

        if int(os.environ.get("RANK", "0")) == 0:  # every rank reads the same file: said once, not per rank
            log.warning(
                "%s uses the former train_default schema; read as recipe `default` (see training/README.md)", path
            )
        raw = convert_train_default(raw)
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown sections {sorted(unknown)}; known: {SECTIONS}")
    # `tiny` is merged over the sections: a misspelt one there (`optimiser:`) would be a section nothing reads
    refuse_unknown_keys(f"{path}: tiny", raw.get("tiny"), frozenset(SECTIONS) - {"tiny"})
    cfg = {k: v for k, v in raw.items() if k != "tiny"}
    if tiny:
        if "tiny" not in raw:
            raise ConfigError(f"{path} has no `tiny` section")
        cfg = deep_merge(cfg, raw["tiny"])
    if overrides:
        cfg = deep_merge(cfg, overrides)
    cfg["training"] = {**DEFAULT_TRAINING, **cfg.get("training", {})}
    cfg["optimizer"] = {**DEFAULT_OPTIMIZER, **cfg.get("optimizer", {})}
    cfg.setdefault("loss", {})
    cfg.setdefault("model", {})
    cfg["tiny"] = tiny
    if not cfg.get("recipe"):
        raise ConfigError(f"{path}: `recipe` is required")
    _check_stage_list(path, cfg.get("stages") or [])
    return cfg


def _check_stage_list(path: str | Path, stages: Any) -> None:
    """At least one stage, each a mapping with `steps` > 0 (an integer); a missing `name` is filled in."""
    if not stages:
        raise ConfigError(f"{path}: at least one stage is required")
    if not isinstance(stages, list):
        raise ConfigError(f"{path}: stages must be a list of stages (`- name: ...` entries), got {stages!r}")
    for i, st in enumerate(stages):
        if not isinstance(st, dict):
            raise ConfigError(f"{path}: stages[{i}] must be a mapping of stage keys (name, steps, ...), got {st!r}")
        steps = st.get("steps", 0)
        problem = type_problem(int, steps)
        if problem is not None:
            raise ConfigError(f"{path}: stages[{i}].steps must be {problem}")
        if steps <= 0:
            raise ConfigError(f"{path}: stage {i} ({st.get('name')}) needs steps > 0")
        st.setdefault("name", f"stage{i + 1}")


#: `data:` keys that `build_dataset` and `build_sources` read (the recipes on `Recipe.batches`)
DATA_KEYS = frozenset(
    ("sources", "aspects", "clip_length", "size", "normalization", "flip_p", "random_crop", "stride", "num_samples")
    + ("fixed_clips",)
)
#: `model:` keys that `build_family_model` reads
MODEL_KEYS = frozenset(("family", "config", "init_from", "use_tiny_config"))
#: keys of a `data.sources` entry that `build_sources` reads; the rest go to its layout's loader
SOURCE_KEYS = frozenset(("layout", "weight", "length", "max_depth", "name", "batch_size", "root"))


def _check_sources(where: str, entries: Any) -> None:
    """Each `sources` entry: `SOURCE_KEYS` plus the options of its layout's loader."""
    if entries is None:
        return
    if not isinstance(entries, list):
        raise ConfigError(f"{where} must be a list of sources, got {type(entries).__name__}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}[{i}] must be a mapping, got {type(entry).__name__}")
        layout = entry.get("layout", "sequence")
        loader = load_toy if layout == "toy" else LAYOUTS.get(layout)
        if loader is None:
            raise ConfigError(f"{where}[{i}]: unknown dataset layout {layout!r}; known: {sorted([*LAYOUTS, 'toy'])}")
        params = inspect.signature(loader).parameters.values()
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            options = {p.name for p in params if p.kind is not p.VAR_POSITIONAL}
            refuse_unknown_keys(f"{where}[{i}] (layout {layout})", entry, SOURCE_KEYS | options)


def _check_section(where: str, given: Any, path: str, known: dict[str, frozenset[str]]) -> None:
    """`given` against `known[path]`, then its nested sections (`known["<path>.<key>"]`) and sources."""
    refuse_unknown_keys(where, given, known[path])
    for key, value in (given or {}).items():
        if f"{path}.{key}" in known:
            _check_section(f"{where}.{key}", value, f"{path}.{key}", known)
        elif key == "sources" and path.startswith("data"):
            _check_sources(f"{where}.sources", value)


def check_keys(cfg: dict[str, Any], known: dict[str, frozenset[str]], types: dict[str, Any] | None = None) -> None:
    """Refuse a key that nothing reads in any section of a loaded recipe (a misspelt `bach_size`,
    `clip_lenght` or `w_tmg` would otherwise train with the default in silence): `training`,
    `optimizer`, `model`, `data` (its `sources` entries too), `loss`, `augment`, and each stage's
    `data` and `loss`. One error before anything is built.

    Args:
        known: section -> the keys its recipe reads (`Recipe.config_keys()`); a dotted name
            (`data.pseudo`, `model.teacher`) is a nested section.
        types: the values' types (`Recipe.value_types()`; default `value_types()`), for
            `check_types`, which runs last.

    Raises:
        ConfigError: naming the section, the unknown keys, a close known one, and the known ones; a
            `training.mixed_precision` accelerate does not know.
    """
    for section in ("training", "optimizer", "model", "data", "loss", "augment"):
        _check_section(section, cfg.get(section), section, known)
    for i, stage in enumerate(cfg.get("stages") or []):
        for section in ("data", "loss"):
            _check_section(f"stages[{i}].{section}", stage.get(section), section, known)
    precision = (cfg.get("training") or {}).get("mixed_precision", "no")
    if precision not in MIXED_PRECISIONS:
        hint = " (YAML reads a bare no as false: write 'no' in quotes)" if precision is False else ""
        raise ConfigError(f"training.mixed_precision must be one of {MIXED_PRECISIONS}, got {precision!r}{hint}")
    check_types(cfg, value_types() if types is None else types)
    check_model_config(cfg.get("model") or {})


def check_model_config(model: dict[str, Any]) -> None:
    """`model.config` against its family's constructor (`vdepth_ros.models.config_parameters`): a key it
    does not take, with the closest one (`windw` used to stop every rank after its accelerator was up,
    without a hint), and a value of the wrong type, as `config.json` and `vdepth-export import --set`
    are judged. With `init_from` (a saved model, loaded as it was saved) a `config` value other than
    the saved model's was ignored in silence: it is refused, naming both. A recipe without `family`
    is left to the recipe.

    Raises:
        ConfigError: the unknown keys, the first value of the wrong type, or a value `init_from`'s
            model was not built with.
    """
    from vdepth_ros.models import config_parameters, config_type_problem, family_class
    from vdepth_ros.models.base import CONFIG_NAME, read_config

    if not model.get("family") or not model.get("config"):
        return
    init = family_class(model["family"]).__init__
    params = config_parameters(init)
    if not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
        refuse_unknown_keys(f"model.config (family {model['family']})", model["config"], frozenset(params))
    problem = config_type_problem(params, model["config"])
    if problem is not None:
        raise ConfigError(f"model.config: {problem}")
    if model.get("init_from"):
        saved_file = Path(str(model["init_from"])).expanduser() / CONFIG_NAME
        saved = read_config(saved_file.parent) if saved_file.is_file() else {}  # (a missing one: load_model says)
        differ = [
            f"{k}: {v!r} (saved: {saved[k]!r})" for k, v in model["config"].items() if k in saved and saved[k] != v
        ]
        if differ:
            raise ConfigError(
                f"model.config sets {', '.join(differ)}, but model.init_from {model['init_from']} is loaded as saved "
                f"({saved_file}): remove those keys from model.config, or init_from to build a new model with them"
            )


def check_types(cfg: dict[str, Any], types: dict[str, Any]) -> None:
    """Each value of a loaded recipe against its key's type (`vdepth_ros.values`, the rule every
    setting obeys; `types`: `value_types()` or a recipe's `Recipe.value_types()`), and loss
    weights `w_*` as numbers, in every section and each stage's keys and `data`/`loss` changes.
    `lr: "1e-4"` (quoted), `batch_size: 2.0`, `restart: "false"` (a non-empty string is true) or
    `num_samples: abc` fail here in one line naming the key and the fix, instead of a traceback from
    `float()`/`int()` later or a run that silently trains with another value. A key without a type
    here takes anything (its reader checks it).

    Raises:
        ConfigError: "<where>.<key> must be <what>, got <value> (<fix>)" for the first bad value.
    """

    def check(where: str, section: str, values: Any) -> None:
        for key, value in values.items() if isinstance(values, dict) else ():
            name = f"{section}.{key}"
            kind = float if section == "loss" and str(key).startswith("w_") else kind_of_type(types.get(name))
            problem = type_problem(kind, os.fspath(value) if isinstance(value, os.PathLike) else value)  # a Path: text
            if problem is not None:
                raise ConfigError(f"{where}.{key} must be {problem}")

    for section in ("training", "optimizer", "data", "loss", "augment"):
        check(section, section, cfg.get(section))
    check("data.validation", "data", (cfg.get("data") or {}).get("validation"))
    for i, stage in enumerate(cfg.get("stages") or []):
        check(f"stages[{i}]", "stage", stage)
        check(f"stages[{i}].data", "data", stage.get("data"))
        check(f"stages[{i}].loss", "loss", stage.get("loss"))


# -- builders ------------------------------------------------------------------------------------------


def build_family_model(cfg: dict[str, Any]) -> nn.Module:
    """The `vdepth_ros.models` family of `cfg["model"]`: tiny config when `use_tiny_config`, then
    `config` kwargs; weights from `init_from` (a `save_pretrained` folder) when given."""
    from vdepth_ros.models import build_model, config_parameters, config_type_problem, family_class, load_model

    mcfg = cfg["model"]
    family = mcfg["family"]
    if mcfg.get("init_from"):
        return load_model(mcfg["init_from"]).train()
    kwargs = dict(mcfg.get("config") or {})
    if mcfg.get("use_tiny_config"):
        kwargs = {**family_class(family).tiny_config(), **kwargs}
    problem = config_type_problem(config_parameters(family_class(family).__init__), kwargs)
    if problem is not None:  # `metric: "false"` would be a truthy string: a metric model
        raise ConfigError(f"model.config: {problem}")
    try:
        return build_model(family, **kwargs)
    except TypeError as err:  # a model.config key the family's constructor does not take
        raise ConfigError(f"model.config does not fit family {family!r}: {err}") from None


def build_sources(data: dict[str, Any]) -> list[Source]:
    """`data.sources` entries -> `Source`s (`layout: toy` generates clips in memory)."""
    sources = []
    for entry in data.get("sources") or []:
        entry = dict(entry)
        layout = entry.pop("layout", "sequence")
        weight = float(entry.pop("weight", 1.0))
        length = entry.pop("length", None)
        max_depth = entry.pop("max_depth", None)
        name = entry.pop("name", layout)
        batch_size = entry.pop("batch_size", None)
        root = entry.pop("root", None)
        try:
            seqs = load_toy(root, **entry) if layout == "toy" else load_layout(layout, root, **entry)
        except TypeError as err:  # a source key the layout does not take
            raise ConfigError(f"data.sources[{name!r}] ({layout}): {err}") from None
        sources.append(
            Source(
                seqs,
                weight=weight,
                length_range=None if length is None else tuple(length),
                max_depth=max_depth,
                name=name,
                batch_size=batch_size,
                root=None if layout == "toy" or root is None else str(root),
            )
        )
    if not sources:
        raise ValueError("data.sources is empty")
    return sources


def stage_clip_length(cfg: dict[str, Any], spec: dict[str, Any]) -> tuple[int, int]:
    """The clip lengths a stage draws: its `clip_length`, else `data.clip_length`, else single frames."""
    lo, hi = spec.get("clip_length") or cfg["data"].get("clip_length") or (1, 1)
    return int(lo), int(hi)


def check_clip_lengths(sources: list[Source], stage: Any) -> None:
    """Refuse a source none of whose sequences is as long as the stage's shortest clip (and without
    its own `length`): every clip drawn from it would be cut to its sequences' length, e.g. a folder
    of single images (the pseudo-label tool's output) training a video stage on one frame at a time,
    whose temporal terms then see nothing.

    Raises:
        ConfigError: naming the source, the stage, the lengths and the two fixes.
    """
    lo, hi = stage_clip_length(stage.cfg, stage.spec)
    for src in sources:
        if src.length_range is not None or not src.sequences:
            continue
        longest = max(len(s) for s in src.sequences)
        if longest < lo:
            raise ConfigError(
                f"data.sources[{src.name!r}]: its longest sequence has {longest} frame(s), but stage "
                f"{stage.name!r} draws clips of {lo}-{hi} frames, so every clip from it would be cut to "
                f"{longest}; give it sequences of at least {lo} frames (consecutive frames of a video as one "
                "sequence, e.g. `python -m vdepth_training.data.layouts rosbag`), or declare it single images "
                "with `length: [1, 1]` in its entry (as dvd.yaml does), or lower the stage's clip_length"
            )


#: `data.size` when a recipe sets neither it nor `data.aspects`
DEFAULT_CROP = (320, 640)


def crop_sizes(data: dict[str, Any]) -> list[tuple[int, int]]:
    """The (H, W) crops a stage's `data` trains at: `data.aspects` (multi-aspect crops), else `data.size`."""
    aspects = data.get("aspects")
    if aspects == "gemdepth":
        aspects = GEMDEPTH_ASPECTS
    if aspects:
        return [(int(h), int(w)) for h, w in aspects]
    h, w = data.get("size") or DEFAULT_CROP
    return [(int(h), int(w))]


def trained_record(recipe: str, stages: list[Any]) -> dict[str, Any]:
    """What `stages` (the `stages.Stage`s a model went through) fixed for deployment, saved with the
    model as its `config.json`'s `_trained` (`vdepth_ros.models.base.TRAINED_KEY`): the last stage's
    crop sizes (the final weights' last training) and the shortest and longest clip of any stage."""
    lengths = [stage_clip_length(st.cfg, st.spec) for st in stages]
    return {
        "recipe": recipe,
        "sizes": [list(s) for s in crop_sizes(stages[-1].cfg["data"])],
        "clip_length": [min(lo for lo, _ in lengths), max(hi for _, hi in lengths)],
    }


def build_dataset(
    cfg: dict[str, Any], stage: dict[str, Any], sources: list[Source], *, seed: int, normalization: str
) -> ClipDataset:
    """A stage's `ClipDataset` (stage `clip_length` wins over `data.clip_length`)."""
    data = cfg["data"]
    aspects = data.get("aspects")
    if aspects == "gemdepth":
        aspects = GEMDEPTH_ASPECTS
    sampling = ClipSampling(
        length_range=stage_clip_length(cfg, stage),
        size=tuple(data.get("size") or DEFAULT_CROP),
        aspects=None if not aspects else tuple(tuple(a) for a in aspects),
        normalization=data.get("normalization") or normalization,
        flip_p=float(data.get("flip_p", 0.5)),
        random_crop=bool(data.get("random_crop", True)),
        stride=int(data.get("stride", 1)),
    )
    bs = int(cfg["training"]["batch_size"])
    n = int(data.get("num_samples", 1000))
    return ClipDataset(sources, sampling, num_samples=max(bs, n - n % bs), batch_size=bs, seed=seed,
                       fixed_clips=bool(data.get("fixed_clips", False)))  # fmt: skip


def build_optimizer(groups: list[dict[str, Any]], opt: dict[str, Any]) -> torch.optim.Optimizer:
    """Adam/AdamW over param groups (each may carry its own `lr`)."""
    name = opt["name"].lower()
    kwargs = {"lr": float(opt["lr"]), "betas": tuple(opt["betas"]), "eps": float(opt["eps"]),
              "weight_decay": float(opt["weight_decay"])}  # fmt: skip
    if name == "adam":
        return torch.optim.Adam(groups, **kwargs)
    if name == "adamw":
        return torch.optim.AdamW(groups, **kwargs)
    raise ConfigError(f"optimizer.name must be adam or adamw, got {opt['name']!r}")


def resolve_global_batch(training: dict[str, Any], processes: int) -> None:
    """Set `training["grad_accum"]` from `training["global_batch"]` for a launch of `processes` processes:
    global_batch = batch_size x grad_accum x processes, so a recipe that states the paper's global batch
    trains it on any number of GPUs (one GPU accumulates what eight ran at once). Without `global_batch`
    nothing changes: the global batch then grows with the processes.

    Raises:
        ConfigError: no grad_accum makes `global_batch` on this many processes (naming the numbers of
            processes that can), or the config's own `grad_accum` (other than 1) makes another one.
    """
    total = training.get("global_batch")
    if total is None:
        return
    batch, accum = int(training["batch_size"]), int(training["grad_accum"])
    if total <= 0 or total % (batch * processes):
        fits = [p for p in range(1, max(total // batch, 0) + 1) if total % (batch * p) == 0]
        near = sorted(sorted(fits, key=lambda p: abs(p - processes))[:3])
        listed = (
            ", ".join(str(p) for p in near[:-1]) + (" or " if len(near) > 1 else "") + str(near[-1]) if near else ""
        )
        can = f"{listed} processes" if near else f"a global_batch that is a multiple of batch_size {batch}"
        raise ConfigError(
            f"training.global_batch: {total} is not batch_size {batch} x grad_accum x {processes} processes for any "
            f"grad_accum: launch {can}, or set another batch_size or global_batch"
        )
    derived = total // (batch * processes)
    if accum not in (1, derived):
        raise ConfigError(
            f"training.grad_accum: {accum} and training.global_batch: {total} disagree on {processes} processes of "
            f"batch_size {batch} (grad_accum {derived} makes {total}): remove grad_accum, global_batch sets it for any "
            "number of processes"
        )
    training["grad_accum"] = derived


def wants_deepspeed(train_cfg: dict[str, Any]) -> bool:
    """Does the run use DeepSpeed (`training.deepspeed`, or `accelerate launch` configured for it)?"""
    return bool(train_cfg.get("deepspeed")) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


__all__ = [
    "DATA_KEYS",
    "MODEL_KEYS",
    "SOURCE_KEYS",
    "build_dataset",
    "build_family_model",
    "build_optimizer",
    "build_sources",
    "check_clip_lengths",
    "check_keys",
    "check_model_config",
    "check_types",
    "crop_sizes",
    "deep_merge",
    "load_config",
    "refuse_unknown_keys",
    "resolve_global_batch",
    "stage_clip_length",
    "trained_record",
    "value_types",
    "wants_deepspeed",
]
