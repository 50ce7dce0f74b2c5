"""`vdepth-bag`: run the depth pipeline over a recorded ROS 2 bag and write the node's outputs to a new bag.

    vdepth-bag INPUT -o OUTPUT [--image-topic T] [--camera-info-topic T] [--mode causal|offline]
               [--storage mcap|sqlite3] [--copy-input-topics] [--params config/depth.yaml] [--overwrite]

Topic names and pipeline parameters come from the node's YAML (`config/depth.yaml` by default), so a
causal run writes exactly what the live node publishes for the same frames. Frames are streamed from
disk: memory is bounded by the pipeline window, not by the bag length. The output bag is built under a
temporary name next to OUTPUT and renamed into place when complete.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vdepth_ros.camera_info import info_signature
from vdepth_ros.errors import VdepthError
from vdepth_ros.inputs.calibration import calibration_problem
from vdepth_ros.inputs.resets import PauseRule, StreamResets
from vdepth_ros.node_params import largest_burst, output_qos, ros_param_values
from vdepth_ros.offline.atomic import AtomicOutput
from vdepth_ros.offline.bag_messages import bag_path, recording_of
from vdepth_ros.offline.bag_notes import add_run_notes, flicker_note, input_topics_note
from vdepth_ros.offline.bag_outputs import (
    OUTPUT_MARK,
    not_a_vdepth_bag,
    output_form,
    output_storage,
)
from vdepth_ros.offline.bag_reader import BagFrameSource
from vdepth_ros.offline.bag_topics import BagTopics, resolve_topics
from vdepth_ros.offline.bag_types import STORAGE_NAMES, TYPESTORE_NAMES, BagFrameMeta, require_bag_library
from vdepth_ros.offline.bag_writer import DepthBagWriter
from vdepth_ros.offline.errors import InterruptedAfterOutput, OfflineError, OutputExistsError
from vdepth_ros.offline.runner import (
    MODES,
    RunSummary,
    StopAtCtrlC,
    Stopwatch,
    add_run_options,
    apply_blas_threads,
    build_pipeline,
    cli_errors,
    disk_room_check,
    exit_status,
    load_node_params,
    pipeline_config,
    run_pipeline,
    setup_logging,
    sigterm_as_interrupt,
    stamp_ns,
    stamp_text,
    stdout_for_results,
    stopped_output,
    with_progress,
    write_failed_reason,
)
from vdepth_ros.paths import expand_home
from vdepth_ros.rectify import CALIBRATION_FORMATS, load_camera_info

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from vdepth_ros.pipeline import DepthFrame, FrameInput
    from vdepth_ros.runtime.engine import DepthEngine

log = logging.getLogger(__name__)
PROG = "vdepth-bag"


def _frame_signature(frame: FrameInput) -> tuple | None:
    info = frame.meta.camera_info if isinstance(frame.meta, BagFrameMeta) else None
    return info_signature(info) if info is not None else None


def _with_metric_input(
    params: dict[str, Any], metric_input: str | None, named_here: bool, notes: list[str]
) -> dict[str, Any]:
    """`params` with scale_source "sparse" where a metric input topic is read and the scale source is
    "none", or also the default "range" when the topic was named on the command line
    (`--sparse-depth-topic`, `--camera-pose-topic`: an explicit request for metric depth, which
    "range" would leave read and unused). A topic that comes from the params file's `sparse_depth`
    beside `scale_source: range` is left as the node leaves it (its start-up warning), with a note,
    so that the bag equals the node; so is a metric model's own scale ("metric")."""
    scale_source = params.get("scale_source", "none")
    if not metric_input or scale_source == "sparse":
        return params
    if scale_source == "none" or (scale_source == "range" and named_here):
        notes.append(f"metric input on {metric_input}: scale_source set to 'sparse' (was {scale_source!r})")
        return {**params, "scale_source": "sparse"}
    notes.append(
        f"metric input on {metric_input} not used: scale_source is {scale_source!r} (set scale_source: sparse)"
    )
    return params


