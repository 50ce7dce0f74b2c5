"""Known released checkpoints, the local model cache, and `model: NAME` resolution.

A *release* is a paper's published weights under a short name (`vda-small`, `dvd`, ...): where the
files are on the Hugging Face hub, their licence, their sha256 where it is known, and how
`vdepth-export import` turns them into a model folder. `vdepth-export pull NAME` downloads and
imports a release into the model cache; afterwards `model: NAME` (node parameter, `--model` of
`vdepth-bag` / `vdepth-video` / `vdepth-eval`, `PipelineConfig.model`) resolves to that folder
through `resolve_model`. This module only reads: downloading lives in `vdepth_export.pull`, so the
node never talks to the network.

The model cache is `$VDEPTH_MODEL_CACHE`, else `$XDG_CACHE_HOME/vdepth_ros/models`, else
`~/.cache/vdepth_ros/models`; one folder per release name. Releases not listed here can be added
without code changes in a JSON file named by `$VDEPTH_MODEL_REGISTRY` (a list of objects with the
`Release` fields; `files` as lists of `ReleaseFile` fields).

Hashes and sizes are the hub's (its "Git LFS details" pages); `None` means not known here, and such
files are imported unverified (`pull` says so).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdepth_ros.errors import ConfigError, ModelLoadError, closest_name
from vdepth_ros.paths import PROVENANCE_NAME, env_path

# How the authors run inference and which model ran have their own modules; their names stay importable
# from here, where users and tests import them (`__all__`).
from vdepth_ros.runtime.provenance import cached_revisions, model_identity
from vdepth_ros.runtime.reference_inference import REFERENCE_INFERENCE, reference_inference

log = logging.getLogger(__name__)

CACHE_ENV = "VDEPTH_MODEL_CACHE"
REGISTRY_ENV = "VDEPTH_MODEL_REGISTRY"


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release on the hub.

    Attributes:
        repo: hub repository id (`owner/name`).
        filename: path inside the repository.
        sha256: hex digest of the file, or None when not known (not verified).
        size: bytes, or None when not known.
        revision: branch, tag or commit.
    """

    repo: str
    filename: str
    sha256: str | None = None
    size: int | None = None
    revision: str = "main"

    @property
    def url(self) -> str:
        """The download URL on the hub in effect (`HF_ENDPOINT`, a mirror, else huggingface.co)."""
        return self.url_at(None)

    def url_at(self, endpoint: str | None) -> str:
        """The download URL on `endpoint` (None: `HF_ENDPOINT`, else https://huggingface.co)."""
        base = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        return f"{base}/{self.repo}/resolve/{self.revision}/{self.filename}"

    @property
    def local_path(self) -> str:
        """Where `pull --from DIR` expects it: `DIR/<repo>/<filename>` (the hub's own layout)."""
        return f"{self.repo}/{self.filename}"


@dataclass(frozen=True)
class Release:
    """A released checkpoint and its import recipe.

    Attributes:
        name: registry name (`model: NAME`).
        family: model family (`vdepth_ros.models.MODEL_FAMILIES`).
        title: what it is, one line.
        files: the files to download; empty = no public download (see `notes`).
        sources: the `vdepth-export import` sources, in order: `repo` (the repository's downloaded
            folder) or `repo:filename` (one file).
        license: the weights' licence(s).
        non_commercial: the licence forbids commercial use: `pull` needs `--accept-license`.
        encoder: `vdepth-export import --encoder` (VDA sizes).
        overrides: constructor overrides passed to the importer (`--set`).
        variant: weight-file variant of diffusers folders (e.g. "fp16").
        paper: citation of the paper the numbers in docs/models.md come from.
        notes: anything a user must know (gated repository, no public download...).
    """

    name: str
    family: str
    title: str
    files: tuple[ReleaseFile, ...]
    sources: tuple[str, ...]
    license: str
    non_commercial: bool
    encoder: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    paper: str = ""
    notes: str = ""

    def import_command(self, paths: list[str], output: str | Path) -> str:
        """The `vdepth-export import` command line for local source paths."""
        args = ["vdepth-export", "import", self.family, *paths, "-o", str(output)]
        if self.encoder:
            args += ["--encoder", self.encoder]
        if self.variant:
            args += ["--variant", self.variant]
        for key, value in self.overrides.items():
            args += ["--set", f"{key}={json.dumps(value, separators=(',', ':'))}"]
        return shlex.join(args)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Release:
        data = dict(data)
        data["files"] = tuple(ReleaseFile(**f) for f in data.get("files", ()))
        data["sources"] = tuple(data.get("sources", ()))
        try:
            return cls(**data)
        except TypeError as err:
            raise ConfigError(f"registry entry {data.get('name')!r}: {err}") from None


