"""`vdepth-export import`: a paper's released checkpoint (local files) -> a model folder the tools load.

The node, `vdepth-bag`, `vdepth-video` and `vdepth-export onnx` take a model folder
(`config.json` + `model.safetensors`, `VideoDepthModel.save_pretrained`). The papers release their
weights in their own layouts; each family's `from_released` reads those (names and shapes from the
releases, `torch.load(weights_only=True)` only) and this command writes the folder:

    vdepth-export import vda video_depth_anything_vits.pth -o models/vda_small --encoder vits
    vdepth-export onnx models/vda_small --frames 32 --height 280 --width 504     # optional, faster on CPU
    vdepth-node --ros-args -p model:=models/vda_small ...

Nothing is downloaded here: `vdepth-export pull NAME` (`vdepth_export.pull`) downloads a known
release and calls `import_released` into the model cache. Several releases are non-commercial:
their licences travel with the weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vdepth_ros.errors import ConfigError, VdepthError, closest_name
from vdepth_ros.offline.atomic import AtomicOutput, check_output_path
from vdepth_ros.paths import hub_repository_folder, not_a_model_folder

if TYPE_CHECKING:  # the models package imports torch: a pull --list must not wait for it
    from vdepth_ros.models.identify import WrongCheckpointError

log = logging.getLogger(__name__)

#: the relative VDA releases' file names (`video_depth_anything_vits.pth`, ...)
_RELATIVE_RELEASE = re.compile(r"video_depth_anything_vit[sbl]\.(pth|safetensors)")

#: family -> (what the sources are, how many: (min, max), loader(sources, encoder, variant, overrides))
_Loader = Callable[[Sequence[Path], "str | None", "str | None", dict[str, Any]], Any]


def _known_release_file(path: Path, family: str) -> tuple[str, dict[str, Any]] | None:
    """(release name, its `--set` overrides) of a file whose bytes are a release file of `family` the registry
    has a sha256 for, whatever the file is called now; None for a file of other bytes (or a folder)."""
    from vdepth_ros.runtime.registry import releases
    from vdepth_ros.runtime.trt_cache import sha256_of  # hashed once per content: pull checks the same file

    known = [(r, f) for r in releases().values() if r.family == family for f in r.files if f.sha256]
    size = path.stat().st_size if path.is_file() else None
    candidates = [(r, f) for r, f in known if size is not None and f.size in (None, size)]
    if not candidates:
        return None
    digest = sha256_of(path)
    return next(((r.name, dict(r.overrides)) for r, f in candidates if f.sha256 == digest), None)


def _hub_source(source: str) -> tuple[str, str, Path] | None:
    """(repository, path inside it, its hub cache folder) of a source that names a hub repository: `owner/name`
    or its page's URL, `owner/name/path/in/repo`, or the cache's own `.../models--owner--name` folder; None for a
    path (an existing one always wins over a repository named alike)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    from vdepth_ros.runtime.registry import hub_repo

    given = Path(source).expanduser()
    parts = source.strip().split("/")
    if (cached := hub_repository_folder(given)) is not None:
        return cached, "", given
    if given.exists() or source.startswith(("/", ".", "~")):
        return None
    if (repo := hub_repo(source)) is not None:
        inside = ""
    elif len(parts) > 2 and all(parts[:2]) and ":" not in parts[0]:
        repo, inside = "/".join(parts[:2]), "/".join(parts[2:])
    else:
        return None
    return repo, inside, Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")


