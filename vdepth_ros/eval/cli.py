"""`vdepth-eval`: the papers' video-depth protocol on real RGB-D video, model and baselines in one run.

For every sequence of every requested dataset it evaluates (see `metrics.py` for the protocol):

* `constant` and `row ramp` - trivial baselines (no model);
* `model offline` - `DepthPipeline.run_offline` (all windows, global affine solve);
* `model stream` - the causal pipeline (`push` + `flush`, what the live node publishes);
* `model per-frame` - the same engine on one frame at a time (T = 1), no stitching.

It writes `results.json` and `results.md` (table + goal checks) to `--out` and prints the table. The
options, the data and the output folder are checked before any work; existing results are kept
unless `--overwrite`.

    vdepth-eval --datasets 7scenes hololens --out out/eval
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vdepth_ros.errors import ConfigError, ModelLoadError
from vdepth_ros.eval.datasets import DATASETS, EvalDataError, EvalSequence, dataset_dir, load_dataset
from vdepth_ros.eval.metrics import (
    DepthMetrics,
    constant_prediction,
    evaluate_metric,
    evaluate_per_frame_fit,
    evaluate_sequence,
    row_ramp_prediction,
)
from vdepth_ros.eval.report import prepare_output, write_report
from vdepth_ros.eval.runs import (
    NoMetricFitError,
    _single_frame_engine,
    make_pipeline,
    measure_engine_fps,
    run_offline,
    run_per_frame,
    run_stream,
)
from vdepth_ros.paths import expand_home

log = logging.getLogger("vdepth.eval")

#: Frames per dataset in the default run (the issue's protocol: 7-Scenes 300, HoloLens 120).
DEFAULT_FRAMES = {"7scenes": 300, "hololens": 120}
#: GT subsampling per dataset (7-Scenes RGB and depth are not precisely registered: evaluate at half res).
DEFAULT_STRIDE = {"7scenes": 2, "hololens": 1, "kitti": 1, "nyu": 1}
BASELINES = ("constant", "row ramp")
POSE_ROW = "model stream + points triangulated with GT poses"
#: rows of metric output scored as they are (`metrics.evaluate_metric`), next to their protocol row
METRIC_SUFFIX = ", metric (no alignment)"


def evaluate(
    datasets: list[str],
    evaldata: Path,
    *,
    model: str | None = None,
    backend: str = "auto",
    frames: dict[str, int] | None = None,
    stream: bool = True,
    per_frame: bool = True,
    with_model: bool = True,
    threads: int | None = None,
    size: tuple[int, int] | None = None,
    per_frame_fit: bool = False,
    sparse_points: int = 0,
    params_file: str | Path | None = None,
    pose_points: bool = False,
) -> dict[str, Any]:
    """Run the evaluation; returns the JSON-able results dict (see `report.write_report`).

    `sparse_points` > 0 adds the row "model stream + N sparse GT points": the causal pipeline with
    `scale_source: sparse` fed N GT depths per frame, as a sparse depth sensor would (not a goal row).
    `pose_points` adds "model stream + points triangulated with GT poses": the same, fed depths
    triangulated from the video with the GT camera poses, as robot odometry would (not a goal row).
    Each of the two also gets a row "..., metric (no alignment)": its metric output scored as it is,
    without the per-sequence fit (`metrics.evaluate_metric`).

    `size` (H, W) sets the model's working resolution; only the torch backend can change it (an
    exported graph has a fixed size), so it requires `backend="torch"`. `per_frame_fit` adds the
    diagnostic row "model offline, affine per frame" (`evaluate_per_frame_fit`; same predictions).
    `params_file` is the node parameter YAML the offline and stream runs use (default: the bundled
    `config/depth.yaml`), e.g. to score another `alignment`.
    """
    # 1. Check the options; read the node's parameters (ConfigError on a bad file) before any work.
    from vdepth_ros.offline.runner import default_params_path

    node_params = _check_options(backend=backend, size=size, params_file=params_file)
    results: dict[str, Any] = {"datasets": {}, "meta": {"model": None, "backend": None}}
    results["meta"]["params_file"] = str(params_file) if params_file else str(default_params_path())
    # 2. The engines under evaluation (none for the baselines only), described in the meta.
    opts = _EvalRuns(
        node_params=node_params,
        stream=stream,
        per_frame=per_frame,
        per_frame_fit=per_frame_fit,
        sparse_points=sparse_points,
        pose_points=pose_points,
    )
    if with_model:
        opts.engine, opts.single = _load_engines(model, backend, threads, size, node_params, results["meta"])
    results["meta"]["machine"] = {"cpu_count": __import__("os").cpu_count(), "python": platform.python_version()}
    # 3. Every dataset: every method on every sequence, then the means and goal checks.
    frames = {**DEFAULT_FRAMES, **(frames or {})}
    for name in datasets:
        results["datasets"][name] = _evaluate_dataset(name, evaldata, frames, opts)
    return results


def check_inputs(
    datasets: list[str],
    evaldata: Path,
    *,
    backend: str = "auto",
    size: tuple[int, int] | None = None,
    params_file: str | Path | None = None,
) -> dict[str, Any]:
    """What can be checked without running anything (the CLI's first step); returns the node parameters.

    Raises:
        ConfigError: a working size without the torch backend; a missing or invalid parameter file.
        EvalDataError: a requested dataset's folder is not in `evaldata`.
    """
    node_params = _check_options(backend=backend, size=size, params_file=params_file)
    for name in datasets:
        dataset_dir(name, evaldata)
    return node_params


def _check_options(*, backend: str, size: tuple[int, int] | None, params_file: str | Path | None) -> dict[str, Any]:
    """The options that do not depend on the data; returns the node parameters (ConfigError otherwise)."""
    if size is not None and backend != "torch":
        raise ConfigError(
            f"a working size needs the torch backend (exported graphs have a fixed size), got {backend!r}"
        )
    from vdepth_ros.offline.runner import load_node_params

    # the evaluation runs --model (default: the bundled one), never the file's `model`: not resolved here
    return load_node_params(params_file, model="default")


@dataclass
class _EvalRuns:
    """Which model runs `evaluate` scores, and with what."""

    node_params: dict[str, Any]
    stream: bool
    per_frame: bool
    per_frame_fit: bool
    sparse_points: int
    pose_points: bool
    engine: Any = None
    single: Any = None  # the engine on one frame at a time


@dataclass
class _Scores:
    """One dataset's per-sequence metrics by method, run times and notes."""

    rows: dict[str, list[DepthMetrics]] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, method: str, m: DepthMetrics) -> None:
        self.rows.setdefault(method, []).append(m)

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        """Add the block's wall time to `timing[key]` (seconds, summed over sequences)."""
        t0 = time.perf_counter()
        yield
        self.timing[key] = self.timing.get(key, 0.0) + time.perf_counter() - t0


