"""The interface every model family implements, and its save/load format.

A family is an `nn.Module` subclass of `VideoDepthModel`. Its constructor arguments are its
config (typed, with defaults, JSON-serialisable); `save_pretrained(dir)` writes them to
`config.json` next to `model.safetensors`, and `load_model(dir)` rebuilds the module from them.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import pickle
import re
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from vdepth_ros.errors import ModelLoadError, extra_hint
from vdepth_ros.paths import (
    CONFIG_NAME,
    WEIGHT_SUFFIXES,
    WEIGHTS_NAME,
    adapter_problem,
    hub_download_problem,
    is_checkpoint_index,
    released_checkpoint_problem,
)

Alignment = Literal["chain_ls", "keyframe", "graph", "none"]

#: `config.json` key of what a training run fixed that deployment must reproduce
#: (`VideoDepthModel.trained`): `{"sizes": [[H, W], ...], "clip_length": [lo, hi], "recipe": name}`,
#: the crop sizes and clip lengths its stages trained at. The exporter and the engines default to
#: them (`runtime.shapes.spec_from_model`); released imports and models built in code have none.
TRAINED_KEY = "_trained"


@dataclass(frozen=True)
class InputConstraints:
    """What a family needs from its input windows.

    Attributes:
        multiple_of: H and W must be multiples of this (14 for DINOv2, 16 for Wan, 64 for SVD).
        window: default window length in frames.
        overlap: default overlap between consecutive windows, in frames.
        frames_rule: "any", or "4n+1" (Wan VAE: window padded by repeating the last frame).
        keyframes: window slots used for keyframe alignment (VDA/GemDepth), or None.
        alignment: default stitching strategy for this family.
        value_range: range of the input pixels `predict` expects (RGB, float).
        output_kind: "disparity" (relative, affine-ambiguous) or "depth" (metric, metres).
        max_window: largest window the architecture supports (temporal position table), or None.
    """

    multiple_of: int = 1
    window: int = 32
    overlap: int = 10
    frames_rule: Literal["any", "4n+1"] = "any"
    keyframes: tuple[int, ...] | None = None
    alignment: Alignment = "chain_ls"
    value_range: tuple[float, float] = (0.0, 1.0)
    output_kind: Literal["disparity", "depth"] = "disparity"
    max_window: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExportSignature:
    """The fixed-shape graph an exporter traces.

    `module.forward(frames)` takes `frames` of shape `(1, T, 3, H, W)`, float32 RGB in
    `value_range`, and returns `(1, T, H, W)` float32 (disparity or depth, per `output_kind`).
    Per-model constants (time embeddings, empty text context, normalisation) are folded in.
    `extra["exporter"]` ("legacy" | "dynamo"): the only exporter `vdepth-export onnx --exporter auto` tries
    (a graph the other cannot take, rather than a failed try of it first).
    """

    module: nn.Module
    frames: int
    height: int
    width: int
    input_names: tuple[str, ...] = ("frames",)
    output_names: tuple[str, ...] = ("disparity",)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int, int, int]:
        return (1, self.frames, 3, self.height, self.width)


class VideoDepthModel(nn.Module):
    """Base class of every family: `predict` a window of frames to per-frame disparity.

    Subclasses set `family` (registry name), decorate `__init__` with `@register_to_config`, call
    `super().__init__()` first, and accept only JSON-serialisable keyword arguments with defaults;
    those arguments are recorded as the config (a subclass whose `__init__` lacks the decorator is
    refused when it is defined).
    """

    family: ClassVar[str] = ""
    #: what training fixed (`TRAINED_KEY`), saved with the model; None: not recorded (a released
    #: import, a model built in code, a folder of an earlier version)
    trained: dict[str, Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_registers_config", False):
            raise TypeError(
                f"{cls.__name__}.__init__ must be decorated with @register_to_config "
                "(vdepth_ros.models.base): its arguments are the model's config.json"
            )

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments of this instance (a copy)."""
        return json.loads(json.dumps(getattr(self, "_vdepth_config", {})))

    @property
    def input_constraints(self) -> InputConstraints:
        raise NotImplementedError

    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames `(T, 3, H, W)` RGB in `value_range` -> `(T, H, W)` non-negative disparity."""
        raise NotImplementedError

    def export_signature(self, frames: int, height: int, width: int) -> ExportSignature:
        """The fixed-shape traceable graph for `(1, frames, 3, height, width)` input."""
        raise NotImplementedError

    # -- persistence -------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, weights_dtype: torch.dtype | None = None) -> Path:
        """Write `config.json` + `model.safetensors` to `directory`.

        `weights_dtype` (e.g. `torch.float16`) stores floating-point tensors in that type to halve
        the file; `load_model` casts them back into the module's own (float32) parameters.
        """
        from safetensors.torch import save_file, save_model

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"_family": self.family, "_class_name": type(self).__name__, **self.config}
        if self.trained:
            meta[TRAINED_KEY] = self.trained
        (out / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if weights_dtype is None:
            save_model(self, str(out / WEIGHTS_NAME))
        else:
            state = {
                k: (v.to(weights_dtype) if v.is_floating_point() else v).contiguous()
                for k, v in self.state_dict().items()
            }
            save_file(state, str(out / WEIGHTS_NAME))
        # safetensors writes its file owner-only (0600); give it config.json's ordinary mode, so a node
        # running as another user (a container, a service account) can read the weights it is given.
        os.chmod(out / WEIGHTS_NAME, stat.S_IMODE((out / CONFIG_NAME).stat().st_mode))
        return out


def register_to_config(init: Callable[..., None]) -> Callable[..., None]:
    """Decorator for a family's `__init__`: its arguments, defaults applied and made JSON types
    (tuples -> lists), become the model's `config` and so its `config.json`.

    The most-derived class's arguments are the config (its `__init__` runs first; a parent's
    decorated `__init__`, called through `super().__init__(...)`, records nothing more).
    After diffusers' `register_to_config`; diffusers' `ConfigMixin` itself does not fit: its
    decorator lets a parent's `__init__` overwrite the child's values, stores a
    `_use_default_values` key, keeps tuples as tuples in `config`, and brings a second way to
    save and load (`save_config` / `from_config`) beside `save_pretrained` / `load_model`.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def recording_init(self: VideoDepthModel, *args: Any, **kwargs: Any) -> None:
        if not hasattr(self, "_vdepth_config"):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            config = {k: v for k, v in bound.arguments.items() if k != "self"}
            object.__setattr__(self, "_vdepth_config", _jsonable(config))
        init(self, *args, **kwargs)

    recording_init.__signature__ = signature  # type: ignore[attr-defined]  # as before: read by callers
    recording_init._registers_config = True  # type: ignore[attr-defined]
    return recording_init


