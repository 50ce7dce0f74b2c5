"""Thread count of the BLAS that numpy loaded, set through threadpoolctl.

Why the node and the offline tools care: numpy's pip wheels ship OpenBLAS, which starts one
thread per core and splits even small calls (the stitcher's weighted fits are `float64` dot
products of ~40k elements) across them. After each call its threads busy-wait for more work. In
the node process that pool competes with the inference engine's own threads, the executor and the
worker for the same cores: measured on 2 cores (benchmarks/node_latency.py, default model), the
OpenBLAS thread burnt ~35 % of a core spinning and the stitching step took 5-8x longer, so the
worker fell behind at 15 Hz. With one BLAS thread the same work runs in the caller and takes ~2 ms
per frame.

threadpoolctl finds every BLAS loaded in the process (OpenBLAS under any of its symbol prefixes,
MKL, BLIS, FlexiBLAS) and sets it process-wide; with none loaded, nothing is changed and an empty
result says so.
"""

from __future__ import annotations

import os
from pathlib import Path


def _blas_libraries() -> list[dict]:
    import numpy  # noqa: F401  (make sure numpy's BLAS is loaded before threadpoolctl looks)
    from threadpoolctl import threadpool_info

    return [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]


def blas_threads() -> dict[str, int]:
    """Current thread count of every loaded BLAS, by library file name."""
    return {Path(lib["filepath"]).name: int(lib["num_threads"]) for lib in _blas_libraries()}


def set_blas_threads(n: int) -> dict[str, int]:
    """Set every loaded BLAS to `n` threads (process-wide); returns the previous counts.

    Args:
        n: threads (>= 1).

    Raises:
        ValueError: n < 1.
    """
    if int(n) < 1:
        raise ValueError(f"BLAS threads must be >= 1, got {n}")
    from threadpoolctl import threadpool_limits

    before = blas_threads()
    if before:
        threadpool_limits(limits=int(n), user_api="blas")  # not used as a context: the limit stays
    return before


def limit_blas_threads_for_tool(n: int = 1) -> dict[str, int]:
    """What every vdepth command-line tool calls first: BLAS at `n` threads (see module doc),
    unless the user chose a count with `OPENBLAS_NUM_THREADS`; returns the previous counts
    (empty if nothing was changed). `n` = 0 leaves the pool as it is (the node's `blas_threads: 0`)."""
    if n <= 0 or os.environ.get("OPENBLAS_NUM_THREADS"):
        return {}
    return set_blas_threads(n)