def process_bag(
    input_path: str | Path,
    output_path: str | Path,
    *,
    params: dict[str, Any] | None = None,
    params_file: str | Path | None = None,
    image_topic: str | None = None,
    camera_info_topic: str | None = None,
    sparse_depth_topic: str | None = None,
    camera_pose_topic: str | None = None,
    camera_info_file: str | Path | None = None,
    mode: str = "causal",
    storage: str | None = None,
    copy_input_topics: bool = False,
    overwrite: bool = False,
    typestore: str = "kilted",
    engine: DepthEngine | None = None,
    model: str | None = None,
    backend: str | None = None,
    namespace: str = "/",
    progress: bool = False,
    flicker: bool = False,
    log_time_stamps: bool = False,
    start_ns: int | None = None,
) -> RunSummary:
    """Run the pipeline over one bag and write a new bag with the node's outputs.

    Ctrl-C (SIGINT) or SIGTERM in the main thread ends the input where it is (`StopAtCtrlC`): the
    output holds the frames read until then, complete and readable, and `summary.interrupted` says
    so; a second one aborts, keeping no output.

    Args:
        input_path: bag folder or bare `.mcap`/`.db3` file; never modified.
        output_path: new bag folder, or a single storage file when it ends in `.mcap`/`.db3` and is
            neither an existing folder nor ends in "/" (`bag_outputs.output_storage`); must not exist
            unless `overwrite` (and then be an earlier vdepth-bag output).
        params: node parameters (overrides `params_file`); default: `load_node_params(params_file)`.
        params_file: YAML in the node's format; default: the bundled `config/depth.yaml`.
        image_topic, camera_info_topic, sparse_depth_topic, camera_pose_topic: override the node's
            topic names; a topic given here that is missing from the bag is an error. Camera poses
            (`PoseStamped` of the optical frame) give metric points triangulated from the images.
        camera_info_file: a calibration YAML (`rectify.load_camera_info`) used for every frame
            instead of the bag's camera_info topic (bags recorded without one).
        mode: "causal" (the live node's behaviour) or "offline" (global fit; better, not live-equal).
        storage: output storage, "mcap" or "sqlite3" (default: the output's extension, else mcap).
        copy_input_topics: also copy every input message, so the output is self-contained.
        overwrite: replace an existing output (only once the new one is complete).
        typestore: ROS 2 distribution for bags without embedded message definitions.
        engine: a ready `DepthEngine` (tests, benchmarks); default: built from the params' model.
        model, backend: override the params' model folder/file and backend.
        namespace: the node's namespace; its relative topic names are resolved in it.
        progress: show a tqdm bar on stderr.
        log_time_stamps: stamp the inputs with the bag's receive times, not their header stamps
            (cameras whose drivers do not stamp their images); the outputs carry them too.
        start_ns: leave out the images stamped before this (ns; the stamps the run uses, so `log_time_stamps`
            too): the rest of a run that was stopped, whose stop line names it; the stream starts there anew.
        flicker: then measure how steady the written depth is (`vdepth-flicker` on the output with
            the input: the flow warping error, and TAE when camera poses were given), into the notes.

    Returns:
        The run's summary (counts, fit residuals, scale sources, output path).

    Raises:
        FileNotFoundError, OfflineError subclasses (missing topic, empty/corrupt bag, unsupported
        encoding, output exists), ConfigError.
    """
    # 1. Check the options; the node's parameters and topic names.
    if mode not in MODES:
        raise VdepthError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    storage, single_file = output_storage(output_path, storage)  # (before Path(): a trailing "/" says folder)
    input_path, output_path = bag_path(input_path), Path(output_path)
    if params is None:
        params = load_node_params(params_file, f"{namespace.rstrip('/')}/depth_node", model)
    topics = resolve_topics(
        params,
        namespace=namespace,
        image_topic=image_topic,
        camera_info_topic=camera_info_topic,
        sparse_depth_topic=sparse_depth_topic,
        camera_pose_topic=camera_pose_topic,
    )
    summary = RunSummary(mode=mode)
    clock = Stopwatch()
    # 2. The input: the bag's frames, with a fixed calibration file if one is given.
    fixed_info = _fixed_camera_info(camera_info_file, camera_info_topic, summary)
    source = _frame_source(
        input_path,
        topics,
        params,
        typestore,
        fixed_info,
        image_topic_explicit=image_topic is not None,
        camera_info_topic_explicit=camera_info_topic is not None,
        log_time_stamps=log_time_stamps,
    )
    # 3. The pipeline's configuration: metric input turns the sparse scale source on.
    named_here = bool(sparse_depth_topic or camera_pose_topic)
    params = _with_metric_input(params, topics.sparse_depth or topics.camera_pose, named_here, summary.notes)
    config = pipeline_config(params, model=model, backend=backend, check_model=engine is None)
    # 4. Run it into a new bag, built under a temporary name and renamed into place when complete.
    _refuse_a_stopped_runs_output(output_path, overwrite)
    output = AtomicOutput(
        output_path, overwrite=overwrite, inputs=[recording_of(input_path)], replaceable=not_a_vdepth_bag
    )
    # a bag recorded with compression_mode: file is unpacked beside the output (the disk chosen with -o)
    with output as tmp, source.unpacking_in(output.scratch):
        if copy_input_topics:
            _check_copy_collisions(source, topics, provisional=mode == "causal" and config.publish == "both")
        summary.notes.extend(source.notes)
        pipeline = build_pipeline(config, engine=engine)
        summary.model = pipeline.model_identity()
        # offline mode emits every frame once, final: it goes to the main topics whatever the live policy
        publish = config.publish if mode == "causal" else "final"
        with (
            DepthBagWriter(
                tmp,
                topics.outputs,
                storage=storage,
                typestore=typestore,
                publish=publish,
                provisional_topics=topics.provisional,
                # which model made the depth, with the bag folder (metadata.yaml custom_data)
                custom_data={f"{OUTPUT_MARK}{k.replace(' ', '_')}": v for k, v in summary.model.items()},
                # the QoS the live node offers on each output, so that `ros2 bag play` offers it too
                offered_qos=functools.partial(output_qos, params, largest_burst(pipeline.schedule)),
                single_file=single_file,
            ) as writer,
            StopAtCtrlC(PROG) as stop,
        ):
            on_message = writer.copy_message if copy_input_topics else None
            frames = with_progress(source.frames(on_message=on_message), source.frame_count, PROG, progress)
            if start_ns is not None:
                frames = _from_start(frames, start_ns, summary)
            ros_values = ros_param_values(params)
            resets = StreamResets(round(ros_values["max_gap"] * 1e9))
            pauses = PauseRule(ros_values["pause_flush"], ros_values["max_gap"])
            # Ctrl-C ends the input here, as if the bag ended: the frames read are finished and written; so does a
            # disk about to fill, while there is room for them (causal mode writes as it reads; offline mode, which
            # writes once all is read, ends its output there instead)
            # (and so does a write that did not fit all the same: the bag keeps the frames before it)
            room = disk_room_check(
                output.scratch, lambda: (writer.bytes_written, writer.frames_written), largest_burst(pipeline.schedule)
            )
            check = lambda: write_failed_reason(writer.full) or room()  # noqa: E731
            outputs = run_pipeline(
                pipeline, stop.frames(frames, check if mode == "causal" else None), mode, resets, _frame_signature,
                output.scratch, pauses,
            )  # type: ignore[arg-type]  # fmt: skip
            if mode == "offline":
                outputs = with_progress(outputs, source.frame_count, f"{PROG} (writing)", progress)
            _write_frames(outputs, writer, stop, summary, check if mode == "offline" else None)
            stopped = stopped_output(stop, output, summary, source.frame_count, _the_rest(writer, stop, mode))
            if stopped is not None:  # in the output folder's metadata.yaml too
                writer.writer.set_custom_data("vdepth_ros.interrupted", stopped)
        # 5. What the run saw, as counts and notes.
        summary.clouds_skipped = writer.clouds_skipped
        summary.notes.append(input_topics_note(input_path, source, copy_input_topics, writer))
        summary.notes += [
            f"{topic} ({msgtype}) not copied: {why}" for (topic, msgtype), why in writer.not_copied.items()
        ]
        summary.notes += [  # a Jazzy recording's best_available: Humble's player could not create the publisher
            f"{topic}: its recorded QoS copied as every distro's `ros2 bag play` offers it ({', '.join(changed)})"
            for topic, changed in writer.qos_made_playable.items()
        ]
        add_run_notes(summary, source, topics, resets, fixed_info)
        counts = dict(writer.counts)
        if summary.frames_out == 0:  # an empty bag is not a result: fail before it is renamed into place
            reasons = "; ".join(f"{n}x {why}" for why, n in source.stats.drop_reasons.items())
            raise OfflineError(
                f"{input_path}: none of the {summary.frames_in} images on {source.image_topic!r} could be "
                f"used ({reasons or 'no output frames'}); no output was written"
            )
    summary.seconds = clock.elapsed
    # 6. Optionally measure the written depth's flicker (not after Ctrl-C stopped the run); name the outputs.
    if flicker:
        try:
            summary.notes.append(
                "flicker: not measured (the run was interrupted)"
                if summary.interrupted is not None
                else flicker_note(
                    output_path,
                    input_path,
                    source.image_topic,
                    topics,
                    counts,
                    typestore,
                    log_time_stamps,
                    ros_values["max_input_pixels"],
                    image_bit_depth=ros_values["image_bit_depth"],  # its input's images read as this run read them
                    image_encoding=ros_values["image_encoding"],
                    max_gap=ros_values["max_gap"],
                )
            )
        except KeyboardInterrupt:
            raise InterruptedAfterOutput(str(output_path), "the flicker measurement") from None
    summary.outputs["output bag"] = output_form(output_path, storage, single_file)
    summary.outputs["topics written"] = ", ".join(f"{t} ({n})" for t, n in counts.items()) or "none"
    return summary


