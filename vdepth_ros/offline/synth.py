"""Write image bags from frame iterables: the demo's bag from a clip, the benchmark's and tests' tiny bags.

Frames are written one at a time, so a bag of any length is built in constant memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vdepth_ros.offline.bag_types import CAMERA_INFO, COMPRESSED, IMAGE, POINTCLOUD2, POSE_STAMPED
from vdepth_ros.offline.bag_writer import cloud_message, image_message, new_bag_writer
from vdepth_ros.offline.errors import OfflineError
from vdepth_ros.offline.videoio import default_intrinsics
from vdepth_ros.triangulate import quaternion_from_matrix

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

#: `write_image_bag` encodings: raw ROS encodings, or "jpeg"/"png" for `CompressedImage`. mono16 is a
#: 12-bit camera's: the grey image in the low 12 bits (bits 11..4), as many machine-vision drivers publish;
#: 16UC1 the same samples as an IR camera publishes them (kinect2_bridge's image_ir).
BAG_ENCODINGS = ("rgb8", "bgr8", "rgba8", "mono8", "mono16", "16UC1", "jpeg", "png")


def synthetic_frames(n: int, height: int = 48, width: int = 64, seed: int = 0) -> Iterator[np.ndarray]:
    """`n` deterministic `(H, W, 3)` uint8 RGB frames: a textured gradient with a moving square."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / max(width - 1, 1), yy / max(height - 1, 1), 0.5 + 0.0 * xx], axis=-1) * 200.0
    base += rng.uniform(0, 40, size=(height, width, 3)).astype(np.float32)
    side = max(2, min(height, width) // 4)
    for i in range(n):
        img = base.copy()
        x0 = (i * 3) % max(width - side, 1)
        y0 = (i * 2) % max(height - side, 1)
        img[y0 : y0 + side, x0 : x0 + side] = (255.0, 230.0, 40.0)
        yield np.clip(img, 0, 255).astype(np.uint8)


def _image_raw(ts: Any, rgb: np.ndarray, encoding: str, header: Any, index: int, sample_bits: int = 12) -> bytes:
    """One frame as a serialized Image (raw encodings) or CompressedImage (jpeg, png); mono16 and 16UC1 as a
    `sample_bits`-bit camera's (its grey in the top of as many low bits)."""
    import cv2

    T = ts.types
    if encoding in ("jpeg", "png"):
        ok, buf = cv2.imencode(".jpg" if encoding == "jpeg" else ".png", np.ascontiguousarray(rgb[..., ::-1]))
        if not ok:
            raise OfflineError(f"cannot encode frame {index} as {encoding}")
        return ts.serialize_cdr(T[COMPRESSED](header=header, format=encoding, data=buf.reshape(-1)), COMPRESSED)
    h, w = rgb.shape[:2]
    arr = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.concatenate([rgb, np.full((h, w, 1), 255, np.uint8)], axis=2),
        "mono8": rgb.mean(axis=2).astype(np.uint8),
        "mono16": rgb.mean(axis=2).astype(np.uint8).astype(np.uint16) << (sample_bits - 8),
        "16UC1": rgb.mean(axis=2).astype(np.uint8).astype(np.uint16) << (sample_bits - 8),
    }[encoding]
    return ts.serialize_cdr(image_message(ts, header, np.ascontiguousarray(arr), encoding), IMAGE)