def _load_engines(
    model: str | None,
    backend: str,
    threads: int | None,
    size: tuple[int, int] | None,
    node_params: dict[str, Any],
    meta: dict[str, Any],
) -> tuple[Any, Any]:
    """The engine under evaluation and its one-frame twin; their description and speed into `meta`."""
    from vdepth_ros.runtime import create_engine
    from vdepth_ros.runtime.checks import checked_model

    mdir = Path(checked_model(model or "default"))  # the node's start-up check: one line before any work
    opts: dict[str, Any] = {"threads": threads} if threads else {}
    if size is not None:
        opts.update(height=int(size[0]), width=int(size[1]))
    engine = create_engine(str(mdir), backend=backend, **opts)
    meta.update({"model": str(mdir), "backend": engine.backend, "spec": engine.input_spec.to_dict()})
    meta["speed"] = measure_engine_fps(engine)
    single = _single_frame_engine(mdir, engine)
    meta["per_frame_engine"] = f"{single.backend}, T={single.input_spec.frames}"
    pipeline = make_pipeline(engine, base=node_params)
    meta["pipeline"] = pipeline.schedule
    meta["identity"] = pipeline.model_identity(mdir)  # release and revisions, file, backend: which model ran
    return engine, single


def _evaluate_dataset(name: str, evaldata: Path, frames: dict[str, int], opts: _EvalRuns) -> dict[str, Any]:
    """One dataset's results: its sequences, the mean metrics of every method, timing and goal checks."""
    kwargs: dict[str, Any] = {"stride": DEFAULT_STRIDE.get(name, 1)}
    if name in frames:
        kwargs["frames"] = frames[name]
    seqs = load_dataset(name, evaldata, **kwargs)
    scores = _Scores()
    for seq in seqs:
        log.info("%s: %d frames, GT %s", seq.name, seq.num_frames, seq.gt_size)
        _score_sequence(seq, opts, scores)
    total_frames = sum(s.num_frames for s in seqs)
    timing = scores.timing
    out: dict[str, Any] = {
        "sequences": [s.name for s in seqs],
        "frames": total_frames,
        "stride": kwargs["stride"],
        "methods": {k: _mean(v) for k, v in scores.rows.items()},
        "timing": {**timing, **({"offline_fps": total_frames / timing["offline_s"]} if "offline_s" in timing else {})},
    }
    out["goals"] = goals(out["methods"])
    skipped = [line for s in seqs for line in s.skipped]
    if skipped:  # the metrics are over fewer frames than listed: said in the table's notes, each file in the JSON
        out["skipped_frames"] = skipped
        scores.notes.append(
            f"{len(skipped)} frame(s) left out, a file missing or damaged (skipped_frames in results.json)"
        )
    if scores.notes:
        out["notes"] = scores.notes
    return out


