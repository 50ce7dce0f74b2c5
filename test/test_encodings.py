"""vdepth_ros.encodings: the ROS-free image/PointCloud2 helpers shared by the node and the offline tools."""

from __future__ import annotations

import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from fakes import rvl_encode, rvl_pack, with_exif_orientation

from vdepth_ros import encodings as enc
from vdepth_ros.errors import InputError


def _rgb(h: int = 6, w: int = 5) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_table_units_match_depth_image_proc():
    assert enc.DEPTH_UNIT_SCALE == {"16UC1": 0.001, "32FC1": 1.0}
    assert "16UC1" not in enc.COLOR_INPUT_ENCODINGS
    assert {"rgb8", "bgr8", "mono8", "rgba8", "bgra8", "mono16"} <= set(enc.COLOR_INPUT_ENCODINGS)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1", "32FC1"])
def test_fields_round_trip(encoding: str):
    e = enc.get_encoding(encoding)
    rng = np.random.default_rng(2)
    shape = (7, 9) if e.channels == 1 else (7, 9, e.channels)
    arr = (rng.random(shape) * 1000).astype(e.dtype)
    step, data = enc.image_fields_from_array(arr, encoding)
    assert step == 9 * e.bytes_per_pixel
    assert len(data) == step * 7
    back = enc.image_array_from_fields(encoding, 7, 9, step, array.array("B", data), False)
    np.testing.assert_array_equal(back, arr)
    assert back.dtype == arr.dtype


def test_padded_step_and_bigendian():
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4) * 300
    be = arr.astype(">u2")
    step = 4 * 2 + 6  # 6 padding bytes per row
    buf = bytearray(step * 3)
    for r in range(3):
        buf[r * step : r * step + 8] = be[r].tobytes()
    out = enc.image_array_from_fields("16UC1", 3, 4, step, bytes(buf), True)
    np.testing.assert_array_equal(out, arr)
    assert out.dtype.isnative


def test_image_rejects_bad_fields():
    with pytest.raises(InputError, match="unsupported image encoding 'i420'"):  # (not a sensor_msgs encoding)
        enc.image_array_from_fields("i420", 2, 2, 4, b"\0" * 8)
    with pytest.raises(InputError, match="step 5 < width"):
        enc.image_array_from_fields("rgb8", 2, 2, 5, b"\0" * 12)
    with pytest.raises(InputError, match="needs 12"):
        enc.image_array_from_fields("rgb8", 2, 2, 6, b"\0" * 11)
    with pytest.raises(InputError, match="invalid size"):
        enc.image_array_from_fields("rgb8", 0, 2, 6, b"")
    # more data than step x rows: a 4x4 frame sent under a 2x2 image's fields is refused, not read as a crop
    with pytest.raises(InputError, match=r"data has 48 bytes, but step x rows is 12: the data holds 8 rows"):
        enc.image_array_from_fields("rgb8", 2, 2, 6, b"\0" * 48)
    with pytest.raises(InputError, match=r"nv12 image 2x2 step 2: data has 12 bytes, but step x rows is 6"):
        enc.image_array_from_fields("nv12", 2, 2, 2, b"\0" * 12)
    # the last row without its padding is still read (as it is in the data)
    assert enc.image_array_from_fields("rgb8", 2, 2, 8, b"\0" * 14).shape == (2, 2, 3)
    with pytest.raises(InputError, match="does not match encoding rgb8"):
        enc.image_fields_from_array(np.zeros((2, 2), np.uint8), "rgb8")


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16"])
def test_rgb_from_colour_encodings(encoding: str):
    rgb = _rgb()
    src = {
        "rgb": rgb,
        "bgr": rgb[..., ::-1],
        "rgba": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
        "bgra": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
    }[encoding[:-2] if encoding.endswith("16") else encoding[:-1]]
    if encoding.endswith("16"):  # 16 bits per channel (machine-vision cameras): the top 8 bits are the image
        src = src.astype(np.uint16) * 256 + 100  # low bits set: they are dropped, not rounded
        assert enc.get_encoding(encoding).bytes_per_pixel == 2 * src.shape[2]
    out = enc.rgb_from_image(np.ascontiguousarray(src), encoding)
    assert out.shape == rgb.shape
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)


def test_rgb_from_mono():
    grey = np.array([[0, 128], [255, 3]], np.uint8)
    out = enc.rgb_from_image(grey, "mono8")
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[..., 1], grey)
    out16 = enc.rgb_from_image(grey.astype(np.uint16) << 8, "mono16")
    np.testing.assert_array_equal(out16, out)


