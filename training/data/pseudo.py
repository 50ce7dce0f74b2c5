"""Real images without depth, and pseudo-labels for them from a depth model (FiffDepth's t = −1 data).

FiffDepth supervises its t = −1 pass with Depth Anything V2-Large pseudo-labels on real images
(LAION-Art, 200K; FiffDepth §4.1). Here the images are a folder read by `layout: images` (one
single-frame sequence per image, no target), and the labels come from any `vdepth_ros` model
folder (`PseudoLabeler`), either on the fly during training (cached in the latent cache by clip
content) or written once in the sequence format, into a new folder (`--overwrite` replaces an
earlier output), by

    python -m vdepth_training.data.pseudo --images data/laion_art --model models/<labeller> --out data/laion_pseudo

and read back with `layout: sequence` (the labels are the sequences' disparity targets).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from collections.abc import Sequence as SequenceABC
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from vdepth_training.data.sequence import Sequence, not_sequences, write_sequences

from vdepth_ros.encodings import read_image_file
from vdepth_ros.offline.video_source import IMAGE_SUFFIXES, is_image_file  # vdepth-video's image files
from vdepth_ros.paths import expand_home
from vdepth_ros.resize import working_size
from vdepth_ros.runtime.shapes import DEFAULT_RESOLUTION

#: how the size labels are computed at is chosen (`PseudoLabeler.working_size`): part of the latent
#: cache's producer fingerprint (`label_size_key`), so entries labelled under another rule
#: (earlier versions ran each image at its own size) are computed again, never reused
LABEL_SIZE_RULE = ("pseudo-label size", "working_size lower_bound", DEFAULT_RESOLUTION)


def label_size_key(model_dir: str | Path) -> tuple[Any, ...]:
    """What, besides the image, sets the size the labeller `model_dir` labels at: `LABEL_SIZE_RULE`
    and the model's default working size and stride (`spec_from_model`), read from its `config.json`
    alone (built on the meta device: no weights read), so a change of either (another `_trained`
    size, a family's stride or default) gives other cache entries. Just the rule when the folder
    cannot be read that way (the labeller's own load reports why)."""
    from vdepth_ros.models import TRAINED_KEY, build_model, read_config
    from vdepth_ros.runtime.registry import resolve_model
    from vdepth_ros.runtime.shapes import spec_from_model

    try:
        cfg = read_config(Path(resolve_model(str(model_dir))))
        family = cfg.pop("_family")
        cfg.pop("_class_name", None)
        trained = cfg.pop(TRAINED_KEY, None)
        with torch.device("meta"):
            model = build_model(family, **cfg)
        model.trained = trained
        spec = spec_from_model(model)
    except Exception:  # no config, a release not imported, a constructor that needs real tensors
        return LABEL_SIZE_RULE
    return (*LABEL_SIZE_RULE, (spec.height, spec.width), spec.multiple_of)


log = logging.getLogger(__name__)


class ImageSequence:
    """One image as a single-frame sequence with no depth (`valid` all false)."""

    target_kind = "disparity"  # no depth: labels, when a labeller adds them, are disparity

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name

    def __len__(self) -> int:
        return 1

    @property
    def files(self) -> list[Path]:
        """The image (`Source.contents` fingerprints it)."""
        return [self.path]

    def read(self, indices: SequenceABC[int] | np.ndarray | None = None) -> Sequence:
        import cv2

        bgr = read_image_file(self.path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read image {self.path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[None]
        shape = rgb.shape[:3]
        return Sequence(rgb=rgb, target=np.zeros(shape, np.float32), valid=np.zeros(shape, bool),
                        target_kind="disparity", metric=False, name=self.name, source="images")  # fmt: skip


def load_images(root: str | Path) -> list[ImageSequence]:
    """Every image under `root` (recursively, sorted), each a single-frame sequence."""
    root = Path(root)
    paths = sorted(p for p in root.rglob("*") if is_image_file(p))
    return [ImageSequence(p, f"images/{p.relative_to(root).as_posix()}") for p in paths]


class PseudoLabeler:
    """A frozen `vdepth_ros` model that labels images with relative disparity.

    Each image runs at the model's working size for it, as the node and the offline tools run the
    model (`vdepth_ros.resize.working_size` around `runtime.shapes.spec_from_model`'s default: the
    size its training recorded in `config.json`'s `_trained`, else the family's default), not at the
    image's own size: a 1920x1080 image is labelled at about the labeller's trained size, not at
    ~1092x1918, far outside what it was trained on. The prediction (a one-frame clip) is resized
    back to the image; depth outputs are inverted.

    Args:
        model_dir: a model folder `vdepth_ros.models.load_model` reads (the paper used Depth
            Anything V2-Large; any relative-depth model folder works), or a pulled release's name
            (`vda-large`), resolved as `model:` is (`runtime.registry.resolve_model`).
        device: torch device the model runs on ("cpu", "cuda", "cuda:1"); None: the GPU when torch
            sees one, else the CPU.

    Raises:
        BackendUnavailableError: a CUDA device asked for and torch sees no GPU.
        ConfigError: `device` is not a torch device.
    """

    def __init__(self, model_dir: str | Path, device: str | None = None) -> None:
        from vdepth_ros.errors import BackendUnavailableError, ConfigError
        from vdepth_ros.models import load_model
        from vdepth_ros.runtime.registry import resolve_model
        from vdepth_ros.runtime.shapes import spec_from_model

        try:
            dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        except RuntimeError:
            raise ConfigError(f"device must be a torch device (cpu, cuda, cuda:1), got {device!r}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(f"device {str(dev)!r} asked for but torch sees no CUDA GPU; use --device cpu")
        self.model = load_model(resolve_model(str(model_dir))).eval().requires_grad_(False).to(dev)
        spec = spec_from_model(self.model)
        #: the working size the model defaults to (its pixel budget sets each image's size)
        self.default_size: tuple[int, int] = (spec.height, spec.width)
        self.multiple: int = spec.multiple_of

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the model labels a `height x width` image at (keeps its aspect)."""
        return working_size(height, width, fixed=None, default=self.default_size, multiple=self.multiple)

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, H, W) disparity (larger = nearer)."""
        model = self.model
        limits = model.input_constraints
        h, w = frames.shape[-2:]
        size = self.working_size(h, w)
        lo, hi = limits.value_range
        device = next(model.parameters()).device
        out = []
        for frame in frames.to(device, torch.float32):
            x = F.interpolate(frame[None], size=size, mode="bilinear", align_corners=False)
            pred = model.predict((lo + (hi - lo) * x).clamp(lo, hi))  # (1, h', w')
            if limits.output_kind == "depth":
                pred = 1.0 / pred.clamp_min(1e-6)
            out.append(F.interpolate(pred[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0])
        return torch.stack(out).to(frames.device)


def write_pseudo_labels(
    images: str | Path, model_dir: str | Path, out: str | Path, *, overwrite: bool = False, device: str | None = None
) -> list[Path]:
    """Label every image of `images` with the model `model_dir` and write each as a one-frame
    sequence (target = disparity) in the new folder `out` (`write_sequences`: renamed into place
    when every image is labelled, so labels of two models or two image sets are never mixed);
    returns the sequence folders. `device`: as `PseudoLabeler`'s (None: the GPU when there is one).

    Raises:
        ConfigError: no image under `images`, or none of them readable.
        OutputExistsError: `out` exists and `overwrite` is false, or it is not a folder of sequences.
        OfflineError: `out` overlaps `images` or `model_dir`.
    """
    from vdepth_ros.errors import ConfigError
    from vdepth_ros.offline.atomic import check_output_path

    seqs = load_images(images)
    if not seqs:
        raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {images}")
    inputs = [Path(images), Path(model_dir)]
    check_output_path(Path(out), overwrite=overwrite, inputs=inputs, replaceable=not_sequences)  # before the model
    labeler = PseudoLabeler(model_dir, device)

    def labelled() -> Iterator[Sequence]:
        read = 0
        for seq in seqs:
            try:
                clip = seq.read()
            except OSError as err:  # one damaged file does not cost the labels of all the others
                log.warning("%s; skipped", err)
                continue
            read += 1
            frames = torch.from_numpy(clip.rgb).permute(0, 3, 1, 2).float() / 255.0
            disparity = labeler(frames).cpu().numpy().astype(np.float32)
            yield Sequence(rgb=clip.rgb, target=disparity, valid=np.ones(disparity.shape, bool),
                           target_kind="disparity", metric=False, name=seq.name, source="pseudo")  # fmt: skip
        if not read:  # an empty output would "succeed" and fail the training that reads it
            raise ConfigError(f"none of the {len(seqs)} images under {images} could be read (see the warnings); "
                              f"nothing written to {out}")  # fmt: skip

    return write_sequences(out, labelled(), overwrite=overwrite, inputs=inputs)


def main(argv: list[str] | None = None) -> int:
    """Exit status 2 with one line for a mistake (no images, an existing output, a bad model folder)."""
    from vdepth_ros.errors import VdepthError
    from vdepth_ros.offline.runner import cli_errors

    prog = "python -m vdepth_training.data.pseudo"
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, type=Path, help="folder of real images (searched recursively)")
    ap.add_argument(
        "--model", required=True, help="vdepth_ros model folder or pulled release name (vda-large) that labels them"
    )
    ap.add_argument("--out", required=True, type=Path, help="output folder (new; sequence format)")
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier output (a folder of sequences)")
    ap.add_argument(
        "--device", default=None, help="torch device of the labeller: cpu, cuda, cuda:1 (default: the GPU if any)"
    )
    args = ap.parse_args(argv)
    expand_home(args)
    try:
        written = write_pseudo_labels(args.images, args.model, args.out, overwrite=args.overwrite, device=args.device)
    except (VdepthError, FileNotFoundError, KeyboardInterrupt) as err:
        return cli_errors(prog, err)
    print(f"{len(written)} labelled images in {args.out}")
    return 0


__all__ = ["LABEL_SIZE_RULE", "ImageSequence", "PseudoLabeler", "label_size_key", "load_images", "write_pseudo_labels"]

if __name__ == "__main__":
    raise SystemExit(main())
