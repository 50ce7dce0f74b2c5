"""DPT heads: shapes, non-negativity, temporal mixing only in the temporal head, clip independence."""

from __future__ import annotations

import pytest
import torch

from vdepth_ros.errors import ConfigError
from vdepth_ros.models.dpt import (
    DPTHead,
    SpatialContextModule,
    TemporalDPTHead,
    TemporalMotionModule,
    sinusoidal_2d,
)

IN_CH = [24, 32, 40, 48]  # distinct per level: the one-step student feeds a UNet pyramid
KW = {"features": 16, "out_channels": [8, 16, 16, 32], "head_features": 8, "patch_size": 14}


def _feats(n: int, h: int = 5, w: int = 7, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, h, w, generator=g) for c in IN_CH]


def _randomise(module: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_dpt_head_shape_and_nonnegative() -> None:
    head = DPTHead(IN_CH, **KW).eval()
    out = head(_feats(3))
    assert out.shape == (3, 5 * 14, 7 * 14)
    assert torch.isfinite(out).all()
    assert (out >= 0).all()


def test_temporal_head_zero_init_equals_spatial_head() -> None:
    """Zero-initialised motion modules are the identity, so the temporal head starts as DPT."""
    spatial = DPTHead(IN_CH, **KW).eval()
    temporal = TemporalDPTHead(IN_CH, **KW, num_frames=8, norm_groups=8).eval()
    missing, unexpected = temporal.load_state_dict(spatial.state_dict(), strict=False)
    assert not unexpected
    assert all(k.startswith("motion_modules.") for k in missing)
    feats = _feats(4)
    torch.testing.assert_close(temporal(feats, num_frames=4), spatial(feats), rtol=0, atol=0)


def test_temporal_head_mixes_frames_within_a_clip_only() -> None:
    head = TemporalDPTHead(IN_CH, **KW, num_frames=8, norm_groups=8, zero_init=False).eval()
    _randomise(head)
    feats = _feats(2 * 3)  # two clips of three frames
    base = head(feats, num_frames=3)
    assert base.shape == (6, 70, 98)
    assert (base >= 0).all()

    moved = [f.clone() for f in feats]
    for f in moved:
        f[2] += 1.0  # last frame of clip 0
    out = head(moved, num_frames=3)
    assert not torch.equal(out[0], base[0]), "frame 0 must see frame 2 through temporal attention"
    torch.testing.assert_close(out[3:], base[3:], rtol=0, atol=0)  # clip 1 untouched

    spatial = DPTHead(IN_CH, **KW).eval()
    _randomise(spatial)
    torch.testing.assert_close(spatial(moved)[0], spatial(feats)[0], rtol=0, atol=0)


def test_temporal_position_table_matters_and_is_bounded() -> None:
    mm = TemporalMotionModule(16, num_heads=2, max_frames=4, norm_groups=4, zero_init=False).eval()
    _randomise(mm)
    x = torch.randn(4, 16, 3, 3)
    y = mm(x, num_frames=4)
    # identical frames still differ after the module because of the sinusoidal frame positions
    same = x[:1].expand(4, -1, -1, -1).contiguous()
    ys = mm(same, num_frames=4)
    assert not torch.allclose(ys[0], ys[1])
    assert y.shape == x.shape
    with pytest.raises(ValueError, match="position table"):
        mm(torch.randn(5, 16, 3, 3), num_frames=5)
    with pytest.raises(ValueError, match="multiple of num_frames"):
        mm(torch.randn(5, 16, 3, 3), num_frames=2)


def test_bad_inputs_and_configs_are_rejected() -> None:
    head = DPTHead(IN_CH, **KW)
    with pytest.raises(ValueError, match="4 feature maps"):
        head(_feats(1)[:3])
    bad = _feats(1)
    bad[1] = torch.randn(1, 32, 4, 7)
    with pytest.raises(ValueError, match="feature 1"):
        head(bad)
    with pytest.raises(ConfigError, match="in_channels"):
        DPTHead([8, 8, 8], **KW)
    with pytest.raises(ConfigError, match="divisible"):
        TemporalDPTHead(IN_CH, **KW, norm_groups=32)


def test_2d_positions_are_distinct_per_cell_and_need_a_width_divisible_by_4() -> None:
    pos = sinusoidal_2d(5, 7, 16)
    assert pos.shape == (35, 16)
    assert torch.cdist(pos, pos).add(torch.eye(35) * 10).min() > 0.1  # no two cells share a code
    # row-major: half the channels follow the row, half the column
    grid = pos.reshape(5, 7, 16)
    assert torch.equal(grid[:, 0, :8], grid[:, 6, :8]) and torch.equal(grid[0, :, 8:], grid[4, :, 8:])
    with pytest.raises(ConfigError, match="divisible by 4"):
        sinusoidal_2d(2, 2, 10)


def test_spatial_context_starts_as_identity_and_sees_the_whole_frame() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 16, 4, 6)
    fresh = SpatialContextModule(16, inner=16, num_heads=2, norm_groups=4)
    assert torch.equal(fresh(x), x)  # zero-initialised output: added to a trained model, it changes nothing
    module = SpatialContextModule(16, inner=16, num_heads=2, norm_groups=4, zero_init=False).eval()
    y = module(x)
    far = x.clone()
    far[:, :, 0, 0] += 3.0  # one corner cell
    moved = (module(far) - y).abs()
    assert moved[:, :, 3, 5].max() > 1e-3  # the opposite corner feels it: global, not a neighbourhood
    # frames are independent: the perturbation of frame 0 alone does not reach frame 1
    one = x.clone()
    one[0, :, 0, 0] += 3.0
    torch.testing.assert_close(module(one)[1:], y[1:], rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="spatial context"):
        SpatialContextModule(16, inner=18, num_heads=2, norm_groups=4)
