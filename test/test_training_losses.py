"""Each training loss against a value computed by hand on a tiny tensor (see the comments), and the
VDA / GemDepth losses against the authors' released loss code (skipped with a reason when absent)."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from vdepth_training import losses as L


def t(x: list) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


# -- DepthCrafter -----------------------------------------------------------------------------------------


def test_edm_weight_and_loss() -> None:
    # λ(1) = 2, λ(2) = 5/4
    assert L.edm_loss_weight(t([1.0, 2.0])).tolist() == pytest.approx([2.0, 1.25])
    # sample 0: mse((1,2),0) = 2.5, ×2 = 5; sample 1: mse((0,2),0) = 2, ×1.25 = 2.5; mean 3.75
    loss = L.edm_denoising_loss(t([[1.0, 2.0], [0.0, 2.0]]), torch.zeros(2, 2), t([1.0, 2.0]))
    assert loss.item() == pytest.approx(3.75)


def test_edm_sigma_distribution() -> None:
    g = torch.Generator().manual_seed(0)
    log_sigma = L.sample_edm_sigma(200_000, generator=g).log()
    assert log_sigma.mean().item() == pytest.approx(0.7, abs=0.02)
    assert log_sigma.std().item() == pytest.approx(1.6, abs=0.02)


# -- One-step ------------------------------------------------------------------------------------------------


def test_latent_distillation_loss() -> None:
    # R = [[1,2],[3,5]]: L_sm = (1+4+9+25)/4 = 9.75; ∇x = (1, 2) -> 1.5; ∇y = (2, 3) -> 2.5; L_g = 4
    student = t([[[[1.0, 2.0], [3.0, 5.0]]]])
    total, terms = L.latent_distillation_loss(student, torch.zeros_like(student))
    assert terms["score_matching"].item() == pytest.approx(9.75)
    assert terms["latent_gradient"].item() == pytest.approx(4.0)
    assert total.item() == pytest.approx(0.5 * 9.75 + 0.5 * 4.0)


def test_silog() -> None:
    e = math.e
    # g = (1, 1): sqrt(1 - 0.85·1) = sqrt(0.15); ×10
    assert L.silog_loss(t([[e, e]]), t([[1.0, 1.0]])).item() == pytest.approx(10 * math.sqrt(0.15), rel=1e-5)
    # g = (1, -1): mean g² = 1, mean g = 0 -> 10
    assert L.silog_loss(t([[e, 1 / e]]), t([[1.0, 1.0]])).item() == pytest.approx(10.0, rel=1e-5)
    # a masked-out pixel does not count: only g = 1 remains
    mask = torch.tensor([[True, False]])
    assert L.silog_loss(t([[e, 5.0]]), t([[1.0, 1.0]]), mask).item() == pytest.approx(10 * math.sqrt(0.15), rel=1e-5)


def test_affinity_feature_loss() -> None:
    # student pixels (1,0),(0,1): affinity I; teacher pixels (1,0),(2,0): all ones. Σ diff² = 2, /hw=2 -> 1
    s = t([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # (1, C=2, h=1, w=2)
    te = t([[[[1.0, 2.0]], [[0.0, 0.0]]]])
    assert L.affinity_feature_loss(s, te).item() == pytest.approx(1.0)
    # channel count may differ
    te3 = torch.cat([te, torch.zeros(1, 1, 1, 2)], dim=1)
    assert L.affinity_feature_loss(s, te3).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="equal h"):
        L.affinity_feature_loss(s, torch.zeros(1, 2, 2, 2))


def test_onestep_decoder_loss_weights() -> None:
    e = math.e
    pred, target = t([[[[e, 1 / e]]]]), t([[[[1.0, 1.0]]]])  # silog 10; K = (e-1, 1/e-1)
    grad = abs((1 / e - 1) - (e - 1))  # one x-difference, no y-differences
    s = t([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    te = t([[[[1.0, 2.0]], [[0.0, 0.0]]]])
    total, terms = L.onestep_decoder_loss(pred, target, s, te)
    assert terms["silog"].item() == pytest.approx(10.0, rel=1e-5)
    assert terms["grad"].item() == pytest.approx(grad, rel=1e-5)
    assert terms["feature"].item() == pytest.approx(1.0)
    assert total.item() == pytest.approx(10.0 + 0.1 * 1.0 + 2 * grad, rel=1e-5)


# -- DVD -------------------------------------------------------------------------------------------------


def test_dvd_loss() -> None:
    # (B=1, F=2, C=1, h=1, w=2): f0 = (1,3), f1 = (2,2); target 0
    pred = t([[[[[1.0, 3.0]]], [[[2.0, 2.0]]]]])
    total, terms = L.dvd_loss(pred, torch.zeros_like(pred))
    assert terms["mse"].item() == pytest.approx((1 + 9 + 4 + 4) / 4)  # 4.5
    assert terms["lmr_spatial"].item() == pytest.approx(1.0)  # w-diffs (2, 0); no h-diffs
    assert terms["lmr_temporal"].item() == pytest.approx(1.0)  # |2-1|, |2-3|
    assert total.item() == pytest.approx(4.5 + 0.5 + 0.5)
    # an image (F = 1) has no temporal term
    _, img_terms = L.dvd_loss(pred[:, :1], torch.zeros_like(pred[:, :1]))
    assert img_terms["lmr_temporal"].item() == 0.0


# -- GemDepth ------------------------------------------------------------------------------------------------


def test_ssi_invariant_and_value() -> None:
    d = t([[[[1.0, 2.0], [3.0, 4.0]]]])
    mask = torch.ones_like(d, dtype=torch.bool)
    # d̂: median 2 (lower), MAD 1 -> (-1,0,1,2); 2d: median 4, MAD 2 -> same
    assert L.ssi_normalize(d, mask).flatten().tolist() == pytest.approx([-1, 0, 1, 2], abs=1e-5)
    assert L.ssi_loss(d, 2 * d + 7, mask).item() == pytest.approx(0.0, abs=1e-5)
    # target (4,3,2,1): median 2, MAD 1 -> (2,1,0,-1); |d̂ - ĝ| = (3,1,1,3) -> 2
    g = t([[[[4.0, 3.0], [2.0, 1.0]]]])
    assert L.ssi_loss(d, g, mask).item() == pytest.approx(2.0, abs=1e-5)
    # R = [[-3,-1],[1,3]]: Σ|∇x| = 2+2, Σ|∇y| = 4+4 -> 12 / ΣM 4 = 3 at scale 0; coarser scales are 1×1
    assert L.multiscale_gradient_loss(d, g, mask).item() == pytest.approx(3.0, abs=1e-5)


def test_ssi_per_sequence_sees_scale_drift_across_frames() -> None:
    g = t([[[[1.0, 2.0], [3.0, 4.0]], [[2.0, 4.0], [6.0, 8.0]]]])  # frame 2 twice as near
    mask = torch.ones_like(g, dtype=torch.bool)
    flat = t([[[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 4.0]]]])  # right per frame, no drift
    assert L.ssi_loss(flat, g, mask).item() == pytest.approx(0.0, abs=1e-5)
    assert L.ssi_loss(flat, g, mask, per="sequence").item() > 0.3
    assert L.ssi_loss(5 * g + 1, g, mask, per="sequence").item() == pytest.approx(0.0, abs=1e-5)
    # one median/deviation over both frames: g = (1,2,3,4,2,4,6,8), median 3, MAD 1.75
    assert L.ssi_normalize(g, mask, per="sequence")[0, 1, 0, 0].item() == pytest.approx(-1 / 1.75, abs=1e-5)
    with pytest.raises(ValueError, match="per"):
        L.ssi_normalize(g, mask, per="pixel")


def test_frame_level_loss() -> None:
    g = t([[[[1.0, 2.0], [3.0, 4.0]], [[2.0, 4.0], [6.0, 8.0]]]])
    mask = torch.ones_like(g, dtype=torch.bool)
    assert L.frame_level_loss(3 * g - 1, g, mask).item() == pytest.approx(0.0, abs=1e-5)
    # a prediction that does not get nearer: per-clip LS of (1,2,3,4,1,2,3,4) onto g is s = 1.5,
    # t = 0; frame means 3.75 vs 2.5 and 3.75 vs 5; clip MAD about the lower median 3 is 1.75
    flat = t([[[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 4.0]]]])
    assert L.frame_level_loss(flat, g, mask).item() == pytest.approx(1.25 / 1.75, abs=1e-4)
    # a third frame without valid pixels is not averaged in
    g3, flat3 = torch.cat([g, g[:, :1]], 1), torch.cat([flat, flat[:, :1]], 1)
    holes = torch.ones_like(g3, dtype=torch.bool)
    holes[0, 2] = False
    assert L.frame_level_loss(flat3, g3, holes).item() == pytest.approx(1.25 / 1.75, abs=1e-4)


def test_align_scale_shift() -> None:
    pred, target = t([[[[1.0, 2.0]]]]), t([[[[3.0, 5.0]]]])  # s = 2, t = 1
    out = L.align_scale_shift(pred, target, torch.ones_like(pred, dtype=torch.bool))
    assert out.flatten().tolist() == pytest.approx([3.0, 5.0], abs=1e-5)


def test_tgm() -> None:
    # target static (0,1) in both frames; pred (0,1) then (1,1). LS over (p, g) = (0,0),(1,1),(1,0),(1,1):
    # Σp²=3, Σp=3, N=4, Σpg=2, Σg=2 -> det 3, s = 2/3, t = 0; aligned frames (0, 2/3), (2/3, 2/3)
    # Δd = (2/3, 0), Δg = (0, 0), all static -> mean |Δd - Δg| = 1/3
    target = t([[[[0.0, 1.0]], [[0.0, 1.0]]]])
    pred = t([[[[0.0, 1.0]], [[1.0, 1.0]]]])
    mask = torch.ones_like(pred, dtype=torch.bool)
    assert L.temporal_gradient_matching_loss(pred, target, mask).item() == pytest.approx(1 / 3, abs=1e-5)
    # affine copies of the target are free; a moving pixel (|Δg| ≥ 5 % of the range) is ignored
    assert L.temporal_gradient_matching_loss(3 * target + 2, target, mask).item() == pytest.approx(0.0, abs=1e-5)
    moving = t([[[[0.0, 1.0]], [[0.5, 1.0]]]])
    assert L.temporal_gradient_matching_loss(pred, moving, mask).item() == pytest.approx(0.0, abs=1e-5)
    assert L.temporal_gradient_matching_loss(pred[:, :1], target[:, :1], mask[:, :1]).item() == 0.0


def test_camera_loss() -> None:
    q = t([[[0, 0, 0, 1], [0, 0, 0, 1]]])
    q_pred = t([[[0, 0, 0, 1], [0.1, 0, 0, 1]]])
    tr = torch.zeros(1, 2, 3)
    tr_pred = t([[[1, 0, 0], [0, 0, 0]]])
    # released reduction: mean over frames and components: rot 0.1 / 8, trans 1 / 6
    assert L.camera_loss(q_pred, q, tr_pred, tr).item() == pytest.approx(0.1 / 8 + 1 / 6)
    # Huber δ=1: 0.5·0.1² / 8 and 0.5·1² / 6
    assert L.camera_loss(q_pred, q, tr_pred, tr, kind="huber").item() == pytest.approx(0.005 / 8 + 0.5 / 6)
    # translation errors are clamped at 100 (released), rotation ones are not
    assert L.camera_loss(q, q, tr_pred * 600, tr).item() == pytest.approx(100 / 6)
    # iterations: (1/n) Σ γ^(n-1-i) L_i; the last one weighs 1
    it = L.camera_loss_iterations([(q_pred, tr_pred), (q, tr)], q, tr, gamma=0.6)
    assert it.item() == pytest.approx((0.6 * (0.1 / 8 + 1 / 6) + 0.0) / 2)


def test_gemdepth_total() -> None:
    d = t([[[[1.0, 2.0], [3.0, 4.0]]]])
    g = t([[[[4.0, 3.0], [2.0, 1.0]]]])
    mask = torch.ones_like(d, dtype=torch.bool)
    total, terms = L.gemdepth_loss(d, g, mask, camera=t(0.55))
    # ssi 2 + 0.5·gm 3 + 10·tgm 0 (one frame) + 0.2·cam 0.55
    assert total.item() == pytest.approx(2 + 1.5 + 0.11, abs=1e-5)
    assert set(terms) == {"ssi", "gm", "tgm", "camera"}
    # our optional clip-level terms add to the paper's sum, and are reported
    total2, terms2 = L.gemdepth_loss(d, g, mask, w_ssi=0.0, w_ssi_sequence=1.0, w_frame_level=2.0)
    expect = terms2["ssi_sequence"] + 0.5 * terms2["gm"] + 2.0 * terms2["frame_level"]
    assert total2.item() == pytest.approx(expect.item(), abs=1e-5)
    assert set(terms2) == {"ssi", "gm", "tgm", "ssi_sequence", "frame_level"}


def reference(name: str):
    from vdepth_ros.paths import reference_code_dir

    root = reference_code_dir()
    if root is None or not (root / name).is_dir():
        pytest.skip(f"the authors' code ({name}) is not in ../shared/reference-code")
    return root / name


def test_vda_loss_matches_the_release() -> None:
    """SSI + 0.5·GM + 10·TGM against Video-Depth-Anything's `loss/loss.py` (`VideoDepthLoss`): the
    totals agree within 5e-6 when every pixel is valid (our deviation s gets an eps added, the
    release clamps it); with invalid pixels the release's median also counts them (as 0), our
    deliberate difference, and the spatial term moves by a few %."""
    sys.path.insert(0, str(reference("video-depth-anything") / "loss"))
    try:
        from loss import VideoDepthLoss
    finally:
        sys.path.pop(0)
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 5, 24, 32, generator=g) + 0.2
    target[:, 2:] += torch.linspace(0, 0.3, 32)  # a scene that changes: TGM's static mask matters
    pred = 1.7 * target + 0.3 + 0.05 * torch.randn(2, 5, 24, 32, generator=g)
    for valid_fraction, rel in ((1.0, 5e-6), (0.9, 0.05)):
        mask = torch.rand(2, 5, 24, 32, generator=g) < valid_fraction
        ref = VideoDepthLoss()(pred, target, mask)
        total, terms = L.gemdepth_loss(pred, target, mask)
        assert (10 * terms["tgm"]).item() == pytest.approx(ref["stable_loss"].item(), rel=1e-5)  # frame i+1's range
        assert (terms["ssi"] + 0.5 * terms["gm"]).item() == pytest.approx(ref["spatial_loss"].item(), rel=rel)
        assert total.item() == pytest.approx(ref["total_loss"].item(), rel=rel)


def test_gemdepth_camera_loss_matches_the_release() -> None:
    """`camera_loss_iterations` against GemDepth's released `compute_camera_loss` on the same
    per-iteration pose encodings and GT encoding (γ = 0.6, per-component means, clamp)."""
    sys.path.insert(0, str(reference("gemdepth")))
    sys.path.insert(0, str(reference("gemdepth") / "loss"))
    try:
        from videoloss import compute_camera_loss
    finally:
        del sys.path[:2]
    g = torch.Generator().manual_seed(1)
    b, n, h, w = 2, 4, 12, 16
    rot = torch.linalg.qr(torch.randn(b, n, 3, 3, generator=g))[0]
    rot = rot * torch.det(rot).sign()[..., None, None]  # proper rotations
    extrinsics = torch.cat([rot, torch.randn(b, n, 3, 1, generator=g)], dim=-1)
    intrinsics = torch.tensor([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]]).expand(b, 3, 3)
    release = compute_camera_loss()
    gt_ext = extrinsics.clone()
    gt_ext[..., :3, 3] /= gt_ext[..., :3, 3].norm(dim=-1, keepdim=True).max(dim=1, keepdim=True)[0] + 1e-6
    gt = release.extri_intri_to_pose_encoding(gt_ext, intrinsics[:, None].expand(b, n, 3, 3), (h, w), "absT_quaR_FoV")
    preds = [gt + 0.1 * (i + 1) * torch.randn(b, n, 9, generator=g) for i in range(4)]
    out = release(preds, intrinsics, extrinsics.clone(), torch.zeros(b, n, 3, h, w), torch.ones(b, n, h, w))
    ours = L.camera_loss_iterations([(p[..., 3:7], p[..., :3]) for p in preds], gt[..., 3:7], gt[..., :3], gamma=0.6)
    assert ours.item() == pytest.approx(out["loss_camera"].item(), rel=1e-6)


# -- FiffDepth -------------------------------------------------------------------------------------------


def test_fiffdepth_loss() -> None:
    d = t([[[1.0, 3.0], [0.0, 0.0]]])  # mae 1; ∇x (2,0) -> 1; ∇y (1,3) -> 2; gm 3; term 1 + 0.5·3
    z = torch.zeros_like(d)
    total, terms = L.fiffdepth_loss(d, z, d, z, t([1.0, 1.0]), t([0.0, 0.0]))
    assert terms["t0_mae"].item() == pytest.approx(1.0)
    assert terms["t0_gm"].item() == pytest.approx(3.0)
    assert terms["trajectory"].item() == pytest.approx(1.0)
    assert total.item() == pytest.approx(2.5 + 2.5 + 0.2)
    only_t0, _ = L.fiffdepth_loss(d, z, None, None, None, None)
    assert only_t0.item() == pytest.approx(2.5)


def test_trajectory_target_and_schedule() -> None:
    # b0 = 0.5·1 + 0.5·3 = 2; ᾱ = 0.25: b_t = 0.5·2 + √0.75·2; v = 0.5·2 − √0.75·2
    b_t, v = L.trajectory_target(t([1.0]), t([3.0]), t([2.0]), t([0.25]))
    assert b_t.item() == pytest.approx(1 + math.sqrt(0.75) * 2, rel=1e-6)
    assert v.item() == pytest.approx(1 - math.sqrt(0.75) * 2, rel=1e-6)
    ab = L.ddpm_alpha_bar()
    assert ab.shape == (1000,)
    assert ab[0].item() == pytest.approx(1 - 0.00085, rel=1e-6)
    assert bool((ab[1:] < ab[:-1]).all())


def test_gradient_l1_mask_ignores_pairs_with_an_invalid_pixel() -> None:
    r = t([[0.0, 10.0, 11.0]])
    mask = torch.tensor([[False, True, True]])
    assert L.gradient_l1(r, mask).item() == pytest.approx(1.0)  # only the (10, 11) pair