_VDA_PAPER = "Chen et al., Video Depth Anything, CVPR 2025 (arXiv 2501.12375)"


def _vda(size: str, encoder: str, metric: bool, license: str, sha256: str | None, nbytes: int | None) -> Release:
    prefix = "Metric-" if metric else ""
    stem = "metric_video_depth_anything" if metric else "video_depth_anything"
    repo = f"depth-anything/{prefix}Video-Depth-Anything-{size.capitalize()}"
    return Release(
        name=f"vda-{'metric-' if metric else ''}{size}",
        family="vda",
        title=f"Video Depth Anything {size.capitalize()}{' (metric depth, metres)' if metric else ''}",
        files=(ReleaseFile(repo, f"{stem}_{encoder}.pth", sha256, nbytes),),
        sources=(f"{repo}:{stem}_{encoder}.pth",),
        license=license,
        non_commercial=license.startswith("cc-by-nc"),
        encoder=encoder,
        overrides={"metric": True} if metric else {},
        paper=_VDA_PAPER,
    )


_SVD = "stabilityai/stable-video-diffusion-img2vid-xt"
# The six VDA files' sha256 (the hub's LFS oid) and size in bytes. Small's and Large's sha256 (and Large's size)
# were taken from the hub's "Git LFS details" pages; the others, and Small's and Base's sizes, from two public
# model lock files of other projects that pin these files (one built from the hub API's `siblings[].lfs.sha256`,
# `files_metadata=True`), which agree with each other and with the two values taken from the hub. Pinned commits
# there: Small 256875362cff, Base 7231d0c6e260, Large 7aafbcb5c6af, Metric-Small 273d090f2ce1, Metric-Base
# f6a245abad4b, Metric-Large 607fcdbd454b (the registry downloads `main`: a file replaced upstream fails its
# check, and the error names the commit and the `--revision` that takes it).
_VDA_FILES = {  # (size, metric): (sha256, bytes)
    ("small", False): ("13379300b739e659f076a59d52e9801bd8d38c541a7e71f73bbca4dcfb013609", 116440756),
    ("base", False): ("775e578e8f9431ec0496514aa466bd0a1f67c28d0f518267809f35a43c04329b", 458247082),
    ("large", False): ("43df27c6b396042ba34ff7b798ab279f64d204d2e86d7a373968f8fa36d0e6fa", 1538392012),
    ("small", True): ("3c28432b4e1f0d7bb31cad5151b6313b49457db5aa58d82e85bfb0f8b1311b33", 116444063),
    ("base", True): ("f6f58576b9680a112f2428d4f39aff92656d3ae85745b0164675ace8d5b1fade", 458249567),
    ("large", True): ("24eba25342e7ee0f054be25da6a852ebd7cfa40cd6bf41a353ecb6abfe24e620", 1538348216),
}
_BUILTIN: tuple[Release, ...] = (
    *(
        _vda(size, encoder, metric, license, *_VDA_FILES[size, metric])
        for metric in (False, True)
        for size, encoder, license in (
            ("small", "vits", "apache-2.0"),
            ("base", "vitb", "cc-by-nc-4.0"),
            ("large", "vitl", "cc-by-nc-4.0"),
        )
    ),
    Release(
        name="gemdepth",
        family="gemdepth",
        title="GemDepth (ViT-L, VDA head): disparity and per-window camera poses",
        files=(ReleaseFile("YuechengLiu/GemDepth", "gemdepth.pth"),),
        sources=("YuechengLiu/GemDepth:gemdepth.pth",),
        license="apache-2.0 (hub card; the code is MIT)",
        non_commercial=False,
        paper="Liu et al., GemDepth, ICML 2026 (arXiv 2605.10525)",
    ),
    Release(
        name="depthcrafter",
        family="depthcrafter",
        title="DepthCrafter v1.0.1 UNet + the SVD-XT VAE and image encoder (fp16 files)",
        files=(
            ReleaseFile("tencent/DepthCrafter", "config.json"),
            ReleaseFile("tencent/DepthCrafter", "diffusion_pytorch_model.safetensors"),
            ReleaseFile(_SVD, "vae/config.json"),
            ReleaseFile(_SVD, "vae/diffusion_pytorch_model.fp16.safetensors"),
            ReleaseFile(_SVD, "image_encoder/config.json"),
            ReleaseFile(_SVD, "image_encoder/model.fp16.safetensors"),
        ),
        sources=("tencent/DepthCrafter", _SVD),
        license="DepthCrafter licence (academic/research only) + stable-video-diffusion-community",
        non_commercial=True,
        variant="fp16",
        paper="Hu et al., DepthCrafter, CVPR 2025 (arXiv 2409.02095)",
        notes=f"{_SVD} is gated: accept its licence on the hub page and log in (`hf auth login` or HF_TOKEN).",
    ),
    *(
        Release(
            name=name,
            family="dvd",
            title=f"DVD {version} (Wan2.1-T2V-1.3B DiT + LoRA) with the original Wan2.1 VAE",
            files=(ReleaseFile("FayeHongfeiZhang/DVD", dit), ReleaseFile("Wan-AI/Wan2.1-T2V-1.3B", "Wan2.1_VAE.pth")),
            sources=(f"FayeHongfeiZhang/DVD:{dit}", "Wan-AI/Wan2.1-T2V-1.3B:Wan2.1_VAE.pth"),
            license="cc-by-nc-4.0 (DVD weights) + apache-2.0 (Wan2.1 VAE)",
            non_commercial=True,
            paper="Zhang et al., DVD: Deterministic Video Depth, arXiv 2603.12250",
        )
        for name, version, dit in (("dvd", "v1.0", "model.safetensors"), ("dvd-1.1", "v1.1", "dvd_1.1.safetensors"))
    ),
    Release(
        name="fiffdepth",
        family="fiffdepth",
        title="FiffDepth (SD-2 UNet, one step), a diffusers DirectPipeline folder",
        files=(),
        sources=(),
        license="not stated by the authors",
        non_commercial=True,
        paper="Bai & Huang, FiffDepth, ICCV 2025 (arXiv 2412.00671)",
        notes="No public download was found: the authors' README loads a local ./checkpoints/fiffdepth folder. "
        "Place that folder (unet/, vae/, text_encoder/ + tokenizer/, fp32 or fp16 variant files) and run "
        "`vdepth-export import fiffdepth FOLDER -o <cache>/fiffdepth` (add `--variant fp16` for an fp16-only folder).",
    ),
)


