"""Thread count of the OpenBLAS that numpy loaded (no threadpoolctl dependency).

Why the node and the offline tools care: numpy's pip wheels ship OpenBLAS, which starts one
thread per core and splits even small calls (the stitcher's weighted fits are `float64` dot
products of ~40k elements) across them. After each call its threads busy-wait for more work. In
the node process that pool competes with the inference engine's own threads, the executor and the
worker for the same cores: measured on 2 cores (benchmarks/node_latency.py, default model), the
OpenBLAS thread burnt ~35 % of a core spinning and the stitching step took 5-8x longer, so the
worker fell behind at 15 Hz. With one BLAS thread the same work runs in the caller and takes ~2 ms
per frame.

Linux only (reads `/proc/self/maps`); elsewhere, or for a BLAS other than OpenBLAS, nothing is
changed and an empty result says so.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

#: (setter, getter) symbol pairs across OpenBLAS builds: plain, 64-bit-int, numpy/scipy wheels.
_SYMBOLS: tuple[tuple[str, str], ...] = (
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
)


def _loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS shared libraries mapped into this process."""
    import numpy  # noqa: F401  (make sure numpy's BLAS is the one we find)

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = {line.split(None, 5)[-1] for line in maps.splitlines() if line.count(" ") >= 5}
    return sorted(p for p in paths if "openblas" in Path(p).name.lower() and ".so" in Path(p).name)


def _pools() -> list[tuple[str, object, object]]:
    """(library file name, setter, getter) of every loaded OpenBLAS that exports a thread API."""
    pools = []
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same handle, nothing new is loaded
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            setter, getter = getattr(lib, set_name, None), getattr(lib, get_name, None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                pools.append((Path(path).name, setter, getter))
                break
    return pools


def blas_threads() -> dict[str, int]:
    """Current thread count of every loaded OpenBLAS, by library file name."""
    return {name: int(getter()) for name, _setter, getter in _pools()}


def set_blas_threads(n: int) -> dict[str, int]:
    """Set every loaded OpenBLAS to `n` threads (process-wide); returns the previous counts.

    Args:
        n: threads (>= 1).

    Raises:
        ValueError: n < 1.
    """
    if int(n) < 1:
        raise ValueError(f"BLAS threads must be >= 1, got {n}")
    before = {}
    for name, setter, getter in _pools():
        before[name] = int(getter())
        setter(int(n))
    return before


def limit_blas_threads_for_tool(n: int = 1) -> dict[str, int]:
    """What every vdepth command-line tool calls first: OpenBLAS at `n` threads (see module doc),
    unless the user chose a count with `OPENBLAS_NUM_THREADS`; returns the previous counts
    (empty if nothing was changed). `n` = 0 leaves the pool as it is (the node's `blas_threads: 0`)."""
    import os

    if n <= 0 or os.environ.get("OPENBLAS_NUM_THREADS"):
        return {}
    return set_blas_threads(n)