def _camera_info(
    T: Any,
    header: Any,
    width: int,
    height: int,
    intrinsics: tuple[float, float, float, float],
    distortion: Sequence[float] | None,
) -> Any:
    """A plumb_bob CameraInfo whose `P` is the intrinsics (a monocular calibration); all zero (K, R,
    P, no D) for intrinsics `(0, 0, 0, 0)`, as a driver without its calibration file publishes."""
    fx, fy, cx, cy = intrinsics
    calibrated = any(intrinsics)
    return T[CAMERA_INFO](
        header=header,
        height=height,
        width=width,
        distortion_model="plumb_bob" if calibrated else "",
        d=np.zeros(5 if calibrated else 0) if distortion is None else np.asarray(distortion, np.float64),
        k=np.array([fx, 0, cx, 0, fy, cy, 0, 0, calibrated], np.float64),
        r=np.eye(3).reshape(-1) * calibrated,
        p=np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, calibrated, 0], np.float64),
        binning_x=0,
        binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def write_image_bag(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    storage: str = "mcap",
    typestore: str = "kilted",
    image_topic: str = "/image",
    camera_info_topic: str | None = "/camera_info",
    encoding: str = "rgb8",
    fps: float = 30.0,
    start_ns: int = 1_700_000_000_000_000_000,
    frame_id: str = "camera_optical_frame",
    intrinsics: tuple[float, float, float, float] | None = None,
    distortion: Sequence[float] | None = None,
    sparse_depth: Iterable[np.ndarray] | None = None,
    sparse_depth_topic: str = "/sparse_depth",
    sparse_points: Iterable[np.ndarray] | None = None,
    camera_poses: Iterable[np.ndarray] | None = None,
    camera_pose_topic: str = "/camera_pose",
    info_first: bool = True,
    stamps_ns: Sequence[int] | None = None,
    header_stamps_ns: Sequence[int] | None = None,
    info_stamp_offset_ns: int = 0,
    sample_bits: Sequence[int] | None = None,
    compression_mode: str = "none",
) -> int:
    """Write `frames` (RGB uint8) as a rosbag2 bag with Image/CompressedImage + CameraInfo.

    Args:
        path: new bag folder (`PATH/metadata.yaml`, `PATH/PATH_0.mcap`, as `ros2 bag record -o PATH` writes).
        frames: `(H, W, 3)` uint8 RGB frames.
        storage: "mcap" or "sqlite3".
        typestore: ROS 2 distribution (`TYPESTORES` key).
        image_topic, camera_info_topic: topic names (`camera_info_topic=None`: no camera_info).
        encoding: one of `BAG_ENCODINGS`.
        fps: stamps advance by `1/fps`; header stamp == bag time.
        start_ns: first stamp.
        frame_id: header frame_id.
        intrinsics: `(fx, fy, cx, cy)`; default: `default_intrinsics` of the frame size; `(0, 0, 0, 0)`:
            an uncalibrated (all-zero) camera_info.
        distortion: plumb_bob coefficients for the camera_info's `D` (default: none); `P` stays
            the intrinsics, as for a monocular calibration.
        sparse_depth: optional `(H, W)` float32 metre maps written as `32FC1` on `sparse_depth_topic`
            (uint16 maps: `16UC1` millimetres, as RGB-D cameras publish; None: no depth message).
        sparse_points: instead, optional `(N, 3)` xyz points in the camera optical frame (metres)
            written as an unorganized `PointCloud2` on `sparse_depth_topic` (a LiDAR's role).
        camera_poses: optional `(4, 4)` camera-to-world matrices written as `PoseStamped` on
            `camera_pose_topic` (frame_id "world"), one per frame, same stamp.
        info_first: write camera_info before (True) or after (False) its image.
        stamps_ns: explicit stamps per frame (gaps, jumps); default `start_ns + i / fps`.
        header_stamps_ns: header stamps per frame other than the bag times (a driver that does not
            stamp its images: zeros); default: the bag times.
        info_stamp_offset_ns: camera_info stamped this far after its image (a driver stamping it apart).
        sample_bits: mono16/16UC1: the camera's bit depth per frame (a camera switched to another mode); default 12.
        compression_mode: "none", or zstd as `ros2 bag record --compression-mode file|message` writes it
            ("file": each storage file compressed whole, `PATH_0.mcap.zstd`).

    Returns:
        The number of frames written.
    """
    if encoding not in BAG_ENCODINGS:
        raise OfflineError(f"encoding {encoding!r} not in {BAG_ENCODINGS}")
    from rosbags.typesys import get_typestore

    from vdepth_ros.offline.bag_types import TYPESTORES

    ts = get_typestore(TYPESTORES[typestore])
    T = ts.types
    if sparse_depth is not None and sparse_points is not None:
        raise OfflineError("sparse_depth or sparse_points, not both (one sparse_depth_topic)")
    depth_iter = iter(sparse_depth) if sparse_depth is not None else None
    points_iter = iter(sparse_points) if sparse_points is not None else None
    pose_iter = iter(camera_poses) if camera_poses is not None else None
    n = 0
    bag = new_bag_writer(path, storage)
    if compression_mode != "none":
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

        bag.set_compression(CompressionMode[compression_mode.upper()], CompressionFormat.ZSTD)
    with bag as writer:
        compressed = encoding in ("jpeg", "png")
        img_conn = writer.add_connection(image_topic, COMPRESSED if compressed else IMAGE, typestore=ts)
        info_conn = writer.add_connection(camera_info_topic, CAMERA_INFO, typestore=ts) if camera_info_topic else None
        depth_conn = writer.add_connection(sparse_depth_topic, IMAGE, typestore=ts) if depth_iter else None
        if points_iter is not None:
            depth_conn = writer.add_connection(sparse_depth_topic, POINTCLOUD2, typestore=ts)
        pose_conn = writer.add_connection(camera_pose_topic, POSE_STAMPED, typestore=ts) if pose_iter else None
        for i, rgb in enumerate(frames):
            t = int(stamps_ns[i]) if stamps_ns is not None else start_ns + round(i * 1e9 / fps)
            st = int(header_stamps_ns[i]) if header_stamps_ns is not None else t
            header = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=st // 1_000_000_000, nanosec=st % 1_000_000_000),
                frame_id=frame_id,
            )
            h, w = rgb.shape[:2]
            img_raw = _image_raw(ts, rgb, encoding, header, i, 12 if sample_bits is None else sample_bits[i])
            info_raw = None
            if info_conn is not None:
                ist = st + info_stamp_offset_ns
                info_header = T["std_msgs/msg/Header"](
                    stamp=T["builtin_interfaces/msg/Time"](sec=ist // 1_000_000_000, nanosec=ist % 1_000_000_000),
                    frame_id=frame_id,
                )
                info = _camera_info(T, info_header, w, h, intrinsics or default_intrinsics(w, h), distortion)
                info_raw = ts.serialize_cdr(info, CAMERA_INFO)
            if info_raw is not None and info_first:
                writer.write(info_conn, t, info_raw)
            writer.write(img_conn, t, img_raw)
            if info_raw is not None and not info_first:
                writer.write(info_conn, t + 1, info_raw)
            depth = next(depth_iter) if depth_iter is not None else None
            if depth is not None:  # None: this frame's depth was dropped
                depth_enc = "16UC1" if depth.dtype == np.uint16 else "32FC1"  # uint16: millimetres
                depth = np.ascontiguousarray(depth, np.uint16 if depth_enc == "16UC1" else np.float32)
                writer.write(depth_conn, t, ts.serialize_cdr(image_message(ts, header, depth, depth_enc), IMAGE))
            if points_iter is not None:
                pts = np.ascontiguousarray(next(points_iter), np.float32).reshape(1, -1, 3)
                cmsg = cloud_message(ts, header, pts, is_dense=True)
                writer.write(depth_conn, t, ts.serialize_cdr(cmsg, POINTCLOUD2))
            if pose_iter is not None:
                m = np.asarray(next(pose_iter), np.float64)
                qx, qy, qz, qw = (float(v) for v in quaternion_from_matrix(m[:3, :3]))
                pose = T["geometry_msgs/msg/Pose"](
                    position=T["geometry_msgs/msg/Point"](x=m[0, 3], y=m[1, 3], z=m[2, 3]),
                    orientation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
                )
                pose_header = T["std_msgs/msg/Header"](stamp=header.stamp, frame_id="world")
                pmsg = T[POSE_STAMPED](header=pose_header, pose=pose)
                writer.write(pose_conn, t, ts.serialize_cdr(pmsg, POSE_STAMPED))
            n += 1
    return n


def join_split_bag(folder: str | Path, parts: Sequence[str | Path], *, listed: int | None = None) -> Path:
    """Join bags written by `write_image_bag` (or `bag_writer.new_bag_writer`), one per part in time order, into a
    split recording as `ros2 bag record --max-bag-size` leaves it: `FOLDER/FOLDER_0.mcap`, `FOLDER_1.mcap`, ... and
    a metadata.yaml listing each file with its own start, duration and count. `listed`: the metadata.yaml lists only
    the first `listed` files (a recorder killed after it wrote it for the earlier ones; 0: no metadata.yaml, a
    recorder killed before it wrote one). The parts' folders are removed; returns `folder`."""
    import shutil

    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True)
    infos, files = [], []
    for k, part in enumerate(map(Path, parts)):
        info = yaml.safe_load((part / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        (stored,) = info["relative_file_paths"]
        name = f"{folder.name}_{k}{stored[stored.index('.') :]}"  # (its extensions: .mcap, .db3, .mcap.zstd)
        shutil.move(part / stored, folder / name)
        shutil.rmtree(part)
        infos.append(info)
        files.append(dict(info["files"][0], path=name))
    listed = len(files) if listed is None else listed
    if listed == 0:
        return folder
    infos, files = infos[:listed], files[:listed]
    topics: dict[str, dict] = {}  # every part's topics (a part may hold only some), their counts summed
    for info in infos:
        for topic in info["topics_with_message_count"]:
            topic_name = topic["topic_metadata"]["name"]
            count = topics[topic_name]["message_count"] if topic_name in topics else 0
            topics[topic_name] = dict(topic, message_count=count + topic["message_count"])
    start = min(f["starting_time"]["nanoseconds_since_epoch"] for f in files)
    end = max(f["starting_time"]["nanoseconds_since_epoch"] + f["duration"]["nanoseconds"] for f in files)
    joined = dict(
        infos[0],
        relative_file_paths=[f["path"] for f in files],
        files=files,
        starting_time={"nanoseconds_since_epoch": start},
        duration={"nanoseconds": end - start},
        message_count=sum(f["message_count"] for f in files),
        topics_with_message_count=list(topics.values()),
    )
    (folder / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": joined}, sort_keys=False))
    return folder
