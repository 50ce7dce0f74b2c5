"""`python -m vdepth_training.data.synthetic`: render a synthetic dataset or the demo clip."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vdepth_training.data.synthetic.materials import STYLES
from vdepth_training.data.synthetic.writer import check_rendered_with, write_sample_video, write_synthetic_dataset

from vdepth_ros.errors import VdepthError
from vdepth_ros.paths import expand_home

PROG = "python -m vdepth_training.data.synthetic"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m vdepth_training.data.synthetic --out DIR --seeds 0:1000 [--frames 24 --size 192 256]`."""
    import argparse

    from vdepth_ros.offline.runner import cli_errors

    ap = argparse.ArgumentParser(prog=PROG, description=main.__doc__)
    ap.add_argument("--out", default=None, help="dataset folder (required unless --sample)")
    ap.add_argument("--seeds", default="0:100", help="start:stop (half-open)")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, nargs=2, default=(192, 256), metavar=("H", "W"))
    ap.add_argument("--style", default="basic", choices=sorted(STYLES), help="scene/material distribution")
    ap.add_argument("--sample", default=None, help="write the demo sample clip (MP4 + sidecars) here instead")
    args = ap.parse_args(argv)
    expand_home(args)
    if not args.sample and not args.out:
        ap.error("--out is required (or --sample)")
    try:
        if args.sample:
            print(write_sample_video(args.sample))
            return 0
        a, b = (int(x) for x in args.seeds.split(":"))
        check_rendered_with(Path(args.out), range(a, b), args.frames, *args.size, args.style)  # before any clip
        for s in range(a, b):
            write_synthetic_dataset(args.out, [s], args.frames, *args.size, style=args.style)
            if (s - a) % 50 == 0:
                print(f"seed {s} done", flush=True)
    except (VdepthError, KeyboardInterrupt) as err:  # a full disk: one line, not a traceback
        return cli_errors(PROG, err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
