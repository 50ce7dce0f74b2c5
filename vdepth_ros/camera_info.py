"""`sensor_msgs/CameraInfo` as numpy, without ROS: the camera model of the images a camera publishes
(`camera_from_info`: `P` else `K`, its `roi` and binning applied as image_geometry does), the fields of
an output image's camera_info (`camera_info_fields`), and what must stay constant for a stream to
continue (`info_signature`). Works on plain message fields (rclpy's or rosbags' messages, or a
calibration file's values), for the node, the offline tools and `rectify` alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from vdepth_ros.stream.cloud import CameraModel


def image_window(info: Any) -> tuple[int, int, int, int, int, int]:
    """`(x_offset, y_offset, width, height, binning_x, binning_y)`: the part of the calibrated
    image (`info.width x info.height`) that the camera's images show, and how it was binned.

    As `sensor_msgs/CameraInfo` defines them (and image_geometry applies them): `roi` is given in
    full-resolution, unbinned pixels, an all-zero `roi` is the whole image, binning 0 is 1, and the
    image is `roi.width / binning_x` x `roi.height / binning_y` pixels. Messages without the fields
    (a calibration file) are the whole image, unbinned.
    """
    bx = max(1, int(getattr(info, "binning_x", 0) or 0))
    by = max(1, int(getattr(info, "binning_y", 0) or 0))
    roi = getattr(info, "roi", None)
    if roi is None or int(roi.width) <= 0 or int(roi.height) <= 0:
        return 0, 0, int(info.width), int(info.height), bx, by
    return int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height), bx, by


def camera_from_info(info: Any) -> CameraModel | None:
    """Pinhole intrinsics from a `sensor_msgs/CameraInfo` (rclpy or rosbags message), for the
    images the camera publishes.

    Uses the rectified projection `P` if set, else `K` (depth_image_proc / image_geometry); None
    for an uncalibrated (all-zero) or sizeless camera_info. A region of interest and binning
    are applied as image_geometry does (`windowed_matrix`), so a cropped or binned image gets its own
    principal point and focal lengths, the ones every image_geometry user of the camera sees.
    """
    from vdepth_ros.stream.cloud import CameraModel

    p = np.asarray(info.p, dtype=np.float64).reshape(3, 4)[:, :3]
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if p[0, 0] > 0 and p[1, 1] > 0:
        m = p
    elif k[0, 0] > 0 and k[1, 1] > 0:
        m = k
    else:
        return None
    if int(info.width) <= 0 or int(info.height) <= 0:
        return None
    m, width, height = windowed_matrix(m, info)
    return CameraModel(float(m[0, 0]), float(m[1, 1]), float(m[0, 2]), float(m[1, 2]), width, height)


def windowed_matrix(m: np.ndarray, info: Any) -> tuple[np.ndarray, int, int]:
    """A camera matrix of the calibrated image (`K`, or `P`'s 3x3 block) -> `(matrix, width, height)` of
    the images the camera publishes (`image_window`: its `roi`, binned), as image_geometry's
    `PinholeCameraModel` (and so depth_image_proc) has it: the principal point minus the roi's
    offset, then focal lengths and principal point divided by the binning (`(cx - x0) / bx`, not
    about pixel centres: the same camera as every ROS user of these images sees)."""
    x0, y0, width, height, bx, by = image_window(info)
    out = np.array(m, dtype=np.float64, copy=True)
    out[0, 2] -= x0
    out[1, 2] -= y0
    out[0, :3] /= bx
    out[1, :3] /= by
    return out, max(1, width // bx), max(1, height // by)


def camera_info_fields(camera: CameraModel) -> dict[str, Any]:
    """The `sensor_msgs/CameraInfo` fields of an output image: the rectified pinhole `camera` at its
    resolution, no distortion (`plumb_bob`, five zeros), `R` = I, `K` = `P`'s 3x3 block, `Tx` = 0 (the
    depth is in this camera's own frame). Float lists, for the node's message, `vdepth-bag`'s and
    `vdepth-video`'s `camera_info.yaml` alike; binning and ROI keep their defaults (none)."""
    return pinhole_fields(camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height)


def pinhole_fields(fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> dict[str, Any]:
    """`camera_info_fields` of plain intrinsics, unchecked (`rectify.pinhole_info` builds the camera_info
    of a user's `--intrinsics` with it, to be judged as a camera_info is, zeros and all)."""
    fx, fy, cx, cy = float(fx), float(fy), float(cx), float(cy)
    return {
        "width": int(width),
        "height": int(height),
        "distortion_model": "plumb_bob",
        "d": [0.0] * 5,
        "k": [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
        "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "p": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    }


def info_signature(info: Any) -> tuple:
    """What must stay constant in camera_info for a stream to continue (size and projection)."""
    return (
        int(info.width),
        int(info.height),
        tuple(np.round(np.asarray(info.p, float), 6)),
        tuple(np.round(np.asarray(info.k, float), 6)),
    )
