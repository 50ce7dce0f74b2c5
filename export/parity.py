"""Inputs and numbers for ONNX-vs-PyTorch parity reports.

Two different real clips come from `../shared/evaldata` (research-only data, read at export time,
never copied); without it, two deterministic synthetic clips are used. Clips are uint8 RGB
`(T, H, W, 3)` and go through `DepthEngine.infer`, i.e. the same scaling and padding as in use.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vdepth_ros.encodings import read_image_file

log = logging.getLogger(__name__)

# (name, glob relative to evaldata) of real consecutive video frames, in preference order.
REAL_SOURCES: tuple[tuple[str, str], ...] = (
    ("7scenes", "7scenes_tsdf_fusion/data/frame-*.color.jpg"),
    ("hololens", "dvmvs_hololens_000/sample-data/hololens-dataset/*/images/*.png"),
    ("nyu_0", "deepv2d_demo_clips/data/demos/nyu_0/*.png"),
    ("nyu_1", "deepv2d_demo_clips/data/demos/nyu_1/*.png"),
)
# Allowed ONNX-vs-torch max-abs difference relative to the torch output range, per precision.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 3e-2}


def _read_resized(path: Path, height: int, width: int) -> np.ndarray | None:
    import cv2

    bgr = read_image_file(path, cv2.IMREAD_COLOR)  # a JPEG cut short is None, not half grey
    if bgr is None:
        return None
    bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def real_clips(evaldata: Path, frames: int, height: int, width: int, count: int = 2) -> list[tuple[str, np.ndarray]]:
    """Up to `count` clips of `frames` consecutive frames from different real sequences."""
    clips: list[tuple[str, np.ndarray]] = []
    for name, pattern in REAL_SOURCES:
        files = sorted(evaldata.glob(pattern))
        if len(files) < frames:
            continue
        imgs = [_read_resized(f, height, width) for f in files[:frames]]
        if any(i is None for i in imgs):
            continue
        clips.append((f"evaldata:{name}", np.stack(imgs)))  # type: ignore[arg-type]
        if len(clips) == count:
            break
    return clips


def synthetic_clip(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """Deterministic moving textured pattern (smooth gradients, edges and noise), uint8 RGB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    freq = rng.uniform(0.05, 0.2, size=3)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    noise = rng.normal(0, 12, size=(height, width, 3))
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        shift = 2.0 * t
        chans = [
            127 + 100 * np.sin(freq[c] * (xx + shift) + phase[c]) * np.cos(freq[(c + 1) % 3] * yy) for c in range(3)
        ]
        img = np.stack(chans, -1)
        box = (np.abs(xx - width / 2 - shift) < width / 6) & (np.abs(yy - height / 2) < height / 5)
        img[box] = 255 - img[box]
        out[t] = np.clip(img + noise, 0, 255).astype(np.uint8)
    return out


def parity_clips(
    frames: int, height: int, width: int, evaldata: Path | None, count: int = 2
) -> list[tuple[str, np.ndarray]]:
    """`count` different clips: real ones first, deterministic synthetic ones to fill up."""
    clips = real_clips(evaldata, frames, height, width, count) if evaldata is not None else []
    seed = 0
    while len(clips) < count:
        clips.append((f"synthetic:seed{seed}", synthetic_clip(frames, height, width, seed)))
        seed += 1
    return clips


@dataclass(frozen=True)
class ParityStats:
    """One comparison of a candidate output against a reference output."""

    name: str
    shape: tuple[int, ...]
    max_abs: float
    mean_abs: float
    ref_range: float
    max_abs_rel: float
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


def compare(name: str, ref: np.ndarray, out: np.ndarray, tolerance_rel: float) -> ParityStats:
    """max/mean abs difference, and max-abs relative to the reference's value range."""
    ref = np.asarray(ref, np.float64)
    out = np.asarray(out, np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"{name}: shapes differ, reference {ref.shape} vs {out.shape}")
    diff = np.abs(ref - out)
    finite = bool(np.isfinite(out).all())
    rng = float(ref.max() - ref.min()) if ref.size else 0.0
    scale = rng if rng > 0 else max(float(np.abs(ref).max(initial=0.0)), 1e-12)  # constant output: its magnitude
    max_abs = float(diff.max()) if finite else float("inf")
    rel = max_abs / scale
    return ParityStats(
        name=name,
        shape=tuple(ref.shape),
        max_abs=max_abs,
        mean_abs=float(diff.mean()) if finite else float("inf"),
        ref_range=rng,
        max_abs_rel=rel,
        passed=finite and rel <= tolerance_rel,
    )


#: why a report whose every reference is one constant fails: any graph that outputs that value would "pass"
CONSTANT_OUTPUT = "the model's output is constant: parity says nothing"


def parity_report(
    reference: str, tolerance_rel: float, checks: list[dict[str, Any]], *, skipped: str | None = None
) -> dict[str, Any]:
    """The report of a list of `compare(...).to_dict()` checks against `reference`, the one rule of every export
    (window, split, stream): passed when every check passed and none is infinite, and the reference output is
    not one constant on every input: such agreement is refused (`CONSTANT_OUTPUT`: a random tiny model whose
    last ReLU clips every pixel agrees with any graph that outputs that value); None when `skipped`
    (why no check ran). `failure` says why it failed, in words (the strict exports' error, the runtime's warning)."""
    constant = sorted(c["name"] for c in checks if c["ref_range"] == 0.0)
    if 0 < len(constant) < len(checks):
        log.warning(
            "parity: the PyTorch reference output is constant on %d of %d inputs (%s); those checks only compare "
            "one value", len(constant), len(checks), ", ".join(constant[:3]),
        )  # fmt: skip
    worst = max((c["max_abs_rel"] for c in checks), default=None)
    failure: str | None = None
    if skipped is None and not checks:
        skipped = "no parity input was checked"
    if skipped is None and not (all(c["passed"] for c in checks) and np.isfinite(worst)):
        bad = max(checks, key=lambda c: c["max_abs_rel"])
        failure = (
            f"max-abs {bad['max_abs']:.3g} ({bad['max_abs_rel']:.3g} of the output range > {tolerance_rel}) "
            f"on {bad['name']}"
        )
    elif skipped is None and len(constant) == len(checks):  # a difference found above is evidence; agreeing is not
        failure = f"{CONSTANT_OUTPUT} (every input: {', '.join(constant[:3])}{', ...' if len(constant) > 3 else ''})"
    return {
        "reference": reference,
        "tolerance_rel": tolerance_rel,
        "checks": checks,
        "max_abs_rel": worst,
        "constant_reference": constant,
        "constant_output": failure is not None and failure.startswith(CONSTANT_OUTPUT),
        "passed": None if skipped else failure is None,
        "failure": failure,
        "skipped": skipped,
    }
