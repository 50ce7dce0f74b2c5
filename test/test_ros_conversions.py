"""rclpy message <-> numpy conversions (real sensor_msgs types, no node)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from vdepth_ros.encodings import unpack_rgb_float
from vdepth_ros.errors import InputError
from vdepth_ros.inputs.assembly import decode_color_image, decode_depth_image
from vdepth_ros.ros import conversions as conv
from vdepth_ros.stream.cloud import CameraModel


def _header() -> Header:
    return Header(stamp=Time(sec=12, nanosec=345), frame_id="cam_optical")


def _image(arr: np.ndarray, encoding: str) -> Image:
    return conv.image_msg(arr, encoding, _header())


def test_stamps_round_trip():
    assert conv.stamp_to_ns(Time(sec=3, nanosec=7)) == 3_000_000_007
    t = conv.ns_to_stamp(3_000_000_007)
    assert (t.sec, t.nanosec) == (3, 7)
    h = conv.copy_header(_header())
    assert (h.stamp.sec, h.stamp.nanosec, h.frame_id) == (12, 345, "cam_optical")


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "rgba8"])
def test_rgb_from_image_msgs_survive_serialization(encoding: str):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    src = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "mono8": rgb[..., 1],
        "rgba8": np.dstack([rgb, np.zeros((48, 64), np.uint8)]),
    }[encoding]
    msg = deserialize_message(serialize_message(_image(np.ascontiguousarray(src), encoding)), Image)
    out = decode_color_image(msg)
    expect = np.repeat(rgb[..., 1:2], 3, axis=2) if encoding == "mono8" else rgb
    np.testing.assert_array_equal(out, expect)


@pytest.mark.parametrize("encoding", ["yuv422_yuy2", "bayer_rggb8"])
def test_camera_native_encodings_survive_serialization(encoding: str):
    """What USB (YUYV) and machine-vision (Bayer) cameras publish arrives as RGB, as decoded offline."""
    rgb = cv2.resize(np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8), (64, 48))
    if encoding == "yuv422_yuy2":
        src = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUYV)
    else:
        src = rgb[..., 1].copy()
        src[0::2, 0::2], src[1::2, 1::2] = rgb[0::2, 0::2, 0], rgb[1::2, 1::2, 2]
    msg = deserialize_message(serialize_message(_image(np.ascontiguousarray(src), encoding)), Image)
    out = decode_color_image(msg)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.median(np.abs(out.astype(int) - rgb.astype(int))) <= 8


def test_depth_image_is_rejected_as_colour():
    msg = _image(np.zeros((4, 4), np.uint16), "16UC1")
    with pytest.raises(InputError, match="16UC1 is a depth image"):
        decode_color_image(msg)


def test_truncated_buffer_is_rejected():
    msg = _image(np.zeros((4, 4, 3), np.uint8), "rgb8")
    msg.height = 400  # lies about its size: must not crash or over-read
    with pytest.raises(InputError, match="needs"):
        decode_color_image(msg)


def test_compressed():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    _, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(header=_header(), format="png")
    msg.data = png.tobytes()
    np.testing.assert_array_equal(decode_color_image(msg), rgb)


def test_camera_from_info_prefers_p_and_rejects_uncalibrated():
    info = CameraInfo(width=640, height=480)
    assert conv.camera_from_info(info) is None
    info.k = [500.0, 0, 320, 0, 510, 240, 0, 0, 1]
    cam = conv.camera_from_info(info)
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (500, 510, 320, 240, 640, 480)
    info.p = [450.0, 0, 300, 0, 0, 460, 230, 0, 0, 0, 1, 0]
    cam = conv.camera_from_info(info)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (450, 460, 300, 230)
    back = conv.info_msg(cam, _header())
    assert conv.camera_from_info(back) == cam
    assert back.header.frame_id == "cam_optical"


def test_cloud_msg_organized_with_nans():
    pts = np.ones((3, 4, 3), np.float32)
    pts[0, 1] = np.nan
    colors = np.full((3, 4, 3), 9, np.uint8)
    msg = deserialize_message(serialize_message(conv.cloud_msg(pts, colors, _header())), PointCloud2)
    assert (msg.height, msg.width, msg.is_dense, msg.point_step) == (3, 4, False, 16)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"]
    data = np.frombuffer(msg.data, np.float32).reshape(3, 4, 4)
    assert np.isnan(data[0, 1, :3]).all()
    assert np.isfinite(data[1:, :, :3]).all()
    np.testing.assert_array_equal(unpack_rgb_float(data[..., 3]), colors)


def test_sparse_depth_from_cloud_projects_nearest():
    cam = CameraModel(fx=10.0, fy=10.0, cx=2.0, cy=2.0, width=5, height=5)
    pts = np.array([[[0.0, 0.0, 2.0], [0.0, 0.0, 1.0], [0.2, 0.0, 1.0], [0, 0, -1.0], [5.0, 0, 1.0]]], np.float32)
    msg = conv.cloud_msg(pts, None, _header())
    depth = conv.sparse_depth_from_cloud(msg, cam)
    assert depth.shape == (5, 5)
    assert depth[2, 2] == 1.0  # nearest of the two on the optical axis
    assert depth[2, 4] == 1.0  # u = 10*0.2/1 + 2
    assert np.isfinite(depth).sum() == 2  # behind-camera and out-of-image points ignored


def test_depth_image_units():
    msg = _image(np.array([[0, 2500]], np.uint16), "16UC1")
    d = decode_depth_image(msg)
    assert np.isnan(d[0, 0])
    assert d[0, 1] == pytest.approx(2.5)


def test_colormap_is_bgr8_and_black_for_nan():
    d = np.array([[1.0, np.nan], [2.0, 3.0]], np.float32)
    msg = conv.colormap_msg(d, _header(), 0.0, 0.0)
    assert (msg.encoding, msg.height, msg.width) == ("bgr8", 2, 2)
    arr = np.frombuffer(msg.data, np.uint8).reshape(2, 2, 3)
    assert (arr[0, 1] == 0).all()
    assert arr[0, 0].sum() > arr[1, 1].sum()  # near is bright


def test_colormap_of_disparity_keeps_near_bright():
    disp = np.array([[3.0, 1.0]], np.float32)  # left pixel is nearer
    msg = conv.colormap_msg(disp, _header(), 0.0, 0.0, near_is_high=True)
    arr = np.frombuffer(msg.data, np.uint8).reshape(1, 2, 3)
    assert arr[0, 0].sum() > arr[0, 1].sum()