def _jsonable(cfg: dict[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, list):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if v is None or isinstance(v, bool | int | float | str):
            return v
        raise TypeError(f"model config value {v!r} ({type(v).__name__}) is not JSON-serialisable")

    return {k: conv(v) for k, v in cfg.items()}


def trained_record(cfg: dict[str, Any], where: str | Path) -> dict[str, Any] | None:
    """`cfg`'s `TRAINED_KEY` entry, taken out of it (the constructor does not take it), checked.

    Raises:
        ModelLoadError: the entry is not a record of sizes (positive `[H, W]` pairs) and clip lengths.
    """
    rec = cfg.pop(TRAINED_KEY, None)
    if rec is None:
        return None

    def pair(v: Any) -> bool:
        return isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)

    sizes, lengths = (rec.get("sizes"), rec.get("clip_length")) if isinstance(rec, dict) else (None, None)
    if not (isinstance(sizes, list) and sizes and all(pair(s) for s in sizes) and (lengths is None or pair(lengths))):
        raise ModelLoadError(
            f"{where}: {TRAINED_KEY} must be {{'sizes': [[H, W], ...], 'clip_length': [lo, hi]}} (what the "
            f"training run wrote), got {rec!r}: write it again with the trainer's --export-checkpoint, or delete "
            "the entry (the exporter and engines then use the family's default size)"
        )
    return rec


