"""The other processes of test_ros_deployed.py: a camera driver and a viewer (RViz's QoS).

    python deployed_peers.py camera --namespaces /front /rear --seconds 20 --rate 15 [--reliable]
        [--pause-after N --pause S] [--size WxH] [--encoding E [--sample-bits B[@K],...]] [--no-camera-info]
        [--die-after N]
        [--last-image-alone] [--speed X] [--hold] [--loops N] [--clock HZ] [--pose-latency MS] [--binning B]
        [--info-readers N] [--info-first] [--drop-infos F] [--zoom Z] [--ros-time] [--stall-every N [--stall S]]
        [--linger S] [--frame-id ID] [--distortion MODEL] [--lens K1,K2,P1,P2,K3] [--uncalibrated] [--info-size WxH]
        [--depth-sensor 16UC1|32FC1 [--depth-size WxH] [--depth-offset-ms MS] [--depth-dropout A:B]
         [--depth-outliers F] [--depth-range M] [--depth-frame FRAME]]
    python deployed_peers.py viewer --topics /depth /depth/camera_info /points [--depth 16] [--best-effort]
        [--transient-local] [--deadline-ms MS] [--type TOPIC=pkg/msg/Name] [--arrivals] [--progress] [--no-spin]
        [--keep FILE] [--topic-depth TOPIC=N] [--take-ms MS]
        [--diag-values KEY...] [--spin-period S]
    python deployed_peers.py camera-subscriber --images image_rect /provisional/depth/image_rect [--namespace /depth]

The camera publishes 640x480 rgb8 + camera_info (SensorData QoS, as most drivers, unless
--reliable), once the node listens, and prints {"sent": n} when done; several cameras publish in
turn. With --pause-after N it stops for S seconds after N frames, as a stalled driver does (the
stamps, on the camera's clock, jump by the pause), and also prints "pause_start" and "pause_end"
(time.monotonic(), shared by the processes of one machine). `--size` and `--encoding` (rgb8, bgr8, mono8, a 16-bit
grey or IR camera's mono16 / 16UC1, a webcam's packed YUV 4:2:2 under either of its names: yuyv / yuv422_yuy2, uyvy
/ yuv422, or one the node does not decode, e.g. 32FC1) change the images (`--sample-bits 16,12@10`: mono16 of a
16-bit camera, switched to a 12-bit mode, its samples in the low bits, from frame 10 on); `--frame-id` (empty: a
driver that sets none), `--distortion MODEL` (plumb_bob, rational_polynomial, equidistant), `--uncalibrated`
(usb_cam without a calibration file: K, D, P all zero) and `--info-size WxH` (a camera_info for another size)
change the camera_info; `--no-camera-info` publishes none (a camera_info not remapped: nothing is waited for);
`--die-after N` ends the process with os._exit after N frames, as a crashed driver (no "sent" line);
`--last-image-alone` sends the last image without its camera_info (the node stopped between the two); `--binning B`
publishes the camera_info of a B x B binned window (roi) of a larger sensor, calibrated at full
resolution, as machine-vision drivers do; `--lens` a plumb_bob lens's coefficients, with P its rectified camera, as
camera_calibration writes them (the images are the raw ones); `--info-readers N` waits for N camera_info subscribers
(the node and a viewer of it), not one; `--drop-infos F` sends no camera_info with a random share F of the frames
(seeded; a lossy link or relay before the node: no DDS sequence gap tells it) and reports their image stamps as
"no_info"; `--zoom Z` makes each frame's focal length (1 + Z k) times frame 0's (a zooming lens: which frame's
camera_info an output carries shows in its K); `--ros-time` stamps each frame with its capture time on the ROS
clock, as a live driver (regular; a driver restarted after `--die-after` goes on where it stopped); `--stall-every N`
stalls the driver `--stall` seconds after every N frames, after which it sends the frames that fell
due meanwhile back to back, stamped as they are sent, as a driver on a loaded machine that stamps
when it publishes; `--linger S` keeps the driver (its publishers) S seconds after its report, sending nothing
(a pause: the node's input ends when the publishers go). It also prints
"last_wall", the time.time() of its last frame (the clock of the node's log lines).

As a bag player (recorded frames republished with their recorded stamps): `--speed X` plays them at
X times the recorded rate (0.25: slow motion; the stamps stay `--rate` apart), `--hold` makes the
pause a paused player's (the stamps go on where they stopped), `--loops N` plays the recording N
times (the stamps jump back to the first one at each loop, as `--loop`), and `--clock HZ` publishes
the recording's time on /clock at HZ, as `ros2 bag play --clock` (for use_sim_time). With
`--pose-latency MS` each image's camera pose (PoseStamped on camera_pose, moving 1 cm a frame) is
published with its stamp MS ms of recorded time after it, as an odometry source that lags.

With `--depth-sensor ENC` the camera is an RGB-D camera: beside each image it publishes the depth registered to it
(`DEPTH_TOPIC`, as a RealSense's aligned depth: 16UC1 millimetres with 0 where it has no return, or 32FC1 metres
with NaN), of a scene the tiny model agrees with (`sensor_depth`), at `--depth-size` (an aspect ratio of the
image's: registered at another resolution), stamped `--depth-offset-ms` from its image, with `--depth-outliers`
of its pixels at random depths (flying pixels, multipath), none beyond `--depth-range` metres, none for frames A
to B of `--depth-dropout A:B` (the sensor dropping out), in frame `--depth-frame` (another one than the image's:
its unaligned stream).

The viewer subscribes as RViz does (reliable, volatile; `--transient-local`: as a late joiner of a latched
topic; `--deadline-ms`: asking for a deadline, as a monitor may) with depth 16 (docs/node.md: two windows),
each topic with its type (`.../camera_info` CameraInfo, `.../points` PointCloud2, `/diagnostics`
DiagnosticArray, recorded as [level, message] of each status, or [level, message, {key: value}] with
`--diag-values KEY...`, else Image); with `--spin-period S` it takes messages as RViz does, for at most 10 ms
once per rendered frame (rviz_common's VisualizationManager::onUpdate: `spin_some(10ms)` from a timer at its Frame
Rate, 30 by default, then rendering; with `--depth 5`, RViz's default `rclcpp::QoS(5)`); prints "matched" once
every topic has a publisher, and on SIGINT prints {"<topic>": [stamps...]} (with --arrivals
[[stamp, time.monotonic() at arrival]...]; with --message-info [[stamp, source_timestamp,
received_timestamp, time.time_ns() when taken, publication_sequence_number]...]) and exits 0; `--keep FILE`
also pickles every message it took, serialized, as {topic: {stamp: bytes}}; `--progress` prints
"progress <topic> <n>" at each message (a test waits for the node's outputs before it signals);
`--topic-depth TOPIC=N` gives one topic another history, and `--take-ms MS` spends that long on each message
(a recorder writing to a slow disk).

The camera subscriber is an image_transport `CameraSubscriber` (RViz's Camera and DepthCloud displays,
depth_image_proc, image_proc) per image topic, in node namespace `--namespace` (`-r __ns:=/depth`): the image
topic is expanded, and its camera_info is `camera_info` in the image's parent namespace (image_transport's
`getCameraInfoTopic`, camera_common.cpp; applied to the expanded name in camera_subscriber.cpp), paired by exact
stamp (its `ExactTime` synchronizer). Reliable, depth 16. It prints "matched" once every topic has a publisher and on
SIGINT {image topic: {"info": its camera_info topic, "images": n, "infos": n, "pairs": [[stamp, image width, height,
info width, height, fx, fy]...]}}.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import serialize_message
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, RegionOfInterest
from std_msgs.msg import Header

from vdepth_ros.ros import conversions as conv

H, W = 480, 640
DEPTH_TOPIC = "camera/aligned_depth_to_color/image_raw"
T0 = 1_000_000_000  # the recorded stamp of the first frame
K = [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]


class Playback:
    """Where a bag player is in its recording (seconds after its first frame: `at`), moving on at
    `speed` while it plays; with a /clock publisher it publishes that time at `hz` while it waits,
    as `ros2 bag play --clock` (a paused player holds it)."""

    def __init__(self, speed: float, clock: Any = None, hz: float = 0.0, t0: int = 0) -> None:
        self.speed, self.clock, self.hz, self.t0 = speed, clock, hz, t0
        self.loop()
        self._last_clock = -1.0

    def loop(self) -> None:
        """Back to the first frame (a loop starts over)."""
        self.played, self.since, self.paused = 0.0, time.monotonic(), False

    def at(self, now: float) -> float:
        return self.played if self.paused else self.played + (now - self.since) * self.speed

    def pause(self, seconds: float) -> None:
        self.played, self.paused = self.at(time.monotonic()), True
        self.wait_until(time.monotonic() + seconds)
        self.paused, self.since = False, time.monotonic()

    def wait_until(self, until: float) -> None:
        """Sleep until `until` (time.monotonic()), publishing /clock meanwhile."""
        while self.clock is not None:
            now = time.monotonic()
            if now - self._last_clock >= 1 / self.hz:
                self._last_clock = now
                self.clock.publish(Clock(clock=conv.ns_to_stamp(self.t0 + round(self.at(now) * 1e9))))
            if now >= until:
                return
            time.sleep(max(0.0, min(until - now, self._last_clock + 1 / self.hz - now)))
        time.sleep(max(0.0, until - time.monotonic()))


class Stop:
    """SIGINT (and SIGTERM) ends a peer's spin loop: they set a flag and wake the executor, and the loop
    returns, prints its record and exits 0, as the node does (vdepth_ros/ros/cli.py). With rclpy's own
    handlers the context was shut down from the signal at any point of the loop, and a signal between
    `rclpy.ok()` and the executor's wait made `spin_once` raise RCLError ("the given context is not
    valid"): the viewer exited 1 with no record (1 of ~20 SIGINTs on a loaded machine)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.executor: SingleThreadedExecutor | None = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.event.set()
        if self.executor is not None:
            self.executor.wake()

    def spin(self, node: Node, until_matched: Any, on_matched: Any = None, period: float = 0.0) -> None:
        """Spin `node` until a signal; once `until_matched()` holds, print "matched" and call `on_matched`.
        With `period`, as RViz takes messages: spin_some (10 ms at most), then render for `period`."""
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        matched = False
        while not self.event.is_set():
            if period:
                until = time.monotonic() + 0.01
                while time.monotonic() < until and not self.event.is_set():
                    self.executor.spin_once(timeout_sec=0)
                self.event.wait(period)
            else:
                self.executor.spin_once(timeout_sec=0.1)
            if not matched and not self.event.is_set() and until_matched():
                matched = True
                print("matched", flush=True)
                if on_matched is not None:
                    on_matched()


