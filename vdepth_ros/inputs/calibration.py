"""Is a camera_info usable? One judgement for the node, `vdepth-bag` and `vdepth-video`.

`camera_info_problem` judges a received camera_info (finite, a pinhole K and P that agree, a size,
a region of interest inside it, the image's aspect ratio): a refused one is not used, and the
last good one is. `calibration_problem` judges a calibration the user names (a file,
`--intrinsics`), which also may not be uncalibrated. `camera_missing` says why a frame has no
camera model (none arrived, only refused ones, an uncalibrated one, one for another aspect ratio).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vdepth_ros.camera_info import camera_from_info, image_window


def _projection_problem(name: str, m: np.ndarray, width: int, height: int) -> str | None:
    """What is wrong with a set (non-zero) K (3x3) or P (3x4), or None."""
    fx, fy, cx, cy = m[0, 0], m[1, 1], m[0, 2], m[1, 2]
    if not (fx > 0 and fy > 0):
        return f"{name} has fx={fx:g}, fy={fy:g}; focal lengths must be positive"
    if not np.allclose(m[2, :3], [0.0, 0.0, 1.0]) or m[1, 0] != 0:
        return f"{name}'s last row must be [0 0 1{' 0' if m.shape[1] == 4 else ''}] and {name}[1][0] zero"
    if not (0 <= cx <= width and 0 <= cy <= height):
        return f"{name}'s principal point ({cx:g}, {cy:g}) lies outside the {width}x{height} image"
    return None


def camera_info_problem(info: Any, image_size: tuple[int, int] | None = None) -> str | None:
    """What makes a `CameraInfo` unusable, or None. An all-zero (uncalibrated) one is usable: it
    gives no camera (depth without a cloud).

    Checks: K, P, R, D finite; a set K or P has positive fx, fy, the pinhole last row and its
    principal point inside the image; K and P agree (P's focal lengths within 4x of K's); a
    calibrated camera_info has a size, a region of interest inside it, and the image's aspect ratio
    (`image_size` `(H, W)`) for the part it says the image shows (its `roi`, binned: resizing keeps
    the ratio, an undeclared crop does not).
    """
    arrays = {name: np.asarray(getattr(info, name, ()), dtype=np.float64).ravel() for name in ("k", "p", "r", "d")}
    for name, values in arrays.items():
        if not np.isfinite(values).all():
            return f"{name.upper()} holds NaN or infinity"
    if arrays["k"].size != 9 or arrays["p"].size != 12:
        return f"K has {arrays['k'].size} and P {arrays['p'].size} values; expected 9 and 12"
    k, p = arrays["k"].reshape(3, 3), arrays["p"].reshape(3, 4)
    width, height = int(info.width), int(info.height)
    if not k.any() and not p.any():
        return None
    if width <= 0 or height <= 0:
        return (
            f"a calibrated camera_info needs its image size; width x height is {width}x{height} (its publisher must "
            "set width and height to the size of the image K was calibrated at)"
        )
    for name, m in (("K", k), ("P", p)):
        problem = _projection_problem(name, m, width, height) if m.any() else None
        if problem:
            return problem
    if k.any() and p.any() and not (0.25 <= p[0, 0] / k[0, 0] <= 4 and 0.25 <= p[1, 1] / k[1, 1] <= 4):
        return f"P (fx={p[0, 0]:g}, fy={p[1, 1]:g}) does not fit K (fx={k[0, 0]:g}, fy={k[1, 1]:g})"
    x0, y0, roi_w, roi_h, bx, by = image_window(info)
    if x0 < 0 or y0 < 0 or x0 + roi_w > width or y0 + roi_h > height:
        return f"its region of interest ({roi_w}x{roi_h} at {x0}, {y0}) is not inside the {width}x{height} image"
    if image_size is not None:
        shown_w, shown_h = roi_w / bx, roi_h / by
        sy, sx = image_size[0] / shown_h, image_size[1] / shown_w
        if abs(sx / sy - 1.0) > 0.02:
            shown = (
                f"{width}x{height} images"
                if (roi_w, roi_h, bx, by) == (width, height, 1, 1)
                else (f"{shown_w:g}x{shown_h:g} images (roi {roi_w}x{roi_h}, binning {bx}x{by})")
            )
            turned = abs((image_size[1] / shown_h) / (image_size[0] / shown_w) - 1.0) <= 0.02
            why = (
                "turned by 90 degrees, by the driver or an image_rotate node? Take the camera's own, unturned images "
                "with this camera_info and set image_rotation, which shows the model the scene upright, or give "
                "the turned images a camera_info of their own"
                if turned
                else "cropped without setting roi?"
            )
            return f"it is for {shown}, but the image is {image_size[1]}x{image_size[0]}: another aspect ratio ({why})"
    return None


#: A principal point further than this share of the image's width or height from its centre is no lens's (theirs
#: lie within a few %): `off_centre_principal_point`.
OFF_CENTRE_SHARE = 0.25

#: A principal point more than `SCALED_SHARE` of the image's width and of its height off its centre, both by the
#: same factor (within `SAME_SCALE`), is the centre of the image at another resolution (`off_centre_principal_point`):
#: a 1920x1080 calibration's (959.5, 539.5) on 1280x720 images lies 25% off, within `OFF_CENTRE_SHARE`, and was
#: used without a word (800x600's on 640x480: 12.5%). A lens's own offsets are small and unrelated in x and y.
SCALED_SHARE, SAME_SCALE = 0.1, 0.01


def off_centre_principal_point(info: Any) -> str | None:
    """Why a usable `CameraInfo`'s principal point cannot be its lens's, or None: K's (or P's) lies more than
    `OFF_CENTRE_SHARE` of its width or height from the centre of the image it declares, as when K calibrated at
    another resolution is published with this one's width and height (a 1280x720 calibration's (640, 360) on
    640x480 images: the corner), or a driver leaves cx, cy 0; or it is the centre of this image at another
    resolution (`SCALED_SHARE`: a 1920x1080 calibration on 1280x720 images). Judged on the calibration's full size,
    so a camera_info's `roi` (an off-axis crop) is no reason. The cloud and depth/camera_info come out skewed."""
    width, height = int(info.width), int(info.height)
    if width <= 0 or height <= 0:
        return None
    for name, values, shape in (("P", info.p, (3, 4)), ("K", info.k, (3, 3))):
        m = np.asarray(values, np.float64).reshape(shape)
        if not m.any():
            continue
        cx, cy = m[0, 2], m[1, 2]
        dx, dy = abs(cx - width / 2) / width, abs(cy - height / 2) / height
        scale_x, scale_y = (2 * cx + 1) / width, (2 * cy + 1) / height  # the image whose centre it is, to this one
        scaled = abs(scale_x - scale_y) <= SAME_SCALE * scale_x and min(dx, dy) > SCALED_SHARE
        if max(dx, dy) <= OFF_CENTRE_SHARE and not scaled:
            return None
        if abs(cx) < 1 and abs(cy) < 1 and m[0, 0] <= 1 and m[1, 1] <= 1:
            cause = f"{name} is the identity, a placeholder, not the camera's calibration (calibrate it)"
        elif abs(cx) < 1 and abs(cy) < 1:
            cause = "its publisher leaves cx and cy 0 (they are the image's centre, about (W-1)/2 and (H-1)/2)"
        else:
            cause = (
                f"{name} calibrated at another resolution (about {round(2 * cx + 1)}x{round(2 * cy + 1)}, whose centre "
                f"it is) published with this width and height"
            )
        return (
            f"the camera_info's {name} has its principal point at ({cx:g}, {cy:g}), {dx:.0%} of the width and "
            f"{dy:.0%} of the height off the centre of its {width}x{height} images, where a lens's lies within a few "
            f"%: {cause}? The cloud and depth/camera_info come out skewed; publish the calibration of this "
            "resolution (or K and P scaled to it) with its width and height"
        )
    return None


