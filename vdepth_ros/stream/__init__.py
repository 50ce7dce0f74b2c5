"""Streaming core (numpy only): window scheduling, alignment, stitching, depth, clouds."""

from vdepth_ros.stream.align import IDENTITY, VDA_FIT, AffineFit, FitOptions, align_scale_shift, fit_pairs
from vdepth_ros.stream.cloud import CameraModel, PointCloudBuilder
from vdepth_ros.stream.cuts import SceneCutDetector
from vdepth_ros.stream.depth import depth_from_disparity, disparity_from_depth
from vdepth_ros.stream.graph import CausalGraphAligner, GlobalAligner, PairEdge, solve_global_affine
from vdepth_ros.stream.scale import (
    MetricScale,
    NoScale,
    RangeScale,
    ScaleSource,
    SparseScale,
    make_scale_source,
    resample_sparse_depth,
)
from vdepth_ros.stream.stitch import (
    StitchedFrame,
    Stitcher,
    WindowHealth,
    blend,
    blend_weights,
    crossfade_weights,
    mean_channels,
)
from vdepth_ros.stream.windows import Window, WindowScheduler, anchor_keyframes, pad_for_rule

__all__ = [
    "IDENTITY",
    "VDA_FIT",
    "AffineFit",
    "CameraModel",
    "CausalGraphAligner",
    "FitOptions",
    "GlobalAligner",
    "MetricScale",
    "NoScale",
    "PairEdge",
    "PointCloudBuilder",
    "RangeScale",
    "ScaleSource",
    "SceneCutDetector",
    "SparseScale",
    "StitchedFrame",
    "Stitcher",
    "Window",
    "WindowHealth",
    "WindowScheduler",
    "align_scale_shift",
    "anchor_keyframes",
    "blend",
    "blend_weights",
    "crossfade_weights",
    "depth_from_disparity",
    "disparity_from_depth",
    "fit_pairs",
    "make_scale_source",
    "mean_channels",
    "pad_for_rule",
    "resample_sparse_depth",
    "solve_global_affine",
]
