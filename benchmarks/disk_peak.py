"""Peak disk use of a command's temporary files: runs it with TMPDIR set to a fresh folder and
samples that folder's size until it exits.

    .venv/bin/python benchmarks/disk_peak.py -- make test

The test suite writes its tmp_path folders, bags, checkpoints, exports and ROS logs under TMPDIR;
this is the number `docs/install.md` gives for the free disk `make test` needs. Files written
elsewhere (`/dev/shm`, the user's caches) are not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def folder_bytes(root: Path) -> int:
    """Bytes allocated under `root` (files vanish while it is walked: those are skipped)."""
    total = 0
    for dirpath, _, files in os.walk(root, onerror=lambda _err: None):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--every", type=float, default=2.0, help="seconds between samples (default 2)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the command after --")
    root = Path(tempfile.mkdtemp(prefix="vdepth-disk-"))
    peak, peak_at, start = 0, 0.0, time.monotonic()
    try:
        proc = subprocess.Popen(command, env={**os.environ, "TMPDIR": str(root)})
        while proc.poll() is None:
            size = folder_bytes(root)
            if size > peak:
                peak, peak_at = size, time.monotonic() - start
            time.sleep(args.every)
        left = folder_bytes(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"peak {peak / 2**30:.2f} GiB under TMPDIR at {peak_at / 60:.1f} min; "
        f"{left / 2**30:.2f} GiB left at exit; exit code {proc.returncode}; "
        f"{(time.monotonic() - start) / 60:.1f} min",
        flush=True,
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