def _write_frames(
    outputs: Iterable[DepthFrame],
    writer: DepthBagWriter,
    stop: StopAtCtrlC,
    summary: RunSummary,
    check: Callable[[], str | None] | None,
) -> None:
    """Write the pipeline's `outputs`, ending them where `check` gives a reason (offline mode, which writes once the
    input is read); the bag's data then finished, `summary` counts the frames it keeps (a write that did not fit
    drops the frames of its chunk, also those of the last window after the input was read to its end)."""
    for frame in outputs:
        if check is not None and stop.end_output(check()):
            break
        if writer.write_frame(frame):
            summary.add(frame)
    if writer.finish_data() and stop.reason is None:
        stop.end_output(write_failed_reason(writer.full))
    summary.frames_out = writer.frames_written


def _from_start(frames: Iterable[FrameInput], start_ns: int, summary: RunSummary) -> Iterator[FrameInput]:
    """`frames` from the first stamped at or after `start_ns` on (`--start`), noted in `summary`."""
    left_out, started = 0, False
    for frame in frames:
        if frame.stamp_ns < start_ns and not started:
            left_out += 1
            continue
        if not started:
            started = True
            summary.notes.append(
                f"--start {stamp_text(start_ns)}: {left_out} frames before it left out; the depth stream starts anew "
                "there (its scale and alignment are not continued from a run over the frames before: a seam where "
                "the two outputs meet)"
            )
        yield frame


