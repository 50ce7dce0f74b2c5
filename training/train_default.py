"""Train the bundled default model (VDA-head video depth) on procedural synthetic video.

One command renders the synthetic clips that are missing (deterministic per seed and style), then
trains with the VDA loss (`losses.gemdepth_loss` without the camera term: SSI + 0.5 GM + 10 TGM,
plus the clip-level terms a recipe sets) and heavy photometric augmentation, and writes a
resumable checkpoint every `checkpoint_every` steps. Without `--config` it runs the shipped
model's recipe (v7, `vda_lite`, ImageNet encoder, `configs/default_v7.yaml`: v5's two stages, then
two fine-tuning stages with the frame-level term)::

    python -m vdepth_training.train_default --out runs/default7 [--resume] [--data DIR]
    python -m vdepth_training.train_default --out runs/default7 --finalize runs/default7/model --weights-fp16

`--config training/configs/default.yaml` is the first default model (v1, from scratch).

Stages (`stage_plan`): `train.steps` at `train.lr` is stage 1; each entry of `train.stages` adds a
cosine stage that may change the data and loss weights, and with `restart: true` starts a fresh
optimizer and batch stream, so a chain of fine-tuning runs is one resumable recipe.

Determinism: the clip of batch `b` is a pure function of `(seed, b)` (`ClipDataset`), and so are
the zoom and photometric augmentations (a generator seeded with `(seed, b)`), so `--resume`
continues the exact same run. `--finalize DIR` writes `save_pretrained` files (config.json +
model.safetensors) from the last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from vdepth_ros.errors import ConfigError

#: the shipped default model's recipe (v7); `configs/default.yaml` is the first default (v1)
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default_v7.yaml"
CKPT_NAME = "checkpoint.pt"


def load_config(path: str | Path = DEFAULT_CONFIG) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def build_model(cfg: dict[str, Any]):
    from vdepth_ros.models import build_model as build

    mcfg = dict(cfg["model"])
    family = mcfg.pop("family")
    return build(family, **mcfg)


# -- augmentation ------------------------------------------------------------------------------
def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * torch.rand((), generator=g))


def zoom_crop(frames: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, factor: float, g: torch.Generator):
    """Random zoom-in by `factor` (crop 1/factor of each side at a random place, resize back).

    `frames` (T, 3, H, W) bilinear; `target`/`valid` (T, H, W) nearest, so no depth is invented.
    """
    if factor <= 1.0:
        return frames, target, valid
    _, _, h, w = frames.shape
    ch, cw = max(2, round(h / factor)), max(2, round(w / factor))
    top = int(torch.randint(0, h - ch + 1, (), generator=g))
    left = int(torch.randint(0, w - cw + 1, (), generator=g))
    fr = F.interpolate(
        frames[:, :, top : top + ch, left : left + cw], size=(h, w), mode="bilinear", align_corners=False
    )
    tv = torch.stack([target, valid.float()], 1)[:, :, top : top + ch, left : left + cw]
    tv = F.interpolate(tv, size=(h, w), mode="nearest")
    return fr, tv[:, 0], tv[:, 1] > 0.5


def _gauss_kernel(sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(2.5 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def photometric(frames: torch.Tensor, aug: dict[str, Any], g: torch.Generator) -> torch.Tensor:
    """Heavy colour/brightness/blur/noise augmentation of one clip `(T, 3, H, W)` in [0, 1].

    One draw per clip (so the video stays a video) plus a small per-frame brightness flicker
    (auto-exposure), as real handheld cameras do.
    """
    t = frames.shape[0]
    x = frames
    if torch.rand((), generator=g) < aug.get("grayscale_p", 0.0):
        x = x.mean(1, keepdim=True).expand_as(x)
    # white balance / tint, saturation, hue rotation (approximate, in RGB)
    wb = 1 + aug["white_balance"] * (2 * torch.rand(3, generator=g) - 1)
    x = x * wb.view(1, 3, 1, 1)
    gray = x.mean(1, keepdim=True)
    x = gray + (x - gray) * _u(g, *aug["saturation"])
    ang = _u(g, -1, 1) * aug["hue_shift"] * 2 * math.pi
    c, s = math.cos(ang), math.sin(ang)
    k = 1 / 3
    sq = math.sqrt(k)
    rot = torch.tensor(
        [
            [c + (1 - c) * k, k * (1 - c) - sq * s, k * (1 - c) + sq * s],
            [k * (1 - c) + sq * s, c + k * (1 - c), k * (1 - c) - sq * s],
            [k * (1 - c) - sq * s, k * (1 - c) + sq * s, c + k * (1 - c)],
        ]
    )
    x = torch.einsum("ij,tjhw->tihw", rot, x)
    # contrast, brightness (+ per-frame flicker), gamma
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + (x - mean) * _u(g, *aug["contrast"])
    flick = 1 + aug["flicker"] * (2 * torch.rand(t, generator=g) - 1)
    x = x * (_u(g, *aug["brightness"]) * flick).view(t, 1, 1, 1)
    x = x.clamp(0, 1) ** _u(g, *aug["gamma"])
    if torch.rand((), generator=g) < aug["vignette_p"]:
        h, w = x.shape[-2:]
        yy = torch.linspace(-1, 1, h).view(h, 1)
        xx = torch.linspace(-1, 1, w).view(1, w)
        x = x * (1 - _u(g, 0.1, 0.5) * (xx**2 + yy**2) / 2)
    if torch.rand((), generator=g) < aug["blur_p"]:
        kern = _gauss_kernel(_u(g, *aug["blur_sigma"]))
        r = len(kern) // 2
        n = x.shape[0] * 3
        y = x.reshape(n, 1, *x.shape[-2:])
        y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), kern.view(1, 1, 1, -1))
        y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), kern.view(1, 1, -1, 1))
        x = y.reshape_as(x)
    if torch.rand((), generator=g) < aug["noise_p"]:
        std = _u(g, *aug["noise_std"])
        x = x + std * torch.randn(x.shape, generator=g)
    x = x.clamp(0, 1)
    # Camera effects of real video that renders lack; drawn only when enabled, so recipes without
    # them keep their random stream (and their runs) unchanged.
    if aug.get("motion_blur_p", 0.0) > 0 and torch.rand((), generator=g) < aug["motion_blur_p"]:
        x = motion_blur(x, _u(g, 0.0, math.pi), _u(g, 0.0, 1.0) * float(aug["motion_blur_px"]), g)
    if aug.get("jpeg_p", 0.0) > 0 and torch.rand((), generator=g) < aug["jpeg_p"]:
        x = jpeg_roundtrip(x, round(_u(g, *aug["jpeg_quality"])))
    return x


def motion_blur(frames: torch.Tensor, angle: float, length: float, g: torch.Generator) -> torch.Tensor:
    """Linear motion blur of a clip `(T, 3, H, W)`: one direction per clip (the camera's motion),
    a length per frame between half and all of `length` pixels (its speed varies)."""
    out = []
    for frame in frames:
        n = _u(g, 0.5, 1.0) * length
        r = math.ceil(n / 2)
        if r < 1:
            out.append(frame)
            continue
        t = torch.linspace(-n / 2, n / 2, 4 * r + 1)
        xs = torch.round(t * math.cos(angle)).long() + r
        ys = torch.round(t * math.sin(angle)).long() + r
        kern = torch.zeros(2 * r + 1, 2 * r + 1)
        kern[ys, xs] = 1.0
        kern = (kern / kern.sum()).expand(3, 1, -1, -1)
        y = F.conv2d(F.pad(frame[None], (r, r, r, r), mode="replicate"), kern, groups=3)
        out.append(y[0])
    return torch.stack(out)


def jpeg_roundtrip(frames: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode every frame of a clip `(T, 3, H, W)` in [0, 1] as JPEG at `quality`
    (blocking and ringing, as in compressed camera streams). The RGB frame goes to OpenCV as if it
    were BGR, which swaps red and blue in JPEG's luma weights; harmless for an augmentation."""
    import cv2

    out = []
    for frame in frames:
        img = (frame.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        out.append(torch.from_numpy(dec.astype(np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(out)


def augment_batch(batch: dict[str, torch.Tensor], cfg: dict[str, Any], key: int) -> dict[str, torch.Tensor]:
    """Zoom + photometric augmentation of every clip of a batch, seeded by `key` (the batch index)."""
    g = torch.Generator().manual_seed(int(cfg["train"]["seed"]) * 1_000_003 + int(key))
    frames, target, valid = [], [], []
    for b in range(batch["frames"].shape[0]):
        fr, tg, va = zoom_crop(
            batch["frames"][b], batch["target"][b], batch["valid"][b], _u(g, *cfg["data"]["zoom"]), g
        )
        frames.append(photometric(fr, cfg["augment"], g))
        target.append(tg)
        valid.append(va)
    return {"frames": torch.stack(frames), "target": torch.stack(target), "valid": torch.stack(valid)}


# -- data --------------------------------------------------------------------------------------
def prepare_data(cfg: dict[str, Any], data_dir: Path) -> list[Path]:
    """Render the configured seeds that are missing in `data_dir`; return their folders in seed order."""
    from vdepth_training.data.synthetic import write_synthetic_dataset

    a, b = cfg["data"]["seeds"]
    h, w = cfg["data"]["render_size"]
    style = str(cfg["data"].get("style", "basic"))
    return write_synthetic_dataset(
        data_dir, range(int(a), int(b)), int(cfg["data"]["frames"]), int(h), int(w), style=style
    )


def make_dataset(cfg: dict[str, Any], folders: list[Path]):
    from vdepth_training.data.dataset import ClipDataset, ClipSampling, Source
    from vdepth_training.data.sequence import SequenceReader

    d, t = cfg["data"], cfg["train"]
    sources = []
    # one source per frame stride, equally weighted (ClipSampling has one stride per dataset)
    stride_lo, stride_hi = d["stride"]
    strides = list(range(int(stride_lo), int(stride_hi) + 1))
    readers = [SequenceReader(f) for f in folders]
    sources = [Source(readers, weight=1.0, name=f"synthetic/stride{s}") for s in strides]
    datasets = [
        ClipDataset(
            [src],
            ClipSampling(
                length_range=tuple(d["clip_length"]),
                size=tuple(d["size"]),
                normalization=d["normalization"],
                stride=s,
            ),
            num_samples=int(t["batch_size"]) * 1000,
            batch_size=int(t["batch_size"]),
            seed=int(t["seed"]) + 17 * s,
        )
        for s, src in zip(strides, sources, strict=True)
    ]
    return datasets


def get_batch(datasets, batch_index: int) -> tuple[dict[str, torch.Tensor], int]:
    """Batch `batch_index` (deterministic): alternate the stride datasets, ClipDataset does the rest."""
    from vdepth_training.data.dataset import collate_clips

    ds = datasets[batch_index % len(datasets)]
    j = batch_index // len(datasets)
    bs = ds.batch_size
    return collate_clips([ds[j * bs + k] for k in range(bs)]), j


# -- training ----------------------------------------------------------------------------------
#: optional loss weights of ours; a recipe that leaves one out keeps gemdepth_loss's default (the paper's loss)
CLIP_LOSS_KEYS = ("w_ssi", "w_ssi_sequence", "w_frame_level")
#: loss weights a stage of `train.stages` may change (each holds until a later stage sets it again)
STAGE_LOSS_KEYS = ("w_gm", "w_tgm", *CLIP_LOSS_KEYS)
STAGE_KEYS = frozenset({"steps", "lr", "warmup", "encoder_lr_scale", "restart", "data", *STAGE_LOSS_KEYS})


@dataclass(frozen=True)
class Stage:
    """One stage of a recipe: stage 1 is `train.steps` at `train.lr`, the others `train.stages`.

    Attributes:
        index: 0 for stage 1.
        start: its first (global) step.
        steps: its length.
        origin: the step at which the batch stream last started over (0, or the start of the
            latest `restart` stage): batch `k` of the data and augmentation is drawn at step
            `origin + k`.
        restart: a fresh optimizer and batch stream at `start`, exactly as a separate run with
            `train.init` pointing at the previous stage's checkpoint would have (a fine-tuning stage).
        cfg: the recipe in effect (its `data` and loss weights as changed by this and earlier stages).
    """

    index: int
    start: int
    steps: int
    origin: int
    restart: bool
    cfg: dict[str, Any]


def stage_plan(cfg: dict[str, Any]) -> list[Stage]:
    """The recipe's stages in order. A stage of `train.stages` may set, besides `steps`, `lr`,
    `warmup` and `encoder_lr_scale`: `data` (keys of the recipe's `data`, e.g. other seeds or clip
    lengths), the loss weights `STAGE_LOSS_KEYS`, and `restart` (see `Stage`). Changes hold until
    a later stage changes them again.

    Raises:
        ConfigError: a stage sets a key this trainer does not know, or a `data` key the recipe lacks
            (a typo would otherwise be ignored for hours of training).
    """
    t = cfg["train"]
    eff = {**cfg, "data": dict(cfg["data"]), "train": {k: v for k, v in t.items() if k != "stages"}}
    plan = [Stage(0, 0, int(t["steps"]), 0, False, eff)]
    for n, st in enumerate(t.get("stages", []), start=1):
        unknown = set(st) - STAGE_KEYS
        if unknown:
            raise ConfigError(f"train.stages[{n - 1}] sets {sorted(unknown)}; a stage may set {sorted(STAGE_KEYS)}")
        bad = set(st.get("data", {})) - set(cfg["data"])
        if bad:
            raise ConfigError(f"train.stages[{n - 1}].data sets {sorted(bad)}, which the recipe's data does not have")
        prev = plan[-1]
        start = prev.start + prev.steps
        restart = bool(st.get("restart", False))
        eff = {
            **prev.cfg,
            "data": {**prev.cfg["data"], **st.get("data", {})},
            "train": {**prev.cfg["train"], **{k: st[k] for k in STAGE_LOSS_KEYS if k in st}},
        }
        plan.append(Stage(n, start, int(st["steps"]), start if restart else prev.origin, restart, eff))
    return plan


def stage_at(plan: list[Stage], step: int) -> Stage:
    """The stage that runs `step` (the last one for steps past the end)."""
    for st in plan:
        if step < st.start + st.steps:
            return st
    return plan[-1]


def total_steps(cfg: dict[str, Any]) -> int:
    """Steps of stage 1 (`train.steps`) plus every later stage (`train.stages`)."""
    return int(cfg["train"]["steps"]) + sum(int(st["steps"]) for st in cfg["train"].get("stages", []))


def lr_at(step: int, cfg: dict[str, Any]) -> float:
    """Stage 1: linear warm-up then cosine to 5 % over `train.steps`; each later stage in
    `train.stages` restarts the cosine from its own `lr` (a warm restart, SGDR-style)."""
    t = cfg["train"]
    stages = [(int(t["steps"]), float(t["lr"]), int(t["warmup"]))]
    stages += [(int(st["steps"]), float(st["lr"]), int(st.get("warmup", 0))) for st in t.get("stages", [])]
    start = 0
    for n, base, warm in stages:
        if step < start + n or (n, base, warm) == stages[-1]:
            s = step - start
            if s < warm:
                return base * (s + 1) / warm
            prog = min(1.0, (s - warm) / max(1, n - warm))
            return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * prog)))
        start += n
    raise AssertionError("unreachable")


def encoder_lr_scale_at(step: int, cfg: dict[str, Any]) -> float:
    """The encoder's learning-rate factor at `step`: `train.encoder_lr_scale` in stage 1; a stage of
    `train.stages` may set its own `encoder_lr_scale`, which holds until a later stage sets another.

    Raises:
        ConfigError: a stage changes the factor while stage 1 has no separate encoder group
            (factor 1: one group; factor 0: the encoder is frozen and not in the optimizer).
    """
    t = cfg["train"]
    first = float(t.get("encoder_lr_scale", 1.0))
    stages = t.get("stages", [])
    changed = [float(st["encoder_lr_scale"]) for st in stages if "encoder_lr_scale" in st]
    if first in (0.0, 1.0) and any(c != first for c in changed):
        raise ConfigError(
            f"train.stages sets encoder_lr_scale {changed}, but stage 1 uses {first}: only a factor "
            "other than 0 and 1 gives the encoder its own optimizer group"
        )
    scale, start = first, int(t["steps"])
    for st in stages:
        if step < start:
            break
        scale = float(st.get("encoder_lr_scale", scale))
        start += int(st["steps"])
    return scale


def _alive_output(model) -> None:
    """Start the final ReLU in its active range: with the default init the head's last conv is
    negative almost everywhere, the ReLU outputs 0 and no gradient flows (a dead start)."""
    last = getattr(getattr(getattr(model, "head", None), "head", None), "conv3", None)
    if isinstance(last, torch.nn.Conv2d) and last.bias is not None:
        with torch.no_grad():
            last.bias.fill_(1.0)


def param_groups(model, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """AdamW groups: the encoder (`model.backbone`) at `train.encoder_lr_scale` x the learning rate
    (default 1; Depth Anything / VDA fine-tune a pretrained encoder 10x slower than the head), the
    rest at 1x. A scale of 0 freezes the encoder: its parameters stop requiring gradients (the
    backward pass skips it) and only the rest is optimised.

    Modules named in `train.init_new_modules` (new to a model fine-tuned from `train.init`) get a
    group of their own at `train.new_module_lr_scale` x the learning rate (`new_scale`): they start
    from scratch while the rest is only adjusted."""
    t = cfg["train"]
    scale = float(t.get("encoder_lr_scale", 1.0))
    prefixes = tuple(f"{m}." for m in t.get("init_new_modules") or ())
    new = [p for n, p in model.named_parameters() if prefixes and n.startswith(prefixes)]
    new_ids = {id(p) for p in new}
    extra = [{"params": new, "lr_scale": 1.0, "new_scale": float(t.get("new_module_lr_scale", 1.0))}] if new else []
    if scale == 1.0:  # one group, as the checkpoints of runs without the option have
        return [{"params": [p for p in model.parameters() if id(p) not in new_ids], "lr_scale": 1.0}, *extra]
    if scale == 0.0:
        model.backbone.requires_grad_(False)
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in new_ids]
        return [{"params": rest, "lr_scale": 1.0}, *extra]
    backbone = {id(p) for p in model.backbone.parameters()}
    enc = [p for p in model.parameters() if id(p) in backbone]
    rest = [p for p in model.parameters() if id(p) not in backbone and id(p) not in new_ids]
    return [{"params": enc, "lr_scale": scale}, {"params": rest, "lr_scale": 1.0}, *extra]


def load_init_weights(model, state: dict[str, torch.Tensor], new_modules: Sequence[str] = ()) -> None:
    """Fine-tuning start: `state` into `model`, strictly, except that parameters of the modules in
    `new_modules` (added to the architecture since `state` was saved) may be absent and then keep
    their initialisation (zero-initialised outputs, so the model starts as the old one did)."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    prefixes = tuple(f"{m}." for m in new_modules)
    bad = [k for k in missing if not (prefixes and k.startswith(prefixes))]
    if bad or unexpected:
        raise ConfigError(
            f"train.init does not fit the model: missing {bad[:5]}{'...' if len(bad) > 5 else ''}, "
            f"unexpected {list(unexpected)[:5]}{'...' if len(unexpected) > 5 else ''} "
            "(list modules new since that checkpoint in train.init_new_modules)"
        )
    if missing:
        print(f"new modules start from their initialisation: {sorted({k.split('.')[0] for k in missing})}", flush=True)


def save_checkpoint(path: Path, model, opt, step: int, history: list[dict[str, float]]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "history": history}, tmp)
    tmp.replace(path)


def make_optimizer(model, cfg: dict[str, Any]) -> torch.optim.AdamW:
    t = cfg["train"]
    return torch.optim.AdamW(param_groups(model, cfg), lr=float(t["lr"]), weight_decay=float(t["weight_decay"]))


def train(cfg: dict[str, Any], out: Path, data_dir: Path, resume: bool, log_every: int = 5) -> Path:
    """Run (or continue) training; returns the checkpoint path."""
    from vdepth_training.losses import gemdepth_loss

    torch.manual_seed(int(cfg["train"]["seed"]))
    torch.set_num_threads(int(cfg["train"].get("threads", 2)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    plan = stage_plan(cfg)  # before anything slow: a bad stage fails at once
    model = build_model(cfg).train()
    _alive_output(model)
    tcfg = cfg["train"]
    if tcfg.get("pretrained_encoder"):  # e.g. vda_lite: ImageNet EfficientNet-Lite0
        model.load_pretrained_encoder()
        print("encoder initialised from its pretrained weights", flush=True)
    opt = make_optimizer(model, cfg)
    ckpt = out / CKPT_NAME
    step, history = 0, []
    if tcfg.get("init") and not (resume and ckpt.is_file()):
        # fine-tuning: start from another run's weights (fresh optimizer, step 0)
        init = torch.load(Path(tcfg["init"]), map_location="cpu", weights_only=True)
        load_init_weights(model, init["model"], tcfg.get("init_new_modules") or ())
        print(f"initialised from {tcfg['init']}", flush=True)
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, history = int(state["step"]), list(state["history"])
        print(f"resumed at step {step}", flush=True)
    log = (out / "train.log").open("a")
    total = total_steps(cfg)
    if tcfg.get("stop_at"):  # end early on the same schedule (the shipped model records where)
        total = min(total, int(tcfg["stop_at"]))
    stage, data_key, datasets, clip_weights = None, None, None, {}
    t0 = time.time()
    while step < total:
        if stage is None or step >= stage.start + stage.steps:
            stage = stage_at(plan, step)
            if stage.restart and step == stage.start:  # (a resumed checkpoint inside the stage keeps its state)
                opt = make_optimizer(model, cfg)
            key = json.dumps(stage.cfg["data"], sort_keys=True)
            if key != data_key:  # render what the stage's data lacks, then index it
                datasets, data_key = make_dataset(stage.cfg, prepare_data(stage.cfg, data_dir)), key
            clip_weights = {k: float(stage.cfg["train"][k]) for k in CLIP_LOSS_KEYS if k in stage.cfg["train"]}
            if stage.index:
                print(f"stage {stage.index + 1}{' (restart)' if stage.restart else ''} at step {step}", flush=True)
        batch, _ = get_batch(datasets, step - stage.origin)  # a restart stage's batches count from its start
        batch = augment_batch(batch, stage.cfg, step - stage.origin)
        lr, enc_scale = lr_at(step, cfg), encoder_lr_scale_at(step, cfg)
        for group in opt.param_groups:  # lr_scale != 1 marks the encoder group (param_groups)
            group["lr"] = lr * group.get("new_scale", enc_scale if group["lr_scale"] != 1.0 else 1.0)
        pred = model(batch["frames"])
        loss, terms = gemdepth_loss(
            pred,
            batch["target"],
            batch["valid"],
            w_gm=stage.cfg["train"]["w_gm"],
            w_tgm=stage.cfg["train"]["w_tgm"],
            **clip_weights,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(tcfg["grad_clip"]))
        opt.step()
        step += 1
        rec = {
            "step": step,
            "loss": float(loss.detach()),
            **{k: float(v) for k, v in terms.items()},
            "lr": lr_at(step - 1, cfg),
        }
        history.append(rec)
        if step % log_every == 0 or step == total:
            rate = (time.time() - t0) / log_every
            t0 = time.time()
            line = json.dumps({**rec, "s_per_step": round(rate, 2)})
            print(line, flush=True)
            log.write(line + "\n")
            log.flush()
        if step % int(tcfg["checkpoint_every"]) == 0 or step == total:
            save_checkpoint(ckpt, model, opt, step, history)
    log.close()
    return ckpt


def finalize(cfg: dict[str, Any], ckpt: Path, out_dir: Path, weights_fp16: bool = False) -> Path:
    """Write `config.json` + `model.safetensors` of the checkpoint to `out_dir` (weights stored as
    float16 with `weights_fp16`, to fit the bundled model's size budget)."""
    model = build_model(cfg)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    model.eval().save_pretrained(out_dir, weights_dtype=torch.float16 if weights_fp16 else None)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/default", help="run folder (checkpoint, logs)")
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--data", default=None, help="synthetic data folder (default <out>/data)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    ap.add_argument("--steps", type=int, default=None, help="override train.steps")
    ap.add_argument("--finalize", default=None, metavar="DIR", help="write the model folder from the checkpoint")
    ap.add_argument("--weights-fp16", action="store_true", help="with --finalize: store the weights as float16")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    if args.steps is not None:
        cfg["train"]["steps"] = args.steps
    out = Path(args.out)
    if args.finalize:
        print(finalize(cfg, out / CKPT_NAME, Path(args.finalize), args.weights_fp16))
        return
    data = Path(args.data) if args.data else out / "data"
    train(cfg, out, data, args.resume)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