def _smooth_rgb(h: int = 40, w: int = 48) -> np.ndarray:
    """Red rises to the right, blue downwards, green is flat: a swapped R/B or a shifted Bayer
    pattern changes the result by far more than demosaicing blur does."""
    vv, uu = np.mgrid[0:h, 0:w].astype(float)
    return np.stack([40 + 4 * uu, np.full_like(uu, 120.0), 30 + 5 * vv], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_mosaics_demosaic_to_the_image_they_sampled(pattern: str, bits: int) -> None:
    rgb = _smooth_rgb()
    channel = {"r": 0, "g": 1, "b": 2}
    mosaic = np.empty(rgb.shape[:2], np.uint8)
    for k, c in enumerate(pattern):  # the 2x2 block, row by row: (0,0) (0,1) (1,0) (1,1)
        dy, dx = divmod(k, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, channel[c]]
    src = mosaic if bits == 8 else mosaic.astype(np.uint16) << 8
    encoding = f"bayer_{pattern}{bits}"
    step, data = enc.image_fields_from_array(src, encoding)  # through the message fields, as received
    arr = enc.image_array_from_fields(encoding, *mosaic.shape, step, data)
    out = enc.rgb_from_image(arr, encoding)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - rgb.astype(int))[2:-2, 2:-2]
    assert err.max() <= 6, (pattern, err.max())


def test_yuv422_byte_orders() -> None:
    """yuv422 is U Y V Y, yuv422_yuy2 is Y U Y V (sensor_msgs image_encodings, as cv_bridge reads them)."""
    y, u, v = 110, 128, 200  # strong red chroma, no blue chroma
    uyvy = np.tile(np.array([u, y, v, y], np.uint8), (4, 3)).reshape(4, 6, 2)
    yuyv = np.tile(np.array([y, u, y, v], np.uint8), (4, 3)).reshape(4, 6, 2)
    a, b = enc.rgb_from_image(uyvy, "yuv422"), enc.rgb_from_image(yuyv, "yuv422_yuy2")
    np.testing.assert_array_equal(a, b)
    # "uyvy" and "yuyv" are the current sensor_msgs names of the same two layouts ("yuv422" and
    # "yuv422_yuy2" are deprecated there): a driver built on the current constants publishes them
    np.testing.assert_array_equal(enc.rgb_from_image(uyvy, "uyvy"), a)
    np.testing.assert_array_equal(enc.rgb_from_image(yuyv, "yuyv"), a)
    r, g, bl = (int(x) for x in a[0, 0])
    assert r > bl + 60 and r > g + 60  # red from V; read in the wrong order it would not be
    grey = enc.rgb_from_image(np.tile(np.array([128, 90], np.uint8), (2, 4)).reshape(2, 4, 2), "yuv422")
    assert np.ptp(grey.astype(int), axis=2).max() <= 1  # U = V = 128: grey
    # a real image: RGB -> YUYV (OpenCV) -> ours, within 4:2:2's chroma sharing on a smooth image
    rgb = _smooth_rgb()
    back = enc.rgb_from_image(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUYV), "yuv422_yuy2")
    assert np.abs(back.astype(int) - rgb.astype(int)).max() <= 8
    with pytest.raises(InputError, match="odd width"):
        enc.rgb_from_image(np.zeros((2, 3, 2), np.uint8), "yuv422")


