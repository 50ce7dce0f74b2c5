"""`vdepth-export`: `pull` (a known release from the hub -> the model cache), `import` (a paper's
released checkpoint on disk -> model folder), `onnx` (model -> ONNX + spec + parity report), `split`
(per-frame + per-window graphs beside an exported model.onnx, for exact reuse of overlap work) and
`stream` (a causal model's stream step, its cache as graph inputs and outputs) and `engine` (ONNX -> TensorRT)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from vdepth_export.import_released import IMPORTERS, import_released, parse_overrides

from vdepth_ros.errors import ConfigError, ModelLoadError, VdepthError
from vdepth_ros.paths import expand_home
from vdepth_ros.runtime.shapes import PRECISIONS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vdepth-export", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    o = sub.add_parser("onnx", help="export a model folder or a family (--tiny) to ONNX with a parity report")
    o.add_argument(
        "source", help="model folder (config.json + model.safetensors), pulled release name (vda-small) or family name"
    )
    o.add_argument("-o", "--output", help="output folder or .onnx path (default: the model folder)")
    o.add_argument("--tiny", action="store_true", help="family name: random tiny_config() model (tests, CI)")
    o.add_argument(
        "--frames", type=int, help="window length T (default: a trained model's clips, else the family window)"
    )
    o.add_argument(
        "--height",
        type=int,
        help="working height H (multiple of the family's multiple_of; default: the trained one, else 280)",
    )
    o.add_argument("--width", type=int, help="working width W (default: the trained one, else 504)")
    o.add_argument(
        "--variant",
        action="store_true",
        help="write model.<H>x<W>.onnx next to model.onnx: another aspect ratio of the same fixed-shape model "
        "(the runtime picks the shape closest to the camera's aspect); --frames, --precision and --dynamic-frames "
        "default to model.onnx's, and only --height and --width may differ from it",
    )
    o.add_argument("--precision", choices=PRECISIONS, help="default fp32 (a --variant: model.onnx's)")
    o.add_argument("--opset", type=int, help="ONNX opset >= 17 (default 17 legacy / 18 dynamo)")
    o.add_argument("--exporter", choices=("auto", "legacy", "dynamo"), default="auto")
    o.add_argument(
        "--dynamic-frames", action="store_true", default=None, help="declare T dynamic (checked at two lengths)"
    )
    o.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    o.add_argument(
        "--no-strict",
        action="store_true",
        help="install the graph and its report even when parity fails (exit code 1 then, not 2)",
    )
    o.add_argument("--threads", type=int, default=None, help="threads for the parity run")
    o.add_argument("--evaldata", help="folder of real frames for parity (default: ../shared/evaldata if present)")
    o.add_argument("--synthetic", action="store_true", help="parity on synthetic clips only")
    o.add_argument(
        "--weights-fp16",
        action="store_true",
        help="store the weights as float16 behind casts (half the file, float32 compute)",
    )
    o.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what is at -o: a model (family names), an earlier export, or an .onnx file that vdepth-export "
        "did not write (a folder's own export made again in place is replaced without it)",
    )

    i = sub.add_parser(
        "import",
        help="write a paper's released checkpoint (local files) as a model folder the tools load",
        description="sources per family: " + "; ".join(f"{f}: {what}" for f, (what, _n, _l) in IMPORTERS.items()),
    )
    i.add_argument("family", help=f"one of {', '.join(IMPORTERS)}")
    i.add_argument("sources", nargs="+", help="the released files/folders (see above)")
    i.add_argument("-o", "--output", required=True, help="model folder to write (config.json + model.safetensors)")
    i.add_argument("--encoder", help="vda: vits (default), vitb or vitl; gemdepth: vitl (default) or vits")
    i.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="constructor override (e.g. window=16)"
    )
    i.add_argument("--weights-fp16", action="store_true", help="store the weights as float16 (half the size)")
    i.add_argument("--variant", help="diffusers weight-file variant of folder sources (e.g. fp16)")
    i.add_argument("--overwrite", action="store_true", help="replace a model already in OUTPUT")
    i.add_argument(
        "--revision",
        action="append",
        default=[],
        metavar="[REPO=]REV",
        help="for a source given as a hub repository (owner/name, read from the hub cache): the branch, tag or "
        "commit to read instead of main (REPO=REV for one of several; repeatable), as pull takes it",
    )
    i.add_argument(
        "--adapter",
        metavar="FOLDER",
        help="a peft LoRA adapter (the folder save_pretrained wrote) trained on the first source: merged into it",
    )

    pl = sub.add_parser(
        "pull",
        help="download a known release from the hub and import it into the model cache (then `model: NAME`)",
        description="Releases: `vdepth-export pull --list`. The cache is $VDEPTH_MODEL_CACHE, else "
        "~/.cache/vdepth_ros/models. Hub access follows HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN and proxies.",
    )
    pl.add_argument("name", nargs="?", help="release name, e.g. vda-small")
    pl.add_argument("--list", action="store_true", help="list the known releases, their licences and cache state")
    pl.add_argument("--accept-license", action="store_true", help="accept a non-commercial licence (read it first)")
    pl.add_argument("--cache", help="model cache folder (default: $VDEPTH_MODEL_CACHE or ~/.cache/vdepth_ros/models)")
    pl.add_argument(
        "--from",
        dest="from_dir",
        help="take the files from DIR instead of the hub: DIR/<repo>/<file>, DIR/<file> (hf download --local-dir DIR) "
        "or a hub cache copied from another machine (its hub/ folder or HF_HOME); a release of one file: that file",
    )
    pl.add_argument("--overwrite", action="store_true", help="pull again over a model already in the cache")
    pl.add_argument(
        "--revision",
        action="append",
        default=[],
        metavar="[REPO=]REV",
        help="a branch, tag or commit to download instead of the registry's (REPO=REV for one repository of a "
        "release from several; repeatable); recorded in the model's release.json; unverified (no known sha256)",
    )

    e = sub.add_parser("engine", help="build a TensorRT engine from an exported ONNX (needs tensorrt + GPU)")
    e.add_argument("onnx", help="model.onnx (with model.onnx.json next to it), a model folder or a pulled release name")
    e.add_argument("-o", "--output", help="engine path (default: model.engine next to the ONNX)")
    e.add_argument(
        "--precision", choices=PRECISIONS, help="default: the graph's (fp32, or the precision it was exported in)"
    )
    e.add_argument("--workspace-gib", type=float, default=4.0)
    e.add_argument(
        "--timing-cache",
        help="timing cache file (default: per TensorRT version and GPU); one of another GPU or version is kept, "
        "not updated",
    )
    e.add_argument("--force-engine-update", action="store_true", help="rebuild even if the cached engine matches")
    e.add_argument(
        "--overwrite", action="store_true", help="replace an engine at -o that would be rebuilt (default path: always)"
    )
    e.add_argument("--device", type=int, default=0)
    e.add_argument("--tf32", action="store_true", help="allow TF32 in fp32 layers")
    s = sub.add_parser(
        "split",
        help="write per-frame + per-window graphs beside a model folder's model.onnx (vda, vda_lite, gemdepth): "
        "windows then encode only frames the previous window did not have",
    )
    s.add_argument(
        "model", help="model folder holding config.json, model.safetensors and model.onnx, or a pulled release name"
    )
    s.add_argument("--weights-fp16", action="store_true", help="store weights as float16 behind casts")
    s.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    s.add_argument("--threads", type=int, default=None, help="threads for the parity run")
    s.add_argument("--overwrite", action="store_true", help="replace split graphs the folder already holds")
    _add_stream_parser(sub)
    return p


def _add_stream_parser(sub: Any) -> None:
    st = sub.add_parser(
        "stream",
        help="write model.stream.onnx into a causal model folder (causal_context > 0): one stream step, its cache as "
        "graph inputs and outputs, so backend onnxruntime runs the stream (one step per new frame)",
    )
    st.add_argument("model", help="causal model folder (config.json + model.safetensors) or a pulled release name")
    st.add_argument("--height", type=int, help="working height (default: model.onnx.json's, else the trained one)")
    st.add_argument("--width", type=int, help="working width (default: model.onnx.json's, else the trained one)")
    st.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch stream check")
    st.add_argument("--threads", type=int, default=None, help="threads for the parity run")
    st.add_argument("--overwrite", action="store_true", help="replace the stream graph the folder already holds")
    st.add_argument(
        "--variant",
        action="store_true",
        help="write model.stream.<H>x<W>.onnx beside model.stream.onnx: the runtime runs each camera on the stream "
        "graph closest to its aspect",
    )


def _release_folder(source: str) -> str:
    """`source` as `model: NAME` resolves it when it names a known release and no file or folder here
    (its pulled folder in the model cache, or the `vdepth-export pull` command to run), else as given:
    `vdepth-export onnx dvd` exports the pulled DVD, not a random-weight model of the family."""
    from vdepth_ros.runtime.registry import releases, resolve_model

    return resolve_model(source) if not Path(source).exists() and source in releases() else source


def _refuse_a_checkpoint(path: Path) -> None:
    """A released or training checkpoint (or a file of a model folder) given where a model folder or its graph
    goes: the error `onnx` gives for it (import it first), not 'export it first' with a command that fails."""
    from vdepth_ros.paths import released_checkpoint_problem

    if (why := released_checkpoint_problem(path)) is not None:
        raise ModelLoadError(why)


def _run_split(args: argparse.Namespace) -> tuple[int, Any]:
    from vdepth_export.export_split import export_split_onnx

    from vdepth_ros.paths import evaldata_dir
    from vdepth_ros.runtime import ONNX_NAME

    folder = Path(_release_folder(args.model))
    if not (folder / ONNX_NAME).is_file():
        _refuse_a_checkpoint(folder)
        raise ModelLoadError(f"{folder} has no {ONNX_NAME}: export it first with `vdepth-export onnx {folder}`")
    meta = export_split_onnx(
        folder, folder / "model.onnx", parity=not args.no_parity, threads=args.threads, evaldata=evaldata_dir(),
        weights_fp16=args.weights_fp16, overwrite=args.overwrite,
    )  # fmt: skip
    return 0, {"features": dict(zip(meta.feature_names, meta.feature_shapes, strict=True)), "parity": meta.parity}


def _run_stream(args: argparse.Namespace) -> tuple[int, Any]:
    from vdepth_export.export_stream import export_stream_onnx

    from vdepth_ros.paths import evaldata_dir

    folder = Path(_release_folder(args.model))
    if not (folder / "config.json").is_file():
        _refuse_a_checkpoint(folder)
        raise ModelLoadError(f"{folder} is not a model folder (no config.json)")
    summary = export_stream_onnx(
        folder, height=args.height, width=args.width, parity=not args.no_parity, threads=args.threads,
        evaldata=evaldata_dir(), overwrite=args.overwrite, variant=args.variant,
    )  # fmt: skip
    return 0, summary


def _run_onnx(args: argparse.Namespace) -> tuple[int, Any]:
    from vdepth_export.export_onnx import export_onnx

    evaldata: str | bool | None = args.evaldata if args.evaldata else True
    if args.synthetic:
        evaldata = None
    res = export_onnx(
        args.source if args.tiny else _release_folder(args.source),
        args.output,
        frames=args.frames,
        height=args.height,
        width=args.width,
        precision=args.precision,
        opset=args.opset,
        exporter=args.exporter,
        dynamic_frames=args.dynamic_frames,
        tiny=args.tiny,
        parity=not args.no_parity,
        strict=not args.no_strict,
        threads=args.threads,
        evaldata=evaldata,
        weights_fp16=args.weights_fp16,
        variant=args.variant,
        overwrite=args.overwrite,
    )
    summary = {
        "onnx": str(res.onnx_path),
        "exporter": res.exporter,
        "opset": res.opset,
        "export_seconds": round(res.seconds, 2),
        "external_data": res.external_data,
        "shape": [1, res.spec.frames, 3, res.spec.height, res.spec.width],
        "files": [str(f) for f in res.files],
    }
    if res.parity is not None:
        keys = ("passed", "failure", "skipped", "max_abs", "mean_abs", "tolerance_rel", "inputs", "constant_reference")
        summary["parity"] = {k: res.parity[k] for k in keys}
    return (0 if res.parity is None or res.parity["passed"] is not False else 1), summary


def _run_import(args: argparse.Namespace) -> tuple[int, Any]:
    out = import_released(
        args.family,
        args.sources,
        args.output,
        encoder=args.encoder,
        overrides=parse_overrides(args.set),
        weights_fp16=args.weights_fp16,
        overwrite=args.overwrite,
        variant=args.variant,
        revisions=args.revision,
        adapter=args.adapter,
    ).absolute()  # the node and the tools run from other folders
    return 0, {
        "model": str(out),
        "next": [f"vdepth-export onnx {out}  (optional: ONNX Runtime is faster on CPU)", f"model: {out}"],
    }


def _run_pull(args: argparse.Namespace) -> tuple[int, Any]:
    from vdepth_export.pull import describe_releases, pull

    if args.list:
        return 0, describe_releases(args.cache)
    if not args.name:
        raise ConfigError("pull needs a release name (see `vdepth-export pull --list`)")
    out = pull(
        args.name,
        cache=args.cache,
        accept_license=args.accept_license,
        overwrite=args.overwrite,
        from_dir=args.from_dir,
        revisions=args.revision,
    )
    from vdepth_ros.runtime.registry import CACHE_ENV, cached_model_dir

    out = out.absolute()  # the node and the tools run from other folders
    if out == cached_model_dir(args.name).absolute():
        steps: dict[str, list[str]] = {"next": [f"model: {args.name}", f"vdepth-video IN OUT --model {args.name}"]}
    else:  # --cache elsewhere: NAME resolves only through that cache
        steps = {"next": [f"model: {out}", f"vdepth-video IN OUT --model {out}"],
                 "or": [f"{CACHE_ENV}={out.parent} and model: {args.name}"]}  # fmt: skip
    return 0, {"model": str(out), **steps}


def _run_engine(args: argparse.Namespace) -> tuple[int, Any]:
    from vdepth_export.build_engine import build_engine

    from vdepth_ros.runtime import ONNX_NAME, causal_folder
    from vdepth_ros.runtime.reuse import stream_file_for

    onnx = Path(_release_folder(args.onnx))
    if onnx.is_dir() and causal_folder(onnx):  # a causal model runs its stream step: the engine of that graph
        if not stream_file_for(onnx / ONNX_NAME).is_file():
            raise ModelLoadError(
                f"{onnx} holds a causal (streaming) model, which runs its stream step: export it first "
                f"(`vdepth-export stream {onnx}`), then build its engine"
            )
        onnx = stream_file_for(onnx / ONNX_NAME)
    if onnx.suffix != ".onnx" and not (onnx / ONNX_NAME).is_file():
        _refuse_a_checkpoint(onnx)
    if onnx.is_dir():
        onnx = onnx / ONNX_NAME
    res = build_engine(
        onnx,
        args.output,
        precision=args.precision,
        workspace_gib=args.workspace_gib,
        timing_cache=args.timing_cache,
        force_engine_update=args.force_engine_update,
        overwrite=args.overwrite,
        device=args.device,
        tf32=args.tf32,
    )
    summary = {
        "engine": str(res.engine_path),
        "rebuilt": res.rebuilt,
        "reason": res.reason,
        "seconds": round(res.seconds, 2),
        "key": res.key.to_dict(),
        "timing_cache": str(res.timing_cache),
    }
    from vdepth_export.build_engine import own_engine_paths
    from vdepth_export.export_split import build_split_engines

    from vdepth_ros.runtime.reuse import SplitMeta, split_files_for
    from vdepth_ros.runtime.spec import InputSpec, spec_path_for

    # `vdepth-export split` graphs: their engines too, beside the folder's engine they go with (`model.engine`,
    # or this machine's beside another machine's); an engine at a path of the user's has none. Split graphs the
    # runtime would not use (exported for an earlier model.onnx, failed parity) are not built: one warning says
    # why, as it would at every start, and minutes of building are not spent on them
    own = res.engine_path.absolute() in [p.absolute() for p in own_engine_paths(onnx, res.key)]
    files = split_files_for(onnx)
    if own and files.exist() and SplitMeta.usable(files, InputSpec.load(spec_path_for(onnx)), res.key.onnx_sha256):
        split = build_split_engines(
            onnx, precision=res.key.precision, engine_path=res.engine_path, workspace_gib=args.workspace_gib,
            device=args.device, tf32=args.tf32, force_engine_update=args.force_engine_update, overwrite=args.overwrite,
        )  # fmt: skip
        summary["split_engines"] = [str(r.engine_path) for r in split]
    return 0, summary


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    expand_home(args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    run = {
        "import": _run_import,
        "pull": _run_pull,
        "onnx": _run_onnx,
        "split": _run_split,
        "stream": _run_stream,
        "engine": _run_engine,
    }[args.command]
    from vdepth_ros.offline.runner import cli_errors, sigterm_as_interrupt, stdout_for_results

    try:
        # Ctrl-C or a SIGTERM: one line, exit 130, nothing half-written; stdout: the JSON result alone
        with stdout_for_results(), sigterm_as_interrupt():
            code, result = run(args)
    except (VdepthError, OSError, KeyboardInterrupt) as err:  # OSError: missing/existing paths, a full disk
        return cli_errors(f"vdepth-export {args.command}", err)
    except ModuleNotFoundError as err:  # `pull` in the smallest install (no `ml` extra): one line, no traceback
        from vdepth_ros.offline.entry import missing_extra_line

        if (line := missing_extra_line(f"vdepth-export {args.command}", err)) is None:
            raise
        print(line, file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
