"""The exported ONNX file after the exporter: constant folding, float16 weight storage, external
data for graphs over the protobuf limit, the checker, and the graph's symbolic axes.

Shared by `export_onnx` (one graph) and `export_split` (the split graphs of exact reuse).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from vdepth_ros.errors import VdepthError
from vdepth_ros.runtime.trt_cache import external_data_path

log = logging.getLogger(__name__)


class ExportError(VdepthError):
    """Export failed, or the exported graph does not match PyTorch."""


def finalize_graph(raw: Path, path: Path, threshold: int, weights_fp16: bool = False) -> str | None:
    """Re-save the exporter's `raw` graph as `path`, weights in `path.data` when over `threshold`
    bytes; run the checker. Returns the name of the file the weights went to (`path.data`), None when
    they are in the graph: the caller records it in the graph's spec (`trt_cache.EXTERNAL_DATA_KEY`).

    `path` is a staged file (`AtomicOutput`, with `path.data` among its companions): the callers
    move it into place only once it and everything beside it is complete, so a graph that fails the
    checker never replaces a working one.

    Raises:
        ExportError: the graph fails the ONNX checker (the checker's message).
    """
    import onnx

    proto = onnx.load(str(raw), load_external_data=True)
    weight_bytes = sum(len(t.raw_data) for t in proto.graph.initializer)
    proto = _fold_constants(proto, shape_inference=weight_bytes < threshold)
    if weights_fp16:
        proto = store_weights_fp16(proto)
    external = weight_bytes >= threshold
    if external:  # the graph records the data file's name: `path`'s own, kept when moved into place
        onnx.save_model(
            proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
            location=external_data_path(path).name, size_threshold=1024,
        )  # fmt: skip
        # onnx creates the data file for its owner alone (0600) where the graph beside it has the umask's
        # mode: a node or container of another user read the graph and failed on its weights
        shutil.copymode(path, external_data_path(path))
    else:
        onnx.save_model(proto, str(path))
    try:
        onnx.checker.check_model(str(path))  # path form: handles external data and > 2 GB
    except onnx.checker.ValidationError as err:
        first = str(err).strip().splitlines()[0]
        raise ExportError(f"the exported graph fails the ONNX checker ({first}); nothing was replaced") from None
    return external_data_path(path).name if external else None


def store_weights_fp16(proto: Any, min_elements: int = 16) -> Any:
    """Store float32 initializers (of at least `min_elements` values) whose values are all exactly
    representable in float16 as float16, read through a `Cast(to=FLOAT)` node under the old name.

    Lossless by construction: the graph computes exactly what it computed before, in float32
    (ONNX Runtime folds the casts when it loads the model). It shrinks a file when the model's
    weights were rounded to float16 first (`save_pretrained(weights_dtype=torch.float16)`);
    initializers the exporter computed from several weights (a BatchNorm folded into a conv) are
    not float16 values and stay float32.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    keep, casts = [], []
    for init in proto.graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            keep.append(init)
            continue
        w = numpy_helper.to_array(init)
        w16 = w.astype(np.float16)
        if not np.array_equal(w16.astype(np.float32), w):  # not a float16 value: keep it exact
            keep.append(init)
            continue
        half = numpy_helper.from_array(w16, name=init.name + "__fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
    nodes = list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(casts + nodes)  # casts first: the graph stays topologically sorted
    return proto  # `finalize_graph` runs the checker on the saved file


def _fold_constants(proto: Any, *, shape_inference: bool) -> Any:
    """Fold constant subgraphs the exporter left (the legacy exporter misses e.g. `1 / buffer`).

    Only onnxscript's constant folding and dead-node removal run: its full `optimize()` (rewrite
    rules, repeated passes) took 124-334 s on the tiny one-step/DepthCrafter graphs (10-17k
    nodes), folding alone about 1 s. Large constant generators (`ConstantOfShape` over the size
    limit) are left unfolded on purpose.
    """
    try:
        import onnx_ir as ir
        from onnx_ir.passes.common import RemoveUnusedNodesPass
        from onnxscript import optimizer
    except ImportError:
        log.warning("onnxscript not installed: only the exporter's own constant folding was applied")
        return proto
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    model = ir.serde.deserialize_model(proto)
    noisy = logging.getLogger("onnxscript.optimizer._constant_folding")  # one warning per skipped node
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        optimizer.fold_constants(model, onnx_shape_inference=shape_inference)
    finally:
        noisy.setLevel(level)
    RemoveUnusedNodesPass()(model)
    folded = ir.serde.serialize_model(model)
    if ([i.name for i in folded.graph.input], [o.name for o in folded.graph.output]) != names:
        raise ExportError(f"constant folding renamed the graph IO {names}")
    return folded


def dynamic_axes_of(onnx_path: Path) -> dict[str, list[int]]:
    """Graph IO name -> axes that are symbolic (not a fixed size)."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    out: dict[str, list[int]] = {}
    for vi in list(proto.graph.input) + list(proto.graph.output):
        dims = vi.type.tensor_type.shape.dim
        axes = [i for i, d in enumerate(dims) if not d.HasField("dim_value") or d.dim_value <= 0]
        if axes:
            out[vi.name] = axes
    return out
