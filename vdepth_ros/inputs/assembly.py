"""One synchronised camera input -> the pipeline's `FrameInput`: the same steps live and offline.

`FrameAssembler.assemble` is what the node's worker and `vdepth-bag`'s reader both call with an
image message, its camera_info (paired by `inputs.sync`), and the sparse depth message or camera
pose that `inputs.samples` gave it:

1. refuse an image above `max_input_pixels` before decoding it (a 97 KB PNG can hold 10000x10000);
2. decode it to RGB (`inputs.decode` over `encodings`: raw encodings, YUV 4:2:2, Bayer, jpeg/png);
3. check the camera_info (`inputs.calibration.camera_info_problem`): a bad one is refused and the
   last good one used; a calibrated one without its size (width x height 0x0) is taken at the image's
   size, noted once (`inputs.calibration.is_sizeless`);
4. undistort with `rectify: true`, else note once that the camera_info has distortion
   (`rectify.pinhole_input`);
5. sparse depth: triangulate tracked points with the pose (`triangulate.PoseTriangulator`), or
   decode/project the depth image or cloud (`rectify.sparse_depth_input`), once for all the images
   that share the sample (a depth image above `max_input_pixels` is not decoded); an unusable one is
   reported and the frame goes on without it.

Messages are duck-typed on the fields rclpy's and rosbags' share, so this module imports neither.
Problems that do not drop the frame go to the caller's `report(kind, message)`: the node logs them
rate-limited, the bag counts them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from vdepth_ros.camera_info import image_window
from vdepth_ros.errors import InputError
from vdepth_ros.inputs.calibration import (
    SIZELESS_NOTE,
    UNCALIBRATED_AFTER_CALIBRATED,
    camera_info_problem,
    info_image_size,
    is_sizeless,
    is_uncalibrated,
    off_centre_principal_point,
    sized_to_image,
)

# Decoding and the camera_info checks have their own modules; the names the node's intake and tests
# import from here stay importable from here.
from vdepth_ros.inputs.calibration import calibration_problem as calibration_problem
from vdepth_ros.inputs.calibration import camera_missing as camera_missing
from vdepth_ros.inputs.decode import DEPTH_STREAM_FIX as DEPTH_STREAM_FIX
from vdepth_ros.inputs.decode import (
    NODE_CHOOSE_IMAGE,
    NODE_SETTINGS,
    SampleBitDepth,
    SettingWords,
    decode_color_image,
    decode_depth_image,
)
from vdepth_ros.inputs.decode import UnsupportedImageError as UnsupportedImageError
from vdepth_ros.inputs.decode import check_input_size as check_input_size
from vdepth_ros.inputs.decode import compressed_size as compressed_size
from vdepth_ros.inputs.decode import is_compressed_depth as is_compressed_depth
from vdepth_ros.inputs.decode import is_depth_stream_name as is_depth_stream_name
from vdepth_ros.inputs.sync import stamp_to_ns
from vdepth_ros.pipeline import FrameInput
from vdepth_ros.rectify import (
    NODE_CHOOSE_SPARSE,
    NODE_NO_INFO_FIX,
    Rectifier,
    has_distortion,
    pinhole_input,
    sparse_depth_input,
)
from vdepth_ros.triangulate import PoseTriangulator

#: Default `max_input_pixels`: 4096 x 4096 (16.8 MP: 4K UHD and most machine-vision cameras fit).
DEFAULT_MAX_INPUT_PIXELS = 4096 * 4096

#: Kinds passed to `report`: what was wrong, and the frame was kept.
REPORT_KINDS = (
    "bit_depth",
    "camera_info",
    "camera_info_frame",
    "image_frame",
    "distortion",
    "scaled_info",
    "sparse",
    "pose",
    "rectified_twice",
    "distorted_raw",
    "principal_point",
)

#: A topic name's last part that says its images are already rectified (image_proc's `image_rect`, `image_rect_color`;
#: drivers' `image_rect_raw`), before an image_transport transport's.
_RECTIFIED_NAME = re.compile(r"image_rect(_\w+)?")
#: ... that says they are not (drivers' `image_raw`; image_proc's debayered, unrectified `image_color`, `image_mono`).
_RAW_NAME = re.compile(r"image_raw(_\w+)?|image_color|image_mono")
_TRANSPORTS = ("compressed", "compressedDepth", "theora", "zstd", "ffmpeg")


#: Message types of a camera streamed as video (H.264/H.265/AV1/Theora packets, each frame depending on earlier ones),
#: which neither the node nor the bag tools decode message by message
VIDEO_STREAM_TYPES = (
    "foxglove_msgs/msg/CompressedVideo",
    "ffmpeg_image_transport_msgs/msg/FFMPEGPacket",
    "theora_image_transport/msg/Packet",
    "h264_msgs/msg/Packet",
)


def image_transport_of(topic: str) -> str | None:
    """The image_transport transport an image topic's name ends in (`/cam/image_raw/zstd` -> "zstd"), or None."""
    last = str(topic).rstrip("/").rpartition("/")[2]
    return last if last in _TRANSPORTS else None