def _nv(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """A semi-planar 4:2:0 image (nv12: U V pairs, nv21: V U) of `rgb`, as `(3H/2, W)` bytes."""
    h, w = rgb.shape[:2]
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)  # Y, then U and V planes
    u, v = i420[h : h + h // 4].reshape(h // 2, w // 2), i420[h + h // 4 :].reshape(h // 2, w // 2)
    chroma = np.stack([u, v] if encoding == "nv12" else [v, u], axis=-1).reshape(h // 2, w)
    return np.vstack([i420[:h], chroma])


@pytest.mark.parametrize("encoding", ["nv12", "nv21"])
def test_semi_planar_yuv420_as_camera_isps_publish_it(encoding: str) -> None:
    """nv12 / nv21 (sensor_msgs image_encodings; a Jetson's or Raspberry Pi's ISP, GStreamer bridges):
    a luma plane and half-height interleaved chroma, `step` bytes a row, 1.5 rows a pixel row. Was
    refused as an unsupported encoding."""
    rgb = _smooth_rgb()
    h, w = rgb.shape[:2]
    planes = _nv(rgb, encoding)
    padded = np.hstack([planes, np.zeros((planes.shape[0], 6), np.uint8)])  # rows padded to a multiple
    for data, step in ((planes, w), (padded, w + 6)):
        arr = enc.image_array_from_fields(encoding, h, w, step, array.array("B", data.tobytes()))
        out = enc.rgb_from_image(arr, encoding)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 8  # 4:2:0 chroma on a smooth image
    swapped = "nv21" if encoding == "nv12" else "nv12"  # U and V read the other way round: wrong colours
    wrong = enc.rgb_from_image(enc.image_array_from_fields(swapped, h, w, w, planes.tobytes()), swapped)
    assert np.abs(wrong.astype(int) - rgb.astype(int)).max() > 20
    with pytest.raises(InputError, match="data has"):
        enc.image_array_from_fields(encoding, h, w, w, planes[:h].tobytes())  # the luma plane alone
    with pytest.raises(InputError, match="even width and height"):
        enc.image_array_from_fields(encoding, 3, 4, 4, bytes(4 * 5))


def _nv24(rgb: np.ndarray, pad: int = 0, chroma_step: int | None = None) -> tuple[bytes, int]:
    """`(data, step)` of an nv24 image of `rgb` as V4L2 lays it out: a luma plane of `H` rows of `step` bytes,
    then `H` rows of interleaved U V (2 bytes a pixel) of `2 * step` bytes (or `chroma_step`: GStreamer's);
    BT.601 video range, the 4:2:0 formats' (OpenCV's I420 of the image doubled, whose 2x2 chroma blocks are each
    one pixel's)."""
    h, w = rgb.shape[:2]
    i420 = cv2.cvtColor(np.repeat(np.repeat(rgb, 2, 0), 2, 1), cv2.COLOR_RGB2YUV_I420).ravel()
    y = i420[: 4 * h * w].reshape(2 * h, 2 * w)[::2, ::2]
    u, v = i420[4 * h * w : 5 * h * w].reshape(h, w), i420[5 * h * w :].reshape(h, w)
    step = w + pad
    luma = np.zeros((h, step), np.uint8)
    luma[:, :w] = y
    chroma = np.zeros((h, chroma_step or 2 * step), np.uint8)
    chroma[:, : 2 * w] = np.stack([u, v], axis=-1).reshape(h, 2 * w)
    return luma.tobytes() + chroma.tobytes(), step


@pytest.mark.parametrize("size", [(40, 48), (39, 47)])
def test_semi_planar_yuv444_nv24(size: tuple[int, int]) -> None:
    """nv24 is a sensor_msgs image_encodings constant (YUV 4:4:4 semi-planar, what GStreamer bridges and some ISPs
    publish): a luma plane, then a full-size plane of interleaved U V, `step` the luma's bytes a row. Was refused as
    an unsupported encoding. 4:4:4 shares no chroma, so odd sizes are fine, and a padded step pads both planes."""
    rgb = _smooth_rgb(*size)
    h, w = size
    for pad in (0, 4):
        data, step = _nv24(rgb, pad)
        arr = enc.image_array_from_fields("nv24", h, w, step, array.array("B", data))
        out = enc.rgb_from_image(arr, "nv24")
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 3, pad  # no subsampling: rounding only
    planes = _nv(_smooth_rgb(), "nv12").tobytes()
    nv12 = enc.rgb_from_image(enc.image_array_from_fields("nv12", 40, 48, 48, planes), "nv12")
    ours = enc.rgb_from_image(enc.image_array_from_fields("nv24", 40, 48, 48, _nv24(_smooth_rgb())[0]), "nv24")
    assert np.abs(ours.astype(int) - nv12.astype(int)).max() <= 8  # one colour convention for all the YUV formats
    with pytest.raises(InputError, match="data has"):
        enc.image_array_from_fields("nv24", h, w, w, data[: h * w])  # the luma plane alone


@pytest.mark.parametrize("width", [41, 42, 45, 46, 47, 48])
def test_nv24_from_gstreamer_with_any_width(width: int) -> None:
    """GStreamer pads each plane of an nv24 frame to 4 bytes on its own (luma rows `GST_ROUND_UP_4(W)`, chroma
    rows `GST_ROUND_UP_4(2 * W)`), and a bridge publishes the luma's as `step`: for a width of 1 or 2 mod 4 the
    chroma rows are shorter than `2 * step` (642 wide: 1284 bytes, not 1288), and every frame was refused ("data
    has N bytes, needs M"). The rows are read as the data lays them out; the last row's padding may be left out."""
    rgb = _smooth_rgb(6, width)
    step, chroma_step = -(-width // 4) * 4, -(-2 * width // 4) * 4
    data, _ = _nv24(rgb, step - width, chroma_step)
    for sent in (data, data[: len(data) - (chroma_step - 2 * width)]):  # (without the last row's padding)
        arr = enc.image_array_from_fields("nv24", 6, width, step, array.array("B", sent))
        out = enc.rgb_from_image(arr, "nv24")
        assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb.astype(int)).max() <= 3
    with pytest.raises(InputError, match=r"data has .* bytes, which is not 6 rows of luma"):
        enc.image_array_from_fields("nv24", 6, width, step, data[:-chroma_step])  # a chroma row short


def _padded_luma(planes: np.ndarray, height: int, luma_rows: int, chroma_rows: int) -> bytes:
    """`planes` (`height` rows of luma, then chroma rows) as a hardware decoder lays them out: the luma plane
    padded to `luma_rows` rows (of junk, as a decoder leaves them), then the chroma plane padded to `chroma_rows`."""
    junk = np.random.default_rng(0).integers(0, 256, (max(luma_rows, chroma_rows), planes.shape[1]), np.uint8)
    chroma = planes[height:]
    return np.vstack(
        [planes[:height], junk[: luma_rows - height], chroma, junk[: chroma_rows - chroma.shape[0]]]
    ).tobytes()


@pytest.mark.parametrize("encoding", ["nv12", "nv21"])
def test_nv12_with_a_luma_plane_padded_as_hardware_decoders_send_it(encoding: str) -> None:
    """Jetson (NvBuffer), Rockchip (MPP) and GStreamer's v4l2 decoders pad the luma plane to a multiple of 16,
    32 or 64 rows, and the chroma plane starts after it: a 1080p frame's chroma after 1088 rows. Every such frame
    was refused ("data has N bytes, but step x rows is M"). The padded height is read from the data's size when
    only one alignment fits it; a size no decoder's layout gives keeps the error."""
    for h, w, pad in ((1080, 1920, 0), (40, 48, 0), (40, 48, 16), (88, 64, 0)):  # (1080p: a Jetson's 1088 rows)
        rgb = _smooth_rgb(h, w)
        planes = _nv(rgb, encoding)
        if pad:
            planes = np.hstack([planes, np.zeros((planes.shape[0], pad), np.uint8)])
        step = w + pad
        expected = enc.rgb_from_image(enc.image_array_from_fields(encoding, h, w, step, planes.tobytes()), encoding)
        for align in (16, 32, 64):
            rows = -(-h // align) * align
            for chroma_rows in (h // 2, rows // 2):  # the chroma plane of the image's rows, or of the padded ones
                data = _padded_luma(planes, h, rows, chroma_rows)
                out = enc.rgb_from_image(enc.image_array_from_fields(encoding, h, w, step, data), encoding)
                np.testing.assert_array_equal(out, expected, err_msg=f"{h}x{w} {align} {chroma_rows}")
    for extra_rows in (1, 5, 7):  # more rows than any aligned luma plane gives: refused, naming the layouts
        data = planes.tobytes() + bytes(extra_rows * step)
        with pytest.raises(InputError, match=r"data has .* bytes, but step x rows is .*padded to a multiple of 16"):
            enc.image_array_from_fields(encoding, 88, 64, step, data)


def test_nv24_with_a_luma_plane_padded_as_hardware_decoders_send_it() -> None:
    """nv24 from a decoder that pads its luma plane to 16, 32 or 64 rows: the chroma plane after the padded rows
    (V4L2's `2 * step` or GStreamer's 4-byte chroma rows); was refused as a frame of another size."""
    h, w = 40, 42
    rgb = _smooth_rgb(h, w)
    for step, chroma_step in ((44, 84), (w, 2 * w)):  # GStreamer's 4-byte aligned planes; unpadded rows
        data, _ = _nv24(rgb, step - w, chroma_step)
        expected = enc.rgb_from_image(enc.image_array_from_fields("nv24", h, w, step, data), "nv24")
        luma = np.frombuffer(data[: h * step], np.uint8).reshape(h, step)
        padded = np.vstack([luma, np.full((48 - h, step), 77, np.uint8)]).tobytes() + data[h * step :]
        out = enc.rgb_from_image(enc.image_array_from_fields("nv24", h, w, step, padded), "nv24")
        np.testing.assert_array_equal(out, expected)  # (40 rows: to 48 for 16-row alignment)
    # 64 rows of luma and 40 of chroma (42 wide) are as many bytes as 48 and 48: which one is unclear, refused
    unclear = np.vstack([luma, np.full((64 - h, w), 77, np.uint8)]).tobytes() + data[h * w :]
    for sent in (unclear, data + bytes(3 * w)):
        with pytest.raises(InputError, match=r"which is not 40 rows of luma.*padded to a multiple of 16"):
            enc.image_array_from_fields("nv24", h, w, w, sent)


def test_an_opencv_type_without_channel_order_names_the_fix() -> None:
    """cv_bridge's cv2_to_imgmsg(frame) without an encoding publishes "8UC3": which channel is which is
    not said (image_proc refuses it too). The error used to list the encodings only; it names the fix."""
    with pytest.raises(InputError, match=r"8UC3 does not say the channel order.*cv2_to_imgmsg\(frame, 'bgr8'\)"):
        enc.get_encoding("8UC3")
    with pytest.raises(InputError, match=r"cv2_to_imgmsg\(frame, 'bgra8'\)"):
        enc.get_encoding("8UC4")
    # a 16-bit frame (a 12-bit camera read with OpenCV, a 16-bit PNG): the same, with the 16-bit names
    with pytest.raises(InputError, match=r"16UC3 does not say the channel order.*cv2_to_imgmsg\(frame, 'bgr16'\)"):
        enc.get_encoding("16UC3")
    with pytest.raises(InputError, match=r"cv2_to_imgmsg\(frame, 'bgra16'\)"):
        enc.get_encoding("16UC4")


def test_rgb_rejects_depth_with_hint():
    with pytest.raises(InputError, match=r"16UC1 is a depth image.*sparse_depth"):
        enc.rgb_from_image(np.zeros((2, 2), np.uint16), "16UC1")


def test_depth_from_image_units_and_invalid():
    mm = np.array([[0, 1500], [65535, 1]], np.uint16)
    d = enc.depth_from_image(mm, "16UC1")
    assert d.dtype == np.float32
    assert np.isnan(d[0, 0])
    np.testing.assert_allclose(d[0, 1], 1.5)
    np.testing.assert_allclose(d[1, 1], 0.001)
    assert np.isnan(d[1, 0])  # 65535: some drivers' "no measurement", not 65.535 m
    big = np.finfo(np.float32).max
    m = np.array([[np.inf, -1.0, 0.0, 2.25, np.nan, -np.inf, big]], np.float32)
    d = enc.depth_from_image(m, "32FC1")
    assert np.isnan(d[0, [0, 1, 2, 4, 5, 6]]).all()
    assert d[0, 3] == np.float32(2.25)
    with pytest.raises(InputError, match="not a depth encoding"):
        enc.depth_from_image(mm.astype(np.uint8), "mono8")


def test_packed_rgb_matches_pcl_bits():
    colors = np.array([[[255, 0, 0], [1, 2, 3]]], np.uint8)
    packed = enc.pack_rgb_float(colors)
    assert packed.view(np.uint32).tolist() == [[0xFF0000, 0x010203]]
    np.testing.assert_array_equal(enc.unpack_rgb_float(packed), colors)


def test_pointcloud2_layout_xyz_and_xyzrgb():
    h, w = 4, 5
    pts = np.random.default_rng(3).random((h, w, 3)).astype(np.float32)
    pts[1, 2] = np.nan
    fields, point_step, row_step, data = enc.pointcloud2_layout(pts)
    assert [f[:2] for f in fields] == [("x", 0), ("y", 4), ("z", 8)]
    assert all(f[2] == enc.POINTFIELD_FLOAT32 and f[3] == 1 for f in fields)
    assert (point_step, row_step, len(data)) == (12, 60, 12 * h * w)
    back = enc.pointcloud2_fields_array(fields, point_step, h, w, row_step, data)
    np.testing.assert_array_equal(back, pts)  # NaN positions preserved (assert_array_equal treats NaN==NaN)

    colors = _rgb(h, w)
    fields, point_step, row_step, data = enc.pointcloud2_layout(pts, colors)
    assert fields[-1] == ("rgb", 12, enc.POINTFIELD_FLOAT32, 1)
    assert (point_step, row_step, len(data)) == (16, 80, 16 * h * w)
    np.testing.assert_array_equal(enc.pointcloud2_fields_array(fields, point_step, h, w, row_step, data), pts)
    rgb = np.frombuffer(data, np.float32).reshape(h, w, 4)[..., 3]
    np.testing.assert_array_equal(enc.unpack_rgb_float(rgb), colors)


def test_pointcloud2_layout_rejects_bad_shapes():
    with pytest.raises(InputError, match=r"points must be \(h, w, 3\)"):
        enc.pointcloud2_layout(np.zeros((4, 3), np.float32))
    with pytest.raises(InputError, match="colors must be"):
        enc.pointcloud2_layout(np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 3), np.float32))


def test_pointcloud2_fields_array_mixed_types_and_missing():
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f8"), ("i", "<u2")])
    rec = np.zeros(3, dt)
    rec["x"], rec["y"], rec["z"] = [1, 2, 3], [4, 5, 6], [7, 8, 9]
    fields = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 8, 1), ("i", 16, 4, 1)]
    out = enc.pointcloud2_fields_array(fields, dt.itemsize, 1, 3, dt.itemsize * 3, rec.tobytes())
    np.testing.assert_array_equal(out[0], [[1, 4, 7], [2, 5, 8], [3, 6, 9]])
    with pytest.raises(InputError, match="lacks field"):
        enc.pointcloud2_fields_array(fields[:2], 8, 1, 3, 24, rec.tobytes())
    with pytest.raises(InputError, match="data has"):
        enc.pointcloud2_fields_array(fields, dt.itemsize, 2, 3, dt.itemsize * 3, rec.tobytes())