def _from_hub_cache(source: str, revision: str | None = None) -> Path | None:
    """The local copy of a source given as a hub repository (`_hub_source`), or None when `source` names none.

    The authors' READMEs and scripts name their weights by repository (`--unet-path tencent/DepthCrafter`,
    `--pre-train-path stabilityai/stable-video-diffusion-img2vid-xt`), and running their code put them in the
    hub cache: `import` answered 'tencent/DepthCrafter does not exist' and sent the user to download gigabytes
    again. Taken: the snapshot of `revision` (a branch, tag or commit, as `hf download --revision` fetched it;
    default `main`) in the hub cache (`HF_HUB_CACHE` / `HF_HOME`), found with huggingface_hub's
    `snapshot_download(local_files_only=True)`, which reads the cache and never downloads. Without `revision`, a
    cache whose `refs/main` is absent (files fetched at a pinned commit) is read by hand from its one snapshot,
    which that function does not fall back to; an asked revision is never replaced by another.

    Raises:
        FileNotFoundError: a repository (or revision) that is not in the hub cache (the message names the download).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    from vdepth_ros.runtime.registry import releases

    found_source = _hub_source(source)
    if found_source is None:
        return None
    repo, inside, repo_dir = found_source
    at = f"@{revision}" if revision else ""
    try:
        snapshot = Path(
            snapshot_download(repo, cache_dir=repo_dir.parent, local_files_only=True, revision=revision or None)
        )
    except HFValidationError:  # no repository id (`my..folder`): a path that does not exist
        return None
    except LocalEntryNotFoundError:
        snapshots = sorted(repo_dir.glob("snapshots/*"))
        if revision is not None or len(snapshots) != 1:
            pulls = [r.name for r in releases().values() if any(f.repo.lower() == repo.lower() for f in r.files)]
            hint = f"; or `vdepth-export pull {pulls[0]}`, which downloads and imports it" if pulls else ""
            refs = sorted(p.name for p in repo_dir.glob("refs/*") if p.is_file())
            held = f"{len(snapshots)} snapshots of it" + (f" (refs {', '.join(refs)})" if refs else "")
            if revision is not None:
                held = f"no copy of revision {revision}" + (f", {held}: give one with --revision" if snapshots else "")
            else:
                held = f"{held} and no refs/main: give one with --revision, or its folder" if snapshots else "no copy"
            download = f"hf download {repo}" + (f" --revision {revision}" if revision else "")
            raise FileNotFoundError(
                f"{source}{at} does not exist: no such path from {Path.cwd()}, and, read as the hub repository {repo}, "
                f"the hub cache {repo_dir.parent} holds {held}. Download it (`{download}`) or give the "
                f"folder it is in{hint}"
            ) from None
        snapshot = snapshots[0]
    found = snapshot / inside if inside else snapshot
    if not found.exists():
        raise FileNotFoundError(
            f"{source}: the hub cache's copy of {repo}{at} ({snapshot}) holds no {inside}: download it "
            f"(`hf download {repo} {inside}{f' --revision {revision}' if revision else ''}`)"
        )
    log.info("%s%s: the copy in the hub cache, %s", source, at, found)
    return found


def _resolve_sources(sources: Sequence[str | Path], revisions: Sequence[str]) -> list[Path]:
    """`sources` as local paths: a hub repository's copy in the hub cache at its `--revision` (`[REPO=]REV`,
    as `pull` takes it), anything else as given.

    Raises:
        ConfigError: a `--revision` for no repository the sources name (`parse_revisions`).
        FileNotFoundError: a source that is neither a path nor in the hub cache.
    """
    from vdepth_ros.runtime.registry import parse_revisions

    hub = {str(s): found for s in sources if (found := _hub_source(str(s))) is not None}
    chosen = parse_revisions(revisions, sorted({repo for repo, _, _ in hub.values()}), "the sources")
    paths = [
        (_from_hub_cache(str(s), chosen.get(hub[str(s)][0])) if str(s) in hub else None) or Path(s) for s in sources
    ]
    for p in paths:
        if not p.exists():
            from vdepth_ros.paths import hub_download_problem

            raise FileNotFoundError(hub_download_problem(p) or f"{p} does not exist")
    return paths


def _released_layout(path: Path) -> bool:
    """Whether the checkpoint at `path` has the authors' key names (DINOv2 under `pretrained.`): one of their
    released files, relative or metric, renamed; the package's own layout is what its training writes, relative
    only (a recipe refuses to train a metric model)."""
    from vdepth_ros.models.base import load_state_dict_file

    try:
        return "pretrained.cls_token" in load_state_dict_file(path)
    except VdepthError:
        return False  # the loader names what is wrong with it


def _vda_metric(source: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` with `metric` decided, or a ConfigError naming what to pass. The metric and relative releases
    are one network (same keys, shapes and ReLU output; `metric` changes only the authors' stitching), so the
    weights' names and shapes cannot tell them: what tells is the file's bytes where the registry knows its
    sha256, else its release name, else `--set metric=`."""
    name = source.name.lower()
    said = overrides.get("metric")
    by_name = True if "metric" in name else False if _RELATIVE_RELEASE.fullmatch(name) else None
    release = _known_release_file(source, "vda") if said is not None or by_name is not True else None
    if release is not None:
        release_name, release_sets = release
        metric = bool(release_sets.get("metric"))
        kind = "a metric release (depth in metres)" if metric else "a relative release (disparity, no unit)"
        if said is not None and bool(said) != metric:
            swap = "metres as disparity" if metric else "disparity as metres"
            raise ConfigError(
                f"{source.name} is {release_name}'s file by its contents (its sha256), {kind}: --set "
                f"metric={str(bool(said)).lower()} would publish {swap} (near and far swapped); drop --set metric"
            )
        return {**overrides, "metric": metric}
    if said is None and by_name is True:
        raise ConfigError(
            f"{source.name} looks like a metric release (depth in metres): pass --set metric=true, or "
            "--set metric=false if it is a relative one"
        )
    if said is True and by_name is False:
        raise ConfigError(
            f"{source.name} is the name of a relative release (disparity, no unit; the metric ones are "
            "metric_video_depth_anything_vit{s,b,l}.pth): --set metric=true would publish its disparity as "
            "metres (near and far swapped); drop --set metric=true, or import the metric file"
        )
    return overrides