def _the_rest(writer: DepthBagWriter, stop: StopAtCtrlC, mode: str) -> str | None:
    """How to process only the input a stopped run did not write (`--start` after its last frame), or None."""
    if not stop.cut or writer.last_stamp is None:
        return None
    again = "the same options and" if mode == "causal" else "the same options (--mode offline) and"
    return f"the rest: run again with {again} --start {stamp_text(writer.last_stamp + 1)} into another output"


def _refuse_a_stopped_runs_output(path: Path, overwrite: bool) -> None:
    """Without `overwrite`, refuse an output folder that holds an earlier run stopped early (Ctrl-C, SIGTERM, its
    disk full: the `vdepth_ros.interrupted` its metadata.yaml `custom_data` keeps), saying how far it got and that a
    run does not resume (it said only that the output exists); other outputs are left to `AtomicOutput`'s check."""
    import yaml

    if overwrite:
        return
    try:
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        stopped = (info.get("custom_data") or {}).get(f"{OUTPUT_MARK}interrupted")
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return  # (not a folder, or not such a bag: the output check names what it is)
    if stopped is not None:
        raise OutputExistsError(
            f"output {path.absolute()} exists: an earlier vdepth-bag run's output, stopped {stopped}; a run does not "
            "resume: pass --overwrite to run the whole input into it again, or choose another output path (the rest "
            "alone: --start, above)"
        )


