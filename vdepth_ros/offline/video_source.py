"""Frame sources for `vdepth-video`: a video file or a folder of images, streamed one decoded
frame at a time (memory bounded by the pipeline window, not by the clip length), and which files of
a folder are images (`is_image_file`, also training's rule for image folders)."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from vdepth_ros.encodings import read_image_file, to_8bit
from vdepth_ros.inputs.decode import TIFF_MAGICS, SampleBitDepth, compressed_size
from vdepth_ros.offline.errors import OfflineError, VideoReadError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from vdepth_ros.pipeline import FrameInput
    from vdepth_ros.stream.cloud import CameraModel

log = logging.getLogger(__name__)

#: the image files of a folder, for `vdepth-video` and training's image folders alike (`is_image_file`)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: a frame's problems, each warned once (`VideoFrameSource._drop`)
_UNDECODABLE, _OTHER_SIZE = "that cannot be decoded", "of another size"
#: sizes of dropped frames the summary names (`VideoFrameSource._other_sizes_text`)
LISTED_SIZES = 3
#: images of a folder decoded at open to find the size most of them have (`VideoFrameSource._pick_size`)
SIZE_SAMPLES = 32

#: A number in a file name: a time in seconds with a fraction (`1700000000.1333334`, as Python's
#: `str(time.time())` names frames; 9+ digits before the point) or a whole number.
_NAME_NUMBER = re.compile(r"(\d{9,}\.\d+|\d+)")


def _natural_key(path: Path) -> list[Any]:
    """Sort key of a frame's file name: its numbers by value (`2.png` before `10.png`, and a time
    `1700000000.1` before `1700000000.1333334`, whose fractions differ in length), the rest by text."""
    parts = _NAME_NUMBER.split(path.name)
    return [Decimal(tok) if i % 2 else tok.lower() for i, tok in enumerate(parts)]


@dataclass(frozen=True)
class VideoFrameMeta:
    """`FrameInput.meta` of a video frame: its index in the input and where it came from."""

    index: int
    source: str


def is_image_file(path: Path) -> bool:
    """Whether a folder's file is an image to read: one of `IMAGE_SUFFIXES` (any case), not hidden
    (macOS's "._name.png" beside each image on a USB stick or share is no image)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _mp4_without_index(path: Path) -> bool:
    """Whether `path` is an MP4/MOV file (its top-level boxes start with 'ftyp') without the 'moov' box that
    indexes its frames: FFmpeg says only "moov atom not found" in the log, and OpenCV cannot open it."""
    types: list[bytes] = []
    try:
        with path.open("rb") as f:
            end, at = path.stat().st_size, 0
            while at + 8 <= end and len(types) < 1000:
                f.seek(at)
                head = f.read(16)
                size, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if size == 1 and len(head) == 16:
                    size = int.from_bytes(head[8:16], "big")
                elif size == 0:  # to the end of the file
                    size = end - at
                types.append(kind)
                if size < 8:
                    break
                at += size
    except OSError:
        return False
    return bool(types) and types[0] == b"ftyp" and b"moov" not in types


def _header_size(path: Path) -> tuple[int, int] | None:
    """`(width, height)` of a PNG, JPEG or TIFF file by its header (`inputs.decode.compressed_size`), or None; a
    JPEG's as OpenCV decodes it, turned by its EXIF orientation (a phone's photos: all dropped as another size
    before). A TIFF is read whole: its header (IFD) may follow the pixels, as libtiff writes it."""
    try:
        with path.open("rb") as f:
            head = f.read(65536)
            return compressed_size(head + f.read() if head[:4] in TIFF_MAGICS else head, oriented=True)
    except OSError:
        return None


class VideoFrameSource:
    """RGB frames from a video file (`.mp4`, `.mov`, ...) or a folder of images (natural sort order).

    Args:
        path: the video file or image folder.
        fps: frame rate for stamps; default: the video's own (30 for image folders or when unknown).
        camera: intrinsics at the input resolution attached to every frame (None: no clouds).
        max_frames: stop after this many frames (None: all).
        image_bit_depth: significant bits of 16-bit image files (PNG, TIFF), 0 = auto (the node's
            parameter, `inputs.assembly.SampleBitDepth`).

    Raises (on `open`):
        FileNotFoundError, VideoReadError.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float | None = None,
        camera: CameraModel | None = None,
        max_frames: int | None = None,
        image_bit_depth: int = 0,
    ) -> None:
        self.path = Path(path)
        self.requested_fps = fps
        self.camera = camera
        self.max_frames = max_frames
        self.fps = float(fps or 30.0)
        self.frame_count: int | None = None
        self.declared_frames: int | None = None  # a video file's frame count by its header (an estimate for some)
        self.size: tuple[int, int] | None = None  # (width, height)
        self.dropped = 0
        self.drop_reasons: dict[str, int] = {}  # kind of problem -> frames dropped for it (`drop_notes`)
        self.other_sizes: dict[str, int] = {}  # "WxH" -> frames of that size dropped (`drop_notes`)
        self.first_frame = ""  # the name of the first image of the clip's size (an image folder)
        self.frames_read = 0
        self._cap: Any = None
        self._files: list[Path] = []
        self._bit_depth = SampleBitDepth(image_bit_depth)  # 16-bit image files, as the node reads 16-bit images

    def open(self) -> VideoFrameSource:
        if not self.path.exists():
            raise FileNotFoundError(f"input {self.path} does not exist")
        if self.path.is_dir():
            self._files = sorted(
                (p for p in self.path.iterdir() if is_image_file(p)),
                key=_natural_key,
            )
            if not self._files:
                heic = sum(p.suffix.lower() in (".heic", ".heif") for p in self.path.iterdir())
                hint = (
                    f"; its {heic} HEIC/HEIF photos (an iPhone's) OpenCV cannot decode: convert them to JPEG (e.g. "
                    "heif-convert, or the phone's 'Most Compatible' camera format) or take a video"
                    if heic
                    else ""
                )
                raise VideoReadError(f"folder {self.path} holds no images ({', '.join(IMAGE_SUFFIXES)}){hint}")
            self.frame_count = len(self._files)
            self._pick_size()
        else:
            cap = cv2.VideoCapture(str(self.path))
            if not cap.isOpened():
                why = "OpenCV/FFmpeg could not read it"
                if _mp4_without_index(self.path):
                    why = (
                        "it has no index (no 'moov' box): a recording stopped before the camera, phone or "
                        "ffmpeg finalized the file, or a copy cut short; recover the frames with a tool such as "
                        "untrunc (given a good clip of the same camera), or copy the file again"
                    )
                raise VideoReadError(f"cannot open video {self.path}: {why}")
            self._cap = cap
            native = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            if self.requested_fps is None and native > 0:
                self.fps = native
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            self.frame_count = self.declared_frames = count if count > 0 else None
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            self.size = (w, h) if w > 0 and h > 0 else None
        if self.max_frames is not None and self.frame_count is not None:
            self.frame_count = min(self.frame_count, self.max_frames)
        return self

    def _pick_size(self) -> None:
        """An image folder's size: the one most images have, among up to `SIZE_SAMPLES` spread over the
        folder (all of a smaller one), ties to the earliest. Frames of other sizes are dropped: with the
        first image's size, one thumbnail or stray file sorting first dropped every real frame."""
        files = self._files
        picks = sorted({round(i * (len(files) - 1) / (SIZE_SAMPLES - 1)) for i in range(SIZE_SAMPLES)})
        sample = files if len(files) <= SIZE_SAMPLES else [files[i] for i in picks]
        counts: dict[tuple[int, int], int] = {}
        first: dict[tuple[int, int], str] = {}
        for p in sample:
            size = _header_size(p)  # (a corrupt header claiming gigapixels is not decoded to learn it)
            if size is None and (img := read_image_file(p, cv2.IMREAD_COLOR)) is not None:
                size = (img.shape[1], img.shape[0])
            if size is not None:
                counts[size] = counts.get(size, 0) + 1
                first.setdefault(size, p.name)
        if not counts and len(sample) < len(files):  # the sample did not decode: the first image that does
            img_of = ((p, img) for p in files if (img := read_image_file(p, cv2.IMREAD_COLOR)) is not None)
            if (found := next(img_of, None)) is not None:
                counts[(found[1].shape[1], found[1].shape[0])] = 1
                first[(found[1].shape[1], found[1].shape[0])] = found[0].name
        if not counts:
            raise VideoReadError(f"folder {self.path}: none of its {len(files)} image files can be decoded")
        self.size = max(counts, key=lambda size: counts[size])  # max keeps the first of equal counts
        self.first_frame = first[self.size]

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def __enter__(self) -> VideoFrameSource:
        return self.open()

    def __exit__(self, *exc: object) -> bool:
        self.close()
        return False

    def _raw(self) -> Iterator[tuple[np.ndarray | None, str, float | None]]:
        """(RGB or None, name, the video's own presentation time in ms or None) per input frame."""
        if self._files:
            for p in self._files:
                claimed = _header_size(p)
                if claimed is not None and self.size is not None and claimed != self.size:
                    # another size by its header: dropped as such without decoding it (a corrupt PNG/JPEG header
                    # can claim gigapixels: GBs decoded); a view of one zero byte carries the size
                    yield np.broadcast_to(np.uint8(0), (claimed[1], claimed[0], 3)), p.name, None
                    continue
                img = self._read_image(p)
                yield (None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)), p.name, None
            return
        if self._cap is None:
            raise OfflineError("VideoFrameSource is not open")
        i = 0
        while True:
            ok, img = self._cap.read()
            if not ok:
                return
            yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB), f"{self.path.name}#{i}", self._cap.get(cv2.CAP_PROP_POS_MSEC)
            i += 1

    def _read_image(self, path: Path) -> np.ndarray | None:
        """BGR uint8 of an image file, None if it does not decode (a JPEG cut short too: `read_image_file`).
        A 16-bit one (PNG, TIFF) is read with its significant bits (`inputs.assembly.SampleBitDepth`, auto,
        each choice logged), not its top 8: a 12-bit camera's frames saved as 16-bit PNGs were almost black
        (`image_bit_depth`, 0 = auto)."""
        img = read_image_file(path, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
        if img is not None and img.dtype == np.uint16:
            img = to_8bit(img, self._bit_depth.bits_for(img, "bgr16", "16-bit image"))
            if self._bit_depth.note:
                log.info("%s", self._bit_depth.note)
                self._bit_depth.note = None
        elif img is not None and img.dtype != np.uint8:  # float (EXR, float TIFF): as OpenCV reads it to 8 bits
            img = read_image_file(path, cv2.IMREAD_COLOR)
        return img

    def _stamps(self) -> Iterator[tuple[int, np.ndarray | None, str, int]]:
        """(index, RGB or None, name, stamp ns) per input frame: a video's own frame times unless `fps`
        was given (variable frame rate clips, e.g. phone videos, are not `index / fps`), else `index /
        fps`; a time that does not increase is replaced by the previous one plus a frame period."""
        previous: int | None = None
        for index, (rgb, name, msec) in enumerate(self._raw()):
            stamp = round(index * 1e9 / self.fps)
            if self.requested_fps is None and msec is not None and math.isfinite(msec) and msec >= 0:
                stamp = round(msec * 1e6)
            if previous is not None and stamp <= previous:
                stamp = previous + round(1e9 / self.fps)
            previous = stamp
            yield index, rgb, name, stamp

    def frames(self) -> Iterator[FrameInput]:
        """`FrameInput`s stamped with the video's frame times (`index / fps` for image folders or with
        `fps` given); undecodable or differently sized images are dropped (counted)."""
        from vdepth_ros.pipeline import FrameInput

        n = 0
        for index, rgb, name, stamp in self._stamps():
            if self.max_frames is not None and n >= self.max_frames:
                return
            if rgb is None or (self.size is not None and (rgb.shape[1], rgb.shape[0]) != self.size):
                self._drop(name, None if rgb is None else f"{rgb.shape[1]}x{rgb.shape[0]}")
                continue
            n += 1
            self.frames_read = n
            yield FrameInput(
                rgb=rgb,
                stamp_ns=stamp,
                camera=self.camera,
                meta=VideoFrameMeta(index=index, source=name),
            )
        if n == 0:
            raise VideoReadError(f"{self.path}: no decodable frames")

    def _drop(self, name: str, size: str | None) -> None:
        """Count a frame that cannot be used: undecodable (`size` None), or of another size (`size`,
        "WxH") than the clip's. Warned once per kind of problem: a folder of mixed sizes printed one
        line per image, and then one per size (hundreds for a folder of resized crops)."""
        self.dropped += 1
        why = _UNDECODABLE if size is None else _OTHER_SIZE
        self.drop_reasons[why] = self.drop_reasons.get(why, 0) + 1
        if size is not None:
            self.other_sizes[size] = self.other_sizes.get(size, 0) + 1
        if self.drop_reasons[why] == 1:
            what = "cannot be decoded" if size is None else f"is {size}, not {self._size_text()}"
            log.warning(
                "dropping %s: it %s (further frames %s are counted, not logged; the summary has the count)",
                name,
                what,
                why,
            )

    def _size_text(self) -> str:
        w, h = self.size or (0, 0)
        return f"{w}x{h}" + (
            f" as most of the folder's images (the first: {self.first_frame})"
            if self.first_frame
            else " as the first frame"
        )

    def drop_notes(self, read_to_end: bool = True) -> list[str]:
        """The summary's lines for the frames dropped, one per reason, and for a video file that ended
        well before the frame count its header declares (cut short: a copy or a recording interrupted;
        not when the reading was stopped early, `read_to_end` false, e.g. by Ctrl-C)."""
        notes = []
        declared, seen = self.declared_frames, self.frames_read + self.dropped
        if declared and read_to_end and self.max_frames is None and seen < 0.95 * declared - 1:
            notes.append(
                f"{self.path.name} ended after {seen} of the {declared} frames its header declares: is the file "
                "cut short (a copy or a recording interrupted)? Only the frames before the cut were read"
            )
        for why, count in self.drop_reasons.items():
            if why == _UNDECODABLE:
                notes.append(f"dropped {count} frame(s) {why}")
            else:
                notes.append(
                    f"dropped {count} frame(s) of {self._other_sizes_text()}, not {self._size_text()} (a clip has "
                    "one size: resize them, or give the frames of each size as their own folder)"
                )
        return notes

    def _other_sizes_text(self) -> str:
        """The sizes of the frames dropped for their size, the commonest first, at most
        `LISTED_SIZES` of them ("64x48 (4), 128x96 (1)"; one size alone without its count)."""
        sizes = sorted(self.other_sizes.items(), key=lambda item: -item[1])
        if len(sizes) == 1:
            return sizes[0][0]
        text = ", ".join(f"{size} ({n})" for size, n in sizes[:LISTED_SIZES])
        more = len(sizes) - LISTED_SIZES
        return f"other sizes: {text}" + (f" and {more} more sizes" if more > 0 else "")