def _vda(sources: Sequence[Path], encoder: str | None, variant: str | None, overrides: dict[str, Any]) -> Any:
    from vdepth_ros.models.base import checkpoint_in_folder
    from vdepth_ros.models.vda import VideoDepthAnything

    # a folder holding the release file (a hub snapshot, `hf download --local-dir`): its file's name tells
    source = checkpoint_in_folder(sources[0]) if sources[0].is_dir() else sources[0]
    overrides = _vda_metric(source, overrides)
    model = VideoDepthAnything.from_released(sources[0], encoder=encoder or "vits", **overrides)
    # asked only of a file that loads (a file of another size or family is named as such first), and then
    # read a second time only on the way to this error
    name = source.name.lower()
    unnamed = "metric" not in overrides and "metric" not in name and not _RELATIVE_RELEASE.fullmatch(name)
    if unnamed and _released_layout(source):
        raise ConfigError(
            f"{source.name} is a Video Depth Anything release under a name of its own, and its contents do "
            "not say which one: the metric releases (metric_video_depth_anything_vit*.pth, depth in metres) and "
            "the relative ones (video_depth_anything_vit*.pth, disparity) are one network with the same keys "
            "and shapes. Pass --set metric=true if it came from a Metric-Video-Depth-Anything repository, "
            "--set metric=false if it is a relative one"
        )
    return model


def _gemdepth(sources: Sequence[Path], encoder: str | None, variant: str | None, overrides: dict[str, Any]) -> Any:
    from vdepth_ros.models.gemdepth import GemDepth
    from vdepth_ros.models.vda import VDA_PRESETS

    # the authors' GemDepth builds ViT-S and ViT-L (its `intermediate_layer_idx`), on VDA's sizes; ViT-L is released
    if encoder not in (None, *_GEMDEPTH_ENCODERS):
        raise ConfigError(
            f"gemdepth has no {encoder}: the authors' GemDepth builds {' and '.join(_GEMDEPTH_ENCODERS)} only "
            "(their intermediate_layer_idx), and is released as vitl"
        )
    return GemDepth.from_released(sources[0], **{**(VDA_PRESETS[encoder] if encoder else {}), **overrides})


