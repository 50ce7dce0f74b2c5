"""How each paper family's authors run inference, for the `reference` inference mode.

Facts read from each family's released entry point (its resize, normalisation, upsampling and
stitching), with the `PipelineConfig` values that reproduce them (`PipelineConfig.for_family`). The
releases themselves (hub files, licences) are `registry`'s; these facts belong to a model family,
whichever of its releases runs.
"""

from __future__ import annotations

from typing import Any

#: The authors' stitching fit: closed-form least squares over every overlap pixel, no subsampling,
#: no robust weights; they have no scene-cut detector.
_PLAIN_FIT: dict[str, Any] = {
    "fit_method": "ols",
    "robust": "none",
    "fit_max_points": 0,
    "fit_pixels": "all",
    "scene_cut_threshold": 0.0,
}

#: How each family's authors run inference (their entry point's resize, normalisation, upsampling,
#: stitching), recorded for the `reference` inference mode. Facts from the reference code. "config":
#: the `PipelineConfig` values that reproduce them (`PipelineConfig.for_family`); "working_size":
#: "vda" = `resize.vda_working_size` (keep aspect, 518 lower bound, multiple of 14);
#: "stitch_resolution": "output" = windows are upsampled before stitching (default: after).
REFERENCE_INFERENCE: dict[str, dict[str, Any]] = {
    "vda": {
        "entry": "video_depth_anything/video_depth.py: VideoDepthAnything.infer_video_depth",
        "resize": "keep aspect, lower bound 518, multiple of 14, cv2.INTER_CUBIC (518*1.777/ratio above 16:9)",
        "normalise": "ImageNet mean/std",
        "upsample": "bilinear, align_corners=True, to the input size",
        "window": 32,
        "overlap": 10,
        "keyframes": [0, 12, 24, 25, 26, 27, 28, 29, 30, 31],
        "fit": "least squares over all pixels of 2 keyframes (metric models: scale 1, shift 0)",
        "crossfade": 8,
        "working_size": "vda",
        "stitch_resolution": "output",  # every window is upsampled to the input size, then fitted and blended
        "config": {
            **_PLAIN_FIT,
            "alignment": "keyframe",
            "resize_method": "bicubic",
            "upsample_method": "bilinear_align_corners",
        },
    },
    "gemdepth": {"entry": "model/gemdepth.py: GemDepth.infer_video_depth", "same_as": "vda"},
    "dvd": {
        "entry": "test_script/test_single_video.py: generate_depth_sliced",
        "resize": "cover 480x640 (ceil), each side up to a multiple of 16, bilinear align_corners=False",
        "window": 81,
        "overlap": 9,
        "fit": "least squares over all overlap pixels of all 3 channels; scale clipped to [0.7, 1.5]",
        "channels": 3,
        "upsample": "bilinear, align_corners=False",
        "config": {
            **_PLAIN_FIT,
            "alignment": "chain_ls",
            "scale_clip_min": 0.7,
            "scale_clip_max": 1.5,
            "upsample_method": "bilinear",
        },
    },
    "depthcrafter": {
        "entry": "depthcrafter/inference.py: DepthCrafterInference.infer",
        "resize": "max side 1024, each side rounded to a multiple of 64",
        "window": 110,
        "overlap": 25,
        "fit": "none: latent noise reuse + latent crossfade; min-max over the whole video",
        "upsample": "none: the output stays at the processing resolution",
        "config": {"scene_cut_threshold": 0.0},
    },
    "fiffdepth": {
        "entry": "fiffdepth/direct_pipeline.py: DirectPipeline.__call__",
        "resize": "max edge = processing_res (pipeline default), bilinear with antialias",
        "upsample": "bilinear with antialias, to the input size",
        "fit": "none (single-image model)",
        "config": {"scene_cut_threshold": 0.0, "upsample_method": "bilinear"},
    },
}


def reference_inference(family: str) -> dict[str, Any] | None:
    """`REFERENCE_INFERENCE[family]` with `same_as` followed; None for a family without a paper
    release (e.g. the bundled `vda_lite`)."""
    entry = REFERENCE_INFERENCE.get(family)
    if entry is None:
        return None
    return REFERENCE_INFERENCE[entry["same_as"]] if "same_as" in entry else entry