def _init() -> Stop:
    """rclpy without its signal handlers (`Stop` takes SIGINT/SIGTERM)."""
    stop = Stop()
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    return stop


def _images(args: argparse.Namespace, w: int, h: int, bits: int = 16) -> list[Image]:
    """8 frames of a textured scene moving right, in `args.encoding` (mono16: a `bits`-bit camera's)."""
    rng = np.random.default_rng(0)
    base = rng.integers(20, 236, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8).repeat(16, 0).repeat(16, 1)[:h, :w]
    frames = [np.roll(base, 4 * k, axis=1) for k in range(8)]
    if args.encoding == "mono8":
        frames = [f[..., 0].copy() for f in frames]
    elif args.encoding in PACKED_422:  # a webcam's native format (usb_cam's pixel_format yuyv, uyvy)
        frames = [packed_422(f, PACKED_422[args.encoding]) for f in frames]
    elif args.encoding == "32FC1":
        frames = [f[..., 0].astype(np.float32) for f in frames]
    elif args.encoding == "mono16":  # a 16-bit grey camera (or one of fewer bits, in the low ones)
        frames = [f[..., 0].astype(np.uint16) << (bits - 8) for f in frames]
    elif args.encoding == "16UC1":  # an IR camera (kinect2_bridge's image_ir): 12-bit samples, a saturated glint
        frames = [f[..., 0].astype(np.uint16) << 4 for f in frames]
        for f in frames:
            f[0, 0] = 0xFFFF
        frames[3][: h // 8, : w // 4] = 0xFFFF  # a flash over 3% of one frame (its emitter, a strobe)
    return [conv.image_msg(f, args.encoding, conv.copy_header(Image().header)) for f in frames]


#: The packed YUV 4:2:2 encodings the camera publishes, by their byte order (sensor_msgs names each twice)
PACKED_422 = {"yuyv": "yuyv", "yuv422_yuy2": "yuyv", "uyvy": "uyvy", "yuv422": "uyvy"}


def packed_422(rgb: np.ndarray, order: str) -> np.ndarray:
    """`rgb` (H, W, 3) as packed YUV 4:2:2 (H, W, 2) in byte `order` ("yuyv" or "uyvy"), BT.601 as V4L2 gives it:
    each pair of pixels shares its chroma."""
    import cv2

    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV).astype(np.float32)  # (full range: V4L2's is video range)
    yuv = np.round(np.concatenate([16 + yuv[..., :1] * 219 / 255, 128 + (yuv[..., 1:] - 128) * 224 / 255], axis=2))
    yuv = yuv.astype(np.uint16)
    chroma = (yuv[:, 0::2, 1:] + yuv[:, 1::2, 1:]) // 2  # (H, W/2, 2): U, V of each pair
    out = np.empty((*rgb.shape[:2], 2), np.uint8)
    luma, uv = (0, 1) if order == "yuyv" else (1, 0)
    out[..., luma] = yuv[..., 0]
    out[:, 0::2, uv], out[:, 1::2, uv] = chroma[..., 0], chroma[..., 1]
    return out


