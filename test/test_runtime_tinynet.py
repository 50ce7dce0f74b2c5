"""A tiny `VideoDepthModel` (3D conv net) used by the runtime/export tests until and besides the
real families; plus tests that it honours the family contract the runtime relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vdepth_ros.models import MODEL_FAMILIES, ExportSignature, InputConstraints, VideoDepthModel, register_to_config

TINY_FAMILY = "tinytest"


class _Graph(nn.Module):
    """(1, T, 3, H, W) in [0, 1] -> (1, T, H, W): normalise, conv3d mixes time, softplus >= 0."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.view(1, 3, 1, 1, 1))
        self.register_buffer("std", std.view(1, 3, 1, 1, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 2, 1, 3, 4)  # (1, 3, T, H, W)
        x = (x - self.mean) * (1.0 / self.std)  # 1/std: a foldable constant subgraph
        return nn.functional.softplus(self.net(x))[:, 0]  # (1, T, H, W)


class TinyVideoNet(VideoDepthModel):
    """Two 3x3x3 convs; temporal receptive field so outputs depend on neighbouring frames."""

    family = TINY_FAMILY

    @register_to_config
    def __init__(self, channels: int = 8, multiple_of: int = 4, window: int = 6) -> None:
        super().__init__()
        self.multiple_of, self.window = multiple_of, window
        self.net = nn.Sequential(nn.Conv3d(3, channels, 3, padding=1), nn.GELU(), nn.Conv3d(channels, 1, 3, padding=1))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]))

    @property
    def input_constraints(self) -> InputConstraints:
        return InputConstraints(multiple_of=self.multiple_of, window=self.window, overlap=2)

    @staticmethod
    def tiny_config() -> dict:
        return {"channels": 4}

    @staticmethod
    def tiny_input_shape() -> tuple[int, int, int]:
        return (4, 24, 40)

    def export_signature(self, frames: int, height: int, width: int) -> ExportSignature:
        return ExportSignature(_Graph(self.net, self.mean, self.std), frames, height, width)

    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        t, _, h, w = frames.shape
        return self.export_signature(t, h, w).module(frames[None])[0]


@pytest.fixture
def tiny_registry(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register TinyVideoNet so `load_model(folder)` can rebuild it."""
    monkeypatch.setitem(MODEL_FAMILIES, TINY_FAMILY, f"{__name__}:TinyVideoNet")
    return TINY_FAMILY


def test_tinynet_contract_roundtrip(tmp_path, tiny_registry) -> None:
    from vdepth_ros.models import load_model

    model = TinyVideoNet(channels=4).eval()
    frames = torch.rand(5, 3, 12, 16)
    out = model.predict(frames)
    assert out.shape == (5, 12, 16)
    assert bool((out >= 0).all())
    model.save_pretrained(tmp_path)
    again = load_model(tmp_path)
    assert again.config == {"channels": 4, "multiple_of": 4, "window": 6}
    np.testing.assert_array_equal(again.predict(frames).detach().numpy(), out.detach().numpy())


@pytest.mark.parametrize("weights_dtype", [None, torch.float16])
def test_saved_weights_are_readable_like_the_config(tmp_path, weights_dtype) -> None:
    """safetensors writes owner-only files; a model folder must be readable by a node that runs as
    another user, as its config.json is (the process umask decides both)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        TinyVideoNet(channels=4).save_pretrained(tmp_path, weights_dtype=weights_dtype)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"config.json": 0o644, "model.safetensors": 0o644}