#: the ViT sizes the authors' GemDepth builds (its `intermediate_layer_idx`)
_GEMDEPTH_ENCODERS = ("vits", "vitl")


def _depthcrafter(sources: Sequence[Path], encoder: str | None, variant: str | None, overrides: dict[str, Any]) -> Any:
    from vdepth_ros.models.depthcrafter import DepthCrafter

    return DepthCrafter.from_released(sources[0], sources[1], variant=variant, **overrides)


def _dvd(sources: Sequence[Path], encoder: str | None, variant: str | None, overrides: dict[str, Any]) -> Any:
    from vdepth_ros.models.dvd import DVD

    return DVD.from_released(sources[0], sources[1], **overrides)


def _fiffdepth(sources: Sequence[Path], encoder: str | None, variant: str | None, overrides: dict[str, Any]) -> Any:
    from vdepth_ros.models.fiffdepth import FiffDepth

    return FiffDepth.from_released(sources[0], variant=variant, **overrides)


IMPORTERS: dict[str, tuple[str, tuple[int, int], _Loader]] = {
    "vda": ("[metric_]video_depth_anything_vit{s,b,l}.pth (--encoder vits|vitb|vitl; --set metric=true)", (1, 1), _vda),
    "gemdepth": ("gemdepth.pth (ViT-L; --encoder vits for a ViT-S one)", (1, 1), _gemdepth),
    "depthcrafter": (
        "the DepthCrafter UNet folder, then the SVD-XT folder (vae/, image_encoder/; --variant fp16)",
        (2, 2),
        _depthcrafter,
    ),
    "dvd": ("DVD's DiT checkpoint, then the VAE: Wan2.1_VAE.pth or a diffusers AutoencoderKLWan folder", (2, 2), _dvd),
    "fiffdepth": (
        "an SD-2-layout FiffDepth folder (unet/, vae/, text encoder or empty-prompt embedding; --variant fp16)",
        (1, 1),
        _fiffdepth,
    ),
}


def check_overrides(family: str, overrides: dict[str, Any]) -> None:
    """Each `--set KEY=VALUE` against the family's constructor and `from_released` options: a known key
    (the closest one is suggested) and a value of its default's type (bool, int, number, string, list).

    Raises:
        ConfigError: an unknown key or a value of another type.
    """
    import inspect

    from vdepth_ros.models import config_parameters, config_type_problem, family_class

    cls = family_class(family)
    params = config_parameters(cls.__init__)
    loader_options = config_parameters(cls.from_released).items()  # e.g. DVD's lora_alpha_over_rank
    params |= {n: p for n, p in loader_options if p.default is not inspect.Parameter.empty}
    for key in overrides:
        if key not in params:
            close = closest_name(key, params)
            hint = f" (did you mean {close!r}?)" if close else f"; known: {', '.join(sorted(params))}"
            raise ConfigError(f"unknown --set key {key!r} for {family}{hint}")
    problem = config_type_problem(params, overrides)
    if problem is not None:
        raise ConfigError(f"--set {problem}")