def read_config(directory: str | Path) -> dict[str, Any]:
    """The JSON object in a model folder's `config.json`.

    Raises:
        ModelLoadError: no `config.json` (a released checkpoint named as such), not JSON, or not an object.
    """
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        if (why := released_checkpoint_problem(directory)) is not None:
            raise ModelLoadError(why)
        raise ModelLoadError(f"{path} not found: expected a model folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{path} does not hold a JSON object")
    return cfg


def state_fingerprint(module: nn.Module) -> str:
    """sha256 of a module's parameters and buffers (names, dtypes, shapes, bytes): which weights
    made something in memory (a latent cache entry; an export records its weights file instead,
    `runtime.spec.weights_record`)."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def shape_mismatches(expected: dict[str, tuple[int, ...]], got: dict[str, tuple[int, ...]]) -> list[str]:
    """`key (got) (model expected)` for every key in both whose shapes differ, sorted."""
    both = sorted(expected.keys() & got.keys())
    return [f"{k} {got[k]} (model {expected[k]})" for k in both if got[k] != expected[k]]


def load_state_checked(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load `state` into `module` strictly; `ModelLoadError` starting with `what` that names the
    tensors of another shape, else the missing and unexpected keys (torch's own strict load raises a
    RuntimeError with one line per mismatched tensor, hundreds for a checkpoint of another size)."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    wrong = shape_mismatches(expected, {k: tuple(v.shape) for k, v in state.items()})
    if wrong:
        raise ModelLoadError(f"{what}: {len(wrong)} tensor(s) of another shape: {', '.join(wrong[:10])}")
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelLoadError(
            f"{what}: missing keys {sorted(missing)[:10]} ({len(missing)}), "
            f"unexpected keys {sorted(unexpected)[:10]} ({len(unexpected)})"
        )


#: Prefixes trainers put on every key: DDP / DataParallel (`module.`), `torch.compile` (`_orig_mod.`) and a
#: Lightning module's `self.model` (`model.`). Taken off only when every key has one; the family loaders
#: stay strict, so a wrong guess is an error naming the keys, never a model with random weights.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")
#: The entry holding the weights in a training checkpoint, preferred in this order when several exist.
_STATE_ENTRIES = ("state_dict", "model")
#: The step counter `torch.optim.swa_utils.AveragedModel` (EMA, SWA) saves beside its `module.` weights.
_AVERAGED_COUNT = "n_averaged"


def _not_weights(path: Path) -> str | None:
    """Why `path` is plainly not a weights file (empty, a Git LFS pointer, an HTML page, text), or None."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return f"{path} is empty (0 bytes): the download did not complete; download it again"
    if head.startswith(b"version https://git-lfs.github.com/spec/"):
        return (
            f"{path} is a Git LFS pointer ({path.stat().st_size} bytes), not the weights: run `git lfs pull` in "
            "the clone it came from, or download the file itself (the hub's .../resolve/<revision>/<file> URL)"
        )
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")):
        return (
            f"{path} is an HTML page, not the weights (a web page was saved, e.g. the hub's /blob/ link): download "
            "the file from its .../resolve/<revision>/<file> URL"
        )
    if b"\0" not in head:
        try:
            first = head.decode("utf-8").strip().splitlines()[0][:80]
        except (UnicodeDecodeError, IndexError):
            return None
        return f"{path} is a text file, not the weights (it starts with {first!r}); download the weights again"
    return None


