"""vdepth_ros.rectify: raw, distorted images undistorted with their camera_info, as image_proc would."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from vdepth_ros.encodings import camera_from_info
from vdepth_ros.errors import InputError
from vdepth_ros.rectify import Rectifier, has_distortion, pinhole_input

W, H = 320, 240
K = np.array([[260.0, 0.0, 161.0], [0.0, 255.0, 118.0], [0.0, 0.0, 1.0]])
PLUMB_BOB = [-0.28, 0.09, 0.001, -0.0015, -0.012]
FISHEYE = [0.05, -0.02, 0.004, -0.001]
# a rectified camera that differs from K (as camera_calibration's P does) and a small stereo-like R
P = np.array([[230.0, 0.0, 158.0], [0.0, 230.0, 121.0], [0.0, 0.0, 1.0]])
R = cv2.Rodrigues(np.array([0.02, -0.03, 0.01]))[0]


def info(
    d: list[float] = PLUMB_BOB,
    model: str = "plumb_bob",
    k: np.ndarray = K,
    r: np.ndarray | None = None,
    p: np.ndarray | None = None,
    width: int = W,
    height: int = H,
    roi: tuple[int, int] = (0, 0),
) -> Any:
    """A duck-typed CameraInfo (the fields rclpy and rosbags messages share)."""
    p3 = k if p is None else p
    return SimpleNamespace(
        distortion_model=model,
        d=list(d),
        k=np.asarray(k, float).ravel(),
        r=(np.eye(3) if r is None else r).ravel(),
        p=np.hstack([p3, np.zeros((3, 1))]).ravel(),
        width=width,
        height=height,
        roi=SimpleNamespace(x_offset=0, y_offset=0, width=roi[0], height=roi[1], do_rectify=False),
    )


def pattern(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A smooth intensity pattern in rectified pixels (evaluated exactly, no interpolation)."""
    return 128 + 60 * np.sin(u / 9.0) * np.cos(v / 13.0) + 40 * np.sin((u + 2 * v) / 23.0)


def raw_image(d: list[float], model: str, r: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The raw image a distorted camera sees of `pattern` laid out on the rectified image plane:
    each raw pixel is undistorted by OpenCV's own inverse (a different code path from the maps)."""
    vv, uu = np.mgrid[0:H, 0:W].astype(np.float64)
    px = np.stack([uu.ravel(), vv.ravel()], axis=1)[:, None, :]
    if model == "equidistant":
        rect = cv2.fisheye.undistortPoints(px, K, np.array(d), R=r, P=p)
    else:
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)
        rect = cv2.undistortPoints(px, K, np.array(d), R=r, P=p, criteria=crit)
    rect = rect.reshape(H, W, 2)
    g = np.clip(pattern(rect[..., 0], rect[..., 1]), 0, 255)
    return np.repeat(g[..., None], 3, axis=2).astype(np.uint8)