def sensor_depth(image: np.ndarray) -> np.ndarray:
    """The depth [m] an RGB-D camera measures of the scene in `image` (H, W, 3 uint8), as the tiny model
    (disparity 0.1 + luminance) sees it: 0.5 / (0.1 + luminance), 0.5 to 2.8 m here."""
    lum = (image.astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], np.float32)
    return (0.5 / (0.1 + lum)).astype(np.float32)


class DepthSensor:
    """`--depth-sensor`: the depth registered to each of `images` on `DEPTH_TOPIC`, as a RealSense's aligned depth:
    `sensor_depth` at `--depth-size`, in `--depth-sensor`'s encoding and units, with no return (0 / NaN) at 10 % of
    its pixels and `--depth-outliers` of them at random depths, stamped `--depth-offset-ms` from its image, in frame
    `--depth-frame`, none for the frames of `--depth-dropout`."""

    def __init__(self, args: argparse.Namespace, node: Node, qos: QoSProfile, images: list[Image]) -> None:
        self.args, self.publisher = args, node.create_publisher(Image, DEPTH_TOPIC, qos)
        self.dropout = [int(v) for v in args.depth_dropout.split(":")] if args.depth_dropout else [0, 0]
        rng = np.random.default_rng(1)
        dw, dh = (int(v) for v in (args.depth_size or f"{images[0].width}x{images[0].height}").lower().split("x"))
        self.images = []
        for msg in images:
            rgb = conv.image_array(msg)
            ys = ((np.arange(dh) + 0.5) * rgb.shape[0] / dh).astype(int)
            xs = ((np.arange(dw) + 0.5) * rgb.shape[1] / dw).astype(int)
            z = sensor_depth(rgb[ys][:, xs])
            z[rng.random(z.shape) < 0.1] = np.nan  # holes: no return
            z[z > args.depth_range] = np.nan  # beyond the sensor's range
            wild = rng.random(z.shape) < args.depth_outliers
            z[wild] = rng.uniform(0.2, 10.0, int(wild.sum()))
            if args.depth_sensor == "16UC1":  # millimetres, 0 for no return
                z = np.where(np.isfinite(z), np.round(z * 1000), 0).astype(np.uint16)
            self.images.append(conv.image_msg(z, args.depth_sensor, conv.copy_header(Image().header)))

    def matched(self) -> bool:
        return self.publisher.get_subscription_count() > 0

    def send(self, k: int, stamp: Any) -> None:
        """Frame `k`'s depth, of the image stamped `stamp`."""
        if self.dropout[0] <= k < self.dropout[1]:
            return
        depth = self.images[k % len(self.images)]
        offset = round(self.args.depth_offset_ms * 1e6)
        depth.header.stamp = conv.ns_to_stamp(stamp.sec * 1_000_000_000 + stamp.nanosec + offset)
        depth.header.frame_id = self.args.depth_frame
        self.publisher.publish(depth)


