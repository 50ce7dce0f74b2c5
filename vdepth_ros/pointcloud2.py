"""`sensor_msgs/PointCloud2` layouts as numpy, without ROS.

The organized xyz(rgb) cloud the node and `vdepth-bag` publish (`pointcloud2_buffer`), reading named
fields of any cloud (`pointcloud2_fields_array`), PCL's packed float `rgb`, and a cloud projected into
a camera as sparse depth (`sparse_depth_from_cloud`: the `sparse_depth: pointcloud` input). Like
`encodings` (images), it works on plain message *fields*, so rclpy's and rosbags' messages alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from vdepth_ros.errors import InputError

if TYPE_CHECKING:
    from vdepth_ros.stream.cloud import CameraModel

# sensor_msgs/PointField datatype constants.
POINTFIELD_INT8, POINTFIELD_UINT8, POINTFIELD_INT16, POINTFIELD_UINT16 = 1, 2, 3, 4
POINTFIELD_INT32, POINTFIELD_UINT32, POINTFIELD_FLOAT32, POINTFIELD_FLOAT64 = 5, 6, 7, 8
POINTFIELD_DTYPES: dict[int, np.dtype] = {
    POINTFIELD_INT8: np.dtype("i1"),
    POINTFIELD_UINT8: np.dtype("u1"),
    POINTFIELD_INT16: np.dtype("<i2"),
    POINTFIELD_UINT16: np.dtype("<u2"),
    POINTFIELD_INT32: np.dtype("<i4"),
    POINTFIELD_UINT32: np.dtype("<u4"),
    POINTFIELD_FLOAT32: np.dtype("<f4"),
    POINTFIELD_FLOAT64: np.dtype("<f8"),
}

#: (name, offset, datatype, count) as in `sensor_msgs/PointField`.
FieldSpec = tuple[str, int, int, int]


def pack_rgb_float(colors: np.ndarray) -> np.ndarray:
    """Pack `(..., 3)` uint8 RGB into PCL's float `rgb` field (`0x00RRGGBB` bits viewed as float32)."""
    c = colors.astype(np.uint32)
    return ((c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]).view(np.float32)


def unpack_rgb_float(rgb: np.ndarray) -> np.ndarray:
    """Inverse of `pack_rgb_float`: float32 `rgb` -> `(..., 3)` uint8."""
    u = np.ascontiguousarray(rgb, dtype=np.float32).view(np.uint32)
    return np.stack([(u >> 16) & 0xFF, (u >> 8) & 0xFF, u & 0xFF], axis=-1).astype(np.uint8)


def pointcloud2_layout(points: np.ndarray, colors: np.ndarray | None = None) -> tuple[list[FieldSpec], int, int, bytes]:
    """Layout of an organized `PointCloud2` holding `points` (and packed `rgb`).

    See `pointcloud2_buffer`; this returns the data as `bytes`.
    """
    fields, point_step, row_step, buf = pointcloud2_buffer(points, colors)
    return fields, point_step, row_step, buf.tobytes()


def pointcloud2_buffer(
    points: np.ndarray, colors: np.ndarray | None = None
) -> tuple[list[FieldSpec], int, int, np.ndarray]:
    """Layout of an organized `PointCloud2` holding `points` (and packed `rgb`), data as an array.

    Fields are `x, y, z` float32 at offsets 0/4/8 and, with colours, PCL's packed float `rgb`
    at 12: `point_step` is 12 (xyz) or 16 (xyzrgb). The cloud keeps `points`' (h, w) layout, so
    the message is organized (`height=h`, `width=w`, `is_dense=False` when NaNs are present).

    Args:
        points: `(h, w, 3)` float32 xyz in metres, NaN invalid.
        colors: `(h, w, 3)` uint8 RGB matching `points`, or None.

    Returns:
        `(fields, point_step, row_step, buffer)` with fields as `(name, offset, datatype, count)`
        and `buffer` a C-contiguous little-endian float32 `(h, w, point_step // 4)` array.

    Raises:
        InputError: wrong shapes or dtypes.
    """
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[2] != 3:
        raise InputError(f"points must be (h, w, 3), got {points.shape}")
    h, w, _ = points.shape
    fields: list[FieldSpec] = [
        ("x", 0, POINTFIELD_FLOAT32, 1),
        ("y", 4, POINTFIELD_FLOAT32, 1),
        ("z", 8, POINTFIELD_FLOAT32, 1),
    ]
    if colors is None:
        buf = np.ascontiguousarray(points, dtype=np.float32)
    else:
        colors = np.asarray(colors)
        if colors.shape != points.shape or colors.dtype != np.uint8:
            raise InputError(
                f"colors must be (h, w, 3) uint8 like points {points.shape}, got {colors.dtype}{colors.shape}"
            )
        buf = np.empty((h, w, 4), "<f4")
        buf[..., :3] = points
        # packed float rgb = 0x00RRGGBB little-endian: bytes B, G, R, 0 (faster than uint32 shifts)
        rgb_bytes = buf.view(np.uint8).reshape(h, w, 16)[..., 12:]
        rgb_bytes[..., :3] = colors[..., ::-1]
        rgb_bytes[..., 3] = 0
        fields.append(("rgb", 12, POINTFIELD_FLOAT32, 1))
    point_step = buf.shape[2] * 4
    return fields, point_step, point_step * w, buf.astype("<f4", copy=False)


