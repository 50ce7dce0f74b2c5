"""What a `vdepth-bag` run's summary says about it, beside the counts: which input topics the output
holds, why frames were dropped or inputs ignored, restarts, frames without metric depth, and the
written depth's flicker (`vdepth-flicker` on the output). The notes a user reads at the end of a long
bag, when the one WARNING per reason has scrolled away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vdepth_ros.offline.runner import NO_FIT_YET
from vdepth_ros.pipeline_types import SPARSE_SPAN

if TYPE_CHECKING:
    from pathlib import Path

    from vdepth_ros.inputs.resets import StreamResets
    from vdepth_ros.offline.bag_reader import BagFrameSource
    from vdepth_ros.offline.bag_topics import BagTopics
    from vdepth_ros.offline.bag_writer import DepthBagWriter
    from vdepth_ros.offline.runner import RunSummary


#: Where the output bags play: the tools run where ROS 2 may come from pip wheels, which have no `ros2` CLI (as the
#: node's advice says, `node_params.runtime_set_advice`)
PLAYER = "`ros2 bag play` comes with a ROS 2 distro install, such as the robot's; ROS 2 from pip wheels has no ros2 CLI"


def input_topics_note(input_path: Path, source: BagFrameSource, copied: bool, writer: DepthBagWriter) -> str:
    """What the output holds of the input's topics (not copied by default: the input stays as it is)."""
    n = len(source.topics)
    if copied:
        kept = n - len(writer.not_copied)
        return f"the input's {f'{kept} of {n}' if kept < n else n} topics were copied into the output"
    topics = "topic stays" if n == 1 else "topics stay"
    return (
        f"the output holds the depth outputs only; the input's {n} {topics} in {input_path}: --copy-input-topics "
        f"copies them in, for one bag to play or map from ({PLAYER})"
    )


def _refused_camera_info_notes(stats: Any, topics: BagTopics) -> list[str]:
    """What the run made of camera_infos it could not use as they came (`FrameAssembler`'s rules, the node's)."""
    notes = [f"{topics.camera_info}: {stats.sizeless_camera_info}"] if stats.sizeless_camera_info else []
    if stats.no_camera:
        notes.append(f"frames without a point cloud and depth/camera_info: {stats.no_camera}")
    if stats.refused_camera_infos:
        before = stats.refused_camera_infos_before_good
        stood_in = stats.refused_camera_infos - before
        why = [f"{stood_in} got the last good one, as the live node does"] if stood_in else []
        why += [f"{before} came before any good one: no point cloud, no depth/camera_info"] if before else []
        notes.append(f"{stats.refused_camera_infos} frames came with an unusable camera_info ({'; '.join(why)})")
    return notes