def _image_name(topic: str) -> str:
    """The last part of an image topic's name, before an image_transport transport's."""
    parts = [p for p in str(topic).split("/") if p]
    while parts and parts[-1] in _TRANSPORTS:
        parts.pop()
    return parts[-1] if parts else ""


def named_rectified(topic: str) -> bool:
    """Whether an image topic's name says its images are already rectified (`/cam/image_rect`,
    `/cam/image_rect_color/compressed`...)."""
    return _RECTIFIED_NAME.fullmatch(_image_name(topic)) is not None


def named_raw(topic: str) -> bool:
    """Whether an image topic's name says its images are not rectified (`/cam/image_raw`, `.../image_color`...)."""
    return _RAW_NAME.fullmatch(_image_name(topic)) is not None


#: A frame_id that names a body frame (x forward, REP 103): a URDF link (`camera_link`, `base_link`, Gazebo's
#: `model/camera_link/sensor`), or a driver's non-optical twin of its optical frame (RealSense `camera_color_frame`,
#: ZED `zed_left_camera_frame`, OAK `oak_rgb_camera_frame`, each beside its `*_optical_frame`)
_BODY_FRAME = re.compile(r"(^|[_/])link($|[_/])|_frame$")


def is_body_frame_name(frame_id: str) -> bool:
    """Whether `frame_id` names a body frame rather than a camera's optical frame (by its name alone: an optical
    frame is named so, `*_optical_frame`, `camera_link_optical`...)."""
    return "optical" not in frame_id.lower() and bool(_BODY_FRAME.search(frame_id))


def _frame_id(msg: Any) -> str:
    """A message's `header.frame_id` without a leading '/' (ROS 1 style), '' when it has none."""
    header = getattr(msg, "header", None)
    return str(getattr(header, "frame_id", "") or "").lstrip("/")


def sparse_frame_problem(sparse: Any, image: Any, choose_sparse: str = NODE_CHOOSE_SPARSE) -> str | None:
    """Why a sparse depth message cannot be used with `image`, or None: it is in another frame (both
    `frame_id`s set and different). Nothing here looks up TF, so only a depth image registered to the
    image (a depth camera's aligned stream, which carries the image's frame_id) or a cloud given in the
    image's optical frame gives the right metric scale; a depth camera's own stream or a LiDAR cloud in
    its own frame would give a wrong one, without a word. `choose_sparse`: the fix for a depth image, in
    the tool's words."""
    theirs, ours = _frame_id(sparse), _frame_id(image)
    if not theirs or not ours or theirs == ours:
        return None
    same = "or, if it is in that frame already under another name, publish it with the image's frame_id"
    if hasattr(sparse, "point_step"):
        return (
            f"the point cloud is in frame {theirs!r}, the image in {ours!r}: nothing here looks up TF, so a cloud "
            f"must be given in the image's optical frame: transform it into {ours!r} before this node (e.g. "
            f"pcl_ros's transform_point_cloud, or in the LiDAR driver), {same}"
        )
    return (
        f"the depth image is in frame {theirs!r}, the image in {ours!r}: nothing here looks up TF, so a depth "
        f"image must be registered to the image pixel for pixel: {choose_sparse} (e.g. a RealSense's "
        "/camera/aligned_depth_to_color/image_raw, with align_depth.enable:=true; depth_image_proc's register "
        f"node), {same}"
    )