def _check_copy_collisions(source: BagFrameSource, topics: BagTopics, *, provisional: bool) -> None:
    """Refuse, before any work, copying an input that already holds topics this run writes (a
    recording made while the live node ran), naming the way out."""
    written = {
        t for out in (topics.outputs, topics.provisional)[: 2 if provisional else 1] for t in vars(out).values() if t
    }
    clash = sorted(written & set(source.topics))
    if clash:
        inputs = f"--image-topic {source.image_topic}"
        if source.camera_info_topic:
            inputs += f" --camera-info-topic {source.camera_info_topic}"
        raise OfflineError(
            f"the input bag already has {', '.join(clash)}, which this run writes; with --copy-input-topics put "
            f"the outputs under another namespace: --namespace NS, with the inputs named ({inputs})"
        )


def _fixed_camera_info(camera_info_file: str | Path | None, camera_info_topic: str | None, summary: RunSummary) -> Any:
    """The calibration file's camera_info for every frame (noted in `summary`), or None."""
    if camera_info_file is not None and camera_info_topic is not None:
        raise VdepthError("give a camera_info topic or a camera_info file, not both")
    if camera_info_file is None:
        return None
    info = load_camera_info(camera_info_file)
    # a calibration the user names is checked before any work, as vdepth-video checks its --camera-info
    problem = calibration_problem(info)
    if problem is not None:
        raise OfflineError(f"--camera-info-file {camera_info_file}: {problem}; give the camera's calibration")
    summary.notes.append(f"camera_info from {camera_info_file} for every frame (the bag's is not read)")
    return info


def _frame_source(
    input_path: Path,
    topics: BagTopics,
    params: dict[str, Any],
    typestore: str,
    fixed_info: Any,
    *,
    image_topic_explicit: bool,
    camera_info_topic_explicit: bool,
    log_time_stamps: bool = False,
) -> BagFrameSource:
    """The bag reader with the node's topics and its ROS-side sync parameters."""
    ros = ros_param_values(params)
    return BagFrameSource(
        input_path,
        image_topic=topics.image,
        camera_info_topic=topics.camera_info,
        sparse_depth_topic=topics.sparse_depth,
        camera_pose_topic=topics.camera_pose,
        typestore=typestore,
        image_topic_explicit=image_topic_explicit,
        camera_info_topic_explicit=camera_info_topic_explicit,
        # the node's ROS-side sync parameters (vdepth_ros/node_params.py), seconds -> ns
        sync_slop_ns=round(ros["sync_slop"] * 1e9),
        sync_queue_size=ros["sync_queue_size"],
        sync_info_timeout_ns=round(ros["camera_info_timeout"] * 1e9),
        sparse_depth_slop_ns=round(ros["sparse_depth_slop"] * 1e9),
        rectify=ros["rectify"],
        camera_info=fixed_info,
        max_input_pixels=ros["max_input_pixels"],
        image_bit_depth=ros["image_bit_depth"],
        max_gap_s=ros["max_gap"],
        image_encoding=ros["image_encoding"],
        log_time_stamps=log_time_stamps,
        max_input_rate=ros["max_input_rate"],
    )