def pointcloud2_fields_array(
    fields: list[FieldSpec],
    point_step: int,
    height: int,
    width: int,
    row_step: int,
    data: bytes | bytearray | memoryview,
    is_bigendian: bool | int = False,
    names: tuple[str, ...] = ("x", "y", "z"),
) -> np.ndarray:
    """Read named scalar fields of a `PointCloud2` into an `(height, width, len(names))` float32 array.

    Raises:
        InputError: a requested field is missing, has an unknown datatype, or the buffer is too short.
    """
    by_name = {f[0]: f for f in fields}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise InputError(f"PointCloud2 lacks field(s) {missing}; it has {sorted(by_name)}")
    height, width, point_step, row_step = int(height), int(width), int(point_step), int(row_step)
    buf = np.frombuffer(data, dtype=np.uint8)
    if height <= 0 or width <= 0:
        return np.zeros((max(height, 0), max(width, 0), len(names)), np.float32)
    if row_step < width * point_step or buf.size < row_step * (height - 1) + width * point_step:
        raise InputError(
            f"PointCloud2 {width}x{height} point_step {point_step} row_step {row_step}: data has {buf.size} bytes"
        )
    out = np.empty((height, width, len(names)), np.float32)
    for i, name in enumerate(names):
        _, offset, datatype, _ = by_name[name]
        if datatype not in POINTFIELD_DTYPES:
            raise InputError(f"PointCloud2 field {name!r} has unknown datatype {datatype}")
        dt = POINTFIELD_DTYPES[datatype].newbyteorder(">" if is_bigendian else "<")
        if offset + dt.itemsize > point_step:
            raise InputError(f"PointCloud2 field {name!r} at offset {offset} exceeds point_step {point_step}")
        col = np.ndarray((height, width), dtype=dt, buffer=buf, offset=offset, strides=(row_step, point_step))
        out[..., i] = col
    return out


def sparse_depth_from_cloud(msg: Any, camera: CameraModel, rotation: np.ndarray | None = None) -> np.ndarray:
    """Project a `PointCloud2` message (xyz in the camera's optical frame; an rclpy or a rosbags
    message, read by field name) to a `(H, W)` depth image, as the node's and vdepth-bag's
    `sparse_depth: pointcloud` input.

    Points behind the camera or outside the image are ignored; where several points land on one
    pixel the nearest wins. Pixels without a point are NaN. `rotation` (3x3) first turns the
    points into the frame `camera` projects from (a rectified camera's `R`, `vdepth_ros.rectify`).
    """
    fields = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    xyz = pointcloud2_fields_array(
        fields, msg.point_step, msg.height, msg.width, msg.row_step, msg.data, msg.is_bigendian
    ).reshape(-1, 3)
    if rotation is not None:
        xyz = xyz @ np.asarray(rotation, dtype=xyz.dtype).T
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    ok = np.isfinite(xyz).all(axis=1) & (z > 0)
    x, y, z = x[ok], y[ok], z[ok]
    u = np.floor(camera.fx * x / z + camera.cx + 0.5).astype(np.int64)
    v = np.floor(camera.fy * y / z + camera.cy + 0.5).astype(np.int64)
    inside = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    u, v, z = u[inside], v[inside], z[inside]
    depth = np.full((camera.height, camera.width), np.inf, np.float32)
    np.minimum.at(depth, (v, u), z.astype(np.float32))
    depth[~np.isfinite(depth)] = np.nan
    return depth
