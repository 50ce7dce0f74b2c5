"""Where bundled files live, in a source checkout and in an installed tree; the names of a model
folder's files (here, not in `models`: the runtime, the node and the tools check them without torch)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

_PKG_DIR = Path(__file__).resolve().parent
REPO_ROOT = _PKG_DIR.parent
#: written by `vdepth-export pull` next to config.json: which release and files the folder came from
#: (here, not in `models`: the runtime and the node read it without importing torch).
PROVENANCE_NAME = "release.json"
#: a model folder: `save_pretrained` writes its config (with `_family`) and weights under these names
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: a vdepth_training checkpoint folder (`<run>/checkpoints/checkpoint_<step>`): the trainer's state
#: (written last) and the run's config, named here so the tools recognise one without the trainer
TRAINER_STATE_NAME = "trainer_state.json"
TRAINER_CONFIG_NAME = "trainer_config.json"
#: the files released checkpoints come as
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


#: A split checkpoint's index: `model.safetensors.index.json`, and a variant's, `model.safetensors.index.fp16.json`
#: (what transformers and diffusers write beside `*.fp16-00001-of-00002.safetensors`; not a pipeline's model_index.json)
_CHECKPOINT_INDEX = re.compile(r".+\.index(\.[A-Za-z0-9_]+)?\.json")


def is_checkpoint_index(path: str | Path) -> bool:
    """Whether `path`'s name is a split checkpoint's index (`*.index.json`, or a variant's `*.index.fp16.json`)."""
    return _CHECKPOINT_INDEX.fullmatch(Path(path).name) is not None


def is_model_folder(folder: str | Path) -> bool:
    """True when `folder` holds our `config.json` (with `_family`; a diffusers/transformers config
    does not count)."""
    try:
        return "_family" in json.loads((Path(folder) / CONFIG_NAME).read_text())
    except (OSError, ValueError, TypeError):
        return False


def not_a_model_folder(path: Path) -> str | None:
    """What an existing `path` is instead of a model folder the tools wrote (our `config.json`, or a
    pull's `release.json`), or None: the `replaceable` rule of the outputs that write model folders,
    so `--overwrite` never replaces a folder of the user's other files."""
    if path.is_dir() and (is_model_folder(path) or (path / PROVENANCE_NAME).is_file()):
        return None
    if path.is_dir():
        return f"not a model folder (no {CONFIG_NAME} with _family)"
    return "a file, not a model folder"


#: what peft's `save_pretrained` writes for an adapter: its config, and its weights under this stem
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_STEM = "adapter_model"


def adapter_problem(path: str | Path) -> str | None:
    """For a LoRA/PEFT adapter (peft's `save_pretrained` folder, or its `adapter_model.*` file) given
    where weights are expected: the message saying it holds only the adapter's deltas and how to merge
    it into the model it was trained on; None for anything else."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not (folder / ADAPTER_CONFIG_NAME).is_file() or (
        path.is_file() and not path.name.startswith(ADAPTER_WEIGHTS_STEM)
    ):
        return None
    try:
        config = json.loads((folder / ADAPTER_CONFIG_NAME).read_text())
        kind, base = config.get("peft_type") or "PEFT", config.get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        kind, base = "PEFT", None
    on = f", trained on {base}" if base else ""
    return (
        f"{path} is a {kind} adapter ({ADAPTER_CONFIG_NAME}{on}): it holds only the adapter's weights, not a model. "
        "Merge it into the checkpoint it was trained on (the released file, or a model folder's model.safetensors) "
        f"while importing: `vdepth-export import FAMILY BASE_CHECKPOINT --adapter {folder} -o FOLDER` (with the "
        "base's --encoder/--set), and use FOLDER"
    )


def hub_repository_folder(folder: str | Path) -> str | None:
    """The hub repository (`owner/name`) whose huggingface_hub cache folder `folder` is (`models--owner--name`
    holding `snapshots/`), or None. A repository id holds no `--`."""
    folder = Path(folder)
    owner, sep, name = folder.name.removeprefix("models--").partition("--")
    if folder.name.startswith("models--") and sep and owner and name and (folder / "snapshots").is_dir():
        return f"{owner}/{name}"
    return None


def hub_cache_repository(path: str | Path) -> str | None:
    """The hub repository (`owner/name`) whose copy in a huggingface_hub cache `path` is or lies in (its
    `models--owner--name` folder, a snapshot, a file in one), or None (`hub_repository_folder`)."""
    path = Path(path)
    return next((r for f in (path, *list(path.parents)[:4]) if (r := hub_repository_folder(f)) is not None), None)


def hub_download_problem(path: str | Path) -> str | None:
    """Why the weights at `path` (a file or a folder, given as it was downloaded from the hub) are not there, when
    the cause is the download: a link into a hub cache's `blobs/` that leads nowhere (a snapshot copied without
    its blobs, `cp -r` keeps the links; or its blob deleted), or, in a hub cache's copy of a repository, a file
    whose download was interrupted (`blobs/<hash>[.<id>].incomplete`: huggingface_hub links a file into the
    snapshot only once it is complete). None when neither is the case. Before, such a path read 'does not exist'
    or 'a folder with no .safetensors file: pass the checkpoint file itself'."""
    path = Path(path)
    if path.is_dir():
        links = sorted(p for p in path.rglob("*") if p.is_symlink() and not p.exists())
    else:
        links = [path] if path.is_symlink() and not path.exists() else []
    repo_folder = next((f for f in (path, *list(path.parents)[:4]) if hub_repository_folder(f)), None)
    repo = hub_repository_folder(repo_folder) if repo_folder is not None else None
    again = f"`hf download {repo}` (or `vdepth-export pull NAME` for a known release)" if repo else "`hf download REPO`"
    if links:
        return (
            f"{links[0]} is a link to {os.readlink(links[0])}, which does not exist"
            f"{f' ({len(links)} such links in {path})' if len(links) > 1 else ''}: the hub cache's snapshot files are "
            "links into its blobs/ folder, and this copy has lost them (copied without the blobs, `cp -r` keeps the "
            "links; copy with `cp -rL` or `rsync -L`), or the blob was deleted. Give the snapshot in the hub cache "
            f"itself, or download it again: {again}"
        )
    if repo_folder is None or (path.exists() and not path.is_dir()):
        return None
    try:
        partials = sorted(p for p in (repo_folder / "blobs").iterdir() if p.name.endswith(".incomplete"))
    except OSError:
        return None
    if not partials:
        return None
    return (
        f"the hub cache's download of {repo} is incomplete: {partials[0]} ({partials[0].stat().st_size} bytes"
        f"{f', and {len(partials) - 1} more' if len(partials) > 1 else ''}) is a file whose download was interrupted, "
        f"which is not in its snapshot until complete. Download it again, {again}, then import again"
    )


def released_checkpoint_problem(path: str | Path) -> str | None:
    """For a released checkpoint given where a model folder is expected (a `.pth`/`.safetensors`
    file, or a folder of them or a diffusers folder, without `config.json`): the message saying to
    import it first; for a file of a model folder (its `model.safetensors`, `config.json`, a spec):
    the message saying to give the folder; None for anything else."""
    path = Path(path)
    if path.is_file() and is_model_folder(path.parent):
        return (
            f"{path} is a file of the model folder {path.parent}: give the folder itself (model: {path.parent}), "
            "or one of its .onnx/.engine files"
        )
    if (why := training_checkpoint_problem(path) or adapter_problem(path)) is not None:
        return why
    if (repo := hub_cache_repository(path)) is not None and not is_model_folder(path):
        # the authors' code downloaded it there: before, its repository folder read 'holds no usable model'
        return (
            f"{path} is the hub cache's download of {repo}, not a model folder ({CONFIG_NAME} + {WEIGHTS_NAME}): "
            f"import it first, `vdepth-export import FAMILY {path} -o FOLDER` (`vdepth-export "
            "import --help` lists the families), or for a known release `vdepth-export pull NAME`, which takes "
            "this copy too; then use FOLDER (or NAME)"
        )
    if path.is_file():
        released = path.suffix in WEIGHT_SUFFIXES or is_checkpoint_index(path)
    else:  # no config.json of ours (with `_family`): a diffusers/transformers config does not count
        released = path.is_dir() and not is_model_folder(path) and (
            (path / "model_index.json").is_file()
            or any((path / sub).is_dir() for sub in ("unet", "vae", "transformer"))
            or any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir())
        )  # fmt: skip
    if not released:
        return None
    return (
        f"{path} is a released checkpoint, not a model folder ({CONFIG_NAME} + {WEIGHTS_NAME}): import it first "
        f"with `vdepth-export import FAMILY {path} -o FOLDER` (`vdepth-export import --help` lists the families; "
        "a known release: `vdepth-export pull NAME`), then use FOLDER"
    )


def training_checkpoint_problem(path: str | Path) -> str | None:
    """For a vdepth_training checkpoint folder (`<run>/checkpoints/checkpoint_<step>`, or a file in
    it) or a run's own folder given where a model folder is expected: the message naming the run's
    finished model (`<run>/final`) and the command that writes the (latest) checkpoint as a model
    folder; else None."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if path.is_dir() and not is_model_folder(path) and (path / "checkpoints").is_dir():  # the run's own folder
        final = path / "final"
        if is_model_folder(final):
            return f"{path} is a training run's folder, not a model folder: its model is {final} (use it)"
        done = sorted(
            (c for c in (path / "checkpoints").glob("checkpoint_*") if (c / TRAINER_STATE_NAME).is_file()),
            key=lambda c: c.name.rpartition("_")[2].zfill(12),  # by step
        )
        if not done:
            return f"{path} is a training run's folder without a model yet (no {final}, no checkpoint)"
        folder = done[-1]
    elif not ((folder / TRAINER_STATE_NAME).is_file() or (folder / TRAINER_CONFIG_NAME).is_file()):
        return None
    run = folder.parent.parent if folder.parent.name == "checkpoints" else Path("RUN")
    try:
        tiny = bool(json.loads((folder / TRAINER_CONFIG_NAME).read_text()).get("tiny"))
    except (OSError, ValueError, AttributeError):
        tiny = False
    final = run / "final"
    use_final = (
        f"the finished run's model is {final} (use it)"
        if is_model_folder(final)
        else f"a finished run writes its model to {final}"
    )
    return (
        f"{path} is a training checkpoint, not a model folder ({CONFIG_NAME} + {WEIGHTS_NAME}): {use_final}; "
        f"to use this checkpoint, write it as one with `python -m vdepth_training.train --config CONFIG.yaml"
        f"{' --tiny' if tiny else ''} --output {run} --export-checkpoint {folder}` (the run's config; "
        f"it writes {run / 'export'}), then use that folder"
    )