def _stamp(args: argparse.Namespace, node: Node, recorded_ns: int, ros_start_ns: int) -> Any:
    """The frame's stamp: its recorded time; with --ros-time its capture time on the ROS clock (the
    recorded offset from the driver's first frame: regular, as a camera's hardware stamps; a restarted
    driver's stamps go on where the crashed one's stopped); with --stall-every the ROS clock as it is
    sent, as a driver that stamps when it publishes."""
    if args.stall_every:
        return node.get_clock().now().to_msg()
    return conv.ns_to_stamp(ros_start_ns + recorded_ns - T0 if args.ros_time else recorded_ns)


def _frame_times(args: argparse.Namespace, n: int) -> list[float]:
    """Each frame's capture time, seconds after the first (and the time of the frame after the last): every
    1 / --rate, and with --slow-frames A:B frames A to B every 1 / --slow-rate (a camera's auto exposure
    lowering its rate in the dark, then raising it again)."""
    first, last = (int(v) for v in args.slow_frames.split(":")) if args.slow_frames else (n, n)
    times = [0.0]
    for k in range(n):
        times.append(times[-1] + 1 / (args.slow_rate if first <= k < last else args.rate))
    return times


def _stamps(args: argparse.Namespace, stamp: Any, k: int, rng: np.random.Generator) -> tuple[Any, Any]:
    """Frame `k`'s image and camera_info stamps, from its capture `stamp` as the driver's clock has it:
    --jitter-ms of noise (a hardware clock mapped to ROS time), --clock-step seconds from frame
    --clock-step-at on (the clock set by NTP mid-stream), and the camera_info --info-offset-ms apart."""
    jitter = round(rng.normal(0.0, args.jitter_ms * 1e6)) if args.jitter_ms else 0
    step = round(args.clock_step * 1e9) if args.clock_step_at and k >= args.clock_step_at else 0
    if not (jitter or step or args.info_offset_ms):
        return stamp, stamp
    ns = stamp.sec * 1_000_000_000 + stamp.nanosec + jitter + step
    return conv.ns_to_stamp(ns), conv.ns_to_stamp(ns + round(args.info_offset_ms * 1e6))


def _stall(args: argparse.Namespace, tick: int) -> None:
    """--stall-every N: the driver stalls `--stall` seconds after every N frames (a loaded machine), then
    catches up, sending the frames that fell due meanwhile back to back (with --ros-time stamped as sent)."""
    if args.stall_every and tick % args.stall_every == args.stall_every - 1:
        time.sleep(args.stall)


def _send(messages: list[tuple[Any, Any]], reverse: bool) -> None:
    """Publish each (publisher, message) but those without a message, in this order or (`reverse`) the other."""
    for publisher, msg in reversed(messages) if reverse else messages:
        if msg is not None:
            publisher.publish(msg)