def test_decode_compressed_png_and_jpeg():
    rgb = _rgb(16, 12)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_array_equal(enc.decode_compressed(png.tobytes(), "png"), rgb)
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[:] = (200, 40, 10)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(flat, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = enc.decode_compressed(jpg.tobytes(), "jpeg")
    assert np.abs(out.astype(int) - flat).max() <= 3  # channel order is RGB, not BGR
    with pytest.raises(InputError, match="cannot decode compressed image"):
        enc.decode_compressed(b"not an image", "jpeg")
    with pytest.raises(InputError, match="cannot decode"):
        enc.decode_compressed(b"", "jpeg")


class _Info:  # duck-typed camera_info, as rosbags deserializes it
    def __init__(self, k: list[float], p: list[float] | None = None, width: int = 640, height: int = 480) -> None:
        self.k, self.p = np.asarray(k, float), np.asarray(p if p is not None else [0.0] * 12, float)
        self.width, self.height = width, height


def test_camera_from_info_without_ros():
    assert enc.camera_from_info(_Info([0.0] * 9)) is None
    cam = enc.camera_from_info(_Info([500.0, 0, 320, 0, 510, 240, 0, 0, 1]))
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (500, 510, 320, 240, 640, 480)
    p = [450.0, 0, 300, 0, 0, 460, 230, 0, 0, 0, 1, 0]
    cam = enc.camera_from_info(_Info([500.0, 0, 320, 0, 510, 240, 0, 0, 1], p))
    assert (cam.fx, cam.cy) == (450, 230)  # rectified P wins
    a = enc.info_signature(_Info([500.0, 0, 320, 0, 510, 240, 0, 0, 1]))
    assert a == enc.info_signature(_Info([500.0, 0, 320, 0, 510, 240, 0, 0, 1]))
    assert a != enc.info_signature(_Info([501.0, 0, 320, 0, 510, 240, 0, 0, 1]))


#: compressed_depth_image_transport's own RvlCodec::CompressRVL output (built from its source) for
#: the 3x5 image below and for 12 zeros: the decoder must read the real codec's bytes, not only ours.
_RVL_REAL = {
    "2cf38a24ef3fcfd8ed5a33ff9b9c1a2021cbc92f00000000": [0, 0, 1000, 1001, 65535, 3, 0, 0, 0, 700]
    + [700, 699, 40000, 12, 0],
    "000000c1": [0] * 12,
}


def test_rvl_decodes_the_real_codec_and_a_spec_encoder() -> None:
    """compressed_depth_image_transport's `rvl` format (a depth camera streamed over wifi with
    `format: rvl`, much faster to encode than png) was refused: "compressedDepth 'rvl' is not supported"."""
    for hexdata, samples in _RVL_REAL.items():
        np.testing.assert_array_equal(enc.rvl_decode(bytes.fromhex(hexdata), len(samples)), samples)
        assert rvl_encode(np.array(samples)) == bytes.fromhex(hexdata)
    rng = np.random.default_rng(3)
    for _ in range(20):  # runs of zeros and values, big jumps both ways, a zero or a value at each end
        n = int(rng.integers(1, 300))
        samples = rng.integers(0, 65536, n) * (rng.random(n) < rng.random())
        samples[rng.random(n) < 0.3] = rng.integers(1, 5)
        np.testing.assert_array_equal(enc.rvl_decode(rvl_encode(samples), n), samples)
    for flat in (np.zeros(640, np.uint16), np.full(640, 1234, np.uint16)):  # no value at all; no zero at all
        np.testing.assert_array_equal(enc.rvl_decode(rvl_encode(flat), flat.size), flat)
    for garbage in (bytes(range(256)) * 3, b"\xff" * 64, b""):  # corrupt data: an InputError, never another error
        with pytest.raises(InputError, match="RVL"):
            enc.rvl_decode(garbage, 480 * 640)


def test_rvl_decodes_noisy_frames_with_holes_and_every_value_size() -> None:
    """The decoder is numpy throughout (a noisy 640x480 depth frame with holes took ~30 ms on the node's worker,
    every frame): it must still give every pixel of what a depth camera sends, at every value size and edge."""
    rng = np.random.default_rng(7)
    h, w = 48, 64
    frame = (1500 + 3 * np.arange(w) + 2 * np.arange(h)[:, None] + rng.normal(0, 8, (h, w))).astype(np.uint16)
    frame[rng.random((h, w)) < 0.05] = 0  # speckle holes
    frame[10:20, 30:45] = 0  # a hole
    frame[0, :3] = [65535, 0, 65535]  # the largest differences (6 nibbles) both ways
    cases = [frame, frame[:, :63], frame[:, 1:].copy()]  # (odd pixel counts, a zero first or not)
    for _ in range(30):  # random run lengths of zeros and of values, up to a row long
        lengths = rng.integers(1, 2 * w, 40)
        runs = [
            np.zeros(n, np.uint16) if k % 2 else rng.integers(1, 65536, n).astype(np.uint16)
            for k, n in enumerate(lengths)
        ]
        flat = np.concatenate(runs)[int(rng.integers(0, 3)) :][: int(rng.integers(1, 2000))]
        cases.append(flat)
    cases += [np.zeros(n, np.uint16) for n in (1, 7, 8, 9, 4097)]  # all zeros
    cases += [np.full(n, v, np.uint16) for n in (1, 7, 4097) for v in (1, 65535)]  # no zeros
    for samples in cases:
        np.testing.assert_array_equal(enc.rvl_decode(rvl_encode(samples), samples.size), samples.ravel())
    # counts of 8 and 9 nibbles (2**21 and 2**24 pixels and more), built from the values themselves
    for zeros in (2**21 + 3, 2**24 + 5):
        out = enc.rvl_decode(rvl_pack([zeros, 2, 2 * 700, 2 * 100, 0, 0]), zeros + 2)
        assert out.size == zeros + 2 and not out[:zeros].any() and out[zeros:].tolist() == [700, 800]
    # runs another encoder may write: none of non-zero pixels, then none of zeros (5 zeros, then 3 values)
    out = enc.rvl_decode(rvl_pack([5, 0, 0, 3, 2 * 9, 2 * 1, 1, 0, 0]), 8)
    assert out.tolist() == [0, 0, 0, 0, 0, 9, 10, 9]
    with pytest.raises(InputError, match="corrupt RVL data"):  # a value of 17 nibbles: no count or difference
        enc.rvl_decode(rvl_pack([2**51, 1, 2]), 10)


def test_rvl_compressed_depth_gives_metres_and_names_corrupt_data() -> None:
    """A depth camera's `.../compressedDepth` stream with the plugin's `rvl` format: 16UC1 millimetres,
    32FC1 quantized inverse depth, as the png format's; a truncated or corrupt message is an error."""
    import struct

    mm = np.array([[0, 500, 1000, 1000], [2500, 0, 0, 65535]], np.uint16)
    size = struct.pack("<II", 4, 2)
    data = struct.pack("<iff", 0, 0.0, 0.0) + size + rvl_encode(mm)
    out = enc.compressed_depth_to_metres("16UC1; compressedDepth rvl", data)
    no_depth = (mm == 0) | (mm == 65535)  # REP 118's 0, and the drivers' 65535
    np.testing.assert_allclose(out, np.where(no_depth, np.nan, mm * 0.001), rtol=1e-6)
    quant_a, quant_b = 100.0 * 101.0, 1.0 - 100.0 * 101.0 / 10.0  # the plugin's depth_quantization 100, depth_max 10
    metres = np.array([[0.5, 1.0, np.nan], [2.0, 9.0, 3.0]], np.float32)
    inv = np.where(np.isnan(metres), 0, np.round(quant_a / np.nan_to_num(metres, nan=1) + quant_b)).astype(np.uint16)
    data = struct.pack("<iff", 0, quant_a, quant_b) + struct.pack("<II", 3, 2) + rvl_encode(inv)
    out = enc.compressed_depth_to_metres("32FC1; compressedDepth rvl", data)
    np.testing.assert_allclose(out, metres, rtol=0.01)
    good = struct.pack("<iff", 0, 0.0, 0.0) + size + rvl_encode(mm)
    for bad in (good[:-4], good[:14], struct.pack("<iff", 0, 0.0, 0.0) + struct.pack("<II", 400, 200) + good[20:]):
        with pytest.raises(InputError, match="cannot decode a compressedDepth image"):
            enc.compressed_depth_to_metres("16UC1; compressedDepth rvl", bad)
    with pytest.raises(InputError, match="only png and rvl"):
        enc.compressed_depth_to_metres("16UC1; compressedDepth zstd", good)


def test_depth_in_the_wrong_units_is_refused_naming_the_fix() -> None:
    """A 16-bit millimetre depth converted to float without scaling (`cv2_to_imgmsg(depth.astype(np.float32),
    "32FC1")`, a common slip) was read as metres, kilometres away: the metric fit gave a depth beyond
    max_depth everywhere (+Inf) with no message. Metres rounded into 16UC1 were read as millimetres, a
    few mm away. Both are refused with the fix, and so is a PointCloud2 in millimetres; real depths, indoor
    or outdoor, dense or sparse, are read."""
    rng = np.random.default_rng(0)
    mm = rng.uniform(400, 6000, (48, 64)).astype(np.float32)
    with pytest.raises(InputError, match=r"32FC1 depth is metres.*millimetres\?.*/ 1000"):
        enc.depth_from_image(mm, "32FC1")
    with pytest.raises(InputError, match=r"16UC1 depth is millimetres.*metres\?.*32FC1"):
        enc.depth_from_image(np.round(mm / 1000).astype(np.uint16), "16UC1")
    outdoor = np.full((48, 64), np.nan, np.float32)
    outdoor[::4, ::4] = rng.uniform(5, 120, (12, 16))  # a LiDAR projected into the image, metres
    np.testing.assert_allclose(enc.depth_from_image(outdoor, "32FC1"), outdoor)
    near = np.round(rng.uniform(250, 900, (48, 64))).astype(np.uint16)  # a desk seen from 25-90 cm
    np.testing.assert_allclose(enc.depth_from_image(near, "16UC1"), near * 0.001, rtol=1e-6)
    few = np.zeros((48, 64), np.float32)
    few[0, :3] = 3000.0  # too few samples to judge: left to the fit
    assert np.isfinite(enc.depth_from_image(few, "32FC1")).sum() == 3

    # a cloud in millimetres: the same slip, where the projection alone cannot tell (x / z is unit-free)
    from vdepth_ros.rectify import sparse_depth_input  # where a cloud becomes the sparse depth input
    from vdepth_ros.stream.cloud import CameraModel

    cam = CameraModel(fx=60.0, fy=60.0, cx=31.5, cy=23.5, width=64, height=48)
    ys, xs = np.mgrid[0:48:3, 0:64:3]
    z = rng.uniform(1.0, 6.0, xs.shape)
    xyz = np.stack([(xs - 31.5) / 60 * z, (ys - 23.5) / 60 * z, z], -1).reshape(1, -1, 3).astype(np.float32)
    for scale, ok in ((1.0, True), (1000.0, False)):
        fields, point_step, row_step, data = enc.pointcloud2_layout(xyz * scale)
        msg = SimpleNamespace(fields=[SimpleNamespace(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields],
                              point_step=point_step, row_step=row_step, data=data, height=1, width=xyz.shape[1],
                              is_bigendian=False)  # fmt: skip
        if ok:
            assert np.isfinite(sparse_depth_input(msg, cam, (48, 64), None)).sum() > 100
        else:
            with pytest.raises(InputError, match=r"PointCloud2 points are metres.*millimetres\?"):
                sparse_depth_input(msg, cam, (48, 64), None)


def test_a_compressed_jpeg_is_decoded_as_stored_whatever_its_exif_orientation() -> None:
    """A JPEG message carrying EXIF orientation 6 (a phone's camera app publishing to ROS) was decoded turned a quarter
    (OpenCV's colour read applies EXIF), so its 64x48 camera_info was refused as "another aspect ratio" and no cloud
    was made; image_transport's own subscriber decodes the pixels as stored (IMREAD_UNCHANGED), as now."""
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (200, 30, 30)  # the left half red
    jpeg = with_exif_orientation(cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes(), 6)
    out = enc.decode_compressed(jpeg, "rgb8; jpeg compressed bgr8")
    assert out.shape == (48, 64, 3)
    assert out[:, :32, 0].mean() > 150 and out[:, 32:, 0].mean() < 50
