"""`PipelineConfig`: the node parameters that are not ROS-specific, typed, with defaults.

The live node, `vdepth-bag`, `vdepth-video` and `vdepth-eval` all build their pipeline from one
parameter dict (`PipelineConfig.from_params`), and the offline tools read the node's YAML with
`load_params`, so live and offline runs agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdepth_ros.errors import ConfigError
from vdepth_ros.resize import RESIZE_METHODS, UPSAMPLE_METHODS

_CHOICES: dict[str, tuple[str, ...]] = {
    "inference": ("auto", "reference", "package"),
    "backend": ("auto", "torch", "onnxruntime", "tensorrt"),
    "precision": ("fp32", "fp16", "bf16"),
    "alignment": ("auto", "chain_ls", "keyframe", "graph", "none"),
    "publish": ("provisional", "final", "both"),
    "scale_source": ("none", "sparse", "range", "metric"),
    "output_resolution": ("input", "model"),
    "fit_method": ("symmetric", "ols"),
    "robust": ("tukey", "huber", "none"),
    "resize_method": RESIZE_METHODS,
    "upsample_method": UPSAMPLE_METHODS,
    "fit_pixels": ("positive_ref", "all"),
}


@dataclass
class PipelineConfig:
    """Depth pipeline parameters.

    Attributes:
        model: model folder / file, a release name pulled into the model cache (`vda-small`, see
            docs/models.md), or "default" (`vdepth_ros.paths.default_model_dir()`).
        inference: "auto" (default: "reference" for a paper family - vda, gemdepth, dvd,
            depthcrafter, fiffdepth - and "package" for the others, e.g. the bundled model) |
            "reference" (the authors' resize, upsampling, windows and stitching fit, see
            docs/models.md) | "package" (this package's defaults). In "reference" mode a field
            left at its package default takes the authors' value; a field set to any other value
            keeps it (to combine a package default with reference mode, use "package" and set
            the reference fields one by one).
        backend: "auto" | "torch" | "onnxruntime" | "tensorrt".
        precision: "fp32" | "fp16" | "bf16".
        engine_threads: inference threads (ONNX Runtime intra-op, or torch's, process-wide); 0 =
            the backend's default (ONNX Runtime: one per core). Lower it to leave cores to the rest
            of the robot; not for TensorRT.
        device_id: GPU index for TensorRT and ONNX Runtime's CUDA/TensorRT providers.
        window: window length in frames; 0 = the model's default.
        overlap: overlap in frames; 0 = the model's default (keyframe mode: `len(keyframes)`).
        keyframes: keyframe slots for keyframe alignment; empty = the model's default.
        alignment: "auto" (the model's default) | "chain_ls" | "keyframe" | "graph" (the offline
            global solve run causally over the last `graph_lag` windows) | "none".
        publish: "provisional" (each frame once, as early as possible) | "final" (each frame once,
            when settled) | "both" (provisional, then final when a later window revised it).
        low_latency_start: first window shorter (about half) so the first output comes sooner.
        fit_method: "symmetric" (default; no drift from errors-in-variables) | "ols" (the papers).
        robust: "tukey" | "huber" | "none" (plain closed-form fit, as the papers).
        scale_clip_min, scale_clip_max: clip of the per-window scale (DVD demo: 0.7, 1.5);
            0, 0 = no clip.
        fit_max_points: pixels per fit (deterministic subsample); 0 = all.
        fit_pixels: "positive_ref" (pixels whose reference is > 0) | "all" (every overlap pixel,
            zeros included, as VDA's fit).
        anchor_slots: graph alignment on a chain-window family (DVD, DepthCrafter, FiffDepth):
            give every window VDA's context slots (the anchor frame and one older frame, in place
            of two blended overlap frames: same model cost), so every window is tied to the anchor
            window; false = the released chain layout.
        scene_cut_threshold: restart alignment at a scene cut detected from image statistics
            (`stream.SceneCutDetector`: excess of the cut score over its running median); 0 = off.
        anchor_refresh: keyframe mode: replace the anchor frame when the scene no longer
            matches it (the papers keep frame 0 forever).
        anchor_min_inliers: inlier fraction of the anchor below which it is refreshed.
        graph_lag: graph alignment: earlier windows re-estimated with each new one (older ones
            are frozen, so cost and memory stay bounded).
        scale_source: "range" (default: depth from an assumed near..far range, fixed on the first
            window; consistent over time, not metric) | "sparse" (metric, from a depth sensor or
            camera poses) | "metric" (metric models) | "none" (relative disparity only; no depth, no
            cloud).
        near, far: metres, for scale_source "range"; `far` is also its far limit (+Inf beyond).
        sparse_min_points: sparse depth points needed to refit the metric scale of a window.
        min_depth, max_depth: near and far limits in metres: depth below is -Inf, beyond is +Inf
            (REP 118), never a clipped value.
        cloud_stride: point cloud downsampling (every n-th pixel); 0 = no cloud.
        cloud_colors: attach RGB to the cloud.
        output_resolution: "input" (the camera's resolution: registered pixel for pixel,
            depth/camera_info = the input's) | "model" (about the working resolution's pixel count,
            the camera's aspect ratio kept; intrinsics scaled).
        max_output_width: cap on the output width in pixels, aspect kept (bandwidth); 0 = none.
        resize_method: camera image -> working resolution: "area" (cv2 INTER_AREA on uint8) |
            "bicubic" (VDA's reference: float INTER_CUBIC).
        upsample_method: working -> output resolution: "edge_snap" (bilinear; at depth edges
            one of the four working depths, none in between) | "edge_aware" (RGB-guided at depth
            edges) | "bilinear" | "bilinear_align_corners" (VDA's reference) | "nearest".
        working_short_side: shorter side of the working resolution for engines that run any size
            (torch), keep-aspect to the family's multiple; 0 = the model's exported resolution's.
    """

    model: str = "default"
    inference: str = "auto"
    backend: str = "auto"
    precision: str = "fp32"
    engine_threads: int = 0
    device_id: int = 0
    window: int = 0
    overlap: int = 0
    keyframes: list[int] = field(default_factory=list)
    alignment: str = "auto"
    publish: str = "provisional"
    low_latency_start: bool = False
    fit_method: str = "symmetric"
    robust: str = "tukey"
    scale_clip_min: float = 0.0
    scale_clip_max: float = 0.0
    fit_max_points: int = 65536
    fit_pixels: str = "positive_ref"
    anchor_slots: bool = True
    scene_cut_threshold: float = 0.5
    anchor_refresh: bool = False
    anchor_min_inliers: float = 0.5
    graph_lag: int = 8
    scale_source: str = "range"
    near: float = 0.3
    far: float = 10.0
    sparse_min_points: int = 50
    min_depth: float = 0.05
    max_depth: float = 100.0
    cloud_stride: int = 1
    cloud_colors: bool = True
    output_resolution: str = "input"
    max_output_width: int = 0
    resize_method: str = "area"
    upsample_method: str = "edge_snap"
    working_short_side: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check types, choices and ranges; raise ConfigError naming the field and value."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            setattr(self, f.name, _coerce(f.name, f.type, value))
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name in (
            "window", "overlap", "fit_max_points", "cloud_stride", "engine_threads", "device_id", "max_output_width",
            "working_short_side",
        ):  # fmt: skip
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
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
        if not 0.0 <= self.anchor_min_inliers <= 1.0:
            raise ConfigError(f"anchor_min_inliers must be in [0, 1], got {self.anchor_min_inliers}")
        if self.engine_threads and self.backend == "tensorrt":
            raise ConfigError("engine_threads does not apply to backend 'tensorrt' (a GPU runs the model): leave it 0")
        if not 0.0 <= self.scene_cut_threshold <= 1.0:
            raise ConfigError(f"scene_cut_threshold must be in [0, 1] (0 = off), got {self.scene_cut_threshold}")
        if self.graph_lag < 1:
            raise ConfigError(f"graph_lag must be >= 1 window, got {self.graph_lag}")
        if self.sparse_min_points < 2:
            raise ConfigError(f"sparse_min_points must be >= 2, got {self.sparse_min_points}")

    @property
    def scale_clip(self) -> tuple[float, float] | None:
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
        """`model` as a path: "default" -> the bundled default model folder, a release name (`vda-small`)
        -> its folder in the model cache (`vdepth_ros.runtime.registry.resolve_model`; a release not
        pulled yet raises `ModelLoadError` naming `vdepth-export pull NAME`)."""
        if self.model == "default":
            from vdepth_ros.paths import default_model_dir

            return str(default_model_dir())
        from vdepth_ros.runtime.registry import resolve_model

        return resolve_model(self.model)

    def for_family(self, family: str) -> PipelineConfig:
        """This config with `inference` resolved for the engine's `family` ("reference" or
        "package"); in reference mode every field still at its package default that the family's
        authors fix (`runtime.registry.REFERENCE_INFERENCE[family]["config"]`) takes their value.
        Windows, overlap and keyframes stay the model spec's (a released import records the
        authors' schedule)."""
        from vdepth_ros.runtime.registry import reference_inference

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


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    kind = str(annotation)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{name} must be a bool, got {value!r}")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    if kind == "list[int]":
        if not isinstance(value, list | tuple) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise ConfigError(f"{name} must be a list of integers, got {value!r}")
        return [int(v) for v in value]
    raise ConfigError(f"{name}: unsupported field type {kind}")  # pragma: no cover - programming error


def load_params(yaml_path: str | Path, node_name: str | None = None) -> dict[str, Any]:
    """Read a ROS 2 parameter file into one flat dict (nested keys joined with dots), exactly as
    the node named `node_name` (default `/depth_node`; `/ns/name` for a namespaced one) gets it.

    rcl's rules (`vdepth_ros.param_file`): rclpy's own reading when rclpy is importable, the same
    rules in pure Python otherwise. Sections apply in file order, later ones winning: `/**:
    window: 8` then `/front/depth_node: window: 16` gives 16 for `/front/depth_node`.

    Raises:
        ConfigError: missing or invalid file, or no section of it applies to the node.
    """
    from vdepth_ros.param_file import fully_qualified, read_node_params

    return read_node_params(yaml_path, fully_qualified(node_name or "depth_node"))
