"""`vdepth-flicker`: how steady is a depth video in a bag? Ground-truth free, any depth topic.

Reads the colour images and one or more depth topics from one or more bags (e.g. the output of
`vdepth-bag` together with its input, or a depth camera's recording), pairs each depth image with
the colour image of the same header stamp (within `--slop`), and reports per depth topic the flow
warping error (`vdepth_ros.consistency`): the mean relative change of depth along the optical flow
between consecutive frames. Lower is steadier; only numbers on the same video compare.

    vdepth-flicker out_bag in_bag --image-topic /image --depth-topic /depth
    vdepth-flicker rec.mcap --image-topic /cam/color/image_raw --depth-topic /depth \\
        --depth-topic /cam/aligned_depth_to_color/image_raw

Streaming: memory holds a few dozen frames whatever the bag's length. A gap of more than
`--max-gap` seconds (or time going backwards) restarts the chain of pairs, as the node restarts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vdepth_ros.consistency import FlowWarpingError
from vdepth_ros.encodings import depth_from_image, get_encoding, image_array_from_fields
from vdepth_ros.errors import InputError
from vdepth_ros.offline.bagio import (
    IMAGE,
    IMAGE_TYPES,
    TYPESTORES,
    decode_color_msg,
    guarded_messages,
    open_reader,
    stamp_ns,
)
from vdepth_ros.offline.errors import BagReadError, MissingTopicError, UnsupportedEncodingError
from vdepth_ros.offline.runner import cli_errors, setup_logging

PROG = "vdepth-flicker"
_HELD = 32  # unmatched images / depth images kept per stream (stamps already passed are dropped)


@dataclass
class TopicFlicker:
    """The result for one depth topic.

    Attributes:
        topic: the depth topic.
        frames: depth images paired with a colour image.
        pairs: consecutive pairs scored (each gives one error).
        unmatched: depth images without a colour image within the slop.
        restarts: chains restarted by a gap or a backwards jump.
        errors: the per-pair errors, in order.
    """

    topic: str
    frames: int = 0
    pairs: int = 0
    unmatched: int = 0
    restarts: int = 0
    errors: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.errors)) if self.errors else None

    def to_dict(self) -> dict[str, Any]:
        e = np.asarray(self.errors)
        return {
            "topic": self.topic,
            "flow_warping_error": self.mean,
            "median": float(np.median(e)) if e.size else None,
            "p90": float(np.percentile(e, 90)) if e.size else None,
            "frames": self.frames,
            "pairs": self.pairs,
            "unmatched_depth": self.unmatched,
            "restarts": self.restarts,
        }


class _Chain:
    """One depth topic's chain of paired frames, in stamp order."""

    def __init__(self, topic: str, max_gap_ns: int, max_width: int) -> None:
        self.result = TopicFlicker(topic)
        self.meter = FlowWarpingError(max_width=max_width)
        self.max_gap_ns = max_gap_ns
        self.last: int | None = None
        self.pending: OrderedDict[int, np.ndarray] = OrderedDict()

    def add(self, stamp: int, rgb: np.ndarray, depth: np.ndarray) -> None:
        if self.last is not None and (stamp <= self.last or stamp - self.last > self.max_gap_ns):
            self.meter.reset()
            self.result.restarts += 1
        self.last = stamp
        self.result.frames += 1
        err = self.meter.add(rgb, depth)
        if err is not None:
            self.result.pairs += 1
            self.result.errors.append(err)


def _nearest(store: OrderedDict[int, Any], stamp: int, slop_ns: int) -> int | None:
    best = min(store, key=lambda s: abs(s - stamp), default=None)
    return best if best is not None and abs(best - stamp) <= slop_ns else None


