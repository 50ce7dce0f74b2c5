"""Approximate-time pairing of images with camera_info (no message_filters in pip ROS).

Images drive the output: every image is emitted exactly once, with its own camera_info: the one of
the same stamp, else the nearest within `slop`. An image waits while a better one can still arrive:
camera_info comes in stamp order at its own rate, so until one stamped at or after the image has
come, the next is due one camera_info period after the last (a camera at 50-100 Hz publishing each
camera_info just after its image has the previous frame's within `slop`, for another image size
after a reconfiguration). At a change of image size the camera_infos of that size are preferred,
and one of the old size is taken only when none of the new can come in time. When camera_info has
stopped arriving (none newer than `info_timeout` before the image) the image gets the last one
received (cached, like Isaac ROS's `cache_camera_info`), and it does not wait when camera_info
comes slower than the images and the next one is not due until after it. Every wait is bounded by
`queue_size` pending images and by `info_timeout` of image time.

When camera_info keeps arriving but none is stamped within `slop` of an image (stamped 0, by another
clock, a constant offset, a publisher of its own stamping as it publishes), every image gets the last
one received, without waiting for one that would pair (a camera_info stamped 0.5 s before its image
held every image 0.5 s); `unpaired` says so, with the stamps' offset, for one message naming the cause.
A camera_info stamped as a recent image again ends it.

The class is plain Python over integer nanosecond stamps, so it is unit-tested without ROS and
is not thread-safe (the node calls it under its own lock).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from itertools import islice, pairwise
from statistics import median_low
from typing import Any, Generic, Literal, TypeVar

I = TypeVar("I")  # image payload
C = TypeVar("C")  # camera_info payload

InfoSource = Literal["synced", "cached", "none"]


def stamp_to_ns(stamp: Any) -> int:
    """A message's `builtin_interfaces/Time` (rclpy's or rosbags', duck-typed on `sec`/`nanosec`) in
    integer nanoseconds: the stamps this package pairs and orders, for the node and the bag tools."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


#: An image stamped at most this much before the previous image is out of order, not a new timeline:
#: a driver whose clock steps back a little (a camera's hardware time mapped to ROS time, known to go
#: back by a few ms), or frames stamped in another order than they are sent. It is dropped and the
#: stream goes on; further back is a bag loop or a clock reset, which restarts it.
OUT_OF_ORDER_NS = 50_000_000

#: Why an image whose stamp repeats the previous image's, or lies up to `OUT_OF_ORDER_NS` before it,
#: is dropped (`ApproximateTimeSync.admit_image`).
REPEATED_STAMP = (
    "its stamp repeats the previous image's, or lies up to 0.05 s before it: each frame needs its own capture "
    "time, later than the one before (is the camera driver stamping its images? does its clock step back?)"
)

#: Why images stamped 0 are dropped: their publisher never set `header.stamp` (the default of a new
#: message, and of cv_bridge's cv2_to_imgmsg), so every image after the first repeats the stamp; one such
#: image amid stamped ones (a driver's glitch) is dropped too, not taken for a clock reset.
UNSET_STAMP = (
    "its header.stamp is not set (0; or set from a clock still at 0: a publisher with use_sim_time and no /clock), "
    "so every image after the first repeats it: have the publisher stamp each image with its capture time (rclpy: "
    "msg.header.stamp = node.get_clock().now().to_msg(); cv_bridge's cv2_to_imgmsg leaves it 0), and its "
    "camera_info with the same stamp"
)


