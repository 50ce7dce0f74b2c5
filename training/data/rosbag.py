"""The user's own recordings: a rosbag2 bag with a colour topic and a depth topic (an RGB-D camera
such as a RealSense or ZED, or a LiDAR depth image registered to the camera), read into `Sequence`s.

The bag is read as `vdepth-bag` reads it (`vdepth_ros.offline.bag_reader.BagFrameSource`: the same
topics, encodings, camera_info pairing and depth matching by header stamp), so a depth image is in
metres whatever its encoding (`16UC1` millimetres or `32FC1` metres) and must have the colour
image's size (record the depth registered to the colour camera, e.g. RealSense's
`aligned_depth_to_color`). Runs of consecutive frames with depth become sequences of at most
`frames_per_sequence` frames; a frame without depth ends a run. Converted with

    python -m vdepth_training.data.layouts rosbag BAG --out data/mine --depth-topic /camera/depth

and trained with `layout: sequence` (a bag is not read during training: it is streamed once here).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from vdepth_training.data.sequence import Sequence

from vdepth_ros.errors import ConfigError
from vdepth_ros.inputs.decode import NODE_SETTINGS, SettingWords
from vdepth_ros.node_params import ros_param_values

log = logging.getLogger(__name__)

DEFAULT_FRAMES_PER_SEQUENCE = 300
#: colour and depth stamps further apart than this are not paired [s] (the node's `sync_slop`)
DEFAULT_MAX_STAMP_GAP = 0.02


def rosbag_sequences(
    bag: str | Path,
    *,
    depth_topic: str,
    image_topic: str | None = None,
    camera_info_topic: str | None = None,
    frames_per_sequence: int = DEFAULT_FRAMES_PER_SEQUENCE,
    min_frames: int = 2,
    max_stamp_gap: float = DEFAULT_MAX_STAMP_GAP,
    image_encoding: str = "auto",
    image_bit_depth: int = 0,
    setting_words: SettingWords = NODE_SETTINGS,
) -> Iterator[Sequence]:
    """The bag's frames with depth as metric-depth sequences, streamed (one sequence in memory).

    Args:
        bag: a bag folder or a bare `.mcap` / `.db3` file.
        depth_topic: `sensor_msgs/Image` depth (`16UC1` mm or `32FC1` m) registered to the colour image
            (in its frame), at its size (at another resolution of its aspect ratio: a sparser target).
        image_topic: the colour topic (default: the bag's only image topic besides the depth).
        camera_info_topic: its camera_info (default: the one beside the image topic, or the only one);
            the sequences get intrinsics where one is present.
        frames_per_sequence: the longest sequence written; longer runs are split.
        min_frames: shorter runs of frames with depth are skipped (a clip needs a few frames).
        max_stamp_gap: the largest colour/depth header stamp difference paired [s]; tighter than
            the node's `sparse_depth_slop` (0.1 s, a scale source), since a depth map a few frames
            off in a moving scene is a wrong target, not a slightly older scale.
        image_encoding, image_bit_depth: the colour images are read as the node reads them with these parameters
            (an IR camera's 16UC1 as mono16, a 12-bit camera's samples), so the model trains on what it will see.
        setting_words: how the user sets those two, in the fixes named (the command line's flags).

    Raises:
        ConfigError: `frames_per_sequence` < 1, or no frame of the bag had usable depth (naming why,
            e.g. a depth image of another size than the colour image).
        FileNotFoundError, vdepth_ros.offline.errors.OfflineError: the bag or a topic cannot be read.
    """
    from vdepth_ros.offline.bag_reader import BagFrameSource

    if frames_per_sequence < 1 or min_frames < 1:
        raise ConfigError(f"frames_per_sequence and min_frames must be >= 1, got {frames_per_sequence}, {min_frames}")
    bag = Path(bag)
    source = BagFrameSource(
        bag,
        image_topic=image_topic or _only_colour_topic(bag, depth_topic, image_encoding),
        camera_info_topic=camera_info_topic or "/camera_info",
        camera_info_topic_explicit=camera_info_topic is not None,
        sparse_depth_topic=depth_topic,
        sparse_depth_slop_ns=round(max_stamp_gap * 1e9),
        image_encoding=image_encoding,
        image_bit_depth=image_bit_depth,
        max_gap_s=ros_param_values({})["max_gap"],  # its bit depth found anew where the node's default finds it
        setting_words=setting_words,
    )
    written = skipped = without_depth = 0
    run: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    part = 0

    def flush() -> Iterator[Sequence]:
        nonlocal part, skipped
        if len(run) >= min_frames:
            yield _sequence(run, f"{bag.stem or bag.name}/{part:04d}")
            part += 1
        else:
            skipped += len(run)
        run.clear()

    with source.open():
        for frame in source.frames():
            depth = frame.sparse_depth
            if depth is None or not (np.isfinite(depth) & (depth > 0)).any():
                without_depth += 1
                yield from flush()
                continue
            if run and run[0][0].shape != frame.rgb.shape:  # the camera changed resolution: a new sequence
                yield from flush()
            k = None if frame.camera is None else frame.camera.matrix
            run.append((frame.rgb, depth, k))
            written += 1
            if len(run) == frames_per_sequence:
                yield from flush()
        yield from flush()
    if part == 0:
        reasons = "; ".join(f"{why} ({n} frames)" for why, n in source.stats.sparse_depth_ignored.items())
        raise ConfigError(
            f"{bag}: no run of {min_frames}+ frames on {source.image_topic!r} had depth on {depth_topic!r} "
            f"({source.stats.images} images, {without_depth} without depth"
            + (
                f": {reasons}"
                if reasons
                else f", none stamped within {max_stamp_gap:g} s of an image (--max-stamp-gap)"
            )
            + "); record the depth registered to the colour camera (same size and stamps, e.g. "
            "aligned_depth_to_color) or choose the topics with --image-topic/--depth-topic"
        )
    if without_depth or skipped:
        log.warning(
            "%s: %d of %d frames had no usable depth on %r and %d were in runs shorter than %d frames; "
            "they were left out",
            bag,
            without_depth,
            source.stats.images,
            depth_topic,
            skipped,
            min_frames,
        )


def _only_colour_topic(bag: Path, depth_topic: str, image_encoding: str = "auto") -> str:
    """The bag's only colour image topic other than the depth topic (`image_topics_by_kind`, as
    `vdepth-bag` chooses: a depth camera's other depth topics are not candidates); several or none
    name the choice. With `image_encoding` set, the raw topics whose images it reads are colour ones."""
    from vdepth_ros.offline.bag_messages import image_topics_by_kind, open_reader
    from vdepth_ros.offline.bag_types import IMAGE_TYPES

    reader = open_reader([bag], "kilted")
    try:
        images = sorted({c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES})
        colour = image_topics_by_kind(reader, image_encoding)["colour"]
    finally:
        reader.close()
    if depth_topic not in images:
        raise ConfigError(
            f"{bag}: depth topic {depth_topic!r} is not an image topic of the bag; "
            f"its image topics: {', '.join(images) or 'none'}"
        )
    topics = [t for t in colour if t != depth_topic]
    if len(topics) != 1:
        listed = ", ".join(topics) or "none"
        raise ConfigError(
            f"{bag}: choose the colour topic with --image-topic (image topics besides the depth: {listed})"
        )
    return topics[0]


def _sequence(run: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], name: str) -> Sequence:
    depth = np.stack([d for _, d, _ in run]).astype(np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    intrinsics = None
    if all(k is not None for _, _, k in run):
        intrinsics = np.stack([np.asarray(k, np.float64) for _, _, k in run])
    return Sequence(
        rgb=np.stack([rgb for rgb, _, _ in run]),
        target=np.where(valid, depth, 0.0).astype(np.float32),
        valid=valid,
        target_kind="depth",
        intrinsics=intrinsics,
        metric=True,
        name=name,
        source="rosbag",
    )


__all__ = ["DEFAULT_FRAMES_PER_SEQUENCE", "DEFAULT_MAX_STAMP_GAP", "rosbag_sequences"]