def _score_sequence(seq: EvalSequence, opts: _EvalRuns, scores: _Scores) -> None:
    """Every requested method on one sequence, into `scores`."""
    mask = None if seq.mask is None else np.broadcast_to(seq.mask, seq.depth.shape)
    kw = {"intrinsics": seq.intrinsics, "poses": seq.poses, "mask": mask}
    scores.add("constant", evaluate_sequence(constant_prediction(seq.depth.shape), seq.depth, seq.max_depth, **kw))
    scores.add("row ramp", evaluate_sequence(row_ramp_prediction(seq.depth.shape), seq.depth, seq.max_depth, **kw))
    engine, base = opts.engine, opts.node_params
    if engine is None:
        return
    with scores.timed("offline_s"):
        offline = run_offline(engine, seq, base=base)
        scores.add("model offline", evaluate_sequence(offline, seq.depth, seq.max_depth, **kw))
    if opts.per_frame_fit:
        m = evaluate_per_frame_fit(offline, seq.depth, seq.max_depth, mask=mask)
        scores.add("model offline, affine per frame", m)
    if opts.stream:
        with scores.timed("stream_s"):
            disp = run_stream(engine, seq, base=base)
            scores.add("model stream", evaluate_sequence(disp, seq.depth, seq.max_depth, **kw))
    if opts.sparse_points > 0:
        disp = run_stream(engine, seq, sparse_points=opts.sparse_points, base=base)
        row = f"model stream + {opts.sparse_points} sparse GT points"
        scores.add(row, evaluate_sequence(disp, seq.depth, seq.max_depth, **kw))
        scores.add(f"{row}{METRIC_SUFFIX}", evaluate_metric(disp, seq.depth, seq.max_depth, mask=mask))
    if opts.pose_points and seq.poses is not None:
        _score_pose_points(seq, opts, scores, kw)
    if opts.per_frame:
        with scores.timed("per_frame_s"):
            disp = run_per_frame(opts.single, seq)
            scores.add("model per-frame (T=1)", evaluate_sequence(disp, seq.depth, seq.max_depth, **kw))


