"""Sparse metric depth from camera motion: image points tracked over frames, triangulated with known
camera poses (robot odometry, a VIO or SLAM system), as the `sparse_depth` input of the metric fit.

`PoseTriangulator.push` takes each frame with its camera-to-world pose and intrinsics, in order, and
returns a sparse depth map of that frame: Z (metres along the optical axis) at the pixels of the
tracked points whose 3D position is well determined, NaN elsewhere. It is causal (only earlier
frames are used) and its state is bounded (`max_points` tracks over the last `history` frames).

How: Shi-Tomasi corners tracked with pyramidal Lucas-Kanade (OpenCV) and kept only when the
backward track returns within `max_fb_error` px; each track seen in at least `min_views` of the last
`history` frames is triangulated by linear multi-view DLT in normalised image coordinates (Hartley &
Zisserman, "Multiple View Geometry", 12.2), and kept only if the rays of its oldest and newest view
meet at `min_parallax_deg` or more, it lies in front of every camera, and it reprojects within
`max_reproj_px` in every view.

Why: the bundled model's largest error on real video is its scale between views (the model card's
two-view study); a few hundred points with metric depth per frame fix most of it, the way a depth
sensor does through `scale_source: sparse`. Moving objects break the static-scene assumption: their
points either fail the reprojection test or become outliers, which the robust metric fit down-weights.
The poses must be metric and of the camera's optical frame (x right, y down, z forward), in any
fixed world frame.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vdepth_ros.encodings import grey_at_most
from vdepth_ros.errors import InputError


def pose_matrix(position: np.ndarray | list[float], quaternion_xyzw: np.ndarray | list[float]) -> np.ndarray:
    """`(4, 4)` camera-to-world matrix from a position and a unit quaternion (x, y, z, w), the
    layout of `geometry_msgs/Pose`. A quaternion more than 1 % off unit length is refused (a
    zero-initialised message, or a wrong field order, would otherwise pass as a valid rotation)."""
    t = np.asarray(position, dtype=np.float64).ravel()
    q = np.asarray(quaternion_xyzw, dtype=np.float64).ravel()
    if t.size != 3 or q.size != 4 or not (np.isfinite(t).all() and np.isfinite(q).all()):
        raise InputError("a pose needs a finite position (3) and quaternion (4)")
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > 0.01:
        raise InputError(f"pose orientation is not a unit quaternion (norm {norm:.3g})")
    x, y, z, w = q / norm
    out = np.eye(4)
    out[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    out[:3, 3] = t
    return out


def pose_from_msg(msg: Any) -> np.ndarray:
    """`(4, 4)` camera-to-world matrix of a `geometry_msgs/PoseStamped`, from rclpy or rosbags alike
    (both carry `pose.position.{x,y,z}` and `pose.orientation.{x,y,z,w}`)."""
    p, q = msg.pose.position, msg.pose.orientation
    return pose_matrix([p.x, p.y, p.z], [q.x, q.y, q.z, q.w])


def quaternion_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) of a `(3, 3)` rotation matrix (the inverse of `pose_matrix`'s
    rotation), from the largest of its four components for numerical safety."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i], q[j], q[k] = 0.25 * s, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
    return np.asarray(q) / np.linalg.norm(q)


def interpolate_pose(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """The camera-to-world pose `fraction` (0..1) of the way from `a` to `b`: positions linearly,
    orientations along the shorter great arc (slerp)."""
    qa, qb = quaternion_from_matrix(a[:3, :3]), quaternion_from_matrix(b[:3, :3])
    if float(qa @ qb) < 0.0:
        qb = -qb  # q and -q are one rotation: take the short way round
    angle = float(np.arccos(np.clip(qa @ qb, -1.0, 1.0)))
    weights = (1 - fraction, fraction) if angle < 1e-9 else (np.sin((1 - fraction) * angle), np.sin(fraction * angle))
    q = weights[0] * qa + weights[1] * qb
    return pose_matrix((1 - fraction) * a[:3, 3] + fraction * b[:3, 3], q / np.linalg.norm(q))


class PoseBuffer:
    """Recent camera poses by stamp, and the pose at an image's stamp.

    Odometry rarely shares the camera's clock ticks (it often runs at 100-400 Hz, or lags the image
    by its processing time), and at 1 m/s a pose 30 ms off puts the camera 3 cm off, which is most of
    a triangulation's baseline. So the pose at an image stamp is interpolated between the poses around
    it (`interpolate_pose`); only when the image is outside the poses' time span is the nearest one
    used, if it is within `slop_ns`.

    Args:
        slop_ns: largest distance to the nearest pose when the stamp is not bracketed.
        max_gap_ns: bracketing poses further apart than this are not interpolated between.
        capacity: poses kept (oldest dropped).
    """

    def __init__(self, slop_ns: int, max_gap_ns: int = 500_000_000, capacity: int = 512) -> None:
        self.slop_ns, self.max_gap_ns, self.capacity = int(slop_ns), int(max_gap_ns), int(capacity)
        self._stamps: list[int] = []
        self._poses: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._stamps)

    def clear(self) -> None:
        self._stamps, self._poses = [], []

    def add(self, stamp_ns: int, camera_to_world: np.ndarray) -> None:
        """Store one pose (any order; a repeated stamp replaces the earlier pose). A binary search of the list, not
        `np.searchsorted`, which copies the whole list into an array on every call: `vdepth-flicker --pose-topic`
        holds every pose of the recording, and adding them took time quadratic in their number (20000: 9 s)."""
        i = bisect.bisect_left(self._stamps, int(stamp_ns))
        if i < len(self._stamps) and self._stamps[i] == stamp_ns:
            self._poses[i] = camera_to_world
        else:
            self._stamps.insert(i, int(stamp_ns))
            self._poses.insert(i, camera_to_world)
        if len(self._stamps) > self.capacity:
            del self._stamps[0], self._poses[0]

    def covers(self, stamp_ns: int) -> bool:
        """A pose at or after `stamp_ns` is stored (waiting longer cannot improve `at`)."""
        return bool(self._stamps) and self._stamps[-1] >= stamp_ns

    def at(self, stamp_ns: int) -> np.ndarray | None:
        """The pose at `stamp_ns`, or None when no pose is close enough (class docstring)."""
        if not self._stamps:
            return None
        i = bisect.bisect_left(self._stamps, stamp_ns)  # (not np.searchsorted: `add`)
        if i < len(self._stamps) and self._stamps[i] == stamp_ns:
            return self._poses[i]
        if 0 < i < len(self._stamps) and self._stamps[i] - self._stamps[i - 1] <= self.max_gap_ns:
            t0, t1 = self._stamps[i - 1], self._stamps[i]
            return interpolate_pose(self._poses[i - 1], self._poses[i], (stamp_ns - t0) / (t1 - t0))
        near = min((j for j in (i - 1, i) if 0 <= j < len(self._stamps)), key=lambda j: abs(self._stamps[j] - stamp_ns))
        return self._poses[near] if abs(self._stamps[near] - stamp_ns) <= self.slop_ns else None


@dataclass(frozen=True)
class TriangulationOptions:
    """Tracking and triangulation thresholds (see the module docstring)."""

    max_points: int = 500
    history: int = 24  # frames a track is triangulated over; 24 rather than 12 on the dev data (model card)
    min_views: int = 3
    min_parallax_deg: float = 2.0
    max_reproj_px: float = 1.5
    max_fb_error: float = 1.0
    min_distance_px: int = 8
    quality: float = 0.01
    klt_window: int = 21
    klt_levels: int = 3
    track_width: int = 480  # wider images are tracked on a copy this wide (cost; see PoseTriangulator)


class PoseTriangulator:
    """Causal sparse depth from tracked points and known camera poses (module docstring).

    Corners are found and tracked on a copy of the image at most `track_width` pixels wide (the
    distances and windows of the options are in its pixels); triangulation and the reprojection
    test use full-resolution coordinates. Why: tracking at 640x480 made the node fall behind at
    30 Hz on 2 cores (`benchmarks/node_latency.py --camera-poses`); at 480 it keeps up, and on
    HoloLens (540 wide) the points stay as accurate (3.3 % median error instead of 3.0 %), while a
    320-wide copy lost half the points and accuracy (4.2 %).

    Args:
        options: thresholds; the defaults were checked on 240-640 px wide video at ~30 Hz
            (`benchmarks/triangulation_accuracy.py`).
    """

    def __init__(self, options: TriangulationOptions | None = None) -> None:
        self.options = options or TriangulationOptions()
        if self.options.min_views < 2 or self.options.history < self.options.min_views:
            raise InputError("triangulation needs 2 <= min_views <= history")
        self.reset()

    def reset(self) -> None:
        """Forget all tracks (a stream restart, a pose gap or a new resolution)."""
        h = self.options.history
        self._gray: np.ndarray | None = None
        self._uv = np.zeros((0, h, 2))  # per track, its pixel in each of the last `history` frames (NaN: not seen)
        self._w2c = np.tile(np.eye(4), (h, 1, 1))  # world -> camera of those frames (oldest first)
        self._K: np.ndarray | None = None
        self._shape: tuple[int, ...] | None = None
        self._to_full = (1.0, 1.0)  # tracking pixels -> image pixels (x, y)

    @property
    def num_tracks(self) -> int:
        return int(self._uv.shape[0])

    def push(self, rgb: np.ndarray, camera_to_world: np.ndarray | None, intrinsics: np.ndarray | None) -> np.ndarray:
        """Track into one frame and triangulate.

        Args:
            rgb: `(H, W, 3)` uint8 RGB (or `(H, W)` grey).
            camera_to_world: `(4, 4)` pose of the camera's optical frame, metres; None when the
                frame has none.
            intrinsics: `(3, 3)` pinhole matrix at this image's resolution; None when unknown.

        Returns:
            `(H, W)` float32 depth in metres at the triangulated points, NaN elsewhere.

        Raises:
            InputError: no pose or intrinsics for this frame, or invalid ones. Such a frame breaks
                the chain of views, so the tracks restart before the error is raised.
        """
        try:
            pose, K = self._checked(camera_to_world, intrinsics)
        except InputError:
            self.reset()
            raise
        h, w = rgb.shape[:2]
        if self._gray is not None and ((h, w) != self._shape or self._K is None or not np.allclose(K, self._K)):
            self.reset()  # another camera or resolution: old tracks mean nothing here
        gray = grey_at_most(rgb, int(self.options.track_width))
        self._to_full = (w / gray.shape[1], h / gray.shape[0])
        self._track(gray)
        self._w2c = np.concatenate([self._w2c[1:], np.linalg.inv(pose)[None]])
        self._detect(gray)
        self._gray, self._K, self._shape = gray, K, (h, w)
        depth = np.full((h, w), np.nan, np.float32)
        uv, z = self._triangulate(K)
        if z.size:
            col = np.clip(np.rint(uv[:, 0]).astype(int), 0, w - 1)
            row = np.clip(np.rint(uv[:, 1]).astype(int), 0, h - 1)
            depth[row, col] = z
        return depth

    @staticmethod
    def _checked(camera_to_world: np.ndarray | None, intrinsics: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if camera_to_world is None:
            raise InputError("no camera pose for this frame")
        if intrinsics is None:
            raise InputError("no intrinsics (camera_info) for this frame")
        pose = np.asarray(camera_to_world, dtype=np.float64)
        K = np.asarray(intrinsics, dtype=np.float64)
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise InputError(f"camera pose must be a finite 4x4 matrix, got shape {pose.shape}")
        if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise InputError("intrinsics must be a 3x3 pinhole matrix with positive focal lengths")
        return pose, K

    # -- tracking ------------------------------------------------------------------------------
    def _track(self, gray: np.ndarray) -> None:
        o = self.options
        self._uv = np.concatenate([self._uv[:, 1:], np.full((self.num_tracks, 1, 2), np.nan)], axis=1)
        if self._gray is None or self.num_tracks == 0:
            self._uv = self._uv[:0]
            return
        p0 = self._uv[:, -2].astype(np.float32).reshape(-1, 1, 2)
        klt = {"winSize": (o.klt_window, o.klt_window), "maxLevel": o.klt_levels}
        p1, ok1, _ = cv2.calcOpticalFlowPyrLK(self._gray, gray, p0, None, **klt)
        back, ok2, _ = cv2.calcOpticalFlowPyrLK(gray, self._gray, p1, None, **klt)
        p1, back = p1.reshape(-1, 2), back.reshape(-1, 2)
        h, w = gray.shape
        keep = (
            (ok1.ravel() == 1)
            & (ok2.ravel() == 1)
            & (np.linalg.norm(back - p0.reshape(-1, 2), axis=1) < o.max_fb_error)
            & (p1[:, 0] >= 0)
            & (p1[:, 0] <= w - 1)
            & (p1[:, 1] >= 0)
            & (p1[:, 1] <= h - 1)
        )
        self._uv[:, -1] = p1
        self._uv = self._uv[keep]
        # a track not seen in the whole history has nothing left to triangulate with
        self._uv = self._uv[np.isfinite(self._uv[:, :, 0]).any(axis=1)]

    def _detect(self, gray: np.ndarray) -> None:
        o = self.options
        room = o.max_points - self.num_tracks
        if room <= 0:
            return
        mask = np.full(gray.shape, 255, np.uint8)
        for u, v in self._uv[:, -1]:
            cv2.circle(mask, (round(u), round(v)), o.min_distance_px, 0, -1)
        new = cv2.goodFeaturesToTrack(gray, room, o.quality, o.min_distance_px, mask=mask)
        if new is None:
            return
        fresh = np.full((len(new), o.history, 2), np.nan)
        fresh[:, -1] = new.reshape(-1, 2)
        self._uv = np.concatenate([self._uv, fresh])

    # -- triangulation -------------------------------------------------------------------------
    def _triangulate(self, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Current pixels and depths of the tracks that triangulate well."""
        o = self.options
        seen = np.isfinite(self._uv[:, :, 0])  # (N, L)
        use = seen.sum(axis=1) >= o.min_views
        if not use.any():
            return np.zeros((0, 2)), np.zeros(0, np.float32)
        uv, seen = self._uv[use], seen[use]
        sx, sy = self._to_full
        uv = (uv + 0.5) * np.array([sx, sy]) - 0.5  # pixel centres of the tracking copy -> the image's
        # normalised image coordinates, and a world frame centred on the cameras and scaled by their
        # spread (Hartley's normalisation): the DLT is then well conditioned, and its result does not
        # depend on the unit or origin of the poses (metres in, metres out)
        xy = (np.nan_to_num(uv) - K[:2, 2]) / np.array([K[0, 0], K[1, 1]])
        P = self._w2c[:, :3, :]  # (L, 3, 4)
        R = P[:, :, :3]
        centres = -np.einsum("lji,lj->li", R, P[:, :, 3])  # camera centres in the world
        used = seen.any(axis=0)
        mid = centres[used].mean(axis=0)
        spread = float(np.linalg.norm(centres[used] - mid, axis=1).mean())
        if spread <= 0.0:
            return np.zeros((0, 2)), np.zeros(0, np.float32)  # one viewpoint: no parallax at all
        Pn = np.concatenate([R, ((np.einsum("lij,j->li", R, mid) + P[:, :, 3]) / spread)[:, :, None]], axis=2)
        rows_x = xy[:, :, 0, None] * Pn[None, :, 2] - Pn[None, :, 0]  # (N, L, 4)
        rows_y = xy[:, :, 1, None] * Pn[None, :, 2] - Pn[None, :, 1]
        A = np.concatenate([rows_x, rows_y], axis=1) * np.concatenate([seen, seen], axis=1)[..., None]
        # the DLT solution: the eigenvector of A^T A with the smallest eigenvalue (A's last right
        # singular vector; the 4x4 eigenproblem is several times cheaper than an SVD of A)
        Y = np.linalg.eigh(np.einsum("nri,nrj->nij", A, A))[1][:, :, 0]  # (N, 4) homogeneous, normalised world
        good = np.abs(Y[:, 3]) > 1e-12
        X = mid + spread * Y[:, :3] / np.where(good, Y[:, 3], 1.0)[:, None]
        # every view: in front of the camera and reprojecting within the threshold
        cam = np.einsum("lij,nj->nli", R, X) + P[None, :, :, 3]  # (N, L, 3)
        z = cam[:, :, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            proj = cam[:, :, :2] / z[..., None] * np.array([K[0, 0], K[1, 1]]) + K[:2, 2]
        err = np.linalg.norm(proj - np.nan_to_num(uv), axis=2)
        good &= np.all(~seen | ((z > 0) & (err <= o.max_reproj_px)), axis=1)
        # parallax: the angle at the point between the oldest and the newest view's rays
        first = np.argmax(seen, axis=1)
        r_old = centres[first] - X
        r_new = centres[-1] - X
        norms = np.linalg.norm(r_old, axis=1) * np.linalg.norm(r_new, axis=1)
        cos = np.where(norms > 1e-12 * spread**2, np.sum(r_old * r_new, axis=1) / np.maximum(norms, 1e-300), 1.0)
        good &= cos <= np.cos(np.radians(o.min_parallax_deg))
        good &= seen[:, -1]  # seen now (always true for a surviving track)
        return uv[good, -1], z[good, -1].astype(np.float32)


__all__ = [
    "PoseBuffer",
    "PoseTriangulator",
    "TriangulationOptions",
    "interpolate_pose",
    "pose_from_msg",
    "pose_matrix",
    "quaternion_from_matrix",
]