def _import_fix(family: str, err: WrongCheckpointError) -> str:
    """What to run instead, for a source of another family, size or part (`identify`)."""
    from vdepth_ros.models.identify import UNET_OWNERS

    found = err.found
    if found.part in UNET_OWNERS and UNET_OWNERS[found.part][0] != family:  # DepthCrafter's and FiffDepth's UNets
        owner, command = UNET_OWNERS[found.part]
        if owner == "fiffdepth" and Path(err.path).name == "unet":  # its FiffDepth folder is the one above
            command = command.replace("FOLDER_WITH_UNET_AND_VAE", str(Path(err.path).parent))
        return f"that is {owner}'s UNet, imported with: {command}"
    from vdepth_ros.models.vda import VDA_PRESETS

    encoders = {"vda": tuple(VDA_PRESETS), "gemdepth": _GEMDEPTH_ENCODERS}.get(family, ())
    if found.family == family and found.encoder in encoders:
        return f"pass --encoder {found.encoder}"
    if found.family == family == "gemdepth" and found.encoder is not None:  # a VDA size GemDepth is not built at
        sets = " ".join(
            f"--set {k}={json.dumps(v, separators=(',', ':'))}" for k, v in VDA_PRESETS[found.encoder].items()
        )
        return (
            f"GemDepth has no {found.encoder}: the authors' code builds {' and '.join(_GEMDEPTH_ENCODERS)} only (their "
            f"intermediate_layer_idx), so this file comes from code of its own; give the sizes it was built with, "
            f"VDA's {found.encoder} ones if it used those: {sets}"
        )
    if found.family == family and found.vit_width is not None:  # a model of its own size (a fine-tune's)
        return (
            f"its ViT width {found.vit_width} is no released size: give the model's own config with --set "
            f"(hidden_size={found.vit_width} and the other sizes it was built with)"
        )
    if found.family == family == "dvd":
        return f"dvd takes {IMPORTERS['dvd'][0]}: swap the two files"
    if found.family == "dvd":
        return f"import it as dvd: vdepth-export import dvd DIT_CHECKPOINT WAN_VAE -o FOLDER ({IMPORTERS['dvd'][0]})"
    if found.family is not None:
        encoder = f" --encoder {found.encoder}" if found.family == "vda" and found.encoder else ""
        return f"import it as {found.family}: vdepth-export import {found.family} {err.path} -o FOLDER{encoder}"
    if err.expected.family is None:  # a diffusers part: the folders in another order, or another folder
        return f"{family} takes {IMPORTERS[family][0]}"
    return (
        "a diffusers release is imported as a folder, not one of its files: vdepth-export import depthcrafter "
        "UNET_FOLDER SVD_FOLDER, or vdepth-export import fiffdepth FOLDER"
    )