def _same_geometry(a: tuple[Any, tuple[int, int], Any], b: tuple[Any, tuple[int, int], Any]) -> bool:
    """Whether two (camera, raw image size, rectified view) give a sparse sample the same depth image: equal
    cameras (a cloud's projection) and sizes, the same view (`Rectifier` keeps one per camera_info)."""
    return a[0] == b[0] and a[1] == b[1] and a[2] is b[2]


class FrameAssembler:
    """Builds the `FrameInput` of one synchronised input (module docstring), for one camera stream.

    Args:
        rectify: undistort each image with its camera_info (the node's `rectify`).
        sparse_depth: "none", "image", "pointcloud" or "pose" (the node's `sparse_depth`).
        max_input_pixels: larger images are refused before decoding (0: no limit).
        image_bit_depth: significant bits of 16-bit samples, 0 = auto (`SampleBitDepth`).
        max_gap_s: the node's `max_gap`: a longer gap between images starts their bit depth anew (`SampleBitDepth`).
        image_encoding: read each raw image's bytes as this encoding, not the one it names ("auto": its own;
            `decode.read_as`).
        report: `report(kind, message)` for problems that keep the frame (`REPORT_KINDS`).
        choose_info: how the user picks this camera's camera_info, named when the one in use is
            another camera's (the node: a remap; `vdepth-bag`: `--camera-info-topic`).
        choose_image: how the user picks the colour camera's stream, named when a frame is a depth
            image (`decode_color_image`).
        choose_sparse: how the user picks the depth registered to this camera, named when the sparse
            depth is not (`sparse_frame_problem`, `sparse_depth_input`).
        no_info_fix: what the user does about an image without camera_info while `rectify` is on
            (`rectify.pinhole_input`; the node: a remap; `vdepth-bag`: a calibration file for the frames before
            the bag's first camera_info).
        setting_words: how the user sets image_encoding and image_bit_depth, in the fixes the decoding names (the
            node's parameters; a tool's flags: `decode.SettingWords`).
    """

    def __init__(
        self,
        *,
        rectify: bool = False,
        sparse_depth: str = "none",
        max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
        image_bit_depth: int = 0,
        max_gap_s: float = 0.0,
        image_encoding: str = "auto",
        report: Callable[[str, str], None] | None = None,
        choose_info: str = "remap camera_info to this camera's",
        choose_image: str = NODE_CHOOSE_IMAGE,
        choose_sparse: str = NODE_CHOOSE_SPARSE,
        no_info_fix: str = NODE_NO_INFO_FIX,
        setting_words: SettingWords = NODE_SETTINGS,
    ) -> None:
        self.choose_info = choose_info
        self.no_info_fix = no_info_fix
        self.choose_image = choose_image
        self.choose_sparse = choose_sparse
        #: the image topic (the node's resolved `image`, `vdepth-bag`'s): a name that says rectified with `rectify` on
        #: (`named_rectified`), or raw with distortion and `rectify` off (`named_raw`), is named
        self.image_topic = ""
        self._rectified_twice_noted = False
        self.rectifier = Rectifier() if rectify else None
        self.triangulator = PoseTriangulator() if sparse_depth == "pose" else None
        self.max_input_pixels = int(max_input_pixels)
        self.bit_depth = SampleBitDepth(image_bit_depth, setting_words, max_gap_s)
        self.image_encoding = str(image_encoding)
        self.setting_words = setting_words
        self._report = report or (lambda kind, message: None)
        self.info: Any = None  # the camera_info the last frame used (the last good one)
        self.unfit: str | None = None  # why the last good camera_info did not fit the last frame, if not
        self._fits: tuple[Any, str | None] = (None, None)  # (image size, why `info` does not fit it)
        self.refused_infos = 0
        #: (a sizeless camera_info received, its copy at the image's size): the copy stands in for it
        self._sized: tuple[Any, Any] = (None, None)
        self._distortion_noted = False
        self._scaled_noted: set[tuple[int, int, int, int]] = set()  # (camera_info size, image size) named
        self._empty_frame_noted = False
        self._body_frames_noted: set[str] = set()  # image frame_ids named as body frames
        self._off_centre_noted: set[tuple[Any, ...]] = set()  # calibrations named by `_check_principal_point`
        self._frames_noted: set[tuple[str, str, str]] = set()  # (kind, its frame, image frame) reported
        # the last sparse message, the geometry it was made for, and its sparse depth (or why it has none)
        self._sparse_made: tuple[Any, tuple[Any, tuple[int, int], Any], np.ndarray | str] | None = None

    def reset(self) -> None:
        """A new stream: the tracked points belong to the old one."""
        if self.triangulator is not None:
            self.triangulator.reset()

    def assemble(
        self,
        image: Any,
        stamp_ns: int,
        info: Any,
        sparse: Any = None,
        pose: Any = None,
        meta: Any = None,
        previous_input_ns: int | None = None,
    ) -> FrameInput:
        """One `FrameInput` (see the module docstring for the steps).

        Args:
            image: `Image` or `CompressedImage` message.
            stamp_ns: its stamp.
            info: the paired `CameraInfo`, or None.
            sparse: the matched sparse `Image` (16UC1/32FC1) or `PointCloud2`, or None.
            pose: `sparse_depth: pose`: the camera-to-world pose at the stamp, or None.
            meta: `FrameInput.meta` (the node: a copied header; the bag: its `BagFrameMeta`).
            previous_input_ns: the stamp of the image received before this one, assembled or not (the node's: frames
                it dropped make no gap that starts the bit depth anew, as they make no restart).

        Raises:
            UnsupportedImageError, InputError: the frame cannot be used (it is dropped).
        """
        rgb = decode_color_image(
            image,
            self.max_input_pixels,
            self.bit_depth,
            self.choose_image,
            self.image_encoding,
            self.setting_words,
            stamp_ns,
            previous_input_ns,
        )
        if self.bit_depth.note:
            self._report("bit_depth", self.bit_depth.note)
            self.bit_depth.note = None
        raw_size = rgb.shape[:2]
        self._check_image_frame(image)
        info = self._checked_info(info, raw_size, stamp_ns)
        if info is not None:
            self._check_info_frame(info, image)
        elif self.unfit and self.rectifier is not None:
            raise InputError(f"rectify is on, but the camera_info does not fit the image: {self.unfit}")
        rgb, camera, view = pinhole_input(rgb, info, self.rectifier, self.no_info_fix)
        if camera is not None:
            self._note_scaled(info, raw_size)
        if view is None and not self._distortion_noted and info is not None and has_distortion(info):
            self._distortion_noted = True
            if named_raw(self.image_topic):  # distorted for sure: the cloud bends
                self._report(
                    "distorted_raw",
                    f"the images come from {self.image_topic}, by its name the camera's raw, distorted image, and its "
                    "camera_info has lens distortion (D), but rectify is off: they are taken as rectified, so straight "
                    "walls of the depth and the cloud bend; set rectify:=true",
                )
            else:
                self._report(
                    "distortion",
                    "camera_info has lens distortion (D); the image is taken as rectified (image_rect), as "
                    "depth_image_proc does. If 'image' is a raw, distorted image, set rectify:=true.",
                )
        if view is not None and not view.is_identity:
            self._note_rectified_twice()
        if self.triangulator is not None:
            sparse_depth = self._triangulated(rgb, pose if view is None else view.pose(pose), camera)
        else:
            sparse_depth = self._sparse_depth(sparse, image, camera, raw_size, view)
        valid = None if view is None else view.valid
        return FrameInput(
            rgb=rgb, stamp_ns=int(stamp_ns), camera=camera, sparse_depth=sparse_depth, meta=meta, valid=valid
        )

    def _note_rectified_twice(self) -> None:
        """Report once that `rectify` undistorts images whose topic says they are rectified already: image_proc's
        image_rect keeps the raw image's camera_info (its D), so the image is undistorted a second time and the cloud
        bends (the frame is kept: the name may not tell the truth)."""
        if self._rectified_twice_noted or not named_rectified(self.image_topic):
            return
        self._rectified_twice_noted = True
        self._report(
            "rectified_twice",
            f"rectify is on, but the images come from {self.image_topic}, which by its name is already rectified "
            "(image_proc's image_rect keeps the camera's camera_info, distortion and all): undistorting it again "
            "bends the depth and the cloud; turn rectify off (rectify:=false; vdepth-bag: without --rectify), or "
            "take the camera's raw image (its image_raw) with rectify on",
        )

    def _note_scaled(self, info: Any, size: tuple[int, int]) -> None:
        """Note once per pair of sizes (INFO) that a camera_info for another resolution of the image's
        aspect ratio is scaled to the image: right for a resized stream, wrong for a camera mode that crops
        its sensor to about the same aspect ratio (the cloud then comes out stretched), which only the
        user can tell apart."""
        _, _, roi_w, roi_h, bx, by = image_window(info)
        shown = (max(1, roi_w // bx), max(1, roi_h // by))
        key = (*shown, size[1], size[0])
        if shown == (size[1], size[0]) or key in self._scaled_noted:
            return
        self._scaled_noted.add(key)
        if (bx > 1 or by > 1) and (roi_w, roi_h) == (size[1], size[0]):  # binning declared, not applied
            self._report(
                "scaled_info",
                f"the camera_info sets binning {bx}x{by}, so by ROS's CameraInfo its images are {shown[0]}x{shown[1]} "
                f"(its {roi_w}x{roi_h} calibration binned), but the image is {size[1]}x{size[0]}, the calibration's "
                "full size: this node scales the intrinsics back to the image, but depth_image_proc, RViz and every "
                "image_geometry user of this camera get intrinsics for the binned size; have the driver set binning "
                "only when it bins, with the calibration of the unbinned sensor",
            )
            return
        self._report(
            "scaled_info",
            f"the camera_info is for {shown[0]}x{shown[1]} images and the image is {size[1]}x{size[0]}: its "
            f"intrinsics are scaled by {size[1] / shown[0]:.3g} to the image (a resized stream). If the camera "
            "crops its sensor in this mode instead, give it a calibration of this mode (or set roi in its "
            "camera_info): scaled intrinsics would stretch the cloud.",
        )

    def _checked_info(self, info: Any, size: tuple[int, int], stamp_ns: int) -> Any:
        """`info` if usable for an image of `size` `(H, W)`, else the last good one if that fits the
        image, else None (the bad one is reported).

        The last good camera_info stands in for one that is refused or has not come yet (a camera_info
        slower than the images, `inputs.sync`), but only for an image it fits: after the camera changed
        its resolution to another aspect ratio (a driver reconfigured, a calibration file for another
        resolution) it would give the cloud and depth/camera_info intrinsics stretched to the new
        size. Such a frame has no camera model (`unfit` says why)."""
        self.unfit = None
        if info is None:
            return None
        info = self._with_size(info, size)
        refusal = None
        if info is not self.info:
            refusal = camera_info_problem(info, size)
            if refusal is None and self.info is not None and is_uncalibrated(info) and not is_uncalibrated(self.info):
                refusal = UNCALIBRATED_AFTER_CALIBRATED  # the camera is the same: its calibration still holds
            if refusal is None:
                self.info, self._fits = info, (size, None)
                self._check_principal_point(info)
                return info
            self.refused_infos += 1
            header = getattr(info, "header", None)  # (none: a calibration file's)
            apart = 0 if header is None else stamp_to_ns(header.stamp) - int(stamp_ns)
            if apart and info_image_size(info) not in (None, (size[1], size[0])):
                # (a driver stamping camera_info apart from its image: the one paired by stamp is a neighbour's)
                refusal += (
                    f" (it is stamped {apart / 1e9:+.3f} s from this image: another frame's, if the driver stamps "
                    "camera_info apart from its image; have it stamp each camera_info with its image's header.stamp)"
                )
        if self.info is not None and self._fits[0] != size:
            self._fits = (size, camera_info_problem(self.info, size))
        self.unfit = None if self.info is None else self._fits[1]
        if refusal is not None:
            if self.info is None:
                keeps = "no camera_info until a good one arrives"
            elif self.unfit:
                keeps = (
                    "the last good one does not fit this image either, so the frame has no intrinsics (no points, "
                    "no depth/camera_info)"
                )
            else:
                keeps = "the last good one is used"
            self._report("camera_info", f"refusing a camera_info: {refusal}; {keeps}")
        return None if self.unfit else self.info

    def _with_size(self, info: Any, size: tuple[int, int]) -> Any:
        """`info`, or for a sizeless one (`is_sizeless`) its copy at the size `(H, W)` of the first image it came
        with (one copy per message, so the last good one is not judged again at every frame), noted once."""
        if info is self._sized[0]:
            return self._sized[1]
        if not is_sizeless(info):
            return info
        sized = sized_to_image(info, size)
        if self._sized[0] is None:
            w, h = int(info.width), int(info.height)
            self._report("sizeless_info", SIZELESS_NOTE.format(w=w, h=h, iw=size[1], ih=size[0]))
        self._sized = (info, sized)
        return sized

    def _check_principal_point(self, info: Any) -> None:
        """Report once per calibration a principal point no lens has (`off_centre_principal_point`); it is used."""
        problem = off_centre_principal_point(info)
        key = (tuple(info.k), tuple(info.p), int(info.width), int(info.height))
        if problem is not None and key not in self._off_centre_noted:
            self._off_centre_noted.add(key)
            self._report("principal_point", problem)

    def _check_image_frame(self, image: Any) -> None:
        """Report once an image whose header has an empty `frame_id`: the outputs carry the image's
        header, so depth, points and depth/camera_info would have no frame either, and RViz and TF
        cannot place them (RViz says only 'Frame [] does not exist'). And once one whose `frame_id`
        starts with '/' (ROS 1 style: an old driver, a converted ROS 1 bag), which tf2 refuses in ROS 2
        ("frame_ids cannot start with a '/'"), so RViz cannot place those outputs either."""
        header = getattr(image, "header", None)
        if header is None:
            return
        frame = str(getattr(header, "frame_id", "") or "")
        if frame and frame not in self._body_frames_noted and is_body_frame_name(frame):
            self._body_frames_noted.add(frame)
            self._report(
                "image_frame",
                f"the image's frame_id {frame!r} names a body frame (a URDF link or a driver's *_frame: x forward, z "
                "up by REP 103), but depth and points are in the optical convention (z forward, x right, y down), "
                "and the outputs keep the image's frame: RViz and every TF user see the cloud turned by 90 degrees. "
                "If so, publish the images in the camera's optical frame (a RealSense's camera_color_optical_frame; "
                "Gazebo: the sensor's optical_frame_id; else add an optical child frame, rpy -pi/2 0 -pi/2)",
            )
        if self._empty_frame_noted or (frame and not frame.startswith("/")):
            return
        self._empty_frame_noted = True
        if not frame.lstrip("/"):
            problem = "has no frame_id, so neither have the outputs (they keep its header)"
        else:
            problem = (
                f"frame_id {frame!r} starts with '/' (ROS 1 style), which tf2 refuses in ROS 2 (\"frame_ids cannot "
                "start with a '/'\"), and the outputs keep its header"
            )
        self._report(
            "image_frame",
            f"the image's header {problem}: RViz or TF cannot place the depth and the cloud; set the camera's "
            f"optical frame in the driver (e.g. its frame_id parameter{', without the /' if frame else ''})",
        )

    def _other_frame(self, kind: str, msg: Any, image: Any) -> tuple[str, str]:
        """`(msg's frame, image's frame)` the first time `msg` of `kind` has a frame_id other than the
        image's (both set), else `("", "")`."""
        theirs, ours = _frame_id(msg), _frame_id(image)
        if not theirs or not ours or theirs == ours or (kind, theirs, ours) in self._frames_noted:
            return "", ""
        self._frames_noted.add((kind, theirs, ours))
        return theirs, ours

    def _check_info_frame(self, info: Any, image: Any) -> None:
        """Report (once per pair of frames) a camera_info whose `frame_id` is not the image's: most
        likely another camera's (a remap to the depth camera's camera_info of the same size gives the
        cloud wrong intrinsics without a word). It is used; the outputs keep the image's frame."""
        theirs, ours = self._other_frame("camera_info", info, image)
        if theirs:
            self._report(
                "camera_info_frame",
                f"the camera_info is in frame {theirs!r}, the image in {ours!r}: its intrinsics are used for the image "
                f"(the outputs keep the image's frame); if it is another camera's camera_info, {self.choose_info}",
            )

    def _sparse_depth(
        self, sparse: Any, image: Any, camera: Any, raw_size: tuple[int, int], view: Any
    ) -> np.ndarray | None:
        """The frame's sparse depth, or None: no sample, or one refused (reported): undecodable, or
        in another frame than the image (`sparse_frame_problem`)."""
        if sparse is None:
            return None
        try:
            problem = sparse_frame_problem(sparse, image, self.choose_sparse)
            if problem:
                raise InputError(problem)
            return self._sample_depth(sparse, camera, raw_size, view)
        except InputError as err:
            self._report("sparse", str(err))
            return None

    def _sample_depth(self, sparse: Any, camera: Any, raw_size: tuple[int, int], view: Any) -> np.ndarray:
        """`sparse`'s depth at the image's geometry (`sparse_depth_input`), made once for all the images that share
        the sample and the geometry: a depth camera slower than the images, or a slop wider than their period,
        gives one sample to several images, and decoding it is the costly part (a noisy RVL compressedDepth of
        640x480: ~5-8 ms; projecting a 130k-point cloud: ~20 ms). The array is shared, so read-only.

        Raises:
            InputError: the sample cannot be used (again for each image, as the first time).
        """
        cloud = hasattr(sparse, "point_step")
        geometry = (camera if cloud else None, (int(raw_size[0]), int(raw_size[1])), view)  # (a depth image: no K)
        made = self._sparse_made
        if made is None or made[0] is not sparse or not _same_geometry(made[1], geometry):
            try:
                if not cloud:  # (a cloud's points are its bytes; a compressed depth image can decode to far more)
                    check_input_size(sparse, self.max_input_pixels, "depth image", "it is not used")
                depth = sparse if cloud else decode_depth_image(sparse)
                result: np.ndarray | str = sparse_depth_input(depth, camera, raw_size, view, self.choose_sparse)
                result.setflags(write=False)
            except InputError as err:
                result = str(err)
            made = self._sparse_made = (sparse, geometry, result)
        if isinstance(made[2], str):
            raise InputError(made[2])
        return made[2]

    def _triangulated(self, rgb: np.ndarray, pose: Any, camera: Any) -> np.ndarray | None:
        """Sparse depth from the tracked points and the poses, or None (no pose or camera_info:
        `PoseTriangulator.push` restarts the tracks; reported)."""
        assert self.triangulator is not None
        try:
            return self.triangulator.push(rgb, pose, None if camera is None else camera.matrix)
        except InputError as err:
            self._report("pose", str(err))
            return None