class _OneCamera(argparse.Action):
    """A topic option given once: a second one (`--image-topic /front/... --image-topic /rear/...`,
    a user asking for two cameras) is an error naming the way to run several cameras, not the last
    one taken without a word."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: str | None = None) -> None:
        previous = getattr(namespace, self.dest, None)
        if previous is not None and previous != values:
            parser.error(
                f"{option} given twice ({previous}, {values}): one camera per run; run once per camera, each "
                "with --namespace NS for its outputs and --copy-input-topics to gather them "
                "(docs/offline.md, 'Several cameras')"
            )
        setattr(namespace, self.dest, values)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("input", type=Path, help="input bag (folder, or a .mcap/.db3 file); never modified")
    p.add_argument(
        "-o",
        "--output",
        required=True,  # (a string: its trailing "/" says a folder, `output_storage`)
        help="output: a new bag folder (OUT/metadata.yaml, OUT/OUT_0.mcap), or one storage file for a name ending in "
        ".mcap/.db3 that is not an existing folder nor ends in '/'; folders above it are created; an existing one is "
        "kept unless it is an earlier vdepth-bag output and --overwrite is given",
    )
    p.add_argument("--namespace", default="/", help="the node's namespace for its relative topic names (default /)")
    p.add_argument(
        "--image-topic", action=_OneCamera, help="colour Image/CompressedImage topic (default: NAMESPACE/image)"
    )
    p.add_argument("--camera-info-topic", action=_OneCamera, help="CameraInfo topic (default: NAMESPACE/camera_info)")
    p.add_argument(
        "--sparse-depth-topic",
        action=_OneCamera,
        help="metric scale source: a 16UC1/32FC1 depth image topic, or a PointCloud2 topic in the camera's optical "
        "frame (default: NAMESPACE/sparse_depth when the params say sparse_depth: image or pointcloud)",
    )
    p.add_argument(
        "--camera-pose-topic",
        action=_OneCamera,
        help="PoseStamped topic of the camera optical frame (metres) used as metric scale source: image points "
        "are triangulated with it (default: NAMESPACE/camera_pose when the params say sparse_depth: pose)",
    )
    p.add_argument(
        "--camera-info-file",
        type=Path,
        help=f"camera calibration file ({CALIBRATION_FORMATS}) used for every frame instead of the bag's "
        "camera_info, e.g. for bags recorded without one",
    )
    p.add_argument(
        "--rectify",
        action="store_true",
        help="undistort the images with their camera_info first (the node's rectify parameter; for raw, "
        "distorted images)",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="causal",
        help="causal = what the live node publishes (default); "
        "offline = each window re-aligned with two later windows (not causal)",
    )
    p.add_argument(
        "--storage", choices=sorted(STORAGE_NAMES), help="output storage (default: the output's .mcap/.db3, else mcap)"
    )
    p.add_argument(
        "--flicker",
        action="store_true",
        help="then measure how steady the written depth is (vdepth-flicker: flow warping error, TAE with poses)",
    )
    p.add_argument(
        "--log-time-stamps",
        action="store_true",
        help="stamp the inputs (and so the outputs) with the times the bag received them, for a camera driver "
        "that does not stamp its images (repeated or zero header stamps)",
    )
    p.add_argument(
        "--start",
        type=stamp_ns,
        metavar="STAMP",
        help="leave out the images stamped before STAMP (seconds, e.g. 1700000000.123456789): the rest of a stopped "
        "run, as its stop line names it; the depth stream starts there anew",
    )
    p.add_argument("--copy-input-topics", action="store_true", help="copy every input message into the output")
    p.add_argument(
        "--typestore",
        choices=sorted(TYPESTORE_NAMES),
        default="kilted",
        help="message definitions for bags that carry none (default kilted)",
    )
    add_run_options(p, "OUTPUT")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`vdepth-bag`)."""
    args = build_parser().parse_args(argv)
    require_bag_library()  # before any file is touched: one line naming the `bag` extra (entry.run_tool)
    expand_home(args)
    setup_logging(args.verbose)
    try:
        # as the node in that namespace reads the file: `/front/depth_node:` sections apply there
        params = load_node_params(args.params, f"{args.namespace.rstrip('/')}/depth_node", args.model)
        if args.rectify:
            params = {**params, "rectify": True}
        apply_blas_threads(params)  # the node's `blas_threads`, as the node applies it
        with stdout_for_results(), sigterm_as_interrupt():  # stdout: the summary alone
            summary = process_bag(
                args.input,
                args.output,
                params=params,
                image_topic=args.image_topic,
                camera_info_topic=args.camera_info_topic,
                sparse_depth_topic=args.sparse_depth_topic,
                camera_pose_topic=args.camera_pose_topic,
                camera_info_file=args.camera_info_file,
                mode=args.mode,
                storage=args.storage,
                copy_input_topics=args.copy_input_topics,
                overwrite=args.overwrite,
                typestore=args.typestore,
                model=args.model,
                backend=args.backend,
                namespace=args.namespace,
                progress=not args.no_progress and sys.stderr.isatty(),
                flicker=args.flicker,
                log_time_stamps=args.log_time_stamps,
                start_ns=args.start,
            )
    except (VdepthError, FileNotFoundError, KeyboardInterrupt) as exc:
        return cli_errors(PROG, exc)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    return exit_status(PROG, summary)


if __name__ == "__main__":
    sys.exit(main())