def _extra_releases() -> tuple[Release, ...]:
    path = env_path(REGISTRY_ENV)
    if path is None:
        return ()
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"${REGISTRY_ENV}={path}: cannot read the registry file: {err}") from None
    if not isinstance(entries, list):
        raise ConfigError(f"${REGISTRY_ENV}={path}: expected a JSON list of releases")
    return tuple(Release.from_dict(e) for e in entries)


def releases() -> dict[str, Release]:
    """Every known release by name: the built-in ones, then `$VDEPTH_MODEL_REGISTRY`'s (which win)."""
    return {r.name: r for r in (*_BUILTIN, *_extra_releases())}


def get_release(name: str) -> Release:
    """The release called `name`; `ConfigError` naming the known ones otherwise (and the one meant:
    `release_hint`)."""
    known = releases()
    if name not in known:
        raise ConfigError(
            f"unknown model {name!r}{release_hint(name, known)}; known releases: {', '.join(sorted(known))}"
        )
    return known[name]


def parse_revisions(items: Sequence[str], repos: Sequence[str], what: str) -> dict[str, str]:
    """`--revision` values (`REV`, or `REPO=REV` for one of `repos`) -> {repo: rev}. `what` names what
    the repositories are of, for the errors (`vda-small`, `the sources`). `pull` and `import` both read
    their `--revision` here, so one spelling works for both.

    Raises:
        ConfigError: an empty revision, `REV` where `repos` is not one repository, a repository not in
            `repos`, or two revisions for one repository.
    """
    chosen: dict[str, str] = {}
    for item in items:
        repo, sep, rev = item.partition("=")
        repo, rev = (repo.strip(), rev.strip()) if sep else ("", repo.strip())
        if not rev:
            raise ConfigError(f"--revision {item!r}: give a branch, tag or commit (REV, or REPO=REV)")
        if not repo:
            if not repos:
                raise ConfigError(f"--revision {item}: {what} name no hub repository (owner/name)")
            if len(repos) > 1:
                raise ConfigError(
                    f"{what}: files from {len(repos)} repositories ({', '.join(repos)}): give each one's revision as "
                    "--revision REPO=REV"
                )
            repo = repos[0]
        elif repo not in repos:
            known = f" ({', '.join(repos)})" if repos else ""
            raise ConfigError(f"--revision {item}: {repo} is not a repository of {what}{known}")
        if chosen.get(repo, rev) != rev:
            raise ConfigError(f"two revisions for {repo}: {chosen[repo]} and {rev}")
        chosen[repo] = rev
    return chosen