def _unwrap(state: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a training checkpoint: `{"state_dict": ...}`, `{"model": ...}` or the
    only tensor dict among the entries (`model_ema`, `net`, ...), with the `_WRAPPER_PREFIXES` taken
    off when every key has them."""

    def has_tensors(d: Any) -> bool:
        return isinstance(d, dict) and any(isinstance(v, torch.Tensor) for v in d.values())

    def strip(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if _AVERAGED_COUNT in d and all(k.startswith("module.") for k in d if k != _AVERAGED_COUNT):
            d = {k: v for k, v in d.items() if k != _AVERAGED_COUNT}  # torch's AveragedModel (EMA/SWA)
        for _ in range(2 * len(_WRAPPER_PREFIXES)):  # e.g. _orig_mod.module.
            prefix = next((p for p in _WRAPPER_PREFIXES if all(k.startswith(p) for k in d)), None)
            if prefix is None:
                break
            d = {k[len(prefix) :]: v for k, v in d.items()}
        return d

    for _ in range(3):  # {"checkpoint": {"model": {...}}}
        if not isinstance(state, dict) or has_tensors(state):
            break
        named = [k for k in _STATE_ENTRIES if isinstance(state.get(k), dict)]
        # the trained weights beside their moving average (`model` + `model_ema`): which one to deploy is the
        # user's choice, so neither is taken silently
        averages = [k for k, v in state.items() if "ema" in str(k).lower().split("_") and has_tensors(v)]
        found = (
            named[:1] + averages if named and averages else named[:1] or [k for k, v in state.items() if has_tensors(v)]
        )
        if len(found) > 1:
            names = ", ".join(repr(k) for k in sorted(map(str, found)))
            both = bool(named and averages)
            which = " (the trained weights and their moving average: the EMA ones are usually the better)"
            pick = averages[0] if both else "<name>"
            raise ModelLoadError(
                f"{path} holds several state dicts ({names}){which if both else ''}; save the one to import on "
                f"its own: {_save_weights_command(path, f'c = c[{pick!r}]', weights_only=True)}"
            )
        if not found:
            break
        state = state[found[0]]
    if not has_tensors(state):
        raise ModelLoadError(f"{path} does not hold a state dict (no tensors found)")
    return strip({k: v for k, v in state.items() if isinstance(v, torch.Tensor)})


#: `model-00001-of-00003.safetensors`: one shard of a split checkpoint (huggingface_hub's naming), also a variant's
#: (`model.fp16-00001-of-00003.safetensors`, older diffusers `...-00001-of-00003.fp16.safetensors`).
_SHARD = re.compile(r"-(\d+)-of-(\d+)(\.[A-Za-z0-9_]+)?\.[A-Za-z]+$")
#: What trainers save beside the model's weights in a checkpoint folder (accelerate's `save_state`:
#: `optimizer.bin`, `scheduler.bin`, `scaler.pt`, `random_states_0.pkl`; transformers' `training_args.bin`,
#: `rng_state.pth`): not weights.
_TRAINER_STATE = re.compile(r"(optimizer|scheduler|scaler|random_states|rng_state|training_args)(_\d+)?\.")
#: DeepSpeed ZeRO's sharded model and optimizer state in an accelerate checkpoint folder.
_ZERO_FOLDER = "pytorch_model"


def _load_zero(folder: Path) -> dict[str, torch.Tensor]:
    """A DeepSpeed ZeRO checkpoint folder, gathered to one fp32 state dict by DeepSpeed's own reader."""
    try:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    except ImportError:
        raise ModelLoadError(
            f"{folder} is a DeepSpeed ZeRO checkpoint ({_ZERO_FOLDER}/); reading it needs DeepSpeed: "
            f"{extra_hint('deepspeed')}; or convert it with the zero_to_fp32.py script DeepSpeed saved beside it"
        ) from None
    state = get_fp32_state_dict_from_zero_checkpoint(str(folder), tag=_ZERO_FOLDER)
    return _unwrap(dict(state), folder)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely: safetensors first, else `torch.load(weights_only=True)`.

    `path` may also be a split checkpoint's `*.index.json` (a variant's `*.index.fp16.json`), any one of its
    shards (the index beside it), or a folder holding one checkpoint (other files are ignored). Training checkpoints are
    unwrapped (`_unwrap`: the state dict inside, DDP/compile prefixes off).

    A folder may be a model folder (`config.json` + `model.safetensors`), a training checkpoint
    folder (accelerate's `checkpoint_<step>`: `model.safetensors` beside the optimizer state, or
    DeepSpeed's ZeRO shards in `pytorch_model/`, gathered with DeepSpeed's own reader), or a folder
    holding one checkpoint. Training code and the importers read weights only through here.

    Raises:
        ModelLoadError: missing, not a weights file (empty, Git LFS pointer, HTML page, text), cut off or
            corrupt, holding Python objects besides tensors, several candidate state dicts, a shard
            without its index or an index without all its shards; the message says which and what to do.
    """
    path = Path(path).expanduser()
    if (why := adapter_problem(path)) is not None:
        raise ModelLoadError(why)
    if path.is_dir() and not (path / WEIGHTS_NAME).is_file() and (path / _ZERO_FOLDER).is_dir():
        return _load_zero(path)
    if path.is_dir():
        path = checkpoint_in_folder(path)
    if is_checkpoint_index(path) and path.is_file():
        return _load_sharded(path)
    shard = _SHARD.search(path.name)
    if shard and int(shard[2]) > 1 and path.is_file():
        for index in _indexes_in(path.parent):
            if path.name in _weight_map(index).values():
                return _load_sharded(index)
        raise ModelLoadError(
            f"{path} is shard {int(shard[1])} of {int(shard[2])} and no *.index.json beside it lists it: download "
            "all the shards and the index into one folder and pass the index (or the folder)"
        )
    return _load_one(path)


#: peft's key of an adapter's LoRA factor: `base_model.model.<module>.lora_A.weight` (`lora_B` the other)
_LORA_KEY = re.compile(r"(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<factor>[AB])\.weight")
#: adapter_config.json settings a plain LoRA merge (W + scaling * B @ A per Linear) does not cover while
#: set (anything but absent, null, false, "none", [] or {})
_LORA_UNSUPPORTED = ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save", "bias", "lora_bias",
                     "target_parameters")  # fmt: skip


def merge_lora_adapter(
    state: dict[str, torch.Tensor],
    adapter: str | Path,
    base: str | Path,
    rename: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> dict[str, torch.Tensor]:
    """`state` (the base checkpoint, in whatever key layout the adapter was trained on: the authors' or this
    package's) with a peft LoRA adapter (the folder `save_pretrained` wrote, or its `adapter_model.*` file)
    merged in: W + scaling * B @ A for every adapted Linear, scaling = lora_alpha / r (/ sqrt(r) with
    `use_rslora`), as peft's `merge_and_unload` computes it, in float32, stored in W's dtype. On the state dict,
    not through peft: peft applies an adapter to the module it was trained on, and an adapter trained on the
    authors' network names their modules (`pretrained.blocks.N.attn.qkv`), which this package's model does not
    have (on it peft merged nothing and only warned of missing adapter keys).

    An adapted module is found as `<module>.weight` in `state`, or under one prefix that all of them share there
    (the part of the model the adapter was trained on: `unet.`, `transformer.`); `rename` first maps the adapter's
    `<module>.weight` names from the layout it was trained on to `state`'s (DVD: the authors' Wan names to
    diffusers').

    Raises:
        ModelLoadError: not a LoRA adapter, an adapter setting this merge does not cover (DoRA, per-module
            ranks, modules_to_save, biases, non-Linear layers: merge those with peft), or adapted modules
            absent from `state` or of another shape (an adapter trained on another base than `base`).
    """
    from vdepth_ros.paths import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_STEM

    adapter = Path(adapter).expanduser()
    folder = adapter if adapter.is_dir() else adapter.parent
    try:
        config = json.loads((folder / ADAPTER_CONFIG_NAME).read_text())
    except (OSError, ValueError) as err:
        # peft saves an adapter not named "default" in a subfolder of that name (`save_pretrained(folder)` with
        # `adapter_name="depth"` writes folder/depth/adapter_config.json)
        named = sorted(p.parent.name for p in folder.glob(f"*/{ADAPTER_CONFIG_NAME}"))
        inside = (
            f"; it holds the adapter folders {', '.join(named)} (peft saves a named adapter in a subfolder of its "
            f"name): give {folder / named[0]}"
            if named
            else ""
        )
        raise ModelLoadError(
            f"{adapter} is not a peft adapter folder (no readable {ADAPTER_CONFIG_NAME}: {err}){inside}"
        ) from None
    peft_merge = "merge it with peft instead (PeftModel.from_pretrained(base, folder).merge_and_unload())"
    if config.get("peft_type") != "LORA":
        raise ModelLoadError(f"{adapter} is a {config.get('peft_type')} adapter, not LoRA: {peft_merge}")
    other = {k: v for k in _LORA_UNSUPPORTED if (v := config.get(k)) not in (None, False, "none") and v not in ([], {})}
    if other:
        raise ModelLoadError(f"{adapter}: LoRA with {other} is not merged here: {peft_merge}")
    files = sorted(p for p in folder.glob(f"{ADAPTER_WEIGHTS_STEM}.*") if p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise ModelLoadError(f"{folder} has {ADAPTER_CONFIG_NAME} but no {ADAPTER_WEIGHTS_STEM}.safetensors/.bin")
    factors: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in _load_one(files[0]).items():
        match = _LORA_KEY.fullmatch(key)
        if match is None or value.ndim != 2:
            raise ModelLoadError(f"{adapter}: {key} is no LoRA factor of a Linear layer: {peft_merge}")
        factors.setdefault(match["module"], {})[match["factor"]] = value
    # peft's LoraConfig defaults (r 8, lora_alpha 8), and its scaling: lora_alpha / r, or / math.sqrt(r)
    r, alpha = int(config.get("r", 8)), config.get("lora_alpha", 8)
    scaling = alpha / (math.sqrt(r) if config.get("use_rslora") else r)
    deltas: dict[str, torch.Tensor] = {}
    for module, pair in factors.items():
        if set(pair) != {"A", "B"}:
            raise ModelLoadError(f"{adapter}: {module} has lora_{''.join(pair)} only; the adapter file is incomplete")
        # peft's get_delta_weight: B @ A in float32 (its adapters are float32 on the CPU), times the scaling
        delta = (pair["B"].float() @ pair["A"].float()).mul_(scaling)
        deltas[f"{module}.weight"] = delta.T if config.get("fan_in_fan_out") else delta
    names = _renamed(list(deltas), rename) if rename else {k: k for k in deltas}  # state's name -> the adapter's
    prefix = _common_prefix(names, state)
    if prefix is None:
        absent = [n for n in names if n not in state]
        raise ModelLoadError(
            f"{adapter} adapts {len(factors)} modules ({next(iter(factors))}, ...) and {len(absent)} of them are not "
            f"in {base} (its keys: {next(iter(state))}, ...): the adapter was trained on another model's layout; give "
            "the checkpoint it was trained on as the base"
        )
    merged = dict(state)
    for name, theirs in names.items():
        weight, delta = state[prefix + name], deltas[theirs]
        if delta.shape != weight.shape:
            raise ModelLoadError(
                f"{adapter}: {theirs[: -len('.weight')]} is {tuple(delta.shape)} in the adapter and "
                f"{tuple(weight.shape)} in {base}: the adapter was trained on another size of the model; give the "
                "checkpoint it was trained on"
            )
        # peft's merge: `base_layer.weight.data += delta` (computed in float32, stored in W's dtype)
        merged[prefix + name] = (weight.float() + delta).to(weight.dtype)
    return merged


def _renamed(names: list[str], rename: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> dict[str, str]:
    """{converted name: name} through a layout's key converter, which renames a whole state dict (its rules may
    depend on all the keys) and keeps the values: each name travels with its index as the value."""
    renamed = rename({name: torch.tensor(i) for i, name in enumerate(names)})
    return {new: names[int(index)] for new, index in renamed.items()}


def _common_prefix(names: dict[str, str], state: dict[str, torch.Tensor]) -> str | None:
    """The one key prefix (maybe "") under which every name is in `state`, or None."""
    first = next(iter(names))
    candidates = [k[: -len(first)] for k in state if k.endswith(first) and k[: -len(first)][-1:] in ("", ".")]
    found = [p for p in candidates if all(p + n in state for n in names)]
    return found[0] if len(found) == 1 else None


def checkpoint_in_folder(folder: Path) -> Path:
    """The one checkpoint in `folder`: its `*.index.json`, else its only weights file (a trainer's
    optimizer, scheduler and RNG state beside it do not count)."""
    indexes = _indexes_in(folder)
    if len(indexes) == 1:
        return indexes[0]
    files = sorted(
        p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file() and not _TRAINER_STATE.match(p.name)
    )
    if not indexes and len(files) == 1:
        return files[0]
    if not indexes and not files and (why := hub_download_problem(folder)) is not None:
        raise ModelLoadError(why)
    found = ", ".join(p.name for p in (indexes or files)) or f"no {'/'.join(WEIGHT_SUFFIXES)} file"
    raise ModelLoadError(f"{folder} is a folder with {found}: pass the checkpoint file itself")


def _indexes_in(folder: Path) -> list[Path]:
    """The split checkpoint indexes in `folder` (`is_checkpoint_index`: a variant's too)."""
    return sorted(p for p in folder.glob("*.json") if is_checkpoint_index(p))


def _weight_map(index: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(index.read_text()).get("weight_map")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise ModelLoadError(f"{index} is not a checkpoint index (JSON with a weight_map): {err}") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelLoadError(f"{index} is not a checkpoint index: no weight_map")
    return {str(k): str(v) for k, v in weight_map.items()}


def _load_sharded(index: Path) -> dict[str, torch.Tensor]:
    """Every shard an index lists (from the index's folder), merged; all the listed tensors present."""
    weight_map = _weight_map(index)
    shards = sorted(set(weight_map.values()))
    absent = [s for s in shards if not (index.parent / s).is_file()]
    if absent:
        raise ModelLoadError(
            hub_download_problem(index.parent / absent[0])
            or f"{index} lists {len(shards)} shards; {', '.join(absent[:5])} not found beside it: download all the "
            "shards into that folder"
        )
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(_load_one(index.parent / shard))
    lost = sorted(weight_map.keys() - state.keys())
    if lost:
        raise ModelLoadError(f"{index}: tensors it lists are in none of the shards: {lost[:10]} ({len(lost)})")
    return state


def _load_one(path: Path) -> dict[str, torch.Tensor]:
    """One checkpoint file: safetensors, else `torch.load(weights_only=True)`, unwrapped."""
    if not path.is_file():
        raise ModelLoadError(hub_download_problem(path) or f"checkpoint {path} not found")
    if (why := _not_weights(path)) is not None:
        raise ModelLoadError(why)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _unwrap(load_file(str(path)), path)
        except SafetensorError as err:
            raise ModelLoadError(
                f"{path} is not a readable safetensors file ({err}): truncated or corrupt; download it again"
            ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refuses a non-tensor object, or not a pickle at all
        raise ModelLoadError(_unpickling_problem(path, err)) from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        first = str(err).split(". ")[0]
        raise ModelLoadError(
            f"{path} is truncated or corrupt ({path.stat().st_size} bytes; {first}): download it again"
        ) from None
    return _unwrap(state, path)


def _save_weights_command(path: Path, select: str, *, weights_only: bool) -> str:
    """The one-line command that loads `path` as `c`, runs `select` (which leaves the weights in `c`) and saves
    them beside it as `<name>_weights.pth` (never over the file itself: one called weights.pth was)."""
    out = path.with_name(f"{path.stem}_weights.pth")
    return (
        f"python -c \"import torch; c = torch.load('{path}', weights_only={weights_only}); {select}; "
        f"torch.save(c, '{out}')\", then import {out}"
    )


def _unpickling_problem(path: Path, err: Exception) -> str:
    """A weights_only refusal in one line: the Python objects in the file and a way to keep only its weights."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a torch zip file: a legacy or broken pickle
        unsafe = []
    if unsafe:
        # a whole module (`torch.save(model)`), alone or as a checkpoint's entry, gives its state_dict()
        select = (
            "c = c.get('state_dict', c.get('model', c)) if isinstance(c, dict) else c; "
            "c = c.state_dict() if isinstance(c, torch.nn.Module) else c"
        )
        return (
            f"{path} holds Python objects besides tensors ({', '.join(unsafe[:5])}), which the safe loader "
            "(torch.load weights_only=True) refuses. If you trust the file, save its weights alone and import "
            f"that: {_save_weights_command(path, select, weights_only=False)}"
        )
    size = path.stat().st_size
    return f"{path} is truncated or corrupt, or not a PyTorch checkpoint ({size} bytes): download it again"
