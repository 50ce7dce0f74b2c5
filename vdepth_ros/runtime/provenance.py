"""Which model ran: a model folder's recorded provenance (the release and revisions `vdepth-export
pull` wrote in its `release.json`) and the identity the node's start-up line, /diagnostics and the
offline tools' summaries show (`model_identity`: family, file, backend, precision).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vdepth_ros.paths import PROVENANCE_NAME


def cached_revisions(folder: Path) -> dict[str, str]:
    """`repo -> "revision (commit)"` of the files a pull recorded in `folder`'s `release.json`; empty
    for a folder imported by hand or recorded before revisions were."""
    try:
        files = json.loads((folder / PROVENANCE_NAME).read_text())["files"]
        out = {}
        for f in files:
            commit = f.get("commit")
            rev = str(f["revision"])
            out[str(f["repo"])] = f"{rev} ({commit})" if commit and commit != rev else rev
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def model_identity(model: str | Path | None, engine: Any) -> dict[str, str]:
    """What tells which model ran (the node's start-up line and /diagnostics, the offline tools'
    summaries): the model as loaded, its family, the release and revisions a pull recorded in its
    folder, the file the backend runs (with its size and modification time: two exports of one
    folder differ there), the backend and the precision.

    Args:
        model: the model folder or file the engine was built from (`PipelineConfig.resolved_model`),
            or None for an engine given in code (its own file, if it names one, is used).
        engine: the `DepthEngine` (its `describe()` and `input_spec`).
    """
    import time

    info = engine.describe() if hasattr(engine, "describe") else {}
    path = Path(model) if model is not None else (Path(info["path"]) if info.get("path") else None)
    folder = path if path is not None and path.is_dir() else (path.parent if path is not None else None)
    revisions = cached_revisions(folder) if folder is not None else {}
    try:
        name = json.loads((folder / PROVENANCE_NAME).read_text())["name"] if folder is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        name = None
    release = f"{name} ({', '.join(f'{r}@{v}' for r, v in revisions.items())})" if name and revisions else name
    runs = Path(info["path"]) if info.get("path") else (folder / "model.safetensors" if folder is not None else None)
    file = "none (built in code)"
    if runs is not None:
        try:
            st = runs.stat()
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(st.st_mtime))
            size = f"{st.st_size / 1e6:.1f} MB" if st.st_size >= 100_000 else f"{st.st_size} bytes"
            file = f"{runs} ({size}, modified {when})"
        except OSError:
            file = str(runs)
    where = info.get("providers") or info.get("device")
    backend = str(getattr(engine, "backend", "") or type(engine).__name__)
    spec = engine.input_spec
    return {
        "model": str(path) if path is not None else "an engine given in code",
        "model family": str(spec.family),
        # a metric and a relative release are one network: what the config says is the only difference
        "model output": "metric depth in metres" if spec.output_kind == "depth" else "relative disparity, no unit",
        "model release": release or "none recorded (not pulled with vdepth-export pull)",
        "model file": file,
        "backend": f"{backend} ({', '.join(where) if isinstance(where, list) else where})" if where else backend,
        "precision": str(spec.precision),
    }