#: how a hub repository is written besides `owner/name`: its page's URL, with or without the scheme
_HUB_HOSTS = ("huggingface.co/", "www.huggingface.co/", "hf.co/")


def hub_repo(value: str) -> str | None:
    """The `owner/name` a hub repository id or page URL names (`https://huggingface.co/owner/name/tree/main`),
    or None."""
    rest = value.strip().removeprefix("https://").removeprefix("http://")
    host = next((h for h in _HUB_HOSTS if rest.lower().startswith(h)), None)
    parts = rest[len(host) :].split("/") if host else rest.split("/")
    if host and parts[:1] == ["models"]:  # huggingface.co/models/owner/name is no page, but written
        parts = parts[1:]
    if len(parts) < 2 or not all(parts[:2]) or (host is None and len(parts) != 2):
        return None
    return "/".join(parts[:2])


def release_hint(name: str, known: dict[str, Release] | None = None) -> str:
    """What a name that is no release most likely meant, as `"; did you mean ..."` (empty when nothing
    fits): the release(s) downloading from a hub repository written as `owner/name` or its URL (what a
    model card shows), a release written with another case or `_` for `-` (`vda_small`), a family's
    releases (`vda`), or the closest name (`vda-smal`)."""
    known = releases() if known is None else known
    repo = hub_repo(name)
    if repo is not None:
        named = [r.name for r in known.values() if any(f.repo.lower() == repo.lower() for f in r.files)]
        if named:
            which = " or ".join(repr(n) for n in named)
            return (
                f"; {repo} is the hub repository of release {which}: give the release name (`vdepth-export pull "
                f"{named[0]}`, then model: {named[0]})"
            )
        if "://" in name or name.strip().lower().startswith(_HUB_HOSTS):  # surely a hub page, not a path
            return (
                f"; {repo} is no known release: add it to a registry file named by "
                f"${REGISTRY_ENV} (docs/models.md, 'Another release'), or import its checkpoint with "
                "`vdepth-export import FAMILY FILE -o FOLDER`"
            )
        return ""
    if "/" in name or os.sep in name:  # a path, not a name
        return ""
    plain = name.strip().lower().replace("_", "-").replace(" ", "-")
    same = [n for n in known if n.lower() == plain]
    family = sorted(n for n, r in known.items() if r.family.lower() == plain.replace("-", "_") and r.files)
    close = same[:1] or family or [c for c in [closest_name(plain, known)] if c is not None]
    if not close:
        return ""
    return f"; did you mean {' or '.join(repr(c) for c in close)}?"


