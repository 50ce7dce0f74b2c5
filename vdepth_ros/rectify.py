"""Undistort raw camera images with their camera_info, so `image_raw` can be fed directly.

ROS camera drivers publish `image_raw` with a `CameraInfo` whose `D` describes the lens distortion,
`R` the rectifying rotation and `P` the projection of the rectified image. `image_proc` turns
`image_raw` into `image_rect`, but it is not part of the PyPI ROS wheels this package targets, and
feeding a distorted image to a pinhole back-projection bends every straight wall of the point
cloud. With `rectify: true` the node (and `vdepth-bag`) undistort each image the way
`image_geometry.PinholeCameraModel.rectifyImage` does: `cv2.initUndistortRectifyMap(K, D, R, P)`
(or its `cv2.fisheye` twin for the `equidistant` model), bilinear, black outside the lens's view.
Everything downstream (model, metric fit, cloud, output camera_info) then sees the rectified
pinhole camera `P`.

Conventions (REP 104 / image_geometry): `R` maps the raw optical frame to the rectified one
(identity for a monocular calibration), so metric inputs given in the raw optical frame (a sparse
point cloud, a camera pose) are rotated by it. The outputs keep the image's `frame_id`, as
`image_rect` does. A `CameraInfo` whose images show a region of interest of the calibrated image
(its `roi`) or are binned is applied as image_geometry does (`camera_info.image_window`), and one at
another resolution than the image (a resized stream) is scaled to it: `K` and `P` move to the image's
pixels, the distortion coefficients act on normalised coordinates and do not change.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import yaml

from vdepth_ros.camera_info import camera_from_info, image_window, pinhole_fields, windowed_matrix
from vdepth_ros.encodings import depth_units_problem
from vdepth_ros.errors import ConfigError, InputError
from vdepth_ros.pointcloud2 import sparse_depth_from_cloud
from vdepth_ros.stream.cloud import CameraModel
from vdepth_ros.stream.scale import resample_sparse_depth

#: What to do when `rectify` cannot undistort a camera's images (each of them is dropped).
RECTIFY_FIX = (
    "the image is dropped: give the camera its calibration (camera_calibration's file, through the driver's "
    "camera_info_url) or correct it, or turn rectify off (rectify:=false; vdepth-bag: without --rectify) to take "
    "the images as they come, as image_rect"
)

#: `CameraInfo.distortion_model` values this module undoes (sensor_msgs/distortion_models.hpp).
DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")

#: Other names of `equidistant`, Kannala and Brandt's model with k1..k4 (theta_d = theta (1 + k1 theta^2 + ... +
#: k4 theta^8)), as drivers publish it: OpenCV's `cv::fisheye` ("fisheye", its stereo calibration scripts and
#: converters from Kalibr), Foxglove's CameraCalibration and MRPT ("kannala_brandt"), camodocal and MYNT EYE
#: ("KANNALA_BRANDT", its k2..k5 the same polynomial), realsense-ros forks ("kannala_brandt4", librealsense's
#: RS2_DISTORTION_KANNALA_BRANDT4, which realsense-ros itself publishes as equidistant). One model, as
#: ros2/common_interfaces#160, which added `equidistant`, says. Compared lower-case.
EQUIDISTANT_NAMES = ("fisheye", "kannala_brandt", "kannala-brandt", "kannala_brandt4")


def distortion_model(info: Any) -> str:
    """`info.distortion_model` as this module names it: unset is plumb_bob (OpenCV's own radial-tangential), an
    `EQUIDISTANT_NAMES` one is equidistant; any other is returned as it is."""
    model = str(getattr(info, "distortion_model", "") or "plumb_bob")
    return "equidistant" if model.lower() in EQUIDISTANT_NAMES else model


def _coefficients(info: Any) -> np.ndarray:
    """`info.d` as a float64 vector (a list in rclpy, an array in rosbags, maybe unset)."""
    d = getattr(info, "d", None)
    return np.zeros(0) if d is None else np.asarray(d, dtype=np.float64).ravel()


def has_distortion(info: Any) -> bool:
    """True if `info.d` holds a non-zero coefficient (the image needs undistorting to be pinhole)."""
    return bool(np.any(_coefficients(info) != 0.0))


def _windowed(m: np.ndarray, info: Any, width: int, height: int) -> np.ndarray:
    """A 3x3 camera matrix of the calibrated image -> that of `width x height` images: the window and
    binning of `info` as image_geometry (`camera_info.windowed_matrix`, as `camera_from_info`), then a
    resized stream's scale (pixel-centre convention, as `CameraModel.scaled` in `pinhole_input`)."""
    out, shown_w, shown_h = windowed_matrix(m, info)
    sx, sy = width / shown_w, height / shown_h
    out[0, 0], out[0, 2] = out[0, 0] * sx, (out[0, 2] + 0.5) * sx - 0.5
    out[1, 1], out[1, 2] = out[1, 1] * sy, (out[1, 2] + 0.5) * sy - 0.5
    return out


@dataclass(frozen=True)
class RectifiedView:
    """How one camera_info maps its raw images to rectified ones (`Rectifier.view`).

    Attributes:
        camera: the rectified pinhole camera (`P`) at the image's resolution.
        rotation: `(3, 3)` raw optical frame -> rectified frame (`CameraInfo.R`).
        map_x, map_y: `cv2.remap` maps (float32, rectified pixel -> raw pixel); None when there is
            nothing to undo (no distortion, `R` = I and `P` = `K`): images pass through unchanged.
        valid: `(H, W)` bool, the rectified pixels whose raw pixel lies inside the raw image (False:
            outside the lens's view, black in `image`); None when every pixel has one.
    """

    camera: CameraModel
    rotation: np.ndarray
    map_x: np.ndarray | None
    map_y: np.ndarray | None
    valid: np.ndarray | None = None

    @property
    def is_identity(self) -> bool:
        """Nothing to undo: images pass through unchanged (no maps)."""
        return self.map_x is None

    def image(self, image: np.ndarray) -> np.ndarray:
        """The rectified image (bilinear; black where the raw image has no pixel)."""
        self._check(image)
        if self.map_x is None:
            return image
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def depth(self, depth: np.ndarray) -> np.ndarray:
        """A sparse/dense depth image registered to the raw image, rectified (nearest neighbour,
        so no depth is blended across an edge; NaN outside), as depth along the rectified optical axis:
        a stereo camera's `R` turns that axis, so a point's depth there is its raw depth over the `z` of
        its rectified pixel's ray turned back into the raw frame (`R.T @ [x, y, 1]`); the identity `R` of a
        monocular calibration keeps it."""
        self._check(depth)
        if self.map_x is None:
            return depth
        out = cv2.remap(
            depth.astype(np.float32, copy=False),
            self.map_x,
            self.map_y,
            cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=float("nan"),
        )
        if np.allclose(self.rotation, np.eye(3)):
            return out
        cam, r = self.camera, self.rotation
        x = (np.arange(cam.width, dtype=np.float64) - cam.cx) / cam.fx
        y = (np.arange(cam.height, dtype=np.float64) - cam.cy) / cam.fy
        raw_z = r[0, 2] * x[None, :] + r[1, 2] * y[:, None] + r[2, 2]  # (R.T @ [x, y, 1])[2] per pixel
        return (out / raw_z).astype(np.float32)

    def pose(self, camera_to_world: np.ndarray | None) -> np.ndarray | None:
        """The rectified frame's camera-to-world pose from the raw optical frame's."""
        if camera_to_world is None or np.allclose(self.rotation, np.eye(3)):
            return camera_to_world
        out = np.asarray(camera_to_world, dtype=np.float64).copy()
        out[:3, :3] = out[:3, :3] @ self.rotation.T
        return out

    def _check(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if (w, h) != (self.camera.width, self.camera.height):
            raise InputError(f"image is {w}x{h}, the rectification maps are {self.camera.width}x{self.camera.height}")


class Rectifier:
    """Rectification maps per camera_info, cached (the maps cost a few ms; a stream keeps one camera).

    Args:
        cache_size: number of (camera_info, image size) views kept.
    """

    def __init__(self, cache_size: int = 2) -> None:
        self.cache_size = max(1, int(cache_size))
        self._cache: OrderedDict[tuple, RectifiedView] = OrderedDict()

    def view(self, info: Any, width: int, height: int) -> RectifiedView:
        """The `RectifiedView` of images `width x height` described by `info` (a sensor_msgs
        `CameraInfo`, rclpy or rosbags).

        Raises:
            InputError: uncalibrated `K`, an unsupported distortion model or coefficient count.
        """
        key = (
            str(getattr(info, "distortion_model", "") or ""),
            tuple(_coefficients(info)),
            tuple(np.asarray(info.k, dtype=np.float64).ravel()),
            tuple(np.asarray(info.r, dtype=np.float64).ravel()),
            tuple(np.asarray(info.p, dtype=np.float64).ravel()),
            int(info.width),
            int(info.height),
            image_window(info),
            int(width),
            int(height),
        )
        view = self._cache.get(key)
        if view is None:
            view = _build_view(info, int(width), int(height))
            self._cache[key] = view
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return view


def _build_view(info: Any, width: int, height: int) -> RectifiedView:
    K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise InputError("rectify needs a calibrated camera_info (K is zero)")
    info_w, info_h = int(info.width), int(info.height)
    if info_w <= 0 or info_h <= 0:
        raise InputError("rectify needs camera_info width and height")
    R = np.asarray(info.r, dtype=np.float64).reshape(3, 3)
    if not np.any(R):
        R = np.eye(3)  # an unset R (all zero) means no rectifying rotation (image_geometry)
    P = np.asarray(info.p, dtype=np.float64).reshape(3, 4)[:, :3]
    if not (P[0, 0] > 0 and P[1, 1] > 0):
        P = K  # no rectified projection given: keep the camera's own intrinsics
    K, P = _windowed(K, info, width, height), _windowed(P, info, width, height)
    camera = CameraModel(float(P[0, 0]), float(P[1, 1]), float(P[0, 2]), float(P[1, 2]), width, height)
    model = distortion_model(info)
    D = _coefficients(info)
    if model not in DISTORTION_MODELS:
        if D.size and np.any(D != 0):
            supported = ", ".join(DISTORTION_MODELS)
            raise InputError(
                f"camera_info distortion model {model!r} cannot be rectified (supported: {supported}; equidistant "
                f"also as {', '.join(EQUIDISTANT_NAMES)}): another lens model (an omnidirectional, f-theta or "
                "double-sphere one?); calibrate the camera as one of these (a fisheye as equidistant: Kalibr's "
                "pinhole-equi, OpenCV's cv::fisheye) or have the driver publish rectified images"
            )
        D = np.zeros(0)
    if not np.any(D) and np.allclose(R, np.eye(3)) and np.allclose(P, K):
        return RectifiedView(camera, R, None, None)
    size = (width, height)
    if model == "equidistant":
        D = D if D.size else np.zeros(4)  # no coefficients: no distortion, as for the other models
        if D.size < 4 or np.any(D[4:] != 0):  # cv2.fisheye (and image_proc) take k1..k4 only
            raise InputError(f"equidistant distortion needs 4 coefficients (k1..k4), camera_info has {D.size}")
        map_x, map_y = cv2.fisheye.initUndistortRectifyMap(K, D[:4], R, P, size, cv2.CV_32FC1)
    else:
        if D.size not in (0, 4, 5, 8, 12, 14):
            raise InputError(f"{model} distortion needs 4, 5, 8, 12 or 14 coefficients, camera_info has {D.size}")
        map_x, map_y = cv2.initUndistortRectifyMap(K, D if D.size else None, R, P, size, cv2.CV_32FC1)
    # every bilinear tap inside the raw image: the pixel shows the scene (outside, `image` is black)
    valid = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    valid.flags.writeable = False  # shared by every frame of this view
    return RectifiedView(camera, R, map_x, map_y, None if valid.all() else valid)


def _matrix(doc: dict, key: str, rows: int, cols: int, path: Path) -> np.ndarray:
    entry = doc.get(key)
    data = entry.get("data") if isinstance(entry, dict) else entry
    try:
        arr = np.asarray(data, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.size != rows * cols or not np.isfinite(arr).all():
        raise ConfigError(f"{path}: {key} must hold {rows}x{cols} finite numbers, got {data!r}")
    return arr


def pinhole_info(fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> SimpleNamespace:
    """A camera_info of a distortion-free pinhole camera (`K` = `P`), duck-typed like
    `sensor_msgs/CameraInfo`: what plain intrinsics (`vdepth-video --intrinsics`, a `fx fy cx cy`
    file) stand for, so they are checked and used as a camera_info is. Its fields are those of the
    node's `depth/camera_info` (`camera_info.pinhole_fields`), as float64 arrays."""
    fields = pinhole_fields(fx, fy, cx, cy, width, height)
    arrays = {name: np.asarray(fields.pop(name), np.float64) for name in ("d", "k", "r", "p")}
    return SimpleNamespace(**fields, **arrays, roi=None, binning_x=0, binning_y=0)


def _file_storage(path: Path) -> dict[str, Any]:
    """The top-level entries of an OpenCV `cv::FileStorage` file (`%YAML:1.0` with `!!opencv-matrix` tags, which
    PyYAML refuses, or XML), as PyYAML would give a camera_calibration file: numbers, strings, and each matrix as
    `{"data": [...]}`. OpenCV's calibration sample writes camera_calibration's key names (`image_width`,
    `camera_matrix`, `distortion_coefficients`...)."""
    try:  # (a malformed file: cv2.error, or SystemError from the constructor)
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as err:
        raise ConfigError(f"{path}: OpenCV cannot read this FileStorage file ({err})") from None
    try:
        if not fs.isOpened():
            raise ConfigError(f"{path}: OpenCV cannot read this FileStorage file")
        doc: dict[str, Any] = {}
        for key in fs.root().keys():  # noqa: SIM118 (a cv2.FileNode, not a dict)
            node = fs.getNode(key)
            if node.isInt():
                doc[key] = int(node.real())
            elif node.isReal():
                doc[key] = node.real()
            elif node.isString():
                doc[key] = node.string()
            elif node.isMap() and (mat := node.mat()) is not None:
                doc[key] = {"data": np.asarray(mat, np.float64).ravel().tolist()}
        return doc
    except cv2.error as err:
        raise ConfigError(f"{path}: OpenCV cannot read this FileStorage file ({err})") from None
    finally:
        fs.release()


#: Kalibr's lens models (its camchain's `distortion_model`) as camera_info's, and how many coefficients each has.
_KALIBR_MODELS = {"radtan": ("plumb_bob", 4), "equidistant": ("equidistant", 4), "none": ("plumb_bob", 0)}


def _from_kalibr(doc: dict, path: Path) -> dict:
    """A Kalibr camchain (`cam0: {camera_model: pinhole, intrinsics: [fu, fv, pu, pv], distortion_model: radtan,
    distortion_coeffs: [...], resolution: [w, h]}`, what VIO users calibrate with) as camera_calibration's keys;
    any other mapping as it is.

    Raises:
        ConfigError: several cameras (which one is not for a file to guess), or a model camera_info has not.
    """
    cams = {k: v for k, v in doc.items() if str(k).startswith("cam") and isinstance(v, dict) and "intrinsics" in v}
    if not cams:
        return doc
    if len(cams) > 1:
        raise ConfigError(
            f"{path}: a Kalibr camchain of {len(cams)} cameras ({', '.join(cams)}): keep the entry of this camera "
            "alone in a file of its own"
        )
    ((name, cam),) = cams.items()
    lens = str(cam.get("distortion_model", "none"))
    if str(cam.get("camera_model", "pinhole")) != "pinhole" or lens not in _KALIBR_MODELS:
        raise ConfigError(
            f"{path}: {name} is Kalibr's {cam.get('camera_model')!r} camera with {lens!r} distortion; camera_info has "
            f"the pinhole camera with {', '.join(_KALIBR_MODELS)} distortion only (calibrate it so)"
        )
    model, count = _KALIBR_MODELS[lens]
    try:
        fu, fv, pu, pv = (float(v) for v in cam["intrinsics"])
        coeffs = [float(v) for v in cam.get("distortion_coeffs") or []]
        w, h = (int(v) for v in cam["resolution"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: {name} needs intrinsics [fu, fv, pu, pv] and resolution [width, height]") from None
    if len(coeffs) != count:
        raise ConfigError(f"{path}: {name}'s {lens} distortion has {count} coefficients, the file {len(coeffs)}")
    return {
        "image_width": w,
        "image_height": h,
        "camera_matrix": {"data": [fu, 0.0, pu, 0.0, fv, pv, 0.0, 0.0, 1.0]},
        "distortion_model": model,
        "distortion_coefficients": {"data": coeffs + [0.0] if lens == "radtan" else coeffs},  # k1 k2 p1 p2 (k3 = 0)
    }


#: What `load_camera_info` reads, in the words of the tools' --help.
CALIBRATION_FORMATS = (
    "camera_calibration's YAML, OpenCV's calibration file (FileStorage YAML or XML), a one-camera Kalibr "
    "camchain, or fx/fy/cx/cy/width/height"
)


def load_camera_info(path: str | Path) -> SimpleNamespace:
    """A camera_info from a calibration file, duck-typed like `sensor_msgs/CameraInfo`.

    Reads the YAML that ROS's `camera_calibration` writes and `camera_info_manager` loads
    (`image_width`, `image_height`, `camera_matrix`, `distortion_model`, `distortion_coefficients`,
    `rectification_matrix`, `projection_matrix`; the last two optional: identity and K), the same keys
    in OpenCV's FileStorage YAML or XML (its calibration sample's output), a one-camera Kalibr camchain
    (`_from_kalibr`), or the plain pinhole `fx fy cx cy width height` of `models/default/sample_camera.yaml`.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not a calibration file, or a matrix of the wrong size.
    """
    path = Path(path)
    try:
        text = path.read_text()
        opencv = text.lstrip().startswith(("%YAML:", "<?xml")) or "!!opencv-matrix" in text  # (PyYAML refuses it)
        doc = _file_storage(path) if opencv else yaml.safe_load(text)
    except FileNotFoundError:
        raise FileNotFoundError(f"camera calibration file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a camera calibration mapping")
    doc = _from_kalibr(doc, path)
    if "camera_matrix" in doc:
        w, h = doc.get("image_width"), doc.get("image_height")
        K = _matrix(doc, "camera_matrix", 3, 3, path)
        # OpenCV's calibration sample names no model: `fisheye_model: 1` is its cv::fisheye (k1..k4), else plumb_bob
        model = str(doc.get("distortion_model") or ("equidistant" if doc.get("fisheye_model") else "plumb_bob"))
        d = doc.get("distortion_coefficients") or {"data": []}
        try:
            D = np.asarray(d.get("data") if isinstance(d, dict) else d, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: distortion_coefficients must be numbers, got {d!r}") from None
        R = _matrix(doc, "rectification_matrix", 3, 3, path) if "rectification_matrix" in doc else np.eye(3).ravel()
        if "projection_matrix" in doc:
            P = _matrix(doc, "projection_matrix", 3, 4, path)
        else:
            P = np.hstack([K.reshape(3, 3), np.zeros((3, 1))]).ravel()
    elif {"fx", "fy", "cx", "cy"} <= set(doc):
        w, h = doc.get("width"), doc.get("height")
    else:
        raise ConfigError(
            f"{path}: not a camera calibration (expected camera_calibration's camera_matrix/... keys, or fx fy cx cy)"
        )
    if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
        raise ConfigError(f"{path}: image width and height must be positive integers, got {w!r} x {h!r}")
    if "camera_matrix" not in doc:
        try:
            return pinhole_info(*(float(doc[key]) for key in ("fx", "fy", "cx", "cy")), w, h)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: fx fy cx cy must be numbers") from None
    return SimpleNamespace(
        width=w, height=h, distortion_model=model, d=D, k=K, r=R, p=P, roi=None, binning_x=0, binning_y=0
    )


#: what the node's user does about an image that came without camera_info while `rectify` is on
NODE_NO_INFO_FIX = "remap camera_info to this camera's, or turn rectify off (rectify:=false)"


def pinhole_input(
    image: np.ndarray, info: Any, rectifier: Rectifier | None, no_info_fix: str = NODE_NO_INFO_FIX
) -> tuple[np.ndarray, CameraModel | None, RectifiedView | None]:
    """An input image as the pipeline takes it, with its pinhole camera (the node and `vdepth-bag`).

    Without a `rectifier` the image is taken as already rectified: the camera is `P` (else `K`)
    scaled to the image (`camera_info.camera_from_info`), None without camera_info. With one, the
    image is undistorted and the camera is the rectified `P`; the view is returned for the metric
    inputs (`RectifiedView.depth`, `.pose`, `.rotation`).

    `no_info_fix`: what the tool's user does about an image without camera_info (the node's words by default).

    Raises:
        InputError: `rectifier` is given and the image has no (usable) camera_info.
    """
    h, w = image.shape[:2]
    if rectifier is not None:
        if info is None:
            raise InputError(
                f"rectify is on, but there is no camera_info to undistort the image with; the image is dropped: "
                f"{no_info_fix}"
            )
        try:
            view = rectifier.view(info, w, h)
        except InputError as err:  # every frame of this camera would go: say what to change
            raise InputError(f"{err}; {RECTIFY_FIX}") from None
        return view.image(image), view.camera, view
    camera = camera_from_info(info) if info is not None else None
    if camera is not None and (camera.width, camera.height) != (w, h):
        camera = camera.scaled(w, h)
    return image, camera, None


#: how the node's user picks a depth image registered to the camera: the fix the sparse-depth causes name
#: by default (each tool passes its own words: `vdepth-bag` names `--sparse-depth-topic`)
NODE_CHOOSE_SPARSE = "remap sparse_depth to the depth registered to this camera"


def sparse_depth_input(
    sparse: np.ndarray | Any,
    camera: CameraModel | None,
    size: tuple[int, int],
    view: RectifiedView | None,
    choose_sparse: str = NODE_CHOOSE_SPARSE,
) -> np.ndarray:
    """A frame's sparse depth at the geometry `pinhole_input` gave its image (the node and `vdepth-bag`).

    `sparse` is either a decoded `(H, W)` depth image (metres, NaN invalid) of the raw image's
    `size` `(H, W)`, resampled by nearest neighbour with the image when `view` is given, or a
    `sensor_msgs/PointCloud2` message (rclpy or rosbags) in the camera's optical frame, projected
    with the pinhole `camera` after the rectification's rotation.

    A depth image of another size than the image but of its aspect ratio is taken as registered at
    another resolution (`resample_sparse_depth`: each sample to the image pixel it covers);
    `choose_sparse` is the fix a depth image of another aspect ratio names, in the tool's words.

    Raises:
        InputError: a cloud without camera_info or in millimetres, or a depth image of another aspect ratio
            than the image.
    """
    if not isinstance(sparse, np.ndarray):  # PointCloud2
        if camera is None:
            raise InputError("a PointCloud2 needs camera_info to be projected")
        depth = sparse_depth_from_cloud(sparse, camera, rotation=None if view is None else view.rotation)
        if depth_units_problem(depth, "32FC1"):  # the depth images' rule: a median beyond 250 m is millimetres
            raise InputError(
                "PointCloud2 points are metres (REP 103), but the median depth of those in view is "
                f"{float(np.nanmedian(depth)):g}: millimetres? Scale the cloud to metres before this node"
            )
        return depth
    if sparse.shape != tuple(size):
        (h, w), (dh, dw) = size, sparse.shape
        if abs((dw / dh) / (w / h) - 1.0) > 0.02:
            raise InputError(
                f"depth image {dw}x{dh} does not match the image {w}x{h}: another aspect ratio, so it is not "
                f"registered to the image (a depth camera's own stream?): {choose_sparse} (e.g. a RealSense's "
                "/camera/aligned_depth_to_color/image_raw, with align_depth.enable:=true; depth_image_proc's register "
                "node)"
            )
        # registered at another resolution (a depth camera's downscaled or stereo-resolution aligned depth):
        # each sample goes to the image pixel it covers, none lost or smeared
        sparse = resample_sparse_depth(sparse, w, h)
    return sparse if view is None else view.depth(sparse)


__all__ = [
    "DISTORTION_MODELS",
    "EQUIDISTANT_NAMES",
    "RectifiedView",
    "Rectifier",
    "distortion_model",
    "has_distortion",
    "load_camera_info",
    "pinhole_info",
    "pinhole_input",
    "sparse_depth_input",
]
