"""The `inference` field: which family runs its authors' settings, and explicit values winning."""

from __future__ import annotations

import numpy as np
import pytest

from vdepth_ros.config import PipelineConfig
from vdepth_ros.errors import ConfigError
from vdepth_ros.runtime.registry import REFERENCE_INFERENCE, reference_inference
from vdepth_ros.stream.align import FitOptions, align_scale_shift

VDA_REFERENCE = {
    "fit_method": "ols",
    "robust": "none",
    "fit_max_points": 0,
    "fit_pixels": "all",
    "alignment": "keyframe",
    "resize_method": "bicubic",
    "upsample_method": "bilinear_align_corners",
    "scene_cut_threshold": 0.0,
}


@pytest.mark.parametrize("family", ["vda", "gemdepth"])
def test_auto_runs_a_paper_family_with_the_authors_settings(family: str) -> None:
    config = PipelineConfig().for_family(family)
    assert config.inference == "reference"
    assert {k: getattr(config, k) for k in VDA_REFERENCE} == VDA_REFERENCE
    assert (config.window, config.overlap, config.keyframes) == (0, 0, [])  # the model spec's schedule


def test_dvd_reference_clips_the_scale_as_the_demo() -> None:
    config = PipelineConfig().for_family("dvd")
    assert (config.scale_clip, config.alignment, config.fit_pixels) == ((0.7, 1.5), "chain_ls", "all")


def test_the_bundled_family_keeps_the_package_defaults() -> None:
    config = PipelineConfig().for_family("vda_lite")
    assert config.inference == "package"
    assert config == PipelineConfig(inference="package")
    with pytest.raises(ConfigError, match="'vda_lite' has no authors' inference"):
        PipelineConfig(inference="reference").for_family("vda_lite")


def test_explicit_values_win_and_package_mode_changes_nothing() -> None:
    default_upsample = PipelineConfig().upsample_method
    config = PipelineConfig(robust="huber", upsample_method=default_upsample, scene_cut_threshold=0.3).for_family("vda")
    assert (config.robust, config.scene_cut_threshold) == ("huber", 0.3)  # set: kept
    assert config.upsample_method == "bilinear_align_corners"  # the package default: replaced
    assert config.fit_pixels == "all"
    assert PipelineConfig(inference="package").for_family("vda") == PipelineConfig(inference="package")
    with pytest.raises(ConfigError, match="inference must be one of"):
        PipelineConfig(inference="paper")


def test_every_reference_config_names_pipeline_fields_with_valid_values() -> None:
    for family in REFERENCE_INFERENCE:
        values = (reference_inference(family) or {}).get("config", {})
        PipelineConfig(**values)  # validates names and choices


def test_a_clipped_scale_keeps_the_unclipped_shift_as_dvd() -> None:
    rng = np.random.default_rng(0)
    cur = rng.uniform(0.1, 1.0, (2, 16, 16))
    ref = 2.0 * cur + 0.25
    options = {"method": "ols", "robust": "none", "max_points": 0, "pixels": "all", "scale_clip": (0.7, 1.5)}
    demo = align_scale_shift(cur, ref, options=FitOptions(clip_keeps_shift=True, **options))
    refit = align_scale_shift(cur, ref, options=FitOptions(**options))
    assert demo.clipped and demo.scale == pytest.approx(1.5) and demo.shift == pytest.approx(0.25)
    assert refit.scale == pytest.approx(1.5) and refit.shift == pytest.approx(0.25 + 0.5 * cur.mean())