def is_uncalibrated(info: Any) -> bool:
    """An all-zero camera_info (K and P): a driver without its calibration file publishes it."""
    return not np.asarray(info.k, np.float64).any() and not np.asarray(info.p, np.float64).any()


#: Why an uncalibrated camera_info after calibrated ones is refused (`FrameAssembler`): one such message (a
#: driver's glitch, a calibration file read again and failing) restarted the stream twice and left frames
#: without clouds; the camera has not changed, so its calibration still holds.
UNCALIBRATED_AFTER_CALIBRATED = (
    "it is all zero (uncalibrated) after calibrated ones from this camera (its driver lost its calibration "
    "file, or sent one unset message?)"
)


def is_sizeless(info: Any) -> bool:
    """A calibrated camera_info (K or P set) whose width or height is 0: some drivers (and hand-written
    publishers) leave the size unset. depth_image_proc and RViz use its K on the images as they come, so it is
    taken as calibrated at the image's size (`FrameAssembler`), not refused."""
    return not is_uncalibrated(info) and (int(info.width) <= 0 or int(info.height) <= 0)


def sized_to_image(info: Any, size: tuple[int, int]) -> Any:
    """A copy of a sizeless camera_info (`is_sizeless`) with the image's size `(H, W)` as its width and height
    (its region of interest then the whole image, as an unset one is)."""
    import copy

    sized = copy.copy(info)
    sized.height, sized.width = int(size[0]), int(size[1])
    return sized


