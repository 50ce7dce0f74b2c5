"""`PipelineConfig`: the node parameters that are not ROS-specific, typed, with defaults.

The live node, `vdepth-bag`, `vdepth-video` and `vdepth-eval` all build their pipeline from one
parameter dict (`PipelineConfig.from_params`), and the offline tools read the node's YAML with
`load_params`, so live and offline runs agree.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vdepth_ros.errors import ConfigError
from vdepth_ros.resize import RESIZE_METHODS, UPSAMPLE_METHODS
from vdepth_ros.values import conform, type_problem

# The choices of the string parameters: `Literal` types, so validation, the node's parameter
# descriptors and the docs read them from the field's type.
Inference = Literal["auto", "reference", "package"]
Backend = Literal["auto", "torch", "onnxruntime", "tensorrt"]
Precision = Literal["fp32", "fp16", "bf16"]
Alignment = Literal["auto", "chain_ls", "keyframe", "graph", "none"]
Publish = Literal["provisional", "final", "both"]
ScaleSource = Literal["none", "sparse", "range", "metric"]
OutputResolution = Literal["input", "model"]
FitMethod = Literal["symmetric", "ols"]
Robust = Literal["tukey", "huber", "none"]
ResizeMethod = Literal[RESIZE_METHODS]  # type: ignore[valid-type] - the tuple resize.py dispatches on
UpsampleMethod = Literal[UPSAMPLE_METHODS]  # type: ignore[valid-type]
FitPixels = Literal["positive_ref", "all"]


def param(
    default: Any, *description: str, min: float | None = None, max: float | None = None, step: int | None = None
) -> Any:
    """A `PipelineConfig` field: its default, its description (the node's parameter descriptor and
    docs/node.md; string pieces are joined) and an optional range (with `step`: only min + k * step),
    kept in the field's metadata."""
    metadata = {"description": "".join(description), "min": min, "max": max, "step": step}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class PipelineConfig:
    """Depth pipeline parameters: each field's type, default, description and range are its
    declaration (`param`); `validate` checks values against them and the cross-field rules."""

    model: str = param(
        "default",
        "model folder / file, a release name pulled into the model cache (`vda-small`, see "
        'docs/models.md), or "default" (`vdepth_ros.paths.default_model_dir()`). A relative path written in a '
        "params file is relative to that file's folder (wherever the process starts), one given with `-p` or "
        "`--model` to the current folder; `~` is the home folder.",
    )
    inference: Inference = param(
        "auto",
        '"auto" (default: "reference" for a paper family - vda, gemdepth, dvd, depthcrafter, '
        'fiffdepth - and "package" for the others, e.g. the bundled model) | "reference" (the '
        'authors\' resize, upsampling, windows and stitching fit, see docs/models.md) | "package" '
        '(this package\'s defaults). In "reference" mode a field left at its package default takes'
        " the authors' value; a field set to any other value keeps it (to combine a package "
        'default with reference mode, use "package" and set the reference fields one by one).',
    )
    backend: Backend = param(
        "auto",
        '"auto" | "torch" | "onnxruntime" | "tensorrt".',
    )
    precision: Precision = param(
        "fp32",
        '"fp32" | "fp16" | "bf16": what TensorRT builds (engine or EP) and torch computes in; ONNX Runtime on the '
        "CPU or CUDA EP runs model.onnx as exported (one WARN says so; export with --precision to change it); torch "
        "on the CPU runs fp16 in fp32 (one WARN: its CPU fp16 kernels are about 10x slower).",
    )
    engine_threads: int = param(
        0,
        "inference threads (ONNX Runtime intra-op, or torch's, process-wide); 0 = the backend's "
        "default (ONNX Runtime: one per core the node may run on, by its CPU affinity and cgroup CPU quota, e.g. "
        "taskset or a container's cpuset and --cpus). Lower it to leave cores to the rest of the robot; "
        "not for TensorRT.",
        min=0,
    )
    device_id: int = param(
        0,
        "GPU index for TensorRT and ONNX Runtime's CUDA/TensorRT providers.",
        min=0,
    )
    window: int = param(
        0,
        "window length in frames; 0 = the model's default.",
        min=0,
    )
    overlap: int = param(
        0,
        "overlap in frames; 0 = the model's default (keyframe mode: `len(keyframes)`).",
        min=0,
    )
    keyframes: list[int] = param(
        [],
        "keyframe slots for keyframe alignment; empty = the model's default.",
    )
    alignment: Alignment = param(
        "auto",
        '"auto" (the model\'s default) | "chain_ls" | "keyframe" | "graph" (a weighted least-squares '
        'solve over pairwise window fits, run causally over the last `graph_lag` windows) | "none".',
    )
    publish: Publish = param(
        "provisional",
        '"provisional" (each frame once, as early as possible) | "final" (each frame once, when '
        'settled) | "both" (provisional, then final when a later window revised it).',
    )
    low_latency_start: bool = param(
        False,
        "first window shorter (about half) so the first output comes sooner.",
    )
    fit_method: FitMethod = param(
        "symmetric",
        '"symmetric" (default; no drift from errors-in-variables) | "ols" (the papers).',
    )
    robust: Robust = param(
        "tukey",
        '"tukey" | "huber" | "none" (plain closed-form fit, as the papers).',
    )
    scale_clip_min: float = param(
        0.0,
        "clip of the per-window scale (DVD demo: 0.7, 1.5); 0, 0 = no clip.",
    )
    scale_clip_max: float = param(
        0.0,
        "clip of the per-window scale (DVD demo: 0.7, 1.5); 0, 0 = no clip.",
    )
    fit_max_points: int = param(
        65536,
        "pixels per fit (deterministic subsample); 0 = all.",
        min=0,
    )
    fit_pixels: FitPixels = param(
        "positive_ref",
        '"positive_ref" (pixels whose reference is > 0) | "all" (every overlap pixel, zeros included, as VDA\'s fit).',
    )
    anchor_slots: bool = param(
        True,
        "graph alignment on a chain-window family (DVD, DepthCrafter, FiffDepth): give every "
        "window VDA's context slots (the anchor frame and one older frame, in place of two "
        "blended overlap frames: same model cost), so every window is tied to the anchor window; "
        "false = the released chain layout.",
    )
    scene_cut_threshold: float = param(
        0.5,
        "restart alignment at a scene cut detected from image statistics "
        "(`stream.SceneCutDetector`: excess of the cut score over its running median); 0 = off.",
        min=0.0,
        max=1.0,
    )
    anchor_refresh: bool = param(
        False,
        "keyframe mode: replace the anchor frame when the scene no longer matches it (the papers "
        "keep frame 0 forever).",
    )
    anchor_min_inliers: float = param(
        0.5,
        "inlier fraction of the anchor below which it is refreshed.",
        min=0.0,
        max=1.0,
    )
    graph_lag: int = param(
        8,
        "graph alignment: earlier windows re-estimated with each new one (older ones are frozen, "
        "so cost and memory stay bounded).",
        min=1,
    )
    scale_source: ScaleSource = param(
        "range",
        '"range" (default: depth from an assumed near..far range, fixed on the first window; '
        'consistent over time, not metric) | "sparse" (metric, from a depth sensor or camera '
        'poses) | "metric" (metric models) | "none" (relative disparity only; no depth, no '
        "cloud).",
    )
    near: float = param(
        0.3,
        'metres, for scale_source "range"; `far` is also its far limit (+Inf beyond).',
    )
    far: float = param(
        10.0,
        'metres, for scale_source "range"; `far` is also its far limit (+Inf beyond).',
    )
    sparse_min_points: int = param(
        50,
        "sparse depth points needed to refit the metric scale of a window.",
        min=2,
    )
    min_depth: float = param(
        0.05,
        "near and far limits in metres: depth below is -Inf, beyond is +Inf (REP 118), never a clipped value.",
    )
    max_depth: float = param(
        100.0,
        "near and far limits in metres: depth below is -Inf, beyond is +Inf (REP 118), never a clipped value.",
    )
    cloud_stride: int = param(
        1,
        "point cloud downsampling (every n-th pixel); 0 = no cloud.",
        min=0,
    )
    cloud_colors: bool = param(
        True,
        "attach RGB to the cloud.",
    )
    output_resolution: OutputResolution = param(
        "input",
        '"input" (the camera\'s resolution: registered pixel for pixel, depth/camera_info = the '
        "input's) | \"model\" (about the working resolution's pixel count, the camera's aspect "
        "ratio kept; intrinsics scaled).",
    )
    max_output_width: int = param(
        0,
        "cap on the output width in pixels, aspect kept (bandwidth); 0 = none.",
        min=0,
    )
    resize_method: ResizeMethod = param(
        "area",
        'camera image -> working resolution: "area" (cv2 INTER_AREA on uint8) | "bicubic" (VDA\'s '
        "reference: float INTER_CUBIC).",
    )
    upsample_method: UpsampleMethod = param(
        "edge_snap",
        'working -> output resolution: "edge_snap" (bilinear; at depth edges one of the four '
        'working depths, none in between) | "edge_aware" (RGB-guided at depth edges) | "bilinear"'
        ' | "bilinear_align_corners" (VDA\'s reference) | "nearest".',
    )
    image_rotation: int = param(
        0,
        "degrees to turn each camera image clockwise so that the scene is upright for the model (0 | 90 | 180 | "
        "270): a camera mounted upside down is 180, one rolled onto its side 90 or 270. The models learned "
        "upright scenes (near at the bottom, sky at the top) and estimate a turned one far worse; the outputs "
        "are turned back, so depth, points and depth/camera_info stay in the camera's own pixels and frame.",
        min=0,
        max=270,
        step=90,
    )
    working_short_side: int = param(
        0,
        "shorter side of the working resolution for engines that run any size (torch), keep-"
        "aspect to the family's multiple; 0 = the model's exported resolution's (a vdepth_training "
        "model's: the size it was trained at; another size is named in one warning).",
        min=0,
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check types, choices and ranges; raise ConfigError naming the field and value."""
        hints = _field_types()
        for f in dataclasses.fields(self):
            value = _coerce(f.name, hints[f.name], getattr(self, f.name))
            low, high = f.metadata.get("min"), f.metadata.get("max")
            if low is not None and value < low:
                raise ConfigError(f"{f.name} must be >= {low}, got {value}")
            if high is not None and value > high:
                raise ConfigError(f"{f.name} must be in [{low}, {high}], got {value}")
            setattr(self, f.name, value)
        if self.image_rotation % 90:
            raise ConfigError(
                f"image_rotation must be 0, 90, 180 or 270 (degrees clockwise), got {self.image_rotation}"
            )
        if self.window and self.overlap >= self.window:
            raise ConfigError(f"overlap must be < window, got overlap={self.overlap}, window={self.window}")
        if any(k < 0 for k in self.keyframes):
            raise ConfigError(f"keyframes must be non-negative slots, got {self.keyframes}")
        clip = (self.scale_clip_min, self.scale_clip_max)
        if clip != (0.0, 0.0) and not 0 < clip[0] <= clip[1]:
            raise ConfigError(f"scale_clip_min/max must be 0/0 (off) or 0 < min <= max, got {clip}")
        if not 0 < self.min_depth < self.max_depth:
            raise ConfigError(
                f"need 0 < min_depth < max_depth, got min_depth={self.min_depth}, max_depth={self.max_depth}"
            )
        if self.scale_source == "range" and not 0 < self.near < self.far:
            raise ConfigError(f"need 0 < near < far for scale_source 'range', got near={self.near}, far={self.far}")
        if self.scale_source == "range" and self.far <= self.min_depth:
            raise ConfigError(
                f"far ({self.far}) is the range mode's far limit: it must exceed min_depth ({self.min_depth})"
            )
        if self.engine_threads and self.backend == "tensorrt":
            raise ConfigError("engine_threads does not apply to backend 'tensorrt' (a GPU runs the model): leave it 0")

    @property
    def scale_clip(self) -> tuple[float, float] | None:
        """(min, max) clip of the per-window scale, or None for `scale_clip_min = scale_clip_max = 0` (no clip)."""
        clip = (self.scale_clip_min, self.scale_clip_max)
        return None if clip == (0.0, 0.0) else clip

    def engine_options(self) -> dict[str, Any]:
        """`vdepth_ros.runtime.create_engine` options of `engine_threads` and `device_id` (in "auto"
        mode the chosen backend takes those that apply to it)."""
        opts: dict[str, Any] = {}
        if self.engine_threads:
            opts["threads"] = self.engine_threads
        if self.backend != "torch":  # the torch backend runs on the CPU here; GPUs go through the exports
            opts["device_id"] = self.device_id
        return opts

    def resolved_model(self) -> str:
        """`model` as a path (`vdepth_ros.runtime.registry.resolve_model`): "default" -> the bundled default
        model folder, a release name (`vda-small`) -> its folder in the model cache, a relative path ->
        from the current folder (a params file's `model:` is made absolute from the file's folder when
        the file is read: `load_node_params`, the node's `_configure`)."""
        from vdepth_ros.runtime.registry import resolve_model

        return resolve_model(self.model)

    def for_family(self, family: str) -> PipelineConfig:
        """This config with `inference` resolved for the engine's `family` ("reference" or
        "package"); in reference mode every field still at its package default that the family's
        authors fix (`runtime.reference_inference.REFERENCE_INFERENCE[family]["config"]`) takes their value.
        Windows, overlap and keyframes stay the model spec's (a released import records the
        authors' schedule)."""
        from vdepth_ros.runtime.reference_inference import reference_inference

        reference = reference_inference(family)
        mode = self.inference
        if mode == "auto":
            mode = "reference" if reference is not None else "package"
        if mode == "package":
            return dataclasses.replace(self, inference="package")
        if reference is None:
            raise ConfigError(f"inference 'reference': family {family!r} has no authors' inference to reproduce")
        defaults = PipelineConfig()
        values = {
            name: value
            for name, value in reference.get("config", {}).items()
            if getattr(self, name) == getattr(defaults, name)
        }
        return dataclasses.replace(self, inference="reference", **values)

    def to_params(self) -> dict[str, Any]:
        """Every field by its parameter name (what `from_params` reads back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> tuple[PipelineConfig, dict[str, Any]]:
        """Split a (flattened) parameter dict into a config and the keys it does not know.

        Returns:
            (config, unknown) where `unknown` holds the other keys (ROS-specific ones such as
            topics and QoS) unchanged.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in params.items() if k in names}
        unknown = {k: v for k, v in params.items() if k not in names}
        return cls(**known), unknown


def _field_types() -> dict[str, Any]:
    """`PipelineConfig`'s field types, evaluated (the module's annotations are strings)."""
    return typing.get_type_hints(PipelineConfig)


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """`value` as field `name` of type `tp` takes it, by the one type rule (`vdepth_ros.values`: an
    integer is taken for a number, nothing else is converted); ConfigError naming the field, the
    value and the fix otherwise."""
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
        return value
    problem = type_problem(tp, value)
    if problem is not None:
        raise ConfigError(f"{name} must be {problem}")
    return conform(tp, value)


def load_params(yaml_path: str | Path, node_name: str | None = None) -> dict[str, Any]:
    """Read a ROS 2 parameter file into one flat dict (nested keys joined with dots), exactly as
    the node named `node_name` (default `/depth_node`; `/ns/name` for a namespaced one) gets it.

    rcl's rules (`vdepth_ros.param_file`), applied in pure Python: reading the file creates no ROS
    context or node, so an offline tool never joins the user's ROS domain. Sections apply in file
    order, later ones winning: `/**: window: 8` then `/front/depth_node: window: 16` gives 16 for `/front/depth_node`.

    Raises:
        ConfigError: missing or invalid file, or no section of it applies to the node.
    """
    from vdepth_ros.param_file import fully_qualified, read_node_params

    return read_node_params(yaml_path, fully_qualified(node_name or "depth_node"))