def _depth(msg: Any, topic: str) -> np.ndarray:
    try:
        enc = get_encoding(msg.encoding)
        if enc.unit_scale is None:
            raise InputError(f"encoding {msg.encoding!r} is not a depth image (16UC1 or 32FC1)")
        arr = image_array_from_fields(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
    except InputError as err:
        raise UnsupportedEncodingError(f"depth topic {topic!r}: {err}") from None
    return depth_from_image(arr, msg.encoding)


def measure_flicker(
    paths: Sequence[str | Path],
    image_topic: str,
    depth_topics: Sequence[str],
    *,
    slop: float = 0.02,
    max_gap: float = 1.0,
    max_width: int = 320,
    typestore: str = "kilted",
) -> list[TopicFlicker]:
    """The flow warping error of each depth topic against `image_topic` (module docstring).

    Raises:
        FileNotFoundError, BagReadError, MissingTopicError, UnsupportedEncodingError.
    """
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"bag {p} does not exist")
    if not depth_topics:
        raise MissingTopicError("give at least one --depth-topic")
    if image_topic in depth_topics:
        raise MissingTopicError(f"{image_topic!r} is given as both the colour and a depth topic")
    reader = open_reader(paths, typestore)
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        listed = ", ".join(f"{t} [{m}]" for t, m in sorted(topics.items())) or "(none)"
        for topic, allowed in [(image_topic, IMAGE_TYPES), *[(t, (IMAGE,)) for t in depth_topics]]:
            if topic not in topics:
                raise MissingTopicError(f"topic {topic!r} not found; the bags hold: {listed}")
            if topics[topic] not in allowed:
                raise MissingTopicError(f"topic {topic!r} is {topics[topic]}, expected {' or '.join(allowed)}")
        chains = {t: _Chain(t, round(max_gap * 1e9), max_width) for t in depth_topics}
        slop_ns = round(slop * 1e9)
        images: OrderedDict[int, np.ndarray] = OrderedDict()
        wanted = [c for c in reader.connections if c.topic == image_topic or c.topic in chains]
        for conn, _t, raw in guarded_messages(reader, wanted, paths[0]):
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception as err:
                raise BagReadError(f"cannot deserialize a {conn.msgtype} message on {conn.topic} ({err})") from err
            stamp = stamp_ns(msg.header)
            if conn.topic == image_topic:
                try:
                    images[stamp] = decode_color_msg(msg, conn.msgtype, image_topic)
                except UnsupportedEncodingError:
                    raise
                except InputError:
                    continue  # a malformed image: its depth goes unmatched
                while len(images) > _HELD:
                    images.popitem(last=False)
                for chain in chains.values():  # depth images that arrived before their colour image
                    for ds in [s for s in chain.pending if abs(s - stamp) <= slop_ns]:
                        chain.add(ds, images[stamp], chain.pending.pop(ds))
            else:
                chain = chains[conn.topic]
                depth = _depth(msg, conn.topic)
                key = _nearest(images, stamp, slop_ns)
                if key is not None:
                    chain.add(stamp, images[key], depth)
                else:
                    chain.pending[stamp] = depth
                    while len(chain.pending) > _HELD:
                        chain.pending.popitem(last=False)
                        chain.result.unmatched += 1
        for chain in chains.values():
            chain.result.unmatched += len(chain.pending)
        return [c.result for c in chains.values()]
    finally:
        reader.close()


def format_report(results: list[TopicFlicker]) -> str:
    lines = ["flow warping error (mean relative depth change along the optical flow; lower is steadier)"]
    for r in results:
        d = r.to_dict()
        value = "-"
        if r.mean is not None:
            value = f"{d['flow_warping_error']:.4f} (median {d['median']:.4f}, p90 {d['p90']:.4f})"
        lines.append(
            f"  {r.topic}: {value} over {r.pairs} pairs of {r.frames} paired frames"
            + (f", {r.unmatched} depth images without a colour image" if r.unmatched else "")
            + (f", {r.restarts} restarts" if r.restarts else "")
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("bags", type=Path, nargs="+", help="bag folders or .mcap/.db3 files, read together in time order")
    p.add_argument("--image-topic", default="/image", help="colour Image/CompressedImage topic (default /image)")
    p.add_argument(
        "--depth-topic",
        action="append",
        dest="depth_topics",
        help="depth Image topic (16UC1 mm / 32FC1 m); repeat to compare several (default /depth)",
    )
    p.add_argument("--slop", type=float, default=0.02, help="largest image/depth stamp difference paired [s]")
    p.add_argument("--max-gap", type=float, default=1.0, help="a larger stamp gap restarts the chain [s]")
    p.add_argument("--max-width", type=int, default=320, help="flow is computed on a copy at most this wide")
    p.add_argument("--typestore", choices=sorted(TYPESTORES), default="kilted")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`vdepth-flicker`)."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        results = measure_flicker(
            args.bags,
            args.image_topic,
            args.depth_topics or ["/depth"],
            slop=args.slop,
            max_gap=args.max_gap,
            max_width=args.max_width,
            typestore=args.typestore,
        )
        if not any(r.pairs for r in results):
            raise BagReadError(
                "no consecutive image/depth pairs matched: check the topics, and --slop against the stamps"
            )
    except (BagReadError, UnsupportedEncodingError, FileNotFoundError, KeyboardInterrupt) as exc:
        return cli_errors(PROG, exc)
    print(json.dumps([r.to_dict() for r in results], indent=2) if args.json else format_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