@pytest.mark.parametrize(
    ("d", "model", "r", "p"),
    [
        (PLUMB_BOB, "plumb_bob", np.eye(3), K),
        (PLUMB_BOB, "plumb_bob", R, P),
        ([*PLUMB_BOB, 0.01, 0.002, -0.001], "rational_polynomial", np.eye(3), P),
        (FISHEYE, "equidistant", np.eye(3), P),
        # drivers' layouts, rectified as image_geometry reads them (every coefficient given, by OpenCV's order):
        # OrbbecSDK_ROS2 publishes plumb_bob with 8 coefficients (k4..k6 zero; orbbec/OrbbecSDK_ROS2#216), depthai's
        # examples plumb_bob with the 14 of the OAK's EEPROM, depthai-ros rational_polynomial with 14
        ([*PLUMB_BOB, 0.0, 0.0, 0.0], "plumb_bob", np.eye(3), K),
        ([*PLUMB_BOB, *[0.0] * 9], "plumb_bob", np.eye(3), K),
        ([*PLUMB_BOB, 0.01, 0.002, -0.001, *[0.0] * 6], "rational_polynomial", np.eye(3), K),
    ],
    ids=[
        "plumb_bob",
        "plumb_bob_R_P",
        "rational_polynomial",
        "equidistant",
        "orbbec_plumb_bob_8",
        "depthai_plumb_bob_14",
        "depthai_rational_polynomial_14",
    ],
)
def test_rectified_image_matches_the_pattern_on_the_rectified_plane(
    d: list[float], model: str, r: np.ndarray, p: np.ndarray
) -> None:
    raw = raw_image(d, model, r, p)
    view = Rectifier().view(info(d, model, r=r, p=p), W, H)
    rect = view.image(raw)[..., 0].astype(float)
    vv, uu = np.mgrid[0:H, 0:W].astype(np.float64)
    want = np.clip(pattern(uu, vv), 0, 255)
    inner = (slice(40, H - 40), slice(50, W - 50))  # away from the black border of the lens's view
    err = np.abs(rect - want)[inner]
    assert np.median(err) < 1.5 and np.percentile(err, 99) < 6
    # the raw image itself is far from the pattern: the test would fail without undistortion
    raw_err = np.abs(raw[..., 0].astype(float) - want)[inner]
    assert np.percentile(raw_err, 90) > 10
    assert (view.camera.fx, view.camera.fy, view.camera.cx, view.camera.cy) == (p[0, 0], p[1, 1], p[0, 2], p[1, 2])


def test_no_distortion_is_a_pass_through_and_matches_the_unrectified_camera() -> None:
    msg = info(d=[0.0] * 5)
    img = np.zeros((H, W, 3), np.uint8)
    rgb, camera, view = pinhole_input(img, msg, Rectifier())
    assert view is not None and view.is_identity and rgb is img
    assert camera == camera_from_info(msg)
    assert not has_distortion(msg) and has_distortion(info())