def env_path(name: str) -> Path | None:
    """The path in environment variable `name` (`~` is the home folder), None when unset or empty.

    One rule for the variables that name the model (`VDEPTH_MODEL_CACHE`, `VDEPTH_DEFAULT_MODEL`,
    `VDEPTH_MODEL_REGISTRY`): a relative path would mean another file or folder in every process started
    in another folder (a launch system, a service), so it is refused.

    Raises:
        ConfigError: the value is a relative path (the message names the absolute one it means here).
    """
    from vdepth_ros.errors import ConfigError

    value = os.environ.get(name)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ConfigError(
            f"${name}={value} is a relative path, which each process would look up from its own current "
            f"folder (a launch system starts nodes elsewhere): set it to an absolute path, e.g. "
            f"{name}={Path.cwd() / path} for the one relative to {Path.cwd()}"
        )
    return path


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
    """Folder of the bundled default model; `VDEPTH_DEFAULT_MODEL` (an absolute path, `env_path`) overrides it."""
    return env_path("VDEPTH_DEFAULT_MODEL") or share_dir() / "models" / "default"


def config_dir() -> Path:
    """The bundled `config/` folder (`depth.yaml`, the Fast DDS profile) under `share_dir()`."""
    return share_dir() / "config"


def bundled_file_hint(path: str | Path) -> str:
    """For a relative file that does not exist: where the bundled file of that name is, when `config/`
    has one (the docs write `config/depth.yaml`, relative to the repository or share/vdepth_ros, and a
    command run from another folder does not find it); else ''."""
    given = Path(path).expanduser()
    bundled = config_dir() / given.name
    if given.is_absolute() or not bundled.is_file():
        return ""
    return f" (relative to {Path.cwd()}); the bundled {given.name} is {bundled}: give that path"


def _shared_dir(env_var: str, name: str) -> Path | None:
    """The folder `env_var` names, else `shared/<name>` beside the checkout or one level up; None
    when none of them is a folder."""
    env = os.environ.get(env_var)
    cands = [Path(env)] if env else []
    cands += [REPO_ROOT.parent / "shared" / name, REPO_ROOT.parent.parent / "shared" / name]
    return next((cand for cand in cands if cand.is_dir()), None)


def evaldata_dir() -> Path | None:
    """`../shared/evaldata` next to the checkout (research-only data; never copied in); `VDEPTH_EVALDATA`
    overrides it; None when absent."""
    return _shared_dir("VDEPTH_EVALDATA", "evaldata")


def reference_code_dir() -> Path | None:
    """`../shared/reference-code` next to the checkout: the seed papers' own code, used only by tests and
    benchmarks to compare against numerically (never imported by the package). `VDEPTH_REFERENCE_CODE`
    overrides it; None when absent, so callers skip with a reason."""
    return _shared_dir("VDEPTH_REFERENCE_CODE", "reference-code")


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
