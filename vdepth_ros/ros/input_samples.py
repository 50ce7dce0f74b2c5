"""The sparse depth or camera pose samples of the input: received (`InputSide.sample_for` matches them
to a frame by the shared rule, `inputs.samples`), and, where an image got none, why.

A mixin of `intake.InputSide`, which sets the attributes these steps read: `_node`, `p`, `log`,
`samples`, `samples_received`, `sample_arrived_s`, `arrival_speed`, `_lock` and `_sample_arrived`.
"""

from __future__ import annotations

import time
from typing import Any

from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CompressedImage, Image, PointCloud2

from vdepth_ros.errors import InputError
from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.input_loss import ACROSS_PROCESSES

#: `unmatched_sample_reason`: no sparse_depth message for this long (steady seconds) after some came is a sensor
#: that stopped publishing (dropped out), not one stamping with another clock (which keeps sending them)
SAMPLES_STOPPED_S = 2.0


class SparseSamples:
    """Mixed into `intake.InputSide`: the sparse_depth / camera_pose callback, and why a frame got no sample."""

    def _on_sparse(self, msg: Image | CompressedImage | PointCloud2 | PoseStamped) -> None:
        try:
            sample: Any = msg
            if isinstance(msg, PoseStamped):
                sample = conv.pose_from_msg(msg)
            with self._sample_arrived:
                self.samples_received += 1
                self.sample_arrived_s = time.monotonic()
                self.samples.add(conv.stamp_to_ns(msg.header.stamp), time.monotonic_ns(), sample)
                self._sample_arrived.notify_all()
        except InputError as err:
            self.log.error(
                "sparse-message",
                f"ignoring a {type(msg).__name__} message: {err}",
                summary=f"ignoring {type(msg).__name__} sparse input messages",
            )
        except Exception as err:
            self.log.error(
                "sparse-callback",
                f"sparse input callback failed: {err!r}",
                summary=f"the sparse input callback failed ({type(err).__name__})",
            )

    def unmatched_sample_reason(self, stamp_ns: int) -> str:
        """Why an image stamped `stamp_ns` got no sparse_depth sample, with the fix: none arrived
        (nothing publishes the topic, or its messages do not reach this node), they stopped arriving
        (the sensor dropped out), or those that do are stamped too far from the images (another
        clock, or a sensor slower than `sparse_depth_slop`)."""
        node = self._node
        topic = node.resolve_topic_name("sparse_depth")
        with self._lock:
            received, newest = self.samples_received, self.samples.newest_stamp_ns()
            silent_s = time.monotonic() - self.sample_arrived_s
        if not received:
            publishers = node.count_publishers(topic)
            if not publishers:
                own = node.resolve_topic_name("sparse_depth", only_expand=True)
                return (
                    f"no message has arrived on '{topic}': nothing publishes it; remap sparse_depth to the depth "
                    f"registered to the camera (-r {own}:=/camera/aligned_depth_to_color/image_raw) or, with "
                    "sparse_depth:=pointcloud, to a cloud in its optical frame"
                )
            qos = (
                "input_qos reliable, which matches no best-effort sensor"
                if self.p["input_qos"] == "reliable"
                else f"large best-effort messages between processes, needing the Fast DDS profile ({ACROSS_PROCESSES})"
            )
            return (
                f"no message has arrived on '{topic}', which has {publishers} publisher(s): another message type "
                f"(named in a WARN), or {qos}"
            )
        gap = ((newest or 0) - stamp_ns) / 1e9
        if silent_s > SAMPLES_STOPPED_S:  # they came, then stopped: not a clock, which would still send them
            return (
                f"{received} arrived on '{topic}', the last {silent_s:.0f} s ago: the depth sensor stopped publishing "
                "(it dropped out, or its driver stalled or was stopped); check the sensor and its driver"
            )
        return (
            f"{received} arrived on '{topic}', none stamped within sparse_depth_slop ({self.p['sparse_depth_slop']:g} "
            f"s) of an image (the newest is stamped {abs(gap):.3f} s {'after' if gap >= 0 else 'before'} this one): "
            "the sensor stamps with another clock than the camera (have both stamp with ROS time), or publishes "
            "slower than that (raise sparse_depth_slop to about its period)"
        )