def test_without_a_rectifier_the_image_is_taken_as_rectified_and_the_camera_scaled() -> None:
    img = np.zeros((H // 2, W // 2, 3), np.uint8)
    rgb, camera, view = pinhole_input(img, info(), None)
    assert rgb is img and view is None
    assert camera == camera_from_info(info()).scaled(W // 2, H // 2)
    assert pinhole_input(img, None, None)[1] is None


def test_camera_info_at_another_resolution_is_scaled_to_the_image() -> None:
    full = Rectifier().view(info(p=P), W, H)
    half = Rectifier().view(info(p=P), W // 2, H // 2)
    assert half.camera == full.camera.scaled(W // 2, H // 2)
    # the same rectified pixel centre maps to the same raw point, in each image's own pixels
    u, v = 101, 77
    raw_full = np.array([full.map_x[2 * v + 1, 2 * u + 1], full.map_y[2 * v + 1, 2 * u + 1]])
    raw_half = np.array([half.map_x[v, u], half.map_y[v, u]])
    np.testing.assert_allclose((raw_half + 0.5) * 2 - 0.5, raw_full, atol=0.6)


@pytest.mark.parametrize("binning", [1, 2])
def test_a_camera_with_a_region_of_interest_and_binning_is_rectified(binning: int) -> None:
    """A driver streaming a region of interest of its sensor (camera_info's roi, in full-resolution
    pixels), binned or not: with rectify on every frame was refused ("rectify needs the full image"),
    so the node published nothing. The image is the rectified full image's same window, and its camera
    is the one the unrectified path gives (image_geometry's convention)."""
    x0, y0, roi_w, roi_h = 40, 30, 200, 160
    msg = info(p=P)
    msg.roi = SimpleNamespace(x_offset=x0, y_offset=y0, width=roi_w, height=roi_h, do_rectify=True)
    msg.binning_x = msg.binning_y = binning
    raw = raw_image(PLUMB_BOB, "plumb_bob", np.eye(3), P)[y0 : y0 + roi_h, x0 : x0 + roi_w]
    w, h = roi_w // binning, roi_h // binning
    if binning > 1:
        raw = cv2.resize(raw, (w, h), interpolation=cv2.INTER_AREA)
    view = Rectifier().view(msg, w, h)
    rect = view.image(raw)[..., 0].astype(float)
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    want = np.clip(pattern((uu + 0.5) * binning - 0.5 + x0, (vv + 0.5) * binning - 0.5 + y0), 0, 255)
    assert view.valid is not None  # the ROI's edges: rectified pixels whose raw pixel lies outside it
    err = np.abs(rect - want)[view.valid]
    assert np.median(err) < 1.5 * binning and np.percentile(err, 95) < 6 * binning, (np.median(err), binning)
    assert view.valid.mean() > 0.8
    assert view.camera == camera_from_info(msg)


def test_sparse_depth_is_rectified_by_nearest_neighbour_with_nan_outside() -> None:
    wide = np.array([[150.0, 0.0, 160.0], [0.0, 150.0, 120.0], [0.0, 0.0, 1.0]])  # sees past the raw image
    view = Rectifier().view(info(p=wide), W, H)
    depth = np.full((H, W), np.nan, np.float32)
    depth[100:140, 150:190] = 2.5
    out = view.depth(depth)
    assert out.dtype == np.float32
    assert set(np.unique(out[np.isfinite(out)])) == {2.5}  # no blending across the patch edge
    assert np.isfinite(out).sum() > 0.2 * 40 * 40  # the patch, smaller in the wider rectified view
    # where the rectified image looks outside the raw image: NaN, not zero depth
    mx, my = view.map_x, view.map_y  # nearest: a raw pixel covers +-0.5 around its centre
    outside = (mx < -0.5) | (mx > W - 0.5) | (my < -0.5) | (my > H - 0.5)
    assert outside.any() and np.isnan(view.depth(np.ones((H, W), np.float32))[outside]).all()


def test_depth_registered_to_a_stereo_cameras_raw_image_is_the_rectified_frames_depth() -> None:
    """A stereo camera's camera_info rotates its rectified frame (R): a point's depth there is not its depth in the
    raw optical frame. The depth image was moved to the rectified pixels with its raw values, off by up to ~2 %
    across the image for this R (a tilted plane, a wrong metric scale), while a cloud was rotated. Now it is the
    depth along the rectified optical axis, as the cloud's."""
    view = Rectifier().view(info(r=R, p=P), W, H)
    raw = np.full((H, W), 2.0, np.float32)  # a wall 2 m ahead of the raw camera
    vv, uu = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([(uu - P[0, 2]) / P[0, 0], (vv - P[1, 2]) / P[1, 1], np.ones_like(uu)], axis=-1)  # rectified
    in_raw = rays @ R  # each ray in the raw frame (R.T @ ray)
    truth = 2.0 / in_raw[..., 2]  # where it meets the wall: z = 2 in the raw frame, its rectified depth
    out = view.depth(raw)
    ok = np.isfinite(out)
    assert ok.mean() > 0.8 and np.abs(truth[ok] / 2.0 - 1).max() > 0.01  # (the rotation matters here)
    np.testing.assert_allclose(out[ok], truth[ok], rtol=1e-4)


def test_pose_of_the_rectified_frame_applies_the_rectifying_rotation() -> None:
    view = Rectifier().view(info(r=R, p=P), W, H)
    cam_to_world = np.eye(4)
    cam_to_world[:3, :3] = cv2.Rodrigues(np.array([0.1, 0.4, -0.2]))[0]
    cam_to_world[:3, 3] = [1.0, -2.0, 0.5]
    x_raw = np.array([0.3, -0.2, 2.0])  # a point in the raw optical frame
    x_world = cam_to_world[:3, :3] @ x_raw + cam_to_world[:3, 3]
    rect_to_world = view.pose(cam_to_world)
    x_rect = rect_to_world[:3, :3].T @ (x_world - rect_to_world[:3, 3])
    np.testing.assert_allclose(x_rect, R @ x_raw, atol=1e-12)
    assert view.pose(None) is None
    assert Rectifier().view(info(), W, H).pose(cam_to_world) is cam_to_world  # R = I


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        (info(model="kannala_brandt_x", d=[0.1, 0.0, 0.0, 0.0]), "cannot be rectified"),
        (info(d=[0.1, 0.0, 0.0]), "needs 4, 5, 8, 12 or 14 coefficients"),
        (info(model="equidistant", d=[0.1, 0.0]), "equidistant distortion needs 4"),
        # a fifth non-zero coefficient is not the equidistant model: it used to be dropped in silence
        (
            info(model="equidistant", d=[0.1, 0.0, 0.0, 0.0, 0.02]),
            r"needs 4 coefficients \(k1..k4\), camera_info has 5",
        ),
        (info(k=np.zeros((3, 3))), "K is zero"),
        (info(width=0), "width and height"),
    ],
)
def test_unusable_camera_info_is_a_clear_input_error(msg: Any, match: str) -> None:
    with pytest.raises(InputError, match=match):
        Rectifier().view(msg, W, H)


@pytest.mark.parametrize("model", ["plumb_bob", "rational_polynomial", "equidistant"])
def test_a_lens_without_coefficients_is_rectified_by_its_r_and_p_alone(model: str) -> None:
    """An empty D is no distortion for every model, as image_geometry (and OpenCV) take it: a camera_info whose P or
    R differs from K is rectified by them alone. An equidistant one was refused ("needs 4 coefficients")."""
    for p in (P, K):
        view = Rectifier().view(info(model=model, d=[], p=p, r=R), W, H)
        same = Rectifier().view(info(model=model, d=[0.0] * (4 if model == "equidistant" else 5), p=p, r=R), W, H)
        assert view.camera == same.camera and not view.is_identity
        np.testing.assert_allclose(view.map_x, same.map_x, atol=1e-3)
        np.testing.assert_allclose(view.map_y, same.map_y, atol=1e-3)


def test_equidistant_coefficients_padded_with_zeros_are_k1_to_k4() -> None:
    padded = Rectifier().view(info(model="equidistant", d=[*FISHEYE, 0.0, 0.0, 0.0, 0.0], p=P), W, H)
    exact = Rectifier().view(info(model="equidistant", d=FISHEYE, p=P), W, H)
    np.testing.assert_array_equal(padded.map_x, exact.map_x)


@pytest.mark.parametrize("name", ["fisheye", "kannala_brandt", "KANNALA_BRANDT", "kannala_brandt4"])
def test_other_names_of_the_equidistant_model_are_rectified_as_it(name: str) -> None:
    """OpenCV's fisheye, Kannala-Brandt (MRPT, Foxglove, camodocal / MYNT EYE, librealsense's KB4): one model with
    k1..k4, rectified as equidistant, the same maps (they were refused: "cannot be rectified")."""
    named = Rectifier().view(info(model=name, d=[*FISHEYE, 0.0], p=P, r=R), W, H)
    equidistant = Rectifier().view(info(model="equidistant", d=FISHEYE, p=P, r=R), W, H)
    np.testing.assert_array_equal(named.map_x, equidistant.map_x)
    np.testing.assert_array_equal(named.map_y, equidistant.map_y)
    plumb_bob = Rectifier().view(info(model="plumb_bob", d=FISHEYE, p=P, r=R), W, H)  # (not taken as another)
    assert np.abs(named.map_x - plumb_bob.map_x).max() > 1.0


def test_a_lens_model_of_another_kind_is_refused_with_what_to_do() -> None:
    with pytest.raises(InputError, match=r"'ftheta' cannot be rectified .*calibrate the camera as one of these"):
        Rectifier().view(info(model="ftheta", d=[0.9]), W, H)


def test_rectify_without_camera_info_or_at_the_wrong_size_is_an_input_error() -> None:
    img = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(InputError, match="no camera_info"):
        pinhole_input(img, None, Rectifier())
    view = Rectifier().view(info(), W, H)
    with pytest.raises(InputError, match="rectification maps are 320x240"):
        view.image(np.zeros((H, W + 2, 3), np.uint8))


def test_unknown_model_without_distortion_is_accepted_and_maps_are_cached() -> None:
    rect = Rectifier(cache_size=1)
    v1 = rect.view(info(model="", d=[]), W, H)
    assert v1.is_identity
    a = rect.view(info(), W, H)
    assert rect.view(info(), W, H) is a  # cached
    rect.view(info(p=P), W, H)
    assert rect.view(info(), W, H) is not a  # evicted (cache_size 1), rebuilt


OST_YAML = """\
image_width: 320
image_height: 240
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [260.0, 0.0, 161.0, 0.0, 255.0, 118.0, 0.0, 0.0, 1.0]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.28, 0.09, 0.001, -0.0015, -0.012]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
projection_matrix:
  rows: 3
  cols: 4
  data: [230.0, 0.0, 158.0, 0.0, 0.0, 230.0, 121.0, 0.0, 0.0, 0.0, 1.0, 0.0]
"""


def test_camera_calibration_yaml_loads_as_a_camera_info(tmp_path: Any) -> None:
    """The file ROS's camera_calibration writes (ost.yaml) gives the same maps as the message."""
    from vdepth_ros.rectify import load_camera_info

    path = tmp_path / "ost.yaml"
    path.write_text(OST_YAML)
    msg = load_camera_info(path)
    assert (msg.width, msg.height, msg.distortion_model) == (W, H, "plumb_bob")
    a, b = Rectifier().view(msg, W, H), Rectifier().view(info(p=P), W, H)
    np.testing.assert_array_equal(a.map_x, b.map_x)
    assert a.camera == b.camera and has_distortion(msg)
    # without R and P: identity and K, as camera_info_manager fills them
    path.write_text(OST_YAML.split("rectification_matrix")[0])
    short = load_camera_info(path)
    np.testing.assert_array_equal(np.asarray(short.p).reshape(3, 4)[:, :3], K)
    np.testing.assert_array_equal(np.asarray(short.r).reshape(3, 3), np.eye(3))


@pytest.mark.parametrize("suffix", [".yml", ".xml", ".json"])
def test_opencv_calibration_files_load_as_a_camera_info(tmp_path: Any, suffix: str) -> None:
    """What OpenCV's calibration sample (and any cv::FileStorage) writes: `%YAML:1.0` and `!!opencv-matrix` tags,
    or XML, or JSON, with camera_calibration's key names. The YAML was refused as "not valid YAML" and the XML as
    "not a camera calibration mapping"; a user who calibrated with OpenCV rather than ROS had to rewrite it."""
    from vdepth_ros.rectify import load_camera_info

    path = str(tmp_path / f"out_camera_data{suffix}")
    fs = cv2.FileStorage(path, cv2.FILE_STORAGE_WRITE)
    fs.write("calibration_time", "Sat Dec  5 10:00:00 2026")
    fs.write("image_width", W)
    fs.write("image_height", H)
    fs.write("flags", 0)
    fs.write("camera_matrix", K)
    fs.write("distortion_coefficients", np.array([PLUMB_BOB]))
    fs.write("avg_reprojection_error", 0.31)
    fs.release()
    msg = load_camera_info(path)
    assert (msg.width, msg.height, msg.distortion_model) == (W, H, "plumb_bob")
    np.testing.assert_array_equal(np.asarray(msg.k).reshape(3, 3), K)
    np.testing.assert_array_equal(np.asarray(msg.d), PLUMB_BOB)
    a, b = Rectifier().view(msg, W, H), Rectifier().view(info(p=K), W, H)
    np.testing.assert_array_equal(a.map_x, b.map_x)
    assert a.camera == b.camera
    # its fisheye calibration (`fisheye_model: 1`, k1..k4) is the equidistant model, not four plumb_bob coefficients
    fs = cv2.FileStorage(path, cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", W)
    fs.write("image_height", H)
    fs.write("fisheye_model", 1)
    fs.write("camera_matrix", K)
    fs.write("distortion_coefficients", np.array([FISHEYE]).T)
    fs.release()
    fisheye = load_camera_info(path)
    assert fisheye.distortion_model == "equidistant"
    c, e = Rectifier().view(fisheye, W, H), Rectifier().view(info(model="equidistant", d=FISHEYE, p=K), W, H)
    np.testing.assert_array_equal(c.map_x, e.map_x)


KALIBR = """\
cam0:
  camera_model: pinhole
  intrinsics: [260.0, 255.0, 161.0, 118.0]
  distortion_model: {model}
  distortion_coeffs: {coeffs}
  resolution: [320, 240]
  rostopic: /cam0/image_raw
"""


def test_a_kalibr_camchain_of_one_camera_loads_as_a_camera_info(tmp_path: Any) -> None:
    """Kalibr's camchain (what VIO users calibrate with: radtan k1 k2 p1 p2, or equidistant k1..k4) was refused as
    "not a camera calibration"; a one-camera file is read as camera_calibration's, several cameras or a lens model
    camera_info has not are one error each."""
    from vdepth_ros.errors import ConfigError
    from vdepth_ros.rectify import load_camera_info

    path = tmp_path / "camchain.yaml"
    path.write_text(KALIBR.format(model="radtan", coeffs=PLUMB_BOB[:4]))
    msg = load_camera_info(path)
    ref = info(d=[*PLUMB_BOB[:4], 0.0], p=K)
    np.testing.assert_array_equal(Rectifier().view(msg, W, H).map_x, Rectifier().view(ref, W, H).map_x)
    path.write_text(KALIBR.format(model="equidistant", coeffs=FISHEYE))
    msg = load_camera_info(path)
    assert msg.distortion_model == "equidistant"
    np.testing.assert_array_equal(
        Rectifier().view(msg, W, H).map_x, Rectifier().view(info(model="equidistant", d=FISHEYE, p=K), W, H).map_x
    )
    two = KALIBR.format(model="radtan", coeffs=PLUMB_BOB[:4])
    path.write_text(two + two.replace("cam0", "cam1"))
    with pytest.raises(ConfigError, match="2 cameras"):
        load_camera_info(path)
    path.write_text(KALIBR.format(model="radtan", coeffs=PLUMB_BOB[:4]).replace("pinhole", "omni"))
    with pytest.raises(ConfigError, match="'omni' camera"):
        load_camera_info(path)


def test_plain_pinhole_yaml_and_the_bundled_sample_load(tmp_path: Any) -> None:
    from vdepth_ros.paths import default_model_dir
    from vdepth_ros.rectify import load_camera_info

    msg = load_camera_info(default_model_dir() / "sample_camera.yaml")
    cam = camera_from_info(msg)
    assert (cam.width, cam.height) == (320, 240) and cam.cx == 159.5
    assert not has_distortion(msg)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("camera_name: x\n", "not a camera calibration"),
        (OST_YAML.replace("data: [260.0, 0.0, 161.0, 0.0, 255.0, 118.0, 0.0, 0.0, 1.0]", "data: [1, 2]"), "3x3"),
        (OST_YAML.replace("image_width: 320", "image_width: -1"), "positive integers"),
        ("fx: [unclosed\n", "not valid YAML"),
        ('<?xml version="1.0"?>\n<opencv_storage>\n<camera_matrix', "OpenCV cannot read"),
        (OST_YAML.replace("data: [-0.28, 0.09, 0.001, -0.0015, -0.012]", "data: [a, b]"), "must be numbers"),
    ],
)
def test_bad_calibration_files_are_config_errors(tmp_path: Any, text: str, match: str) -> None:
    from vdepth_ros.errors import ConfigError
    from vdepth_ros.rectify import load_camera_info

    path = tmp_path / "cam.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_camera_info(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_camera_info(tmp_path / "missing.yaml")