class InputRate:
    """`max_input_rate`: which images a stream takes, by their stamps, when the camera is faster than
    inference (a 60-120 Hz camera): every n-th image, evenly spaced, at most `max_rate_hz`. An image
    is taken once its stamp is `1 / max_rate_hz` after the last one taken, less a slack for stamp
    jitter: a quarter of the camera's frame step (the median of its last steps), at most a tenth of
    that period (a 60 Hz camera at 20 Hz gives every third image, at 30 every second, a 120 Hz one at
    10 every twelfth). Without it the input queue fills and drops its oldest frames: about
    `queue_size` frames of latency, and windows of consecutive frames with jumps between them. The
    live node and `vdepth-bag` take the same images (a stamp going back starts over); 0 takes every image.
    """

    def __init__(self, max_rate_hz: float) -> None:
        self.period_ns = round(1e9 / max_rate_hz) if max_rate_hz > 0 else 0
        self._last_ns: int | None = None  # the last image taken
        self._previous_ns: int | None = None  # the last image seen
        self._steps: deque[int] = deque(maxlen=9)  # the camera's last frame steps

    def take(self, stamp_ns: int) -> bool:
        """Whether the image stamped `stamp_ns` (admitted: `ApproximateTimeSync.admit_image`) is taken."""
        if not self.period_ns:
            return True
        stamp_ns = int(stamp_ns)
        if self._previous_ns is not None and stamp_ns > self._previous_ns:
            self._steps.append(stamp_ns - self._previous_ns)
        self._previous_ns = stamp_ns
        if self._last_ns is not None and 0 <= stamp_ns - self._last_ns < self.period_ns - self._slack_ns():
            return False
        self._last_ns = stamp_ns
        return True

    def _slack_ns(self) -> int:
        step = median_low(self._steps) if self._steps else 0
        return min(self.period_ns // 10, step // 4)

    def reset(self) -> None:
        """A new stream: its first image is taken."""
        self._last_ns = self._previous_ns = None
        self._steps.clear()


#: Camera_infos (and images given the cached one) since an image was last paired by its stamp before
#: the pairing is no longer by stamp (`ApproximateTimeSync.unpaired`): more than a lost camera_info or
#: two, fewer than a 1 Hz camera_info's images (a throttled one keeps its image's stamp and pairs).
UNPAIRED_AFTER = 5

#: Camera_infos whose arrival with an image tells their stamps' offset from it (`ApproximateTimeSync.stamp_offset`).
OFFSET_SAMPLES = 16

#: A camera_info stamped further than this from the images is on another clock.
OTHER_CLOCK_NS = 1_000_000_000


@dataclass
class Unpaired:
    """Camera_infos that arrived since an image was last paired with one by its stamp."""

    infos: int  # how many arrived
    images: int  # the images given the last one received meanwhile
    offsets_ns: list[int]  # each one's stamp less the nearest image stamp (the last `INFO_BUFFER`)
    zero: bool  # all stamped 0
    image_step_ns: int | None  # the images' frame step (median), if known
    #: the constant offset of each camera_info's stamp from the image that arrived with it (`ApproximateTimeSync.
    #: stamp_offset`): the real offset where it is over half a frame, which the nearest image's hides
    arrival_offset_ns: int | None = None

    def cause(self, slop_ns: int) -> tuple[str, str]:
        """`(kind, text)`: why these camera_infos pair with no image by stamp, and the fix for it."""
        fix = "have the driver stamp each camera_info with its image's header.stamp (image_transport's CameraPublisher)"
        if self.zero:
            return "zero", f"camera_info's header.stamp is 0 (not set by its publisher): {fix}"
        offsets = sorted(self.offsets_ns)
        if self.arrival_offset_ns is not None:  # (each by the image it came with, not the nearest by stamp)
            offsets = [self.arrival_offset_ns]
        mid = median_low(offsets)
        side = "after" if offsets[0] > 0 else "before" if offsets[-1] < 0 else "off"
        side += " the nearest image" if side != "off" else " the nearest images (before one, after another)"
        if abs(mid) > OTHER_CLOCK_NS:
            later = "after" if mid > 0 else "before"
            return "clock", (
                f"camera_info is stamped {abs(mid) / 1e9:.0f} s {later} the images, by another clock (one publisher "
                f"on sim time and the other on system time, or a camera's own device clock): {fix}, both by one clock"
            )
        sizes = sorted(abs(o) for o in offsets)
        if sizes[-1] - sizes[0] <= slop_ns // 2:  # (half a frame off: before one image and after the one before)
            step, slop = self.image_step_ns, sizes[-1] + slop_ns // 2
            # (not a slop of half the frame step or more: it would pair another frame's camera_info)
            wider = f", or raise sync_slop to {slop / 1e9:.3g}" if step is None or slop < step / 2 else ""
            frames = f" ({abs(mid) / step:.1f} frames)" if step and abs(mid) >= step / 2 else ""
            return "offset", f"camera_info is stamped a constant {abs(mid) / 1e6:.0f} ms{frames} {side}: {fix}{wider}"
        return "apart", (
            f"camera_info is stamped {offsets[0] / 1e9:+.3f} to {offsets[-1] / 1e9:+.3f} s off the nearest image "
            f"(a publisher of its own, stamping as it publishes?): {fix}"
        )


@dataclass
class Pair(Generic[I, C]):
    """One image with the camera_info chosen for it."""

    stamp_ns: int
    image: I
    info: C | None
    source: InfoSource


#: Steps between camera_info stamps whose shortest is its period (`ApproximateTimeSync._info_period`): with 1 in
#: 2 camera_infos lost, and their losses not known, the chance that none of them is one period long is 1 in 65,000.
#: The cost: a camera_info that turns slower (a driver throttled mid-stream) is taken as such only 16 steps later;
#: meanwhile an image between two of them waits for the next, at most `queue_size` images or `info_timeout`.
INFO_STEPS = 16

#: Camera_infos kept to pair with images that arrive after them, at most (those within `info_timeout`
#: of the newest are kept: images of a fast camera can trail their camera_infos by many frames).
INFO_BUFFER = 256

Size = tuple[int, int]  # (width, height) of an image, or of the images a camera_info is for


class ApproximateTimeSync(Generic[I, C]):
    """Pairs each image with its camera_info (module docstring).

    Args:
        slop_ns: largest stamp difference accepted as "the same time".
        queue_size: images held while waiting for their camera_info (oldest emitted first).
        info_timeout_ns: after this much image time without a matching camera_info, the last
            one is reused (cached) and images are emitted without waiting.
    """

    def __init__(self, slop_ns: int, queue_size: int = 10, info_timeout_ns: int = 1_000_000_000) -> None:
        if slop_ns < 0 or queue_size < 1 or info_timeout_ns < 0:
            raise ValueError(f"bad sync settings slop={slop_ns} queue_size={queue_size} timeout={info_timeout_ns}")
        self.slop_ns = int(slop_ns)
        self.queue_size = int(queue_size)
        self.info_timeout_ns = int(info_timeout_ns)
        self._infos: deque[tuple[int, C, Size | None]] = deque(maxlen=INFO_BUFFER)
        self._pending: deque[tuple[int, I, Size | None]] = deque()
        self._released: list[Pair[I, C]] = []  # decided at a time jump (`admit_image`), out with the next image
        self._last_info: C | None = None
        self._last_info_size: Size | None = None
        self._last_info_stamp: int | None = None
        self._first_image_stamp: int | None = None
        self._emitted_size: Size | None = None  # the size of the last image emitted
        self._info_steps: deque[int] = deque(maxlen=INFO_STEPS)  # the last steps between camera_info stamps
        self._images: deque[int] = deque(maxlen=INFO_BUFFER)  # the last image stamps (`unpaired`)
        # the camera_infos since an image was last paired by its stamp (`unpaired`): stamps, and how many
        self._unpaired_infos: deque[int] = deque(maxlen=INFO_BUFFER)
        self._unpaired_count = 0
        self._unpaired_images = 0  # images given the cached camera_info since the last synced pair
        # (arrival, stamp) of the last images and camera_infos, where the caller knows when they arrived
        # (`stamp_offset`: the image a camera_info came with)
        self._image_arrivals: deque[tuple[int, int]] = deque(maxlen=64)
        self._info_arrivals: deque[tuple[int, int]] = deque(maxlen=OFFSET_SAMPLES)
        self.counts = {"synced": 0, "cached": 0, "none": 0}

    # -- inputs ------------------------------------------------------------------------------
    def add_info(
        self, stamp_ns: int, info: C, size: Size | None = None, arrival_ns: int | None = None, lost: int = 0
    ) -> list[Pair[I, C]]:
        """Add a camera_info for images of `size` (None: unknown), that arrived at `arrival_ns` (a steady
        clock; None: unknown), after `lost` camera_infos its publisher sent since the last one that arrived
        never did (DDS sequence numbers; 0: none, or unknown); returns the images it completes."""
        stamp_ns = int(stamp_ns)
        if arrival_ns is not None:
            self._info_arrivals.append((int(arrival_ns), stamp_ns))
        if self._last_info_stamp is not None and stamp_ns > self._last_info_stamp:
            # (a step across lost camera_infos holds as many periods: `_info_period`)
            self._info_steps.append((stamp_ns - self._last_info_stamp) // (1 + max(0, int(lost))))
        self._infos.append((stamp_ns, info, size))
        while len(self._infos) > 2 and self._infos[0][0] < stamp_ns - self.info_timeout_ns:
            self._infos.popleft()
        self._last_info, self._last_info_size, self._last_info_stamp = info, size, stamp_ns
        if any(abs(stamp_ns - s) <= self.slop_ns for s in islice(reversed(self._images), 8)):
            self._forget_unpaired()  # stamped as a recent image (`unpaired`): the stamps pair (again)
        else:
            self._unpaired_infos.append(stamp_ns)
            self._unpaired_count += 1
        return self._release(None)

    def admit_image(self, stamp_ns: int, last_ns: int | None) -> bool:
        """The intake rules for an image stamped `stamp_ns` after the last admitted one, stamped
        `last_ns` (None: the first), shared by the live node and `vdepth-bag` so both take the same
        frames: a stamp going back further than `OUT_OF_ORDER_NS` (a bag loop, a clock reset) forgets
        the camera_infos waiting to pair, whose stamps would mis-pair, but for the camera_infos
        that went back before it (`_new_timeline_infos`), and the images waiting for theirs go with the best
        they had (`flush`), before this one, from the next `add_image`; a repeated stamp, or
        one out of order by less, is not admitted (False, `REPEATED_STAMP`): restarting the stream for
        a driver's clock stepping back a millisecond lost its temporal consistency each time. An image
        stamped 0 after stamped ones (a driver's glitch, `UNSET_STAMP`) is not admitted either: taken for a clock
        reset, one such image restarted the stream twice (back to 0, then a gap of decades forward)."""
        if stamp_ns == 0 and last_ns:
            return False
        if last_ns is not None and stamp_ns < last_ns - OUT_OF_ORDER_NS:
            kept = self._new_timeline_infos(last_ns)
            # the old timeline's images still waiting for a camera_info (theirs lost) go with the best they can have,
            # out with the next `add_image`: cleared, they were lost without a word
            self._released = self.flush()  # (those released before it too)
            self.clear()
            for info_stamp, info, size in kept:
                self.add_info(info_stamp, info, size)
            return True
        return last_ns is None or stamp_ns > last_ns

    def _new_timeline_infos(self, last_ns: int) -> list[tuple[int, C, Size | None]]:
        """The buffered camera_infos of the timeline an image's stamp went back to from `last_ns`: those
        that arrived since the camera_infos' stamps last went back, and are stamped before `last_ns`
        by more than `OUT_OF_ORDER_NS`. A camera publishing each camera_info just before its image sends
        the loop's first one before the image that restarts the stream: forgotten with the old timeline's,
        that image waited a frame and got the old timeline's camera_info. Arrival order, not the stamp,
        tells the timelines apart (a clock reset back a few frames stamps both alike)."""
        infos = list(self._infos)
        starts = [k for k in range(1, len(infos)) if infos[k][0] < infos[k - 1][0] - OUT_OF_ORDER_NS]
        if not starts:
            return []
        return [entry for entry in infos[starts[-1] :] if entry[0] < last_ns - OUT_OF_ORDER_NS]

    def add_image(
        self, stamp_ns: int, image: I, size: Size | None = None, arrival_ns: int | None = None
    ) -> list[Pair[I, C]]:
        """Add an image of `size` (None: unknown), that arrived at `arrival_ns` (as `add_info`); returns the
        images ready to process (this one and/or older ones), in order."""
        stamp_ns = int(stamp_ns)
        if arrival_ns is not None:
            self._image_arrivals.append((int(arrival_ns), stamp_ns))
        if self._first_image_stamp is None:
            self._first_image_stamp = stamp_ns
        self._images.append(stamp_ns)
        self._pending.append((stamp_ns, image, size))
        released, self._released = self._released, []
        return released + self._release(stamp_ns)

    def flush(self) -> list[Pair[I, C]]:
        """End of the input: every image still waiting for a camera_info gets the nearest one within
        `slop`, else the cached one (or none)."""
        out, self._released = self._released, []
        for stamp, image, size in self._pending:
            best = self._best(stamp, size)
            pair = self._emit_fallback(stamp, image, size) if best is None else self._emit(stamp, image, size, best)
            out.append(pair)
        self._pending.clear()
        return out

    def clear(self) -> None:
        """Forget buffered camera_infos and pending images (time jumped backwards). Keeps the cache."""
        self._infos.clear()
        self._pending.clear()
        self._first_image_stamp = None
        self._last_info_stamp = None  # stamps restart; keep the cached message itself
        self._info_steps.clear()
        self._images.clear()
        self._image_arrivals.clear()
        self._info_arrivals.clear()
        self._forget_unpaired()

    def unpaired(self) -> Unpaired | None:
        """The camera_infos that keep arriving without pairing with any image by stamp, or None: at least
        `UNPAIRED_AFTER` have arrived, and as many images were given the last one received, since an
        image was last paired by its stamp (a camera_info published once, or one that stopped, is
        reused by design; a throttled one stamped as its image pairs with that image)."""
        if self._unpaired_count < UNPAIRED_AFTER or self._unpaired_images < UNPAIRED_AFTER or not self._images:
            return None
        images = sorted(self._images)
        # (one stamped outside the images' span may have its nearest image unseen: before the first one)
        inside = [s for s in self._unpaired_infos if images[0] <= s <= images[-1]]
        offsets = []
        for s in inside or self._unpaired_infos:
            k = bisect_left(images, s)
            near = [images[j] for j in (k - 1, k) if 0 <= j < len(images)]
            offsets.append(min((s - i for i in near), key=abs))
        steps = [b - a for a, b in pairwise(images) if b > a]
        return Unpaired(
            self._unpaired_count,
            self._unpaired_images,
            offsets,
            all(s == 0 for s in self._unpaired_infos),
            median_low(steps) if steps else None,
            self.stamp_offset(),
        )

    def stamp_offset(self) -> int | None:
        """The constant offset of the camera_infos' stamps from the images they are published with, or None
        (unknown, or not constant): each camera_info's stamp less that of the image that arrived nearest to it
        (within a quarter of the images' step), from the last `OFFSET_SAMPLES`, when they agree within a
        quarter step. Stamps alone cannot tell it: a camera_info stamped one frame after its image has the
        next image's stamp and pairs with it (synced, silently), and one stamped 0.7 frames after is 0.3
        frames before the next (`neighbour_offset`)."""
        if len(self._info_arrivals) < OFFSET_SAMPLES or len(self._image_arrivals) < 2:
            return None
        stamps = sorted(s for _, s in self._image_arrivals)
        steps = [b - a for a, b in pairwise(stamps) if b > a]
        if not steps:
            return None
        step = median_low(steps)
        offsets = []
        for arrival, stamp in self._info_arrivals:
            near = min(self._image_arrivals, key=lambda image: abs(image[0] - arrival))
            if abs(near[0] - arrival) <= step // 4:
                offsets.append(stamp - near[1])
        if len(offsets) < OFFSET_SAMPLES // 2:
            return None
        offsets.sort()
        quarter = len(offsets) // 4
        if offsets[-1 - quarter] - offsets[quarter] > step // 4:
            return None  # (not constant: published on their own, or on another clock's timer)
        return median_low(offsets)

    def neighbour_offset(self) -> tuple[int, int] | None:
        """`(offset, image step)` where camera_infos are stamped a constant half a frame or more from the
        images they are published with, yet within `slop` of another image: each image is paired, "synced",
        with a neighbouring frame's camera_info (right while the calibration is fixed, wrong from the frame it
        changes: a zoom, a new size). None otherwise."""
        offset = self.stamp_offset()
        stamps = sorted(s for _, s in self._image_arrivals)
        steps = [b - a for a, b in pairwise(stamps) if b > a]
        if offset is None or not steps:
            return None
        step = median_low(steps)
        return (offset, step) if abs(offset) >= step // 2 and self._unpaired_count < UNPAIRED_AFTER else None

    def _forget_unpaired(self) -> None:
        self._unpaired_infos.clear()
        self._unpaired_count = self._unpaired_images = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def last_info(self) -> C | None:
        return self._last_info

    # -- helpers -----------------------------------------------------------------------------
    def _release(self, newest_image: int | None) -> list[Pair[I, C]]:
        """The pending images decided now, oldest first (an image waits with those after it)."""
        if newest_image is None:
            newest_image = self._pending[-1][0] if self._pending else 0
        out: list[Pair[I, C]] = []
        while self._pending:
            stamp, image, size = self._pending[0]
            pair = self._decide(stamp, image, size, newest_image)
            if pair is None:
                break
            out.append(pair)
            self._pending.popleft()
        return out

    def _decide(self, stamp: int, image: I, size: Size | None, newest_image: int) -> Pair[I, C] | None:
        """The pair of the pending image, or None while it waits for a better camera_info."""
        best = self._best(stamp, size)
        full = len(self._pending) > self.queue_size
        if best is not None and best[0] == (False, 0):
            return self._emit(stamp, image, size, best)  # its own: the same stamp, of its size
        passed = self._last_info_stamp is not None and self._last_info_stamp >= stamp  # none nearer can come
        if best is not None and (passed or full or not self._better_due(stamp, best)):
            return self._emit(stamp, image, size, best)
        if not passed and not full and not self._gave_up(stamp, newest_image):
            return None
        if best is not None:
            return self._emit(stamp, image, size, best)
        if self._mismatched(size, self._last_info_size) and stamp == newest_image and not full:
            return None  # a new size and only the old size's camera_info: the new one may come before the next image
        return self._emit_fallback(stamp, image, size)

    def _mismatched(self, size: Size | None, info_size: Size | None) -> bool:
        """Is a camera_info for `info_size` another size's, for an image of `size` that changed size? A
        stream whose camera_info is always for another size (a resized stream) is not held up by it."""
        known = size is not None and info_size is not None and self._emitted_size is not None
        return known and size != self._emitted_size and info_size != size

    def _best(self, stamp: int, size: Size | None) -> tuple[tuple[bool, int], int, C] | None:
        """`((another size, stamp distance), its stamp, camera_info)` of the best buffered camera_info
        within `slop` of `stamp`: of the image's size first (after a change of size), then the nearest."""
        best: tuple[tuple[bool, int], int, C] | None = None
        for s, info, info_size in self._infos:
            d = abs(s - stamp)
            if d <= self.slop_ns:
                rank = (self._mismatched(size, info_size), d)
                if best is None or rank < best[0]:
                    best = (rank, s, info)
        return best

    def _better_due(self, stamp: int, best: tuple[tuple[bool, int], int, C]) -> bool:
        """Can a camera_info better than `best` for the image stamped `stamp` still arrive (all those
        buffered are stamped before it)? The next is due one camera_info period after the last: wait for it
        when it may be nearer (a quarter period of jitter) or, when `best` is another size's, within slop."""
        period = self._info_period()
        if period is None or self._last_info_stamp is None:
            return True  # its rate is not known yet
        due = self._last_info_stamp + period - stamp  # (negative: overdue, may come any stamp)
        (other_size, distance), _, _ = best
        return due < distance + period // 4 or (other_size and due <= self.slop_ns)

    def _gave_up(self, stamp: int, newest_image: int) -> bool:
        """True when waiting longer for this image's camera_info is pointless."""
        if self._unpaired_count >= UNPAIRED_AFTER and self._unpaired_images >= UNPAIRED_AFTER:
            return True  # camera_info pairs with no image by its stamp (`unpaired`): nor will this one's
        if self._last_info_stamp is not None and newest_image - self._last_info_stamp > self.info_timeout_ns:
            return True  # camera_info stopped arriving: use the cache immediately
        period = self._info_period()
        if (
            period is not None
            and self._last_info_stamp is not None
            and stamp + self.slop_ns < self._last_info_stamp + period
        ):
            return True  # camera_info slower than the images: the next one is due after this image's slop
        first = newest_image if self._first_image_stamp is None else self._first_image_stamp
        if self._last_info_stamp is None and newest_image - first > self.info_timeout_ns:
            return True  # no camera_info at all so far: do not delay every image
        return newest_image - stamp > self.info_timeout_ns

    def _info_period(self) -> int | None:
        """The camera_info's period: the shortest of its last steps between stamps (None before two). A
        camera_info slower than the images (a driver or throttle at 1 Hz) is not due again sooner, so an
        image between two of them is not held waiting for one (up to `queue_size` images of latency each),
        and goes out at once with the last one. The shortest, not the median: a lost camera_info only
        lengthens a step, and with a third or more of them lost (DDS) most steps span one, so the median
        made camera_info look two or three frames slow, and an image whose own came just after it went out
        with the previous frame's (where the losses are known, `add_info`'s `lost`, a step is split among
        them). A period taken too short only has an image wait for the next one."""
        return min(self._info_steps) if self._info_steps else None

    def _emit_fallback(self, stamp: int, image: I, size: Size | None) -> Pair[I, C]:
        self._emitted_size = size
        if self._last_info is None:
            return self._count(Pair(stamp, image, None, "none"))
        self._unpaired_images += 1
        return self._count(Pair(stamp, image, self._last_info, "cached"))

    def _emit(self, stamp: int, image: I, size: Size | None, best: tuple[Any, int, C]) -> Pair[I, C]:
        self._emitted_size = size
        self._forget_unpaired()
        return self._count(Pair(stamp, image, best[2], "synced"))

    def _count(self, pair: Pair[I, C]) -> Pair[I, C]:
        self.counts[pair.source] += 1
        return pair