#: What a sizeless camera_info is taken as (`FrameAssembler`), said once.
SIZELESS_NOTE = (
    "the camera_info has a camera matrix but width x height {w}x{h}: taken as calibrated at the image's "
    "size, {iw}x{ih}, as depth_image_proc and RViz take it; have its publisher set width and height to the "
    "size of the image K was calibrated at"
)


def calibration_problem(info: Any, image_size: tuple[int, int] | None = None) -> str | None:
    """What makes a calibration the user names (a file, `--intrinsics`) unusable, or None:
    `camera_info_problem`, and also an uncalibrated (all-zero) camera, which a live camera_info may
    be (no cloud, named by `camera_missing`) but a calibration given on purpose may not. One rule for
    `vdepth-bag --camera-info-file` and `vdepth-video --camera-info/--intrinsics`."""
    problem = camera_info_problem(info, image_size)
    if problem is None and camera_from_info(info) is None:
        problem = "its camera matrix is all zero (an uncalibrated camera)"
    return problem


def info_image_size(info: Any) -> tuple[int, int] | None:
    """`(width, height)` of the images a `CameraInfo` is for (its `roi`, binned:
    `camera_info.image_window`), or None for one without a size (uncalibrated)."""
    _, _, width, height, bx, by = image_window(info)
    return (width // bx, height // by) if width > 0 and height > 0 else None


def camera_missing(info: Any, where: str, refused: int = 0) -> str:
    """Why a frame has no camera model (so no point cloud and no output camera_info), given the
    camera_info it was assembled with (`FrameAssembler.info`) and how many were refused
    (`FrameAssembler.refused_infos`): none arrived, only unusable ones did, an uncalibrated
    (all-zero) one did, as camera drivers publish without a calibration file, or the last good one
    is for another aspect ratio than the image (`FrameAssembler.unfit`). `where` names the topic
    ("on '/cam/camera_info'")."""
    if info is None and refused:
        return f"every camera_info {where} so far was refused (the error above says why)"
    if info is None:
        return f"no camera_info has arrived {where}"
    if camera_from_info(info) is not None:  # calibrated, but not for this image (`FrameAssembler.unfit`)
        return (
            f"the camera_info {where} is for {int(info.width)}x{int(info.height)} images, not the image's aspect "
            "ratio (the camera changed resolution?)"
        )
    return f"the camera_info {where} is uncalibrated (K and P are all zero)"