def _lens(coefficients: str, f: float, w: int, h: int) -> dict[str, Any]:
    """`--lens`' camera_info fields: a lens calibrated by camera_calibration (plumb_bob; P its rectified
    camera, alpha 0), or none."""
    if not coefficients:
        return {}
    p = [0.9 * f, 0.0, (w - 1) / 2 + 4.0, 0.0, 0.0, 0.9 * f, (h - 1) / 2 - 3.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    d = [float(v) for v in coefficients.split(",")]
    return {"distortion_model": "plumb_bob", "d": d, "p": p, "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]}


class InfoDrops:
    """Which frames have no camera_info sent: with `--last-image-alone` the last, with `--drop-infos F` a random
    share F (seeded); `missing` holds their image stamps (the report's "no_info")."""

    def __init__(self, args: argparse.Namespace, n: int) -> None:
        self.args, self.n, self.rng = args, n, np.random.default_rng(3)
        self.missing: list[int] = []

    def sent(self, k: int, stamp: Any) -> bool:
        """Whether frame `k`, stamped `stamp`, has its camera_info sent."""
        drop = self.args.drop_infos and self.rng.random() < self.args.drop_infos
        if drop or (self.args.last_image_alone and k == self.n - 1):
            self.missing.append(conv.stamp_to_ns(stamp))
            return False
        return True


#: `--distortion`'s coefficients of each model (a wide-angle lens's; equidistant: a fisheye's k1..k4)
DISTORTION = {
    "plumb_bob": [-0.28, 0.07, 0.0005, -0.0003, 0.0],
    "rational_polynomial": [0.4, -0.05, 0.0005, -0.0003, 0.001, 0.75, 0.0, 0.005],
    "equidistant": [0.03, -0.01, 0.002, -0.0005],
    # its other names: MRPT's and Foxglove's; a realsense-ros fork's, with librealsense's 5 coefficients, the last 0
    "kannala_brandt": [0.03, -0.01, 0.002, -0.0005],
    "kannala_brandt4": [0.03, -0.01, 0.002, -0.0005, 0.0],
}


def _camera_info(args: argparse.Namespace, k: int, stamp: Any, k_matrix: list[float], window: dict) -> CameraInfo:
    """Frame `k`'s camera_info: `k_matrix`, with `--zoom` its focal lengths (1 + zoom k) times (a zooming lens);
    with `--distortion MODEL` that model's `DISTORTION` (R identity, P = K); with `--uncalibrated` all zero but
    its size, as usb_cam publishes without a calibration file (camera_info_manager's empty one); `--info-size`
    declares another image size than the images'."""
    zoom = 1 + args.zoom * k
    k_frame = [v * zoom if i in (0, 4) else v for i, v in enumerate(k_matrix)]
    info = CameraInfo(header=Header(stamp=stamp, frame_id=args.frame_id), k=k_frame, **window)
    if args.distortion:
        info.distortion_model, info.d = args.distortion, DISTORTION[args.distortion]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [*k_frame[:3], 0.0, *k_frame[3:6], 0.0, *k_frame[6:], 0.0]
    if args.uncalibrated:
        info.k = [0.0] * 9
    if args.info_size:
        info.width, info.height = (int(v) for v in args.info_size.lower().split("x"))
    return info


def camera(args: argparse.Namespace) -> None:
    rclpy.init()
    node = Node("camera_driver")
    # --reliable: a history of 50 (a second and more at the tests' rates), so a node stalled by a loaded machine
    # takes every frame late rather than losing the oldest: the tests that count exactly need every frame
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE) if args.reliable else qos_profile_sensor_data
    pubs = [
        (
            node.create_publisher(Image, f"{ns}/image", qos),
            None if args.no_camera_info else node.create_publisher(CameraInfo, f"{ns}/camera_info", qos),
        )
        for ns in args.namespaces
    ]
    w, h = (int(v) for v in args.size.lower().split("x"))
    f = K[0] * w / W  # the same field of view at any size
    k_matrix = [f, 0.0, (w - 1) / 2, 0.0, f, (h - 1) / 2, 0.0, 0.0, 1.0]
    window: dict[str, Any] = {"width": w, "height": h, **_lens(args.lens, f, w, h)}
    if args.binning > 1:  # a binned readout of a window of a larger sensor, calibrated at full resolution
        b, x0, y0 = args.binning, 16, 8
        window = {"width": b * w + 2 * x0, "height": b * h + 2 * y0, "binning_x": b, "binning_y": b}
        window["roi"] = RegionOfInterest(x_offset=x0, y_offset=y0, width=b * w, height=b * h)
        cx, cy = (window["width"] - 1) / 2 + 3.0, (window["height"] - 1) / 2 - 2.0
        k_matrix = [b * f, 0.0, cx, 0.0, b * f, cy, 0.0, 0.0, 1.0]
    image_at = _image_at(args, w, h)
    sensor = DepthSensor(args, node, qos, _images(args, w, h)) if args.depth_sensor else None
    deadline = time.monotonic() + 60  # discovery: frames sent before the node listens are not "lost"
    # every image and camera_info publisher matched: an image without its camera_info is not processed
    while time.monotonic() < deadline and (
        not all(
            image_pub.get_subscription_count() > 0
            and (info_pub is None or info_pub.get_subscription_count() >= args.info_readers)
            for image_pub, info_pub in pubs
        )
        or (sensor is not None and not sensor.matched())
    ):
        time.sleep(0.05)
    time.sleep(0.5)
    n = int(args.seconds * args.rate)
    start, ros_start = time.monotonic(), node.get_clock().now().nanoseconds  # (--ros-time: the first capture)
    slots = len(pubs)  # several cameras publish in turn, as separate drivers would, not back to back
    report: dict[str, Any] = {"start": start}  # time.monotonic() of stamp t0
    clock = node.create_publisher(Clock, "/clock", 10) if args.clock else None
    poses = node.create_publisher(PoseStamped, "camera_pose", qos) if args.pose_latency else None
    player = Playback(args.speed, clock, args.clock, T0)
    per_loop = n * slots
    times, rng, drops = _frame_times(args, n), np.random.default_rng(0), InfoDrops(args, n)
    for tick in range(per_loop * args.loops):
        k, (image_pub, info_pub) = (tick // slots) % n, pubs[tick % slots]
        if tick and tick % per_loop == 0:  # a bag played in a loop starts over: its stamps jump back
            start = time.monotonic()
            player.loop()
        if args.pause_after and tick == args.pause_after * slots:
            report["pause_start"] = time.monotonic()
            player.pause(args.pause)
            report["pause_end"] = time.monotonic()
            start += args.pause
        paused = args.pause if args.pause_after and k >= args.pause_after and not args.hold else 0.0
        stamp, info_stamp = _stamps(args, _stamp(args, node, T0 + round((times[k] + paused) * 1e9), ros_start), k, rng)
        msg = image_at(k)
        msg.header.stamp, msg.header.frame_id = stamp, args.frame_id
        sent = info_pub is not None and drops.sent(k, stamp)  # (no publisher: --no-camera-info)
        info = _camera_info(args, k, info_stamp, k_matrix, window) if sent else None
        _send([(image_pub, msg), (info_pub, info)], args.info_first)
        if sensor is not None:
            sensor.send(k, stamp)
        if poses is not None:
            player.wait_until(time.monotonic() + args.pose_latency / 1000 / args.speed)
            pose = PoseStamped()
            pose.header.stamp, pose.header.frame_id, pose.pose.position.x = stamp, "odom", 0.01 * k
            pose.pose.orientation.w = 1.0
            poses.publish(pose)
        if args.die_after and tick + 1 == args.die_after * slots:
            os._exit(0)  # a crashed driver: no goodbye, its DDS participant times out
        report["last_wall"] = time.time()  # the node's log lines carry this clock
        _stall(args, tick)
        due = times[tick % per_loop + 1] if slots == 1 else (tick % per_loop + 1) / (args.rate * slots)
        player.wait_until(start + due / args.speed)
    _report_and_end(node, {"sent": n * args.loops, **report, "no_info": drops.missing}, args.linger)


def _image_at(args: argparse.Namespace, w: int, h: int) -> Callable[[int], Image]:
    """Frame k's image: `_images` in turn, of the bit depth `--sample-bits` gives the camera at frame k (`16,12@10`:
    a 16-bit camera switched to a 12-bit mode at frame 10)."""
    modes = [(0, 16)]
    for part in filter(None, args.sample_bits.split(",")):
        bits, _, first = part.partition("@")
        modes.append((int(first or 0), int(bits)))
    modes.sort()
    by_bits = {b: _images(args, w, h, b) for _, b in modes}
    return lambda k: (frames := by_bits[next(b for first, b in reversed(modes) if k >= first)])[k % len(frames)]


def _report_and_end(node: Node, report: dict[str, Any], linger: float) -> None:
    """The camera's report, then its end (after `--linger`: there, sending nothing, a pause, not the input's end)."""
    time.sleep(0.5)
    print(json.dumps(report), flush=True)
    time.sleep(linger)
    node.destroy_node()
    rclpy.shutdown()


def _type(topic: str, given: list[str] = ()) -> type:
    """The message type the viewer subscribes `topic` with: `--type TOPIC=pkg/msg/Name`, else by its name."""
    for entry in given:
        name, _, kind = entry.partition("=")
        if name == topic:
            package, _, message = kind.split("/")
            return getattr(importlib.import_module(f"{package}.msg"), message)
    name = topic.rsplit("/", 1)[-1]
    return {"camera_info": CameraInfo, "points": PointCloud2, "diagnostics": DiagnosticArray}.get(name, Image)


def _taken_entry(args: argparse.Namespace, stamp: int, info: Any) -> Any:
    """What the viewer records of a message it took (module docstring: --arrivals, --message-info)."""
    if args.message_info:  # when the middleware received it, against when it was published and taken
        return [stamp, info["source_timestamp"], info["received_timestamp"], time.time_ns()] + [
            info["publication_sequence_number"]
        ]
    return [stamp, time.monotonic()] if args.arrivals else stamp


def _callback(take: Any, topic: str, with_info: bool) -> Any:
    """A subscription's callback: rclpy passes the MessageInfo to a callback of two parameters."""
    if with_info:
        return lambda msg, info: take(topic, msg, info)
    return lambda msg: take(topic, msg)


def viewer(args: argparse.Namespace) -> None:
    stop = _init()
    node = Node(args.name)
    reliability = ReliabilityPolicy.BEST_EFFORT if args.best_effort else ReliabilityPolicy.RELIABLE
    qos = QoSProfile(depth=args.depth, reliability=reliability)
    if args.transient_local:
        qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
    if args.deadline_ms:
        qos.deadline = Duration(nanoseconds=int(args.deadline_ms * 1e6))
    got: dict[str, list[Any]] = {topic: [] for topic in args.topics}

    kept: dict[str, dict[int, bytes]] = {topic: {} for topic in args.topics}

    def take(topic: str, msg: Any, info: Any = None) -> None:
        before = len(got[topic])
        if isinstance(msg, DiagnosticArray):  # each status's level and message (and --diag-values' values)
            got[topic].extend(
                [int.from_bytes(st.level, "little"), st.message]
                + ([{kv.key: kv.value for kv in st.values if kv.key in args.diag_values}] if args.diag_values else [])
                for st in msg.status
            )
        else:
            stamp = conv.stamp_to_ns(msg.header.stamp)
            if args.take_ms:  # a recorder slower than the messages come (a slow disk, compression)
                time.sleep(args.take_ms / 1e3)
            if args.keep:
                kept[topic][stamp] = serialize_message(msg)
            got[topic].append(_taken_entry(args, stamp, info))
        for n in range(before + 1, len(got[topic]) + 1) if args.progress else ():  # one line per entry (status)
            print(f"progress {topic} {n}", flush=True)

    def topic_qos(topic: str) -> QoSProfile:  # `--topic-depth TOPIC=N`: that topic's history instead of --depth
        depths = dict(entry.partition("=")[::2] for entry in args.topic_depth)
        own = copy.copy(qos)
        own.depth = int(depths.get(topic, qos.depth))
        return own

    subs = [
        node.create_subscription(_type(t, args.type), t, _callback(take, t, args.message_info), topic_qos(t))
        for t in args.topics
    ]

    def no_spin() -> None:  # as a callback that never returns
        while args.no_spin and not stop.event.is_set():
            time.sleep(0.1)

    stop.spin(node, lambda: all(s.get_publisher_count() > 0 for s in subs), no_spin, period=args.spin_period)
    if args.keep:
        with open(args.keep, "wb") as f:
            pickle.dump(kept, f)
    print(json.dumps(got), flush=True)


def image_transport_info_topic(image_topic: str) -> str:
    """image_transport's camera_info topic of an expanded image topic: its parent namespace + `/camera_info`."""
    return image_topic.rstrip("/").rpartition("/")[0] + "/camera_info"


def camera_subscriber(args: argparse.Namespace) -> None:
    stop = _init()
    node = Node("camera_subscriber", namespace=args.namespace)
    qos = QoSProfile(depth=16, reliability=ReliabilityPolicy.RELIABLE)
    got: dict[str, dict[str, Any]] = {}
    subs = []
    for base in args.images:
        image_topic = node.resolve_topic_name(base, only_expand=True)
        info_topic = image_transport_info_topic(image_topic)
        entry: dict[str, Any] = {"info": info_topic, "images": 0, "infos": 0, "pairs": []}
        got[image_topic] = entry
        held: dict[str, dict[int, Any]] = {"image": {}, "info": {}}

        def take(kind: str, msg: Any, entry: dict[str, Any] = entry, held: dict = held) -> None:
            stamp = conv.stamp_to_ns(msg.header.stamp)
            entry["images" if kind == "image" else "infos"] += 1
            held[kind][stamp] = msg
            image, info = held["image"].get(stamp), held["info"].get(stamp)
            if image is not None and info is not None:  # ExactTime: the same stamp on both
                p = list(info.p) if info.p[0] > 0 else [*info.k[:3], 0.0, *info.k[3:6], 0.0]
                entry["pairs"].append([stamp, image.width, image.height, info.width, info.height, p[0], p[5]])
                for kept in held.values():
                    for old in [s for s in kept if s <= stamp]:
                        del kept[old]

        subs.append(node.create_subscription(Image, image_topic, lambda m, t=take: t("image", m), qos))
        subs.append(node.create_subscription(CameraInfo, info_topic, lambda m, t=take: t("info", m), qos))
    stop.spin(node, lambda: all(s.get_publisher_count() > 0 for s in subs))
    print(json.dumps(got), flush=True)


def _viewer_arguments(view: argparse.ArgumentParser) -> None:
    view.add_argument("--topics", nargs="+", required=True)
    view.add_argument("--depth", type=int, default=16)
    view.add_argument("--name", default="viewer", help="the node's name (rviz: as RViz's own)")
    view.add_argument("--best-effort", action="store_true", help="as RViz's DepthCloud display by default")
    view.add_argument("--type", action="append", default=[], help="TOPIC=pkg/msg/Name: subscribe it with this type")
    view.add_argument("--transient-local", action="store_true", help="durability transient_local (a late joiner)")
    view.add_argument("--deadline-ms", type=float, default=0.0, help="ask for this deadline (0: none)")
    view.add_argument(
        "--spin-period", type=float, default=0.0, help="take messages only every S s, as RViz once per rendered frame"
    )
    view.add_argument("--arrivals", action="store_true", help="record each message's arrival time too")
    view.add_argument(
        "--message-info",
        action="store_true",
        help="record [stamp, source_timestamp, received_timestamp, time_ns() when taken, publication sequence]",
    )
    view.add_argument("--progress", action="store_true", help='print "progress TOPIC N" at each message')
    view.add_argument("--no-spin", action="store_true", help="stop spinning once matched (a stuck callback)")
    view.add_argument("--diag-values", nargs="*", default=[], help="/diagnostics: also record these keys' values")
    view.add_argument("--topic-depth", action="append", default=[], help="TOPIC=N: this topic's history depth")
    view.add_argument("--take-ms", type=float, default=0.0, help="spend this long on each message (a slow recorder)")
    view.add_argument("--keep", help="pickle {topic: {stamp: serialized message}} into this file at the end")


def _camera_info_arguments(cam: argparse.ArgumentParser) -> None:
    """The camera's options of its camera_info (module docstring)."""
    cam.add_argument("--drop-infos", type=float, default=0.0, help="this share of camera_infos is never sent")
    cam.add_argument("--zoom", type=float, default=0.0, help="each frame's focal length this share over the last")
    cam.add_argument("--frame-id", default="camera_optical", help="the images' and camera_infos' frame_id")
    cam.add_argument("--distortion", default="", choices=["", *DISTORTION], help="camera_info's distortion model")
    cam.add_argument("--uncalibrated", action="store_true", help="camera_info all zero but its size (usb_cam's)")
    cam.add_argument("--info-size", default="", help="WxH: camera_info declares this size, not the images'")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="role", required=True)
    cam = sub.add_parser("camera")
    cam.add_argument("--namespaces", nargs="+", default=[""])
    cam.add_argument("--seconds", type=float, default=20.0)
    cam.add_argument("--rate", type=float, default=15.0)
    cam.add_argument("--reliable", action="store_true")
    cam.add_argument("--pause-after", type=int, default=0, help="pause after this many frames (0: none)")
    cam.add_argument("--pause", type=float, default=0.0, help="seconds of the pause")
    cam.add_argument("--size", default=f"{W}x{H}", help="image size WxH")
    cam.add_argument("--encoding", default="rgb8")
    cam.add_argument("--sample-bits", default="", help="mono16: B[@K],...: a B-bit camera from frame K on")
    cam.add_argument("--no-camera-info", action="store_true")
    cam.add_argument("--die-after", type=int, default=0, help="os._exit after this many frames (0: never)")
    cam.add_argument("--last-image-alone", action="store_true", help="no camera_info for the last image")
    cam.add_argument("--speed", type=float, default=1.0, help="a bag player's rate: frames sent at speed x rate")
    cam.add_argument("--hold", action="store_true", help="the pause is a paused player's: the stamps do not jump")
    cam.add_argument("--loops", type=int, default=1, help="play the frames this many times (stamps jump back)")
    cam.add_argument("--clock", type=float, default=0.0, help="publish the recording's time on /clock at this Hz")
    cam.add_argument("--pose-latency", type=float, default=0.0, help="publish each image's pose this many ms later")
    cam.add_argument("--binning", type=int, default=1, help="camera_info of a binned window of a larger sensor")
    cam.add_argument("--lens", default="", help="k1,k2,p1,p2,k3: a plumb_bob lens (P: its rectified camera)")
    cam.add_argument("--info-readers", type=int, default=1, help="wait for this many camera_info subscribers")
    cam.add_argument("--ros-time", action="store_true", help="stamp each frame with the ROS clock, as a live driver")
    cam.add_argument("--linger", type=float, default=0.0, help="stay this long after the report, sending nothing")
    cam.add_argument("--stall-every", type=int, default=0, help="stall after every N frames, then catch up")
    cam.add_argument("--stall", type=float, default=0.3, help="seconds of each --stall-every stall")
    cam.add_argument("--slow-frames", default="", help="A:B: frames A to B at --slow-rate (auto exposure)")
    cam.add_argument("--slow-rate", type=float, default=0.0, help="the rate of the --slow-frames")
    cam.add_argument("--jitter-ms", type=float, default=0.0, help="noise on each stamp (a hardware clock), ms")
    cam.add_argument("--clock-step-at", type=int, default=0, help="the driver's clock steps at this frame (NTP)")
    cam.add_argument("--clock-step", type=float, default=0.0, help="seconds the clock steps (negative: back)")
    cam.add_argument("--info-first", action="store_true", help="publish each camera_info just before its image")
    cam.add_argument("--info-offset-ms", type=float, default=0.0, help="camera_info stamped this far from its image")
    cam.add_argument("--depth-sensor", default="", help="16UC1 or 32FC1: also publish registered depth")
    cam.add_argument("--depth-size", default="", help="the depth image's size WxH (default: the image's)")
    cam.add_argument("--depth-offset-ms", type=float, default=0.0, help="depth stamped this far from its image")
    cam.add_argument("--depth-dropout", default="", help="A:B: no depth for frames A to B (the sensor drops out)")
    cam.add_argument("--depth-outliers", type=float, default=0.0, help="this fraction of depth pixels is wild")
    cam.add_argument("--depth-range", type=float, default=np.inf, help="no depth beyond this many metres")
    cam.add_argument("--depth-frame", default="camera_optical", help="the depth image's frame_id")
    _camera_info_arguments(cam)
    _viewer_arguments(sub.add_parser("viewer"))
    pair = sub.add_parser("camera-subscriber")
    pair.add_argument("--images", nargs="+", required=True, help="image topics, relative to --namespace or absolute")
    pair.add_argument("--namespace", default="/")
    args = p.parse_args()
    {"camera": camera, "viewer": viewer, "camera-subscriber": camera_subscriber}[args.role](args)


if __name__ == "__main__":
    sys.exit(main())