def model_cache_dir() -> Path:
    """`$VDEPTH_MODEL_CACHE`, else `$XDG_CACHE_HOME/vdepth_ros/models`, else `~/.cache/vdepth_ros/models`.

    A relative `$VDEPTH_MODEL_CACHE` would be a different folder for every process started in another
    folder (a launch system, a service: the node would look in an empty cache), so it is refused
    (`paths.env_path`); a relative `$XDG_CACHE_HOME` is ignored, as the XDG base directory
    specification says.

    Raises:
        ConfigError: `$VDEPTH_MODEL_CACHE` is a relative path (the message names the absolute one it
            means from this folder).
    """
    env = env_path(CACHE_ENV)
    if env is not None:
        return env
    return cache_root() / "models"


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/vdepth_ros`, else `~/.cache/vdepth_ros` (a relative `$XDG_CACHE_HOME` is ignored,
    as the XDG base directory specification says): the package's caches (models, TensorRT EP engines)."""
    xdg = Path(os.environ.get("XDG_CACHE_HOME", "")).expanduser()
    base = xdg if xdg.is_absolute() else Path.home() / ".cache"
    return base / "vdepth_ros"


def cached_model_dir(name: str, cache: str | Path | None = None) -> Path:
    """Where release `name` lives in the cache `cache` (default `model_cache_dir()`), there or not."""
    return (Path(cache).expanduser() if cache is not None else model_cache_dir()) / name


def _looks_like_a_name(model: str) -> bool:
    return os.sep not in model and "/" not in model and not model.endswith((".onnx", ".engine", ".json"))


#: The name launch_ros gives the params files it writes in the temporary folder (a launch file's
#: `parameters=[{...}]`, and the user's own file rewritten by `ParameterFile(..., allow_substs=True)`).
LAUNCH_WRITTEN_PREFIX = "launch_params_"


def is_rewritten_params_file(params_file: str | Path) -> bool:
    """Is this params file a temporary copy a launch tool wrote (not the file the user wrote)? launch_ros's
    `launch_params_*` files, and any file directly in the temporary folder (Nav2's `RewrittenYaml` and
    `ReplaceString`, other launch helpers: `tempfile.NamedTemporaryFile`'s `/tmp/tmpXXXXXXXX`). Its folder
    says nothing about where a relative path in it was meant from."""
    import tempfile

    path = Path(params_file).expanduser().absolute()
    if path.name.startswith(LAUNCH_WRITTEN_PREFIX):
        return True
    try:
        return path.parent.resolve() == Path(tempfile.gettempdir()).resolve()
    except OSError:
        return False


def _copy(params_file: str | Path | None) -> str:
    return (
        f"the params file that gave it, {params_file}, is a temporary copy a launch tool wrote (launch_ros's "
        "parameters={...} or ParameterFile(allow_substs=True), Nav2's RewrittenYaml...), not the file you wrote"
    )


def _absolute_fix(given: Path) -> str:
    return (
        "write an absolute path for model (in a launch file: PathJoinSubstitution([FindPackageShare('<package>'), "
        f"{', '.join(repr(part) for part in given.parts)}]) or -p model:=/abs/path)"
    )


def _relative_to(given: Path, base: Path, params_file: str | Path | None, rewritten: bool) -> str:
    """What a relative model path that does not exist was tried relative to, and the fix, for the error."""
    if rewritten:
        beside = Path(params_file).expanduser().absolute().parent / given  # type: ignore[arg-type]
        where = f", relative to the current folder {base}; {_copy(params_file)}, so its folder is not yours"
        if beside.exists():
            where += f" ({beside} exists beside the copy: not taken)"
        return f"{where}; {_absolute_fix(given)}"
    if params_file is None:
        return f", relative to the current folder {base}"
    where = f", relative to the folder of the params file {params_file}"
    if (Path.cwd() / given).exists():
        where += f"; {Path.cwd() / given} exists: write that absolute path in the params file"
    return where


def _release_behind(model: str, path: Path) -> str | None:
    """Why `model`, a release name that is also an existing path holding no model, is refused: the path wins
    over the name, and a folder named like the release (`hf download REPO --local-dir vda-small`, in the folder
    the node is started from) stopped the node with 'import it first' although `pull` had put the release in
    the model cache; the message now names both. None when `model` is no cached release or `path` is a model."""
    from vdepth_ros.paths import is_model_folder

    if model not in releases() or path.suffix in (".onnx", ".engine", ".plan") or is_model_folder(path):
        return None
    folder = cached_model_dir(model)
    if not (folder / "config.json").is_file():
        return None
    return (
        f"model {model!r} names {path}, which holds no model, before the release {model} in the model cache "
        f"(an existing path wins over a release name): give the release as model: {folder}, or start from "
        f"another folder (or rename {path})"
    )


def resolve_model(model: str, params_file: str | Path | None = None) -> str:
    """`model` as the runtime loads it: "default" as the bundled default model folder
    (`paths.default_model_dir`), an existing path as an absolute path (`~` is the home folder), a release
    name as its cache folder. The one resolution of every entry point (the node, `vdepth-bag`,
    `vdepth-video`, `vdepth-eval`, the demo); `runtime.checks.checked_model` then checks its files.

    Args:
        model: the `model` value.
        params_file: the params file the value was written in: a relative path is relative to that
            file's folder (a launch system may start the process anywhere); None (a command line's
            `--model` or `-p model:=`): relative to the current folder. A temporary copy a launch tool
            wrote (`is_rewritten_params_file`) has no folder of the user's: a relative path in it is
            relative to the current folder (a launch file's own values, as `-p`), logged in one WARN, and
            not found there, the error says so (never the temporary folder's namesake).

    Raises:
        ModelLoadError: `model` names a release that is not in the cache (the message names the
            `vdepth-export pull` command), or a path that does not exist (the message names the path
            tried and what a relative one is relative to), or is neither a path nor a known release.
        ConfigError: `$VDEPTH_MODEL_CACHE` is a relative path (`model_cache_dir`).
    """
    if not model.strip():
        raise ModelLoadError('model is empty: give a model folder or file, a release name, or "default"')
    if model == "default":
        from vdepth_ros.paths import default_model_dir

        return str(default_model_dir())
    given = Path(model).expanduser()
    rewritten = params_file is not None and is_rewritten_params_file(params_file)
    from_file = params_file is not None and not rewritten
    base = Path(params_file).expanduser().absolute().parent if from_file else Path.cwd()  # type: ignore[arg-type]
    path = given if given.is_absolute() else base / given
    if path.exists():
        if (clash := _release_behind(model, path)) is not None:
            raise ModelLoadError(clash)
        if rewritten and not given.is_absolute():
            log.warning(
                f"model {model!r} is relative and {_copy(params_file)}: taken relative to the current folder, "
                f"{path}; to not depend on the folder the launch runs in, {_absolute_fix(given)}"
            )
        return str(path)
    known = releases()
    if model in known:
        folder = cached_model_dir(model)
        if (folder / "config.json").is_file():
            return str(folder)
        release = known[model]
        accept = " --accept-license" if release.non_commercial else ""
        raise ModelLoadError(
            f"model {model!r} is not in the model cache ({folder} has no model): run "
            f"`vdepth-export pull {model}{accept}` (licence: {release.license}), or set ${CACHE_ENV} to the "
            "cache that holds it"
        )
    where = _relative_to(given, base, params_file, rewritten) if not given.is_absolute() else ""
    hint = release_hint(model, known)
    if _looks_like_a_name(model):
        raise ModelLoadError(
            f"model {model!r} is neither an existing file/folder nor a known release{hint} "
            f"({', '.join(sorted(known))}); pass a model folder or a release name ({path} does not exist{where})"
        )
    raise ModelLoadError(
        f"model {model!r}: {path} does not exist{where} (expected a model folder, .onnx or .engine file, or a "
        f"release name){hint}"
    )


__all__ = [
    "CACHE_ENV",
    "PROVENANCE_NAME",
    "REFERENCE_INFERENCE",
    "REGISTRY_ENV",
    "Release",
    "ReleaseFile",
    "cache_root",
    "cached_model_dir",
    "cached_revisions",
    "get_release",
    "model_cache_dir",
    "model_identity",
    "parse_revisions",
    "reference_inference",
    "release_hint",
    "releases",
    "resolve_model",
]
