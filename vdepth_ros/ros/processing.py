"""What the worker thread does with one queued input: assemble, restart if needed, infer, publish.

The steps are the bag reader's (`inputs.assembly`, `inputs.resets`, `DepthPipeline.push`), so a
causal `vdepth-bag` run reproduces the live node. Everything runs under `SupervisedWorker`: an
exception here is reported by `on_error` (rate-limited, with its type and the frame) and the stream
restarts; the worker goes on with the next frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from vdepth_ros.camera_info import camera_from_info, info_signature
from vdepth_ros.consistency import FlickerMonitor
from vdepth_ros.errors import InputError
from vdepth_ros.inputs.assembly import FrameAssembler
from vdepth_ros.inputs.calibration import camera_missing
from vdepth_ros.inputs.decode import UnsupportedImageError
from vdepth_ros.inputs.resets import StreamResets
from vdepth_ros.pipeline_input import HELD_STATES
from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.diagnostics import LatencyStats, RateMeter, Watchdog
from vdepth_ros.ros.intake import InputItem, InputSide
from vdepth_ros.ros.outputs import OutputPublishers, pace
from vdepth_ros.ros.worker import RateLimitedLog

#: Images this long (seconds) without a sparse_depth sample are named in a WARN, with the cause.
NO_SAMPLE_WARN_S = 10.0


class FrameProcessor:
    """One camera stream's frames through the pipeline to the outputs (worker thread).

    Args:
        pipeline: the camera's `DepthPipeline`.
        params: the node's ROS parameters.
        intake: where the frames and their sparse samples come from.
        outputs: where the `DepthFrame`s go.
        log: the node's rate-limited log.
        watchdog: told about every published frame.
        now_ns: the node's clock (latency = publish time - image stamp).
    """

    def __init__(
        self,
        pipeline: Any,
        params: dict[str, Any],
        intake: InputSide,
        outputs: OutputPublishers,
        log: RateLimitedLog,
        watchdog: Watchdog,
        now_ns: Callable[[], int],
    ) -> None:
        self.pipeline, self.p, self.intake, self.outputs, self.log = pipeline, params, intake, outputs, log
        self._watchdog, self._now_ns = watchdog, now_ns
        self.assembler = FrameAssembler(
            rectify=params["rectify"],
            sparse_depth=params["sparse_depth"],
            max_input_pixels=params["max_input_pixels"],
            image_bit_depth=params["image_bit_depth"],
            max_gap_s=params["max_gap"],
            image_encoding=params["image_encoding"],
            report=self._report,
        )
        self.flicker = FlickerMonitor(params["flicker_period"])
        self.stream = StreamResets(int(params["max_gap"] * 1e9))
        self.resets: dict[str, int] = {}
        self._gap_streak = 0  # consecutive frames that each restarted the stream after a gap
        self.output_rate = RateMeter(min_events=outputs.burst)  # frames leave a window at a time
        self.latency, self.window_latency = LatencyStats(), LatencyStats()
        self.last_fit: Any = None
        self.stop = threading.Event()  # the node is stopping: no more waiting or publishing
        self.on_first_output: Callable[[], None] | None = None
        self._sample_seen_at: float | None = None  # time.monotonic() of the last frame with a sparse sample
        self._unmatched = 0  # frames since then without one
        self._last_frame_at = 0.0  # time.monotonic() of the last frame checked for one
        self.pause_flushes = 0  # early windows run for a paused camera (`on_idle`)
        self._early_for: int | None = None  # the last image before the pause already flushed
        self._ended_for: int | None = None  # the input whose end was handled (`last_ns`)
        self.ended: tuple[int, int, float] | None = None  # `end_stream`: (held, published, seconds)
        # what became of the frames the worker took, each counted once (`DepthNode.frame_fates`; the pipeline counts
        # the frames pushed into it): refused with an error, failed before reaching the pipeline, published on the
        # main topics, not published as the node stopped, failed while published; discarded by a stop (`new_stream`)
        self.refused = self.failed = self.published = self.unpublished = self.publish_failed = 0
        self.discarded_at_stop = 0
        self.published_without_camera = 0  # of `published`: no intrinsics (no camera_info yet), so no /points
        self._in_hand: int | None = None  # the pipeline's frames_in when the frame in hand was taken (None: none)
        self._pipeline_reset_itself = False  # the last pipeline step failed and reset the pipeline (`_from_pipeline`)

    def _report(self, kind: str, message: str) -> None:
        """The assembler's notes: distortion and a scaled camera_info once and the bit depth of 16-bit images at
        INFO, a camera_info (or an image without a frame) at WARN, the rest as rate-limited errors."""
        if kind in ("distortion", "scaled_info"):
            self.log.info(kind, message)
        elif kind == "bit_depth":  # each choice changes the picture: its own key, so none is rate-limited away
            self.log.info(f"{kind}:{message}", message)
        elif kind == "pose":
            self.log.error(
                "pose",
                f"no metric points for this frame: {message} (camera_pose is looked up within sparse_depth_slop = "
                f"{self.p['sparse_depth_slop']} s of the image; camera_info is needed too)",
                summary="no metric points for frames without a camera pose within sparse_depth_slop",
            )
        elif kind == "sparse":
            self.log.error("sparse", f"ignoring sparse_depth: {message}", summary="ignoring sparse_depth samples")
        elif kind in (
            "camera_info_frame",
            "image_frame",
            "rectified_twice",
            "distorted_raw",
            "principal_point",
            "sizeless_info",
        ):
            self.log.warning(kind, message)
        else:
            self.log.error(kind, message)

    def _check_sample(self, item: InputItem, sparse: Any) -> None:
        """WARN (once, and on /diagnostics until a sample comes) when no image has had a sparse_depth sample
        for `NO_SAMPLE_WARN_S`: without one the metric scale is never (re)fitted, and with no first fit /depth
        and /points are never published, which no other message said (nothing on the topic, another clock)."""
        if self.p["sparse_depth"] not in ("image", "pointcloud"):
            return  # (a frame without a camera pose is named by the assembler)
        now, previous = time.monotonic(), self._last_frame_at
        self._last_frame_at = now
        # (the clock starts again after a pause of the images: a paused sensor is no fault)
        if sparse is not None or self._sample_seen_at is None or now - previous > 2.0:
            self._sample_seen_at, self._unmatched = now, 0
            if sparse is not None:
                if self.log.problems.found("no-sample"):
                    self.log.problems.report("no-sample", on_images=True)
                return
        self._unmatched += 1
        waited = now - self._sample_seen_at
        if waited >= NO_SAMPLE_WARN_S and not self.log.problems.found("no-sample"):
            reason = self.intake.unmatched_sample_reason(item.stamp_ns)
            held = (
                "/depth and /points keep the scale of its last fit"
                if self.pipeline.scale_source.current is not None
                else "without a first fit no /depth or /points is published"
            )
            self.log.problems.report(
                "no-sample",
                {
                    "": (
                        f"no sparse_depth sample for {NO_SAMPLE_WARN_S:.0f} s, the metric scale is not refitted: "
                        f"{reason}",
                        f"no sparse_depth sample for the last {self._unmatched} images ({waited:.0f} s), so the "
                        f"metric scale is not refitted ({held}): {reason}",
                    )
                },
                on_images=True,
            )

    def activate(self) -> None:
        """An activation, once its subscriptions exist: frames are processed and published again, and the
        assembler names the image topic they now come from (resolved at each activation: after a remap,
        the new one)."""
        self.stop.clear()
        self.assembler.image_topic = self.intake.image_topic

    # -- one frame ---------------------------------------------------------------------------
    def process(self, item: InputItem) -> None:
        """Assemble one input, run it through the pipeline and publish what comes out; a frame that
        cannot be used is dropped with a rate-limited error. Other exceptions go to `on_error`. Its time counts
        in the worker's throughput (`max_input_rate`'s advice), a window's with the frame that ran it."""
        started, window_ran = time.monotonic(), False
        self._in_hand = self.pipeline.stats.frames_in
        self._pipeline_reset_itself = False  # (said by this frame's pipeline step, if it fails)
        try:
            window_ran = self._process(item)
        except BaseException:
            if not self.in_pipeline():  # (once pushed, the pipeline counts it: output, held or discarded)
                self.failed += 1
            raise
        finally:
            self._in_hand = None
            self.intake.throughput.add(time.monotonic() - started, window_ran)

    def in_pipeline(self) -> bool:
        """Whether the frame in hand (if any) has been pushed into the pipeline."""
        taken = self._in_hand
        return taken is not None and self.pipeline.stats.frames_in > taken

    @property
    def in_hand(self) -> int:
        """1 while the worker holds a frame it has not pushed into the pipeline yet (waiting for its sample,
        assembling it), else 0: at a stop that abandoned the worker, that frame is abandoned too."""
        return int(self._in_hand is not None and not self.in_pipeline())

    def _process(self, item: InputItem) -> bool:
        """`process`; returns whether a window's inference ran."""
        sparse, pose = self.intake.sample_for(item, self.stop)
        self._check_sample(item, sparse)
        refused = self.assembler.refused_infos
        try:
            frame = self.assembler.assemble(
                item.image,
                item.stamp_ns,
                item.info,
                sparse,
                pose,
                meta=conv.copy_header(item.image.header),
                previous_input_ns=item.previous_input_ns,
            )
        except InputError as err:
            self.refused += 1
            kind = "unsupported" if isinstance(err, UnsupportedImageError) else "input"
            encoding = getattr(item.image, "encoding", "compressed")
            self.log.error(
                f"{kind}:{encoding}", f"dropping input frame: {err}", summary=f"dropping input frames ({encoding})"
            )
            return False
        if self.assembler.unfit and self.assembler.refused_infos == refused:  # (a refusal names it itself)
            self._note_unfit(self.assembler.unfit)
        elif not self.assembler.unfit and self.log.problems.found("camera-info-unfit"):
            self.log.problems.report("camera-info-unfit", on_images=True)  # frames fit a camera_info again
        self.flicker.add_image(item.stamp_ns, frame.rgb)
        info = None if self.assembler.info is None else info_signature(self.assembler.info)
        reason = self.stream.update(
            frame.rgb.shape[:2], item.stamp_ns, info, item.previous_input_ns, item.clock_step_ns
        )
        quiet = bool(reason) and item.skipped > 0 and reason.startswith("gap")
        if quiet:  # the input went on; no output had a subscriber (a viewer closed and opened again)
            reason = (
                f"subscribed again: {item.skipped} images were skipped while no output had a subscriber "
                "(skip_when_unsubscribed)"
            )
        self._note_gap_streak(reason)
        if reason:
            self.restart(reason, flush=True, pipeline=not reason.startswith("resolution"), quiet=quiet)
        t0 = time.monotonic()
        frames = self._from_pipeline(self.pipeline.push, frame)
        if frames:
            self.window_latency.add(time.monotonic() - t0)
        self.publish_all(frames)
        return bool(frames)

    def _note_gap_streak(self, reason: str | None) -> None:
        """A camera slower than `max_gap` (a stream throttled to 1 Hz, a timelapse) restarts the stream on
        every frame: no window ever fills, each frame is inferred alone and published one frame late, and
        the range scale is refitted per frame. Its restarts look like pauses, so after three in a row
        the cause and the fix are named once."""
        self._gap_streak = self._gap_streak + 1 if reason and reason.startswith("gap") else 0
        if self._gap_streak == 3:
            self.log.problems.report(
                "slow-camera",
                {
                    "": (
                        f"each frame comes more than max_gap = {self.p['max_gap']} s after the one before: every "
                        "frame starts a new stream; set max_gap above the camera's frame period",
                        f"the last 3 frames each came more than max_gap = {self.p['max_gap']} s after the one before: "
                        "the camera is slower than max_gap allows, so every frame starts a new stream (each frame "
                        "inferred alone, no temporal consistency); set max_gap above the camera's frame period",
                    )
                },
                on_images=True,
            )
        elif self._gap_streak == 0 and self.log.problems.found("slow-camera"):
            self.log.problems.report("slow-camera", on_images=True)

    def on_error(self, item: InputItem, err: BaseException) -> None:
        """`SupervisedWorker`'s report: rate-limited, with the type and the frame; the stream restarts."""
        self.log.error(
            f"worker:{type(err).__name__}",
            f"depth pipeline failed on the frame stamped {item.stamp_ns} ({type(err).__name__}: {err}); "
            "the stream restarts and the node goes on",
            summary=f"the depth pipeline failed ({type(err).__name__}); the stream restarted",
        )
        self._restart_after_error(err)

    def _restart_after_error(self, err: BaseException) -> None:
        """The stream restarts after a failure; the pipeline is reset only if it has not reset itself for it
        (a failed window does): a second reset counted two on /diagnostics ("pipeline resets") for one failure
        and replaced the pipeline's reason, which names what failed, with this one."""
        reset_already, self._pipeline_reset_itself = self._pipeline_reset_itself, False
        self.restart(f"pipeline error: {type(err).__name__}", pipeline=not reset_already)

    def _from_pipeline(self, step: Callable[..., list[Any]], *args: Any) -> list[Any]:
        """The frames a pipeline step (`push`, `early_window`, `flush`) outputs; when it fails, the frames it
        had output before (a window's first frames, the old stream's at a new resolution) are published
        first, then the error goes on: they used to be counted as output and never published."""
        resets, self._pipeline_reset_itself = self.pipeline.stats.resets, False
        try:
            return step(*args)
        except BaseException:
            self._pipeline_reset_itself = self.pipeline.stats.resets > resets
            self.publish_all(self.pipeline.take_output_before_failure())
            raise

    def publish_all(self, frames: list[Any]) -> None:
        """Publish frames that left the pipeline together (a window), with `output_pacing` spread at the
        camera's rate as its images arrive (`outputs.pace`): each leaves with the latency of the oldest."""
        period_ns = self.intake.arrival_speed.step_ns if self.p["output_pacing"] else None
        step, t0 = pace(len(frames), period_ns / 1e9 if period_ns else None), time.monotonic()
        for i, out in enumerate(frames):
            try:
                self.publish(out, t0 + i * step if step else 0.0)
            except BaseException:
                self.publish_failed += sum(map(self.outputs.is_main, frames[i:]))  # (this one and those after it)
                raise

    def publish(self, frame: Any, due: float = 0.0) -> None:
        """Publish one frame, not before `due` (`time.monotonic()`; 0: now)."""
        if self.stop.is_set():
            self.unpublished += self.outputs.is_main(frame)
            return  # shutting down: the context may already be going
        if frame.camera is None:
            self._note_no_camera(frame)
        elif self.log.problems.found("no-camera"):
            self.log.problems.report("no-camera", on_images=True)  # frames have a camera model again
        if not self.outputs.publish(frame, due):
            return
        self.published += 1
        self.published_without_camera += frame.camera is None
        self.last_fit = frame.fit
        values = frame.depth if frame.depth is not None else frame.disparity
        self.flicker.add_depth(frame.stamp_ns, frame.index, values, time.monotonic())
        if self.output_rate.total == 0 and self.on_first_output is not None:
            self.on_first_output()
        self.output_rate.tick()
        self._watchdog.output()
        now = self._now_ns()
        paced_s = max(0.0, due - time.monotonic()) if due else 0.0  # (it leaves then)
        unset = frame.stamp_ns == 0  # no clock at all: the intake names the unset header.stamp
        # (ROS time 0: no /clock under use_sim_time, said by the status)
        offset = self.intake.stamp_clock.offset_ns() if now and not unset else None
        # on another clock the stamps are the clocks' offset away: the latency is taken from the images' arrival
        self.latency.add((now - frame.stamp_ns - (offset or 0)) / 1e9 + paced_s)
        apart = offset is not None
        held = self.log.problems.found("stamp-clock")
        if apart and not held:
            off = offset / 1e9
            side = "behind" if off > 0 else "ahead of"
            self.log.problems.report(
                "stamp-clock",
                {
                    "": (
                        f"the image stamps are {abs(off):.1f} s {side} this node's clock (latency measured from "
                        "their arrival): have the driver stamp with ROS time, or play the bag with --clock and "
                        "use_sim_time:=true",
                        f"the image stamps are {abs(off):.1f} s {side} this node's clock when the images arrive: "
                        "the camera stamps with another clock (its own device time?) or a recording plays without its "
                        "clock, so a subscriber's latency from the stamps means nothing (/diagnostics takes the "
                        "latency from the images' arrival instead) and tools that look up TF at these "
                        "stamps (RViz, message_filters) find no transforms; have the driver stamp with ROS time, or "
                        "play the bag with --clock and set use_sim_time:=true",
                    )
                },
                on_images=True,
            )
        elif held and not apart:
            self.log.problems.report("stamp-clock", on_images=True)

    def _note_unfit(self, problem: str) -> None:
        """WARN (once per problem, and on /diagnostics while frames do not fit) when the last good camera_info
        does not fit a frame (`FrameAssembler.unfit`): a camera that changed its resolution to another aspect
        ratio, whose camera_info for the new size has not come yet, or a camera_info for a crop that does not
        say so."""
        if problem in self.log.problems.found("camera-info-unfit"):
            return
        main = self.outputs.main
        self.log.problems.report(
            "camera-info-unfit",
            {
                problem: (
                    f"the last camera_info does not fit the frames ({problem}): no {main.points.topic_name}; it "
                    "needs a camera_info for their resolution",
                    f"the last camera_info does not fit this frame ({problem}): it has no intrinsics, so no "
                    f"{main.points.topic_name} and no {main.camera_info.topic_name}; frames of this size get them "
                    "once a camera_info for their resolution arrives (a camera that changed resolution), or set roi "
                    "and binning in camera_info if the image is a crop or binned",
                )
            },
            on_images=True,
        )

    def _release_after_s(self) -> float:
        """Seconds without an image after which the images still waiting for their camera_info go on without it
        (`on_idle`): the pause's, but before any camera_info has arrived `camera_info_timeout`, the wait the pairing
        gives the stream's first images in stamp time. A node busy at start-up (a loaded machine) takes no message
        for half a second: the camera_infos sent meanwhile are lost (best effort) while the images wait (reliable),
        and that stall, taken for the camera's pause, sent the first image out without intrinsics (no /points)."""
        pause_s = self.intake.pauses.pause_after_s()
        if self.intake.sync.last_info is not None:
            return pause_s
        return max(pause_s, float(self.p["camera_info_timeout"]))

    def _note_no_camera(self, frame: Any) -> None:
        """WARN once per cause when frames go out without a camera model: no points and no
        depth/camera_info, which used to be all a user (a camera_info left unremapped, a driver
        without its calibration file) saw. An image goes on without camera_info only after
        `camera_info_timeout` without any (`inputs.sync`), so one trailing the first image is not named."""
        info, refused = self.assembler.info, self.assembler.refused_infos
        # a calibrated camera_info leaves a frame without a camera only when it is for another aspect
        # ratio (`FrameAssembler.unfit`; the assembler has gone on since that frame: judged from the info)
        if info is not None and camera_from_info(info) is not None:
            if self.log.problems.found("no-camera"):  # a calibrated camera_info came: the cause named has gone
                self.log.problems.report("no-camera", on_images=True)
            return  # named with the frame (`_note_unfit`, or the camera_info's refusal)
        kind = "uncalibrated" if info is not None else "refused" if refused else "none"
        if kind in self.log.problems.found("no-camera"):
            return  # checked first: this runs for every camera-less frame, the graph queries below need not
        if kind == "none" and self.intake.camera_info_latched():
            return  # the latched camera_info is on its way (`InputSide.check_camera_info`)
        topic, publishers = self.intake.camera_info_topic()
        cause = camera_missing(info, f"on '{topic}'", refused)
        if info is not None:
            fix = "calibrate the camera (camera_calibration) and give the driver the file (e.g. its camera_info_url)"
        elif refused:
            fix = "fix what that error names"
        elif not publishers:
            fix = (
                "nothing publishes it: remap camera_info to the camera's camera_info topic (next to its image, "
                "e.g. -r camera_info:=/camera/color/camera_info)"
            )
        else:
            fix = (
                f"it has {publishers} publisher(s) but none of their messages arrived (one published only before "
                "this node subscribed is lost unless its publisher is transient_local, latched): make the driver "
                "publish camera_info with each image, or remap camera_info to the camera's camera_info topic"
            )
        main = self.outputs.main
        missing = [main.camera_info.topic_name]
        if frame.depth is not None and getattr(self.pipeline, "cloud", None) is not None:
            missing.insert(0, main.points.topic_name)
        published = "depth and disparity are" if frame.depth is not None else "disparity is"
        self.log.problems.report(
            "no-camera",
            {
                kind: (
                    f"frames go out without the camera's intrinsics (no {' and no '.join(missing)}): {cause}",
                    f"{cause}: no {' and no '.join(missing)}, which need the camera's intrinsics "
                    f"({published} published); {fix}",
                )
            },
            on_images=True,
        )

    # -- pauses and the end of the input -------------------------------------------------------
    def on_idle(self) -> None:
        """The worker has nothing queued (called every few tens of ms). A camera that paused (a driver
        stall, an exposure change, a stream stopped for a while) leaves the frames that wait for the
        next window unpublished until it resumes, and then they would come out late, with their old
        stamps, to consumers that look up TF at them. So after `pause_flush` without an image (the
        intake's `PauseRule`, on the node's clock, stretched for a slow-motion replay) the
        frames held for the next window are run in a window now and published (the stream goes on);
        after `max_gap` (`PauseRule.ends_after_s`) the frames the publish policy still holds
        ("final"/"both": the provisional ones) are published as the stream ends (the gap restart the
        camera's next image would bring, done now). The images that still wait for their camera_info
        (`InputSide.release_waiting`) are processed before. Time is the node's clock: a bag paused under
        use_sim_time is no pause. But an input that has ended (`InputSide.ended`: the camera driver or bag
        player exited, under use_sim_time taking the node's clock with it) ends the stream at once."""
        pauses = self.intake.pauses
        last = pauses.last_ns
        if last is None or self.stop.is_set():
            return
        if self._ended_now(last):
            return
        idle_s = pauses.paused_for(self._now_ns())
        if idle_s >= self._release_after_s() and self.intake.sync.pending and self.intake.release_waiting():
            return  # the images that waited for a camera_info are processed first, then their window is run
        if not self.pipeline.held:
            return
        try:
            if idle_s >= pauses.pause_after_s() and last != self._early_for:
                self._early_for = last
                held = self.pipeline.held
                frames = self._from_pipeline(self.pipeline.early_window)
                self.publish_all(frames)
                if frames:
                    self.pause_flushes += 1
                    self.log.info(
                        "pause",
                        f"no image for {idle_s:.2f} s (pause_flush): published the {held} frame(s) held for the next "
                        "window now; the stream goes on when the camera resumes",
                    )
            max_gap, ends = float(self.p["max_gap"]), pauses.ends_after_s()
            if ends > 0 and idle_s > ends and self.pipeline.held:
                if not pauses.speed.known:
                    why = f"max_gap {max_gap} s; {ends:.1f} s after a stream's first image alone, its speed unknown"
                elif ends > max_gap * 1.01:
                    why = f"max_gap {max_gap} s, {ends:.1f} s at this replay's {1 / pauses.stretch:.2g}x"
                else:
                    why = f"max_gap {max_gap} s"
                self.restart(f"pause: no image for {idle_s:.1f} s ({why})", flush=True)
                self.stream = StreamResets(int(max_gap * 1e9))  # restarted already: the next image is no gap
        except Exception as err:
            self.log.error(
                f"idle:{type(err).__name__}",
                f"publishing the frames held during a pause failed ({type(err).__name__}: {err}); the stream restarts",
                summary=f"publishing the frames held during a pause failed ({type(err).__name__})",
            )
            self._restart_after_error(err)

    def _ended_now(self, last: int) -> bool:
        """Whether the input has ended (`InputSide.ended`) and was handled now: the images that waited for a
        camera_info are processed first (it is asked again on a later call), then the stream ends, once
        per input (the publishers stay gone until a new one sends an image)."""
        ended = self.intake.ended() if last != self._ended_for else None
        if not ended:
            return False
        if self.intake.sync.pending and self.intake.release_waiting():
            return True
        self._ended_for = last
        self._input_ended(ended)
        return True

    def _input_ended(self, why: str) -> None:
        """The input ended while the node runs: publish every frame the stream holds, as at the end of a bag
        (`DepthPipeline.flush`), and start the next stream clean (a bag played again is no time jump)."""
        held = self.pipeline.held
        frames = self._publish_held("the stream at its end") or []
        self.pipeline.reset(f"input ended: {why}")
        self.assembler.reset()
        self.flicker.reset()
        self.stream = StreamResets(int(float(self.p["max_gap"]) * 1e9))
        self.log.info(
            "input-ended",
            f"{why} (the camera driver or bag player ended?): published the {len(frames)} frame(s) the stream "
            f"still held ({held} waited for a window), as at the end of a bag; the next image starts a new stream",
        )

    def end_stream(self) -> None:
        """The input stopped for good (shutdown, deactivation) and every queued frame was processed:
        publish every frame the stream still holds, as at the end of a bag (`DepthPipeline.flush`);
        `ended` says what was done."""
        held = self.pipeline.held
        if not held or self.stop.is_set():
            return
        t0 = time.monotonic()
        frames = self._publish_held("the stream at its end")
        if frames is None:
            return
        self.ended = (held, len(frames), time.monotonic() - t0)

    def _publish_held(self, stream: str) -> list[Any] | None:
        """Publish every frame the stream holds (`DepthPipeline.flush`) and return them; None when that
        failed, which is one rate-limited error, "flushing <stream> failed (...)", whatever failed (the
        last window, or publishing what came out)."""
        try:
            frames = self._from_pipeline(self.pipeline.flush)
            self.publish_all(frames)
        except Exception as err:
            self.log.error(
                "flush", f"flushing {stream} failed ({type(err).__name__}: {err})", summary=f"flushing {stream} failed"
            )
            return None
        return frames

    # -- restarts ----------------------------------------------------------------------------
    def restart(self, reason: str, *, flush: bool = False, pipeline: bool = True, quiet: bool = False) -> None:
        """Count and log (rate-limited per kind) a restart, publish what the old stream still holds
        (`flush`), then reset the pipeline and the per-stream helpers. `quiet`: nothing went wrong (INFO, and
        /diagnostics stays OK)."""
        kind = reason.split(":")[0]
        self.resets[kind] = self.resets.get(kind, 0) + 1
        if quiet:
            self.log.info(f"restart:{kind}", f"restarting the depth stream: {reason}")
        else:
            self.log.warning(
                f"restart:{kind}", f"restarting the depth stream: {reason}", summary=f"stream restarted ({kind})"
            )
        self.assembler.reset()
        self.flicker.reset()
        if not pipeline:
            return
        if flush:
            self._publish_held("the old stream")
        self.pipeline.reset(reason)

    def new_stream(self) -> None:
        """Forget the stream (a deactivation): the next activation starts clean."""
        self.stream = StreamResets(int(self.p["max_gap"] * 1e9))
        self._early_for, self.ended = None, None
        self.discarded_at_stop += self.pipeline.reset("deactivated")  # (a stop that abandoned them)
        for name in HELD_STATES:  # (of the last session's frames: a status after the activation named them stale)
            setattr(self.pipeline, name, None)
        self.assembler.reset()
        self.flicker.reset()