def add_run_notes(
    summary: RunSummary, source: BagFrameSource, topics: BagTopics, resets: StreamResets, fixed_info: Any
) -> None:
    """Input counts and what the user should know about the run (restarts, ignored inputs) into `summary`."""
    stats = source.stats
    # (an image of another size too: a camera switching modes mid-bag had its restarts in the log alone)
    summary.notes += [
        f"stream restarted {n}x ({'the image size changed' if kind == 'resolution' else kind}), as the live node would"
        for kind, n in resets.counts.items()
    ]
    summary.frames_in = stats.images + stats.dropped
    if stats.thinned:
        summary.notes.append(f"{stats.thinned} images left out by max_input_rate, as the live node would")
    summary.dropped = stats.dropped
    # why, in the summary: the one WARNING per reason scrolled away hours before the end of a long bag
    summary.notes += [f"dropped {n} of the {summary.frames_in} images: {why}" for why, n in stats.drop_reasons.items()]
    summary.notes += stats.skipped.notes()  # a camera_info, sparse depth or pose message that could not be read
    summary.skipped = stats.drops.to_list() + stats.skipped.to_list()
    if topics.camera_pose:
        summary.notes.append(
            f"camera poses on {topics.camera_pose}: {stats.posed_frames} of {stats.images} frames triangulated"
            + (f", {stats.bad_poses} invalid pose messages ignored" if stats.bad_poses else "")
        )
    for reason, n in stats.sparse_depth_ignored.items():
        summary.notes.append(f"sparse depth on {topics.sparse_depth} ignored on {n} frames: {reason}")
    if stats.sparse_depth_unmatched:
        gap = stats.sparse_depth_unmatched_gap_ns
        summary.notes.append(
            f"{stats.sparse_depth_unmatched} of {stats.images} frames had no sample on {topics.sparse_depth} stamped "
            "within sparse_depth_slop of them"
            + (
                " (none on the topic)"
                if gap is None
                else f" (the newest before the last such frame was stamped {abs(gap) / 1e9:.3f} s "
                f"{'after' if gap >= 0 else 'before'} it: a sensor stamping with another clock than the camera, or "
                "slower than sparse_depth_slop: raise it in --params to about its period)"
            )
        )
    summary.notes += _refused_camera_info_notes(stats, topics)
    if stats.camera_info_unpaired:
        summary.notes.append(
            f"camera_info on {topics.camera_info!r} was stamped within sync_slop of no image, from some point on: "
            f"{stats.camera_info_unpaired}; each image got the last one received, as the live node does"
        )
    if not stats.camera_info_seen and fixed_info is None and not source.camera_info_recorded:
        summary.notes.append(
            f"the bag has no CameraInfo topic ({topics.camera_info!r} or another): no point clouds and no "
            "depth/camera_info; give the camera's calibration with --camera-info-file"
        )
    elif not stats.camera_info_seen and fixed_info is None:
        summary.notes.append(f"camera_info never seen on {topics.camera_info!r}: no point clouds")
    if summary.scale_sources.get("none", 0) == summary.frames_out and summary.frames_out:
        summary.notes.append("no scale source: only disparity was written (no metric depth, no clouds)")
    if summary.sparse_span_frames and summary.sparse_span_samples is not None:
        # the node's WARN (`pipeline_types.sparse_span`), with its numbers: the log line scrolled away
        near, far = summary.sparse_span_samples
        summary.notes.append(
            f"{summary.sparse_span_frames} of {summary.frames_out} frames: {SPARSE_SPAN} (samples from {near:.2f} to "
            f"{far:.2f} m, up to {100 * summary.sparse_span_worst:.0f}% of a frame beyond them); give "
            f"{topics.sparse_depth or 'sparse_depth'} from a sensor that sees the whole scene, or trust /depth only "
            "between those depths"
        )
    unfit = sum(n for kind, n in summary.scale_sources.items() if kind.endswith(NO_FIT_YET))
    if unfit:
        summary.notes.append(
            f"{unfit} of {summary.frames_out} frames have no metric depth (disparity only, no cloud): the metric "
            f"input on {topics.sparse_depth or topics.camera_pose} gave no usable scale fit by then (fewer than "
            "sparse_min_points samples in a window, or a fit of negative scale: is the depth registered to the "
            "image, in its frame?)"
        )


def flicker_note(
    output: Path,
    source_bag: Path,
    image_topic: str,
    topics: BagTopics,
    counts: dict[str, int],
    typestore: str,
    log_time_stamps: bool = False,
    max_input_pixels: int = 0,
    image_bit_depth: int = 0,
    image_encoding: str = "auto",
    max_gap: float = 1.0,
) -> str:
    """`vdepth-flicker` on the finished output bag, read together with its input, as one note (images above the
    run's `max_input_pixels`, which it dropped, are skipped there too; its images read by the run's `image_bit_depth`
    and `image_encoding`, as the run read them, and restarted at the run's `max_gap`)."""
    from vdepth_ros.offline.flicker import measure_flicker

    depth = topics.outputs.depth
    if not depth or not counts.get(depth):
        return "flicker: not measured (no depth was written: no scale source)"
    (r,) = measure_flicker(
        [output, source_bag],
        image_topic,
        [depth],
        pose_topic=topics.camera_pose,  # TAE's intrinsics: the written <depth>/camera_info, found by name
        typestore=typestore,
        log_time_stamps=log_time_stamps,  # the outputs carry the receive times of their images then
        max_input_pixels=max_input_pixels,
        image_bit_depth=image_bit_depth,
        image_encoding=image_encoding,
        max_gap=max_gap,
        tell_skipped=False,  # the run told the input's bad messages already
    )
    d = r.to_dict()
    if d["flow_warping_error"] is None:
        return f"flicker of {depth}: not measured (no consecutive pairs)"
    tae = f"; TAE x100 with the camera poses {d['tae_x100']:.3f}" if d["tae_x100"] is not None else ""
    fwe = d["flow_warping_error"]
    skipped = f" ({d['skipped_images']} input images skipped there too)" if d["skipped_images"] else ""
    return f"flicker of {depth} (flow warping error, lower is steadier): {fwe:.4f} over {r.pairs} pairs{tae}{skipped}"
