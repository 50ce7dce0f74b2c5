"""GemDepth family: deterministic pose injection, slot-0-relative normalised cameras, released layout, ONNX."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_models_vda import hololens_clip, randomise

from vdepth_ros.errors import ConfigError
from vdepth_ros.models import build_model, load_model
from vdepth_ros.models.gemdepth import GemDepth
from vdepth_ros.models.gemdepth_blocks import (
    normalize_translations,
    quat_multiply,
    quat_to_matrix,
    relative_to_first,
    rope_2d,
)
from vdepth_ros.models.vda import VideoDepthAnything

TINY = GemDepth.tiny_config()


@pytest.fixture(scope="module")
def tiny() -> GemDepth:
    torch.manual_seed(0)
    model = randomise(GemDepth(**TINY), scale=0.1)
    with torch.no_grad():  # FoV output near 1 rad per refinement step, well inside (0, pi)
        model.camera_head.pose_branch.fc2.weight[7:].mul_(0.01)
        model.camera_head.pose_branch.fc2.bias[7:].fill_(0.5)
    return model.eval()


def test_predict_shape_nonnegative_deterministic(tiny: GemDepth) -> None:
    t, h, w = GemDepth.tiny_input_shape()
    frames = torch.rand(t, 3, h, w)
    out = tiny.predict(frames)
    assert out.shape == (t, h, w)
    assert torch.isfinite(out).all()
    assert (out >= 0).all()
    assert out.std() > 0
    assert torch.equal(out, tiny.predict(frames))  # the release's random pose masks are gone
    assert torch.equal(tiny.predict_geometry(frames).pose_encoding, tiny.predict_geometry(frames).pose_encoding)


def test_cameras_relative_to_slot0_and_normalised(tiny: GemDepth) -> None:
    t, h, w = GemDepth.tiny_input_shape()
    geo = tiny.predict_geometry(torch.rand(t, 3, h, w))
    enc, ext, k = geo.pose_encoding, geo.extrinsics, geo.intrinsics
    assert enc.shape == (t, 9)
    assert ext.shape == (t, 4, 4)
    assert k.shape == (t, 3, 3)
    for v in (enc, ext, k, geo.translation_scale):
        assert torch.isfinite(v).all()
    torch.testing.assert_close(ext[0], torch.eye(4), atol=1e-5, rtol=0)  # slot 0 is the reference
    rot = ext[:, :3, :3]
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3).expand(t, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(t), atol=1e-5, rtol=0)

    # independent of the quaternion algebra: rotations preserve norms, so Z = mean_i>0 |t_i - t_0|
    raw_t, raw_q = enc[:, :3], enc[:, 3:7]
    dist = (raw_t - raw_t[:1]).norm(dim=-1)
    z = dist[1:].mean()
    torch.testing.assert_close(geo.translation_scale, z, rtol=1e-5, atol=0)
    torch.testing.assert_close(ext[:, :3, 3].norm(dim=-1), dist / z, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ext[1:, :3, 3].norm(dim=-1).mean(), torch.tensor(1.0), rtol=1e-5, atol=0)
    r = quat_to_matrix(raw_q)
    torch.testing.assert_close(rot, r[:1].transpose(1, 2) @ r, atol=1e-5, rtol=0)  # R_rel = R_0^T R_i

    fov = enc[:, 7:9]
    assert ((fov > 0.1) & (fov < 3.0)).all()
    torch.testing.assert_close(k[:, 1, 1], (h / 2) / torch.tan(fov[:, 0] / 2))
    torch.testing.assert_close(k[:, 0, 0], (w / 2) / torch.tan(fov[:, 1] / 2))
    assert (k[:, 0, 2] == w / 2).all()
    assert (k[:, 1, 2] == h / 2).all()


def test_pose_helpers_invariances() -> None:
    g = torch.Generator().manual_seed(3)
    quat = torch.randn(2, 5, 4, generator=g)
    trans = torch.randn(2, 5, 3, generator=g)
    q_rel, t_rel = relative_to_first(quat, trans)
    assert torch.equal(t_rel[:, 0], torch.zeros(2, 3))
    # a common world transform of every camera leaves relative poses unchanged
    gq = torch.nn.functional.normalize(torch.randn(4, generator=g), dim=0).expand(2, 5, 4)
    gt = torch.randn(3, generator=g)
    q_w = quat_multiply(gq, quat)
    t_w = (quat_to_matrix(gq) @ trans[..., None])[..., 0] + gt
    q_rel2, t_rel2 = relative_to_first(q_w, t_w)
    torch.testing.assert_close(quat_to_matrix(q_rel2), quat_to_matrix(q_rel), atol=1e-5, rtol=0)
    torch.testing.assert_close(t_rel2, t_rel, atol=1e-5, rtol=1e-5)
    # translation normalisation is scale-free and ignores the zero slot
    t_n, z = normalize_translations(t_rel)
    t_n3, z3 = normalize_translations(3.0 * t_rel)
    torch.testing.assert_close(t_n3, t_n)
    torch.testing.assert_close(z3, 3.0 * z)
    torch.testing.assert_close(t_n[:, 1:].norm(dim=-1).mean(dim=1), torch.ones(2))
    # 90 degrees about z
    s = math.sqrt(0.5)
    rz = quat_to_matrix(torch.tensor([0.0, 0.0, s, s]))
    torch.testing.assert_close(
        rz, torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), atol=1e-6, rtol=0
    )


def test_rope_scores_depend_on_relative_position_only() -> None:
    g = torch.Generator().manual_seed(4)
    q = torch.randn(1, 2, 6, 8, generator=g)
    k = torch.randn(1, 2, 6, 8, generator=g)
    pos = torch.randint(0, 7, (6, 2), generator=g)
    shift = torch.tensor([3, 5])
    s1 = rope_2d(q, pos, 100.0) @ rope_2d(k, pos, 100.0).transpose(-1, -2)
    s2 = rope_2d(q, pos + shift, 100.0) @ rope_2d(k, pos + shift, 100.0).transpose(-1, -2)
    torch.testing.assert_close(s1, s2, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(s1, q @ k.transpose(-1, -2))  # but it does change the scores
    torch.testing.assert_close(rope_2d(q, torch.zeros(6, 2, dtype=torch.long), 100.0), q)


def test_pose_embedding_reaches_depth(tiny: GemDepth) -> None:
    t, h, w = GemDepth.tiny_input_shape()
    frames = torch.rand(t, 3, h, w)
    base = tiny.predict(frames)
    ablated = GemDepth(**TINY)
    ablated.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        ablated.cam_trans_encoder.norm.weight.mul_(3.0)
    assert not torch.allclose(ablated.predict(frames), base)


def test_persistence_and_config_errors(tiny: GemDepth, tmp_path: Path) -> None:
    tiny.save_pretrained(tmp_path / "g")
    again = load_model(tmp_path / "g")
    assert isinstance(again, GemDepth)
    frames = torch.rand(4, 3, 70, 98)
    assert torch.equal(again.predict(frames), tiny.predict(frames))
    assert isinstance(build_model("gemdepth", **TINY), GemDepth)
    c = tiny.input_constraints
    assert (c.window, c.overlap, c.keyframes, c.alignment) == (8, 4, (0, 3, 6, 7), "keyframe")
    with pytest.raises(ConfigError, match="gem_active"):
        GemDepth(**{**TINY, "gem_active": 3})
    with pytest.raises(ConfigError, match="RoPE"):
        GemDepth(**{**TINY, "astt_heads": 16})  # head dim 32 / 16 = 2 cannot carry 2-D RoPE
    with pytest.raises(ConfigError, match="frame-index"):
        GemDepth(**{**TINY, "max_frames": 64, "frame_index_len": 50})


def test_released_layout_round_trip(tiny: GemDepth, tmp_path: Path) -> None:
    released = tiny.released_state_dict()
    for key in (
        "pretrained.blocks.0.attn.qkv.weight",
        "camera_token",
        "register_token",
        "pos_encoder.pe",
        "frame_blocks.1.ls1.gamma",
        "global_blocks.0.attn.q_norm.weight",
        "camera_head.poseLN_modulation.1.weight",
        "camera_head.pose_branch.fc2.bias",
        "cam_rot_encoder.encoder.0.0.0.weight",
        "cam_trans_scale_encoder.norm_layer.bias",
        "spatial_blocks.1.attn.qkv.weight",
        "time_blocks.0.mlp.fc1.weight",
        "head.motion_modules.3.temporal_transformer.proj_out.weight",
    ):
        assert key in released, key
    path = tmp_path / "gemdepth.pth"
    torch.save(released, path)
    loaded = GemDepth.from_released(path, **TINY)
    frames = torch.rand(4, 3, 70, 98)
    assert torch.equal(loaded.predict(frames), tiny.predict(frames))


def test_release_sized_architecture() -> None:
    """ViT-L GemDepth on the meta device: new modules (GEM + ASTT) hold 319.04 M parameters, as the
    released code does (GemDepth fork notes: "new modules 319.04M"); pose-encoder names nest as UniCeption."""
    with torch.device("meta"):
        gem = GemDepth()
        vda = VideoDepthAnything.preset("vitl")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert round((count(gem) - count(vda)) / 1e6, 2) == 319.04
    assert gem.camera_token.shape == (1, 2, 1, 1024)
    assert gem.register_token.shape == (1, 2, 4, 1024)
    names = gem._extra_released_names()
    assert names("cam_rot_encoder.layers.0.weight") == ["cam_rot_encoder.encoder.0.0.0.0.weight"]
    assert names("cam_rot_encoder.layers.1.weight") == ["cam_rot_encoder.encoder.0.0.1.weight"]
    assert names("cam_rot_encoder.layers.2.bias") == ["cam_rot_encoder.encoder.0.1.bias"]
    assert names("cam_rot_encoder.layers.3.weight") == ["cam_rot_encoder.encoder.1.weight"]
    assert gem.time_blocks[0].attn.heads == 128
    assert gem.spatial_blocks[0].attn.heads == 32
    assert gem.frame_blocks[0].attn.heads == 16


@pytest.mark.evaldata
def test_predict_real_clip(tiny: GemDepth, evaldata: Path) -> None:
    geo = tiny.predict_geometry(hololens_clip(evaldata))
    assert geo.disparity.shape == (4, 196, 294)
    assert torch.isfinite(geo.disparity).all()
    assert (geo.disparity >= 0).all()
    assert torch.isfinite(geo.extrinsics).all()
    assert torch.isfinite(geo.intrinsics).all()


def test_onnx_export_matches_torch(tiny: GemDepth, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    t, h, w = GemDepth.tiny_input_shape()
    sig = tiny.export_signature(t, h, w)
    x = torch.rand(sig.input_shape)
    path = tmp_path / "gemdepth.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(sig.module, (x,), str(path), input_names=["frames"], output_names=["disparity"],
                          opset_version=17, dynamo=False)  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    frames = torch.rand(sig.input_shape)
    with torch.no_grad():
        want = sig.module(frames).numpy()
    got = session.run(None, {"frames": frames.numpy()})[0]
    assert got.shape == (1, t, h, w)
    assert want.std() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
