"""Training losses of the five papers, one function per term, with the paper's equation numbers.

Shapes: disparity maps are (B, T, H, W) (a single image is T = 1); latents are (B, T, C, h, w)
(frame-major like the models' `(B, T, ...)` inputs); masks are bool of the disparity shape.
Every composite returns `(total, {term: value})` so trainers can log each term.

Reductions (where the papers leave them open, documented per function):
- "mean" over the finite-difference tensor of each axis, i.e. `mean|R[...,1:]-R[...,:-1]|` per axis
  (`gradient_l1`), shared by the one-step latent-gradient and decoder gradient losses, DVD's LMR and
  FiffDepth's GM, so the four recipes use one implementation.
- GemDepth's SSI/GM/TGM follow the released VDA/GemDepth loss code (batch-based Σ/ΣM reduction,
  no ½ on SSI; signed temporal differences in TGM), see each docstring.

Modules: `common` (shared reductions), `depth` (GemDepth / Video Depth Anything: SSI, GM, TGM,
camera), `diffusion` (DepthCrafter EDM, one-step distillation, DVD, FiffDepth); every function is
importable from `vdepth_training.losses`.
"""

from vdepth_training.losses.common import LossOut, gradient_l1
from vdepth_training.losses.depth import (
    CLIP_LOSS_KEYS,
    align_scale_shift,
    camera_loss,
    camera_loss_iterations,
    frame_level_loss,
    gemdepth_loss,
    multiscale_gradient_loss,
    ssi_loss,
    ssi_normalize,
    temporal_gradient_matching_loss,
)
from vdepth_training.losses.diffusion import (
    affinity_feature_loss,
    ddpm_alpha_bar,
    dvd_loss,
    edm_denoising_loss,
    edm_loss_weight,
    fiffdepth_loss,
    latent_distillation_loss,
    lmr_loss,
    mae_gm_loss,
    onestep_decoder_loss,
    sample_edm_sigma,
    silog_loss,
    trajectory_target,
)

__all__ = [
    "CLIP_LOSS_KEYS",
    "LossOut",
    "affinity_feature_loss",
    "align_scale_shift",
    "camera_loss",
    "camera_loss_iterations",
    "ddpm_alpha_bar",
    "dvd_loss",
    "edm_denoising_loss",
    "edm_loss_weight",
    "fiffdepth_loss",
    "frame_level_loss",
    "gemdepth_loss",
    "gradient_l1",
    "latent_distillation_loss",
    "lmr_loss",
    "mae_gm_loss",
    "multiscale_gradient_loss",
    "onestep_decoder_loss",
    "sample_edm_sigma",
    "silog_loss",
    "ssi_loss",
    "ssi_normalize",
    "temporal_gradient_matching_loss",
    "trajectory_target",
]