def _score_pose_points(seq: EvalSequence, opts: _EvalRuns, scores: _Scores, kw: dict[str, Any]) -> None:
    """The causal pipeline fed points triangulated with the GT poses; a sequence without a metric fit is noted."""
    try:
        disp = run_stream(opts.engine, seq, pose_points=True, base=opts.node_params)
    except NoMetricFitError as err:
        scores.notes.append(f"{POSE_ROW}: {err}; the row averages the other sequences")
        log.warning("%s", err)
        return
    scores.add(POSE_ROW, evaluate_sequence(disp, seq.depth, seq.max_depth, **kw))
    scores.add(f"{POSE_ROW}{METRIC_SUFFIX}", evaluate_metric(disp, seq.depth, seq.max_depth, mask=kw["mask"]))


def _mean(ms: list[DepthMetrics]) -> dict[str, Any]:
    """Mean over sequences (the papers average per-video metrics)."""
    taes = [m.tae for m in ms if m.tae is not None]
    gains = [m.nearness_gain for m in ms if m.nearness_gain is not None]
    return {
        "abs_rel": float(np.mean([m.abs_rel for m in ms])),
        "delta1": float(np.mean([m.delta1 for m in ms])),
        "tae": float(np.mean(taes)) if taes else None,
        "nearness_gain": float(np.mean(gains)) if gains else None,
        "sequences": len(ms),
        "frames": int(sum(m.frames for m in ms)),
    }