def _already_a_model_folder(path: Path) -> str | None:
    """For a model folder the tools wrote (import, pull, training's final/), or its weights file, given to
    import: it needs none (an import would rebuild it with the release's sizes, which is why it failed)."""
    from vdepth_ros.paths import WEIGHTS_NAME, is_model_folder

    folder = path if path.is_dir() else path.parent
    if (path.is_file() and path.name != WEIGHTS_NAME) or not is_model_folder(folder):
        return None
    return (
        f"{folder} is already a model folder (config.json beside {WEIGHTS_NAME}, as import, pull and training "
        f"write it): it needs no import; run it as `model: {folder}`, or export it: `vdepth-export onnx {folder}`"
    )


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` constructor overrides; VALUE is read as JSON when it parses (numbers, lists,
    true/false), else kept as a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def import_released(
    family: str,
    sources: Sequence[str | Path],
    output: str | Path,
    *,
    encoder: str | None = None,
    overrides: dict[str, Any] | None = None,
    weights_fp16: bool = False,
    overwrite: bool = False,
    variant: str | None = None,
    extra_files: dict[str, str] | None = None,
    revisions: Sequence[str] = (),
    adapter: str | Path | None = None,
) -> Path:
    """Read a released checkpoint and write it as a model folder; returns the folder.

    `variant` selects diffusers weight files (`*.fp16.safetensors`) for the folder-based families;
    `extra_files` (name -> text) are written into the folder with the model (e.g. `release.json`),
    inside the same atomic rename. `revisions` (`--revision`, `[REPO=]REV`) picks the revision of a source
    given as a hub repository (`owner/name`) that is taken from the hub cache; default its `main`.
    `adapter`: a peft LoRA adapter folder trained on the first source (`merge_lora_adapter`), merged into it
    before the import.

    Raises:
        ConfigError: unknown family, wrong number of sources, a family without released weights.
        OutputExistsError: `output` exists (not empty) and `overwrite` is false, or it is not a model folder.
        FileNotFoundError: a source is missing.
        ModelLoadError: the checkpoint does not match the family (from `from_released`).
    """
    import torch

    if family not in IMPORTERS:
        from vdepth_ros.models import MODEL_FAMILIES

        if family in MODEL_FAMILIES:
            raise ConfigError(f"{family} has no released checkpoint to import; train it (training/) instead")
        raise ConfigError(f"unknown family {family!r}; importable: {', '.join(IMPORTERS)}")
    what, (lo, hi), loader = IMPORTERS[family]
    if not lo <= len(sources) <= hi:
        raise ConfigError(f"{family} takes {lo if lo == hi else f'{lo}-{hi}'} source(s): {what}")
    paths = _resolve_sources(sources, revisions)
    out = Path(output)
    # before minutes of loading; --overwrite replaces a model folder, never a folder of the user's other files
    check_output_path(out, overwrite=overwrite, inputs=paths, replaceable=not_a_model_folder)
    check_overrides(family, dict(overrides or {}))
    with contextlib.ExitStack() as stack:
        model = _model_folder_with_adapter(family, paths[0], adapter, encoder, overrides) if adapter else None
        if model is None:
            on_file = adapter is not None and family not in _ADAPTER_NAMES_AFTER_LOADING
            merged = [_merged_with_adapter(family, paths[0], Path(adapter), stack)] if on_file else []
            model = _load(family, loader, [*merged, *paths[len(merged) :]], encoder, variant, overrides)
            if adapter is not None and not on_file:
                _merge_into_loaded(model, family, paths[0], Path(adapter))
    # written under a temporary name and renamed: a failure never leaves half a model, and an
    # existing folder is replaced only once the new one is complete
    with AtomicOutput(out, overwrite=overwrite, inputs=paths, replaceable=not_a_model_folder) as tmp:
        model.save_pretrained(tmp, weights_dtype=torch.float16 if weights_fp16 else None)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return out


def _model_folder_with_adapter(
    family: str, base: Path, adapter: str | Path, encoder: str | None, overrides: dict[str, Any] | None
) -> Any:
    """A model folder the tools wrote (or its weights file) with the LoRA `adapter` merged in, built from the
    folder's own config (an adapter trained on the package's model: `load_model`, then `merge_lora_adapter`);
    None when `base` is no model folder."""
    from vdepth_ros.models import load_model
    from vdepth_ros.models.base import merge_lora_adapter
    from vdepth_ros.paths import WEIGHTS_NAME, is_model_folder

    folder = base if base.is_dir() else base.parent
    if (base.is_file() and base.name != WEIGHTS_NAME) or not is_model_folder(folder):
        return None
    if encoder or overrides:
        raise ConfigError(f"{folder} is a model folder: its config.json gives the sizes; drop --encoder/--set")
    model = load_model(folder)
    if model.family != family:
        raise ConfigError(f"{folder} is a {model.family} model folder, not {family}: import {model.family} {folder}")
    model.load_state_dict(merge_lora_adapter(model.state_dict(), adapter, base))
    return model


def _dvd_adapter_names(state: dict[str, Any]) -> dict[str, Any]:
    from vdepth_ros.models.dvd import dit_state_in_diffusers_names

    return dit_state_in_diffusers_names(state)


#: Families whose adapter is merged into the model as loaded, each with the converter of the adapter's module names
#: to the package's (None: its own, found under the part it was trained on, `unet.`). DVD's release holds its own LoRA
#: unmerged (peft's pairs under `pipe.dit.`), which the authors' loader merges first (`merge_lora_layer`): an adapter
#: trained on DVD as they load it adds to that, so it is merged after the family's loader merged DVD's (in that
#: order, as peft's arithmetic is), its names in the authors' Wan layout or diffusers'; on the release file it was
#: refused as 'trained on another model's layout'. DepthCrafter's and FiffDepth's sources are diffusers folders
#: (their released training fine-tunes the UNet itself, no LoRA): an adapter of one's own on the UNet (peft on
#: diffusers' UNet, whose names are the package's) is merged into the loaded UNet; it was refused with peft steps.
_ADAPTER_NAMES_AFTER_LOADING: dict[str, Callable[[dict[str, Any]], dict[str, Any]] | None] = {
    "dvd": _dvd_adapter_names,
    "depthcrafter": None,
    "fiffdepth": None,
}


def _merge_into_loaded(model: Any, family: str, base: Path, adapter: Path) -> None:
    """The LoRA `adapter` merged into the loaded `model` (`_ADAPTER_NAMES_AFTER_LOADING`)."""
    from vdepth_ros.models.base import merge_lora_adapter

    if not adapter.exists():
        raise FileNotFoundError(f"--adapter {adapter} does not exist")
    rename = _ADAPTER_NAMES_AFTER_LOADING[family]
    model.load_state_dict(merge_lora_adapter(model.state_dict(), adapter, base, rename=rename))
    log.info("%s: merged the LoRA adapter %s", base, adapter)


def _merged_with_adapter(family: str, base: Path, adapter: Path, stack: contextlib.ExitStack) -> Path:
    """`base` with the LoRA `adapter` merged in, as a safetensors file of the base's name (which tells a metric
    VDA from a relative one) in a temporary folder `stack` removes."""
    import tempfile

    from safetensors.torch import save_file

    from vdepth_ros.models.base import checkpoint_in_folder, load_state_dict_file, merge_lora_adapter

    if not adapter.exists():
        raise FileNotFoundError(f"--adapter {adapter} does not exist")
    state = merge_lora_adapter(load_state_dict_file(base), adapter, base)
    name = (checkpoint_in_folder(base) if base.is_dir() else base).stem + ".safetensors"
    merged = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vdepth-adapter-"))) / name
    save_file({k: v.contiguous() for k, v in state.items()}, str(merged))
    log.info("%s: merged the LoRA adapter %s into %s", base, adapter, merged.name)
    return merged


def _load(
    family: str,
    loader: _Loader,
    paths: list[Path],
    encoder: str | None,
    variant: str | None,
    overrides: dict[str, Any] | None,
) -> Any:
    """The family's model from `paths`, its errors given the fix."""
    from vdepth_ros.models.identify import WrongCheckpointError

    try:
        return loader(paths, encoder, variant, dict(overrides or {}))
    except VdepthError as err:  # ours already say what is wrong (ConfigError is also a ValueError)
        from vdepth_ros.paths import training_checkpoint_problem

        # a training checkpoint of another model config (a --tiny run, another size): its run's
        # own command writes it with the config it was trained with
        hints = [why for p in paths if (why := training_checkpoint_problem(p)) is not None]
        hints = hints or [why for p in paths if (why := _already_a_model_folder(p)) is not None]
        if isinstance(err, WrongCheckpointError):  # another family, size or part: what to run instead
            fix = f"\n{hints[0]}" if hints else f"; {_import_fix(family, err)}"
            raise WrongCheckpointError(f"{err}{fix}", expected=err.expected, found=err.found, path=err.path) from None
        if hints:
            raise type(err)(f"{err}\n{hints[0]}") from None
        raise
    except (TypeError, ValueError, RuntimeError) as err:  # a constructor refusing the values it was given
        if not overrides:
            raise
        sets = " ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items())
        raise ConfigError(f"cannot build {family} with these --set values ({sets}): {err}") from None


__all__ = ["IMPORTERS", "check_overrides", "import_released", "parse_overrides"]
