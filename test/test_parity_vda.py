"""Video Depth Anything against the authors' code (`reference-code/video-depth-anything`).

Compared, with the authors' `VideoDepthAnything` module imported from its folder:
(a) the released key layout: the authors' `state_dict()` names and shapes at vits/vitb/vitl (built on
    the meta device) equal the layout the importer reads, and importing it leaves 0 missing and 0
    unexpected keys (the metric releases share the architecture, `run.py --metric`);
(b) the forward pass: the authors' `forward` (DINOv2 -> temporal DPT head -> bilinear
    align_corners -> ReLU) and `VideoDepthAnything.from_released` on the same random vits weights
    (saved as a `.pth` and imported), same frames: <= 1e-5 relative.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference_code import empty_weights, randomize_, reference_import, relative_error

from vdepth_ros.models.vda import VDA_PRESETS, VideoDepthAnything

#: the authors' `run.py` model_configs
_AUTHORS_CONFIGS = {
    "vits": {"encoder": "vits", "features": 64, "out_channels": [48, 96, 192, 384]},
    "vitb": {"encoder": "vitb", "features": 128, "out_channels": [96, 192, 384, 768]},
    "vitl": {"encoder": "vitl", "features": 256, "out_channels": [256, 512, 1024, 1024]},
}


def _authors_model(encoder: str, metric: bool = False) -> torch.nn.Module:
    with reference_import("video-depth-anything"):
        from video_depth_anything.video_depth import VideoDepthAnything as Authors

        return Authors(**_AUTHORS_CONFIGS[encoder], metric=metric).eval()


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
@pytest.mark.parametrize("encoder", sorted(VDA_PRESETS))
def test_released_layout_equals_the_authors_module(encoder: str) -> None:
    with empty_weights():
        authors = _authors_model(encoder).state_dict()
    with torch.device("meta"):
        ours = VideoDepthAnything.preset(encoder)
    theirs = {k: tuple(v.shape) for k, v in authors.items()}
    layout = {k: tuple(v.shape) for k, v in ours.released_state_dict().items()}
    assert sorted(set(theirs) ^ set(layout)) == []
    assert {k: s for k, s in theirs.items() if layout[k] != s} == {}
    ours.load_released_state_dict(authors)  # raises on any missing/unexpected key


@pytest.mark.slow
def test_forward_equals_the_authors_on_random_weights(tmp_path: Path) -> None:
    theirs = randomize_(_authors_model("vits"), seed=0)
    ckpt = tmp_path / "video_depth_anything_vits.pth"
    torch.save(theirs.state_dict(), ckpt)
    ours = VideoDepthAnything.from_released(ckpt, encoder="vits")
    metric = VideoDepthAnything.from_released(ckpt, encoder="vits", metric=True)
    frames = torch.rand(1, 4, 3, 70, 98, generator=torch.Generator().manual_seed(1))
    normalised = (frames - ours.pixel_mean) / ours.pixel_std  # the authors normalise outside forward
    with torch.no_grad():
        expected = theirs(normalised)
        got = ours(frames)
    assert expected.shape == got.shape == (1, 4, 70, 98)
    assert float(expected.std()) > 1e-3 * float(expected.abs().max())  # a non-trivial output
    assert relative_error(got, expected) <= 1e-5
    assert metric.input_constraints.output_kind == "depth"
    assert torch.equal(metric.predict(frames[0]), ours.predict(frames[0]))  # same network, metres out
