"""The frames and camera_infos lost before the node: counted from the image stamps' gaps and the
publishers' DDS sequence numbers, a camera driver's clock step told apart from a gap, and the warnings
that name the cause and the fix (each once).

A mixin of `intake.InputSide`, which sets the attributes these steps read: `_node`, `p`, `log`,
`subscriptions`, `image_topic`, `arrival_speed`, `loss`, `sequences`, `info_sequences`, `infos_received`,
`infos_lost` and the warned-once flags.
"""

from __future__ import annotations

from rclpy.qos import ReliabilityPolicy
from rclpy.subscription import MessageInfo

from vdepth_ros.inputs.loss import InputLossMeter, PublisherSequences
from vdepth_ros.inputs.resets import clock_step_ns
from vdepth_ros.paths import config_dir
from vdepth_ros.ros.transport import PROFILE_NAME, PROFILE_VARIABLE

#: The problem named while the image stamps keep no steady frame period (`InputLossMeter.measurable`).
UNMEASURABLE_LOSS = {
    "stamps": (
        "cannot measure loss: no steady frame period in the image stamps (a driver stalling and catching up)",
        "cannot measure the frames lost before this node: the image stamps keep no steady frame period (most of "
        "the time goes to stalls and to frames sent in bursts after them: a driver that stamps each frame as it "
        "publishes it, on a loaded machine or behind a slow grab). Until they do, no loss is counted from them "
        "(/diagnostics: 'lost before the node' says so; frames the publisher sent and never arrived are still "
        "counted by their DDS sequence numbers). Stamp frames with their capture time (the camera's hardware "
        "clock, or the time the driver grabbed them) and keep the driver from stalling (docs/node.md#qos).",
    )
}
#: Where the input-loss warning sends the user (docs section written from measurements).
ACROSS_PROCESSES = "docs/node.md#across-processes"
#: camera_infos sent and never received (`InputSide._count_info_loss`) before a WARN, and their least share of those
#: sent: more than a driver's stall now and then loses (3 of 66 in test_ros_stream_ends.py), which costs nothing
INFO_LOSS_WARN_AFTER = 5
INFO_LOSS_WARN_SHARE = 0.05


def loss_count(loss: InputLossMeter) -> str:
    """The frames lost before the node as /diagnostics and the shutdown summary say it: the count, and where the
    stamps kept no steady frame period for some images (`InputLossMeter.measurable`), that its loss is unknown."""
    text = f"{loss.lost} lost before the node"
    notes = [f"{loss.in_transport} of them sent and never taken"] if loss.in_transport else []
    if not loss.measurable:
        text = f"cannot measure loss: no steady frame period in the image stamps ({loss.lost} counted before)"
    elif loss.unmeasured:
        notes.append(f"not measurable for {loss.unmeasured} images: no steady frame period in their stamps")
    return text + (f" ({'; '.join(notes)})" if notes else "")


