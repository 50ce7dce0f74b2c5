"""GemDepth against the authors' code (`reference-code/gemdepth`, model/gemdepth.py).

Compared, with the authors' `GemDepth` module imported from its folder:
(a) the released key layout at the released ViT-L configuration (parameters on the meta device): the
    authors' 767 keys are the importer's layout plus exactly the 24 keys their forward never reads
    (`head.proj.*`, each motion module's `fusion_gate1.0.*` and `layer_norm.*`), with equal shapes;
    importing their full state dict leaves 0 missing / 0 unexpected keys, and any other key is refused;
(b) the forward pass on the same random weights at a small configuration (ViT-S backbone, width 384;
    the authors' class built with `encoder="vits", embed_dim=384` and its three pose encoders rebuilt
    at width 384, since their constructor fixes them at 1024): disparity and the camera head's pose
    encoding, <= 1e-5 relative. Two switches make the authors' forward deterministic, as documented
    in `vdepth_ros/models/gemdepth.py`: their pose-injection masks (`torch.rand` inside `forward`) are
    forced on, and the ASTT attention's `dropout_p` (0.1, applied even in eval) is set to 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference_code import empty_weights, randomize_, reference_import, relative_error

from vdepth_ros.errors import ModelLoadError
from vdepth_ros.models.gemdepth import GemDepth
from vdepth_ros.models.vda import VDA_PRESETS

UNUSED_BY_THE_AUTHORS = 24


def _authors_model(small: bool) -> torch.nn.Module:
    with reference_import("gemdepth"):
        from model.gemdepth import GemDepth as Authors
        from model.tools.geometry import GlobalRepresentationEncoder

        if not small:
            return Authors().eval()
        model = Authors(encoder="vits", features=64, out_channels=[48, 96, 192, 384], embed_dim=384)
        for name, chans in (("cam_rot_encoder", 4), ("cam_trans_encoder", 3), ("cam_trans_scale_encoder", 1)):
            setattr(model, name, GlobalRepresentationEncoder(name=name, in_chans=chans, enc_embed_dim=384))
        return model.eval()


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_released_layout_is_the_authors_minus_unused_keys() -> None:
    with empty_weights():
        authors = _authors_model(small=False).state_dict()
    with torch.device("meta"):
        ours = GemDepth()
    layout = {k: tuple(v.shape) for k, v in ours.released_state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in authors.items()}
    extra = sorted(set(theirs) - set(layout))
    assert sorted(set(layout) - set(theirs)) == []
    assert len(theirs) == 767 and len(extra) == UNUSED_BY_THE_AUTHORS and len(layout) == 743
    assert all(k.startswith("head.proj.") or ".fusion_gate1.0." in k or ".layer_norm." in k for k in extra)
    assert {k: s for k, s in layout.items() if theirs[k] != s} == {}
    ours.load_released_state_dict(authors)  # the full checkpoint: 0 missing, 0 unexpected
    with pytest.raises(ModelLoadError, match=r"unexpected keys \['head\.extra\.weight'\]"):
        ours.load_released_state_dict({**authors, "head.extra.weight": torch.zeros(1)})


@pytest.mark.slow
def test_forward_and_poses_equal_the_authors_on_random_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = randomize_(_authors_model(small=True), seed=5)
    with torch.no_grad():  # lift the last conv so the ReLU'd disparity is not all zero
        theirs.head.scratch.output_conv2[2].bias.fill_(1.0)
    for block in (*theirs.spatial_blocks, *theirs.time_blocks):
        block.attn.dropout_p = 0.0  # their sdpa call applies 0.1 even in eval mode
    ckpt = tmp_path / "gemdepth.pth"
    torch.save(theirs.state_dict(), ckpt)
    ours = GemDepth.from_released(ckpt, **VDA_PRESETS["vits"])
    frames = torch.rand(1, 3, 3, 42, 56, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = ours.forward_geometry(frames)
        with monkeypatch.context() as m:  # their pose-injection masks: torch.rand(...) < p, forced on
            m.setattr(torch, "rand", lambda *a, **k: torch.zeros(*a, **k))
            depth, pose_enc_list, _, _ = theirs((frames - ours.pixel_mean) / ours.pixel_std)
    assert float(depth.std()) > 1e-3 * float(depth.abs().max())
    assert relative_error(got.disparity, depth) <= 1e-5
    assert relative_error(got.pose_encoding, pose_enc_list[-1]) <= 1e-5
