"""rclpy messages <-> numpy, on top of the ROS-free `vdepth_ros.encodings` table (and `pointcloud2`,
`camera_info`).

Nothing here knows about windows or stitching: it turns `Image`/`CompressedImage`/`CameraInfo`/
`PointCloud2` into the arrays `FrameInput` wants and `DepthFrame` arrays back into messages.
"""

from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from vdepth_ros import camera_info, pointcloud2, triangulate
from vdepth_ros import encodings as enc
from vdepth_ros.errors import InputError
from vdepth_ros.inputs.sync import stamp_to_ns  # the one stamp rule; the node calls it as conv.stamp_to_ns
from vdepth_ros.stream.cloud import CameraModel


def type_name(msg_type: type) -> str:
    """`sensor_msgs/msg/Image` for rclpy's `sensor_msgs.msg.Image` (the ROS graph's spelling of a topic's type)."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds -> `builtin_interfaces/Time`."""
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def copy_header(header: Header) -> Header:
    """A new header with the same stamp and frame_id (outputs keep the source image's header)."""
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


# -- inputs ------------------------------------------------------------------------------------
def image_array(msg: Image) -> np.ndarray:
    """The pixels of an `Image` in its own encoding (zero-copy when rows are unpadded)."""
    return enc.image_array_from_fields(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


#: Shared with the offline tools (ROS-free, duck-typed on the message fields).
camera_from_info = camera_info.camera_from_info
sparse_depth_from_cloud = pointcloud2.sparse_depth_from_cloud
info_signature = camera_info.info_signature
pose_from_msg = triangulate.pose_from_msg  # (4, 4) camera-to-world of a PoseStamped


# -- outputs -----------------------------------------------------------------------------------
def _byte_array(data: bytes | np.ndarray) -> array.array:
    """`array('B')` for a message's uint8[] field: rclpy stores it as is (no per-element check, even
    with ROS_PYTHON_CHECK_FIELDS=1), and an ndarray is copied once, not twice."""
    out = array.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(data) if isinstance(data, np.ndarray) else data).cast("B"))
    return out


def image_msg(arr: np.ndarray, encoding: str, header: Header) -> Image:
    """An `Image` holding `arr` (little-endian, unpadded) with `header`."""
    step, data = enc.image_fields_from_array(arr, encoding)
    msg = Image(
        header=header, height=int(arr.shape[0]), width=int(arr.shape[1]), encoding=encoding, is_bigendian=0, step=step
    )
    msg.data = _byte_array(data)
    return msg


def cloud_msg(points: np.ndarray, colors: np.ndarray | None, header: Header) -> PointCloud2:
    """An organized `PointCloud2` (`height x width` = `points.shape[:2]`, `is_dense=False`)."""
    fields, point_step, row_step, data = pointcloud2.pointcloud2_buffer(points, colors)
    msg = PointCloud2(
        header=header,
        height=int(points.shape[0]),
        width=int(points.shape[1]),
        is_bigendian=False,
        point_step=point_step,
        row_step=row_step,
        is_dense=False,
    )
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields]
    msg.data = _byte_array(data)
    return msg


def info_msg(camera: CameraModel, header: Header) -> CameraInfo:
    """`CameraInfo` for an output image: rectified pinhole at `camera`'s resolution, no distortion
    (`camera_info.camera_info_fields`)."""
    return CameraInfo(header=header, **camera_info.camera_info_fields(camera))


def colormap_msg(
    values: np.ndarray,
    header: Header,
    vmin: float,
    vmax: float,
    *,
    near_is_high: bool = False,
    rgb: np.ndarray | None = None,
    label: str | None = None,
) -> Image:
    """A bgr8 INFERNO visualisation of `values` clipped to `[vmin, vmax]` (auto range: the 2nd-98th
    percentile, when `vmax <= vmin`); near is bright, NaN black. `near_is_high`: True for disparity.
    With `rgb` (registered to `values`): the preview layout, image and depth side by side above a
    colour bar with units (`colormap.preview_image`)."""
    from vdepth_ros.colormap import auto_range, colorize, preview_image

    if not vmax > vmin:
        vmin, vmax = auto_range(values)
    if rgb is None:
        return image_msg(colorize(values, vmin, vmax, near_is_high=near_is_high), "bgr8", header)
    return image_msg(preview_image(values, rgb, vmin, vmax, metric=not near_is_high, label=label), "bgr8", header)


__all__ = [
    "InputError",
    "camera_from_info",
    "cloud_msg",
    "colormap_msg",
    "copy_header",
    "image_array",
    "image_msg",
    "info_msg",
    "info_signature",
    "ns_to_stamp",
    "pose_from_msg",
    "sparse_depth_from_cloud",
    "stamp_to_ns",
    "type_name",
]