def goals(methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's acceptance checks (each with the numbers it compares)."""
    out: dict[str, Any] = {}
    trivial = {k: methods[k]["abs_rel"] for k in BASELINES if k in methods}
    model = methods.get("model offline")
    if model and trivial:
        best = min(trivial.values())
        red = 1 - model["abs_rel"] / best
        out["abs_rel_30pct_below_best_trivial"] = {
            "model": model["abs_rel"],
            "best_trivial": best,
            "reduction": red,
            "pass": bool(red >= 0.30),
        }
    pf = methods.get("model per-frame (T=1)")
    if model and pf and model["tae"] is not None and pf["tae"] is not None:
        out["tae_windowed_below_per_frame"] = {
            "windowed": model["tae"],
            "per_frame": pf["tae"],
            "pass": bool(model["tae"] < pf["tae"]),
        }
    st = methods.get("model stream")
    if model and st:
        gap = abs(st["delta1"] - model["delta1"])
        out["stream_offline_delta1_gap"] = {
            "stream": st["delta1"],
            "offline": model["delta1"],
            "gap": gap,
            "pass": bool(gap <= 0.005),
        }
    return out


def _count(minimum: int) -> Any:
    """An argparse type: an integer of at least `minimum` (argparse turns the ValueError into one line)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse's message for a non-number: "invalid int value: 'abc'"
    return parse


def _remove_created(out: Path, missing: list[Path]) -> None:
    """Remove the folders `prepare_output` created for a run that then failed, as long as they are empty."""
    for folder in (out, *out.parents):
        if folder not in missing:
            return
        try:
            folder.rmdir()
        except OSError:
            return


def main(argv: list[str] | None = None) -> int:
    """Console entry point (`vdepth-eval`)."""
    ap = argparse.ArgumentParser(prog="vdepth-eval", description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["7scenes", "hololens"], choices=sorted(DATASETS))
    ap.add_argument(
        "--evaldata",
        default=None,
        help="evaluation data folder (default: $VDEPTH_EVALDATA, else shared/evaldata beside the checkout or one "
        "level above it; docs/benchmarks.md)",
    )
    ap.add_argument(
        "--model", default=None, help="model folder or pulled release name (default: the bundled default model)"
    )
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=_count(1), default=None)
    ap.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="model working resolution (torch backend only; default: the exported graph's)",
    )
    ap.add_argument("--frames", type=_count(1), default=None, help="frames per video dataset (default 300 / 120)")
    ap.add_argument("--no-stream", action="store_true", help="skip the causal run")
    ap.add_argument("--no-per-frame", action="store_true", help="skip the T=1 run")
    ap.add_argument(
        "--per-frame-fit",
        action="store_true",
        help="add a diagnostic row: the offline run scored with one affine per frame (how much of the "
        "error is scale drift across frames)",
    )
    ap.add_argument(
        "--sparse-points",
        type=_count(0),
        default=0,
        metavar="N",
        help="add a row: the causal pipeline with scale_source 'sparse' fed N ground-truth depths per frame "
        "(a simulated sparse depth sensor; not one of the goals)",
    )
    ap.add_argument(
        "--pose-points",
        action="store_true",
        help="add a row: the causal pipeline with scale_source 'sparse' fed depths triangulated from the video "
        "with the ground-truth camera poses (simulated robot odometry; not one of the goals)",
    )
    ap.add_argument(
        "--params",
        default=None,
        help="node parameter YAML for the offline and stream runs (default: the bundled config/depth.yaml; "
        "scale_source, cloud_stride, output_resolution and upsample_method are fixed by the evaluation)",
    )
    ap.add_argument("--baselines-only", action="store_true", help="trivial baselines only (no model)")
    ap.add_argument("--out", default="out/eval", help="folder for results.json and results.md (default out/eval)")
    ap.add_argument("--overwrite", action="store_true", help="replace results.json and results.md already in --out")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    expand_home(args)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from vdepth_ros.paths import evaldata_dir

    root = Path(args.evaldata) if args.evaldata else evaldata_dir()
    from vdepth_ros.offline.errors import OfflineError
    from vdepth_ros.offline.runner import apply_blas_threads, cli_errors, sigterm_as_interrupt, stdout_for_results

    if root is None or not root.is_dir():
        # one line as vdepth-bag/-video print theirs: argparse's usage would bury the reason
        raise SystemExit(
            cli_errors(
                ap.prog,
                EvalDataError(
                    "evaluation data not found: pass --evaldata or set VDEPTH_EVALDATA (never copied into the repo)"
                ),
            )
        )
    frames = {d: args.frames for d in DEFAULT_FRAMES} if args.frames else None

    out = Path(args.out).absolute()
    missing = [p for p in (out, *out.parents) if not p.exists()]  # what prepare_output will create
    size = tuple(args.size) if args.size else None
    try:  # everything that can fail without running anything fails now, not after minutes of work
        with stdout_for_results(), sigterm_as_interrupt():  # stdout: the table alone; SIGTERM is Ctrl-C
            node_params = check_inputs(args.datasets, root, backend=args.backend, size=size, params_file=args.params)
            apply_blas_threads(node_params)  # the node's `blas_threads`, as the node and the offline tools apply it
            prepare_output(out, overwrite=args.overwrite, inputs=[root])
            results = evaluate(
                args.datasets,
                root,
                model=args.model,
                backend=args.backend,
                frames=frames,
                stream=not args.no_stream,
                per_frame=not args.no_per_frame,
                with_model=not args.baselines_only,
                threads=args.threads,
                size=size,
                per_frame_fit=args.per_frame_fit,
                sparse_points=args.sparse_points,
                params_file=args.params,
                pose_points=args.pose_points,
            )
            _, md = write_report(results, out, overwrite=args.overwrite)
    except (ConfigError, ModelLoadError, EvalDataError, OfflineError, KeyboardInterrupt) as err:
        # --size with an exported graph; a release not pulled yet; a dataset missing; results already in --out;
        # Ctrl-C or SIGTERM (the results are written only when complete, all at once)
        _remove_created(out, missing)
        raise SystemExit(cli_errors(ap.prog, err)) from None
    print(md.read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