class InputLossCounting:
    """Mixed into `intake.InputSide`: every image and camera_info counted for what was lost before it."""

    def _sent(self, info: MessageInfo | None, sequences: PublisherSequences | None = None) -> int | None:
        """Messages the publisher sent since its last one that arrived (`inputs.loss.PublisherSequences`): of
        the images, or of `sequences`' topic."""
        if not info:
            return None
        gid = info.get("publisher_gid")
        publisher = bytes(gid["data"]) if isinstance(gid, dict) and gid.get("data") is not None else None
        return (self.sequences if sequences is None else sequences).add(
            publisher, info.get("publication_sequence_number")
        )

    def _clock_step(self, stamp: int, arrival: int) -> int:
        """How far the stamps' clock stepped forward before this image (`inputs.resets.clock_step_ns`); WARNs
        (rate-limited) when it did: a camera driver's clock set mid-stream."""
        last, self._last_arrival = self._last_arrival, (stamp, arrival)
        if last is None or stamp <= last[0]:
            return 0
        step = clock_step_ns(stamp - last[0], arrival - last[1], self.arrival_speed.step_ns)
        if step:
            self.log.warning(
                "clock-step",
                f"the image stamps jumped {step / 1e9:.3f} s forward between two images that arrived "
                f"{(arrival - last[1]) / 1e9:.3f} s apart: the camera driver's clock was set mid-stream (NTP, "
                "chrony's makestep, a PTP re-lock). The images across it are neither a gap nor lost frames"
                + ("; the depth stream restarts there (longer than max_gap)" if step > self.loss.max_gap_ns > 0 else "")
                + ", and the outputs' stamps jump with the images'. Have the driver stamp with a clock that is "
                "slewed, not stepped (chrony: makestep only at boot), or with its hardware clock.",
            )
        return step

    def _count_loss(self, stamp: int, info: MessageInfo | None = None, clock_step: int = 0) -> None:
        sent = self._sent(info)
        # (no step across a driver's restart, or its clock's step: the frames its span would hold were never due)
        new_timeline = (bool(info) and self.sequences.switched) or clock_step > 0
        missing = self.loss.add(stamp, sent, new_publisher=new_timeline)
        if self.loss.measurable != self._loss_measurable:
            self._loss_measurable = self.loss.measurable
            self.log.problems.report("input-loss-unmeasurable", None if self._loss_measurable else UNMEASURABLE_LOSS)
        if missing and not self._loss_warned and self.loss.confirmed >= 10 and self.loss.fraction > 0.02:
            self._loss_warned = True
            period = self.loss.period_ns or 1
            self.log.warning(
                "input-loss",
                f"{self.loss.lost} of {self.loss.received + self.loss.lost} camera frames never reached this node "
                f"(gaps in the image stamps at the camera's {1e9 / period:.1f} Hz; {self.loss.in_transport} of them "
                "sent by its publisher and never taken, by their DDS sequence numbers: lost in transport, or "
                "overwritten in a history of input_qos_depth while the node was busy). Across processes "
                f"best-effort images are lost in transport: {self._loss_fix()} (" + ACROSS_PROCESSES + "). "
                "Counted on /diagnostics as 'lost before the node'; this warning is shown once.",
                summary="",  # (the status's rule for frames lost before the node)
            )

    def _loss_fix(self) -> str:
        """What the input-loss WARN advises, by the image subscription's reliability and `input_qos`: the profile with
        a large shared-memory segment in the camera driver's process first (docs/node.md#across-processes: a larger
        receive buffer or Fast DDS's other built-in transports delivered 0-12 % of best-effort 640x480 images)."""
        profile = (
            f"start the camera driver with {PROFILE_VARIABLE}={config_dir() / PROFILE_NAME} (a 32 MiB shared-memory "
            "segment for its images: what counts is the publishing process)"
        )
        image = next((sub for sub in self.subscriptions if sub.topic_name == self.image_topic), None)
        if image is not None and image.qos_profile.reliability == ReliabilityPolicy.RELIABLE:
            return f"{profile}, or raise input_qos_depth (images arrived faster than this node took them)"
        if self.p["input_qos"] == "auto":
            return (
                f"the camera publishes best effort: {profile}, or have its driver publish reliable (its QoS "
                "parameter; input_qos auto follows it)"
            )
        return f"for a reliable camera driver set input_qos:=auto or reliable; otherwise {profile}"

    def _count_info_loss(self, info: MessageInfo | None) -> int:
        """Count the camera_infos their publisher sent that never arrived (gaps in its sequence numbers), and WARN
        once where they are more than a stray one: each image without its own camera_info then gets a neighbouring
        frame's or the last one (right only while the calibration is fixed), and nothing else says why. Returns
        how many were lost just before this one (`ApproximateTimeSync.add_info`'s `lost`)."""
        sent = self._sent(info, self.info_sequences)
        before = max(0, (sent or 1) - 1)
        self.infos_received += 1
        self.infos_lost += before
        lost, total = self.infos_lost, self.infos_received + self.infos_lost
        if self._info_loss_warned or lost < INFO_LOSS_WARN_AFTER or lost <= INFO_LOSS_WARN_SHARE * total:
            return before
        self._info_loss_warned = True
        self.log.warning(
            "camera-info-loss",
            f"{lost} of {total} camera_infos sent on '{self._node.resolve_topic_name('camera_info')}' were lost "
            "before this node (gaps in their publisher's DDS sequence numbers): in transport, or overwritten in this "
            "node's history of input_qos_depth while it was busy. Fast DDS on its defaults "
            "hands a message to another process through a 512 KiB shared-memory segment of the publishing process, "
            "and an image published right after a camera_info reuses its buffer before this node has read it (a "
            "driver publishing each camera_info just before its image loses many). Start the camera driver with "
            f"{PROFILE_VARIABLE}={config_dir() / PROFILE_NAME} (" + ACROSS_PROCESSES + "), or have it publish each "
            "image before its camera_info, as image_transport's CameraPublisher does. Meanwhile an image whose "
            "camera_info was lost gets a neighbouring frame's (right while the calibration does not change; 'cached' "
            "on /diagnostics). Counted on /diagnostics as 'camera_info lost in transport'; this warning is shown once.",
            summary="",
        )
        return before
