"""Window scheduling: which frames go into each model call, causal or for a known length.

Two schedules, both from the papers' released inference code:

* **chain** (DVD, DepthCrafter; `alignment` "chain_ls" or "none"): windows `[0, W)`, `[W-O, 2W-O)`, ...
  in steps of the stride `W-O`. At the end of the stream the last window is moved back to
  `[T-W, T)` so it keeps full length and its *real* overlap `prev_end - start` may exceed O
  (DVD demo `get_window_index` / `real_overlap`). `T <= W` is a single window.
* **keyframe** (VDA, GemDepth; `alignment` "keyframe"): `W=32, O=10, keyframes=[0,12,24..31]`.
  The first `m = O - I` slots of every later window are context: slot 0 is a persistent anchor
  frame (frame 0 in the papers) and slots `1..m-1` are the previous window's frames at slots
  `keyframes[1:m]`; then come `I` genuine overlap frames (the previous window's last I frames,
  `keyframes[m:] == [W-I .. W-1]`) and `W-O` new frames. The last window is padded by repeating
  the last frame, as VDA pads the video.

`anchor_keyframes` gives a chain family (DVD, DepthCrafter) the keyframe layout with the same
number of re-run frames: the anchor and one older frame take the place of the first two overlap
frames, so the model cost is unchanged and every window shares the anchor frame with window 0
(the graph solve gets a loop through every window instead of a chain; `docs/alignment.md`).

Windows are padded to `4n+1` frames by repeating the last frame when `frames_rule == "4n+1"`
(Wan VAE; DVD `pad_time_mod4`). Frame indices are 0-based since the last reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vdepth_ros.errors import ConfigError

FramesRule = Literal["any", "4n+1"]
Schedule = Literal["chain", "keyframe"]


@dataclass(frozen=True)
class Window:
    """One model call.

    Attributes:
        index: 0-based window number.
        slots: frame index fed at each slot, in order (without padding).
        pad: copies of the last slot's frame appended to satisfy the frames rule; their outputs
            are discarded.
        n_context: leading slots that are context only (anchor and keyframes); they are aligned
            against stored references and never output.
        overlap: output frames (after the context) that earlier windows already produced.
        n_provisional: trailing output frames the next window will revise (0 for the last window).
        next_context: frames of this window the next window uses as keyframe context (their
            aligned values must be kept as references); empty for the chain schedule.
        is_last: True for the window built at the end of the stream.
    """

    index: int
    slots: tuple[int, ...]
    pad: int = 0
    n_context: int = 0
    overlap: int = 0
    n_provisional: int = 0
    next_context: tuple[int, ...] = ()
    is_last: bool = False

    @property
    def new_frames(self) -> tuple[int, ...]:
        """Frames output for the first time by this window."""
        return self.slots[self.n_context + self.overlap :]

    @property
    def length(self) -> int:
        """Frames sent to the model, padding included."""
        return len(self.slots) + self.pad


def pad_for_rule(length: int, rule: FramesRule) -> int:
    """Copies of the last frame needed so a window of `length` frames satisfies `rule`."""
    if rule == "4n+1":
        return (4 - (length - 1) % 4) % 4
    return 0


def interp_length(window: int, keyframes: tuple[int, ...]) -> int:
    """Number of genuine overlap frames I: the trailing keyframe slots that are `[W-I .. W-1]`."""
    n = 0
    for k in reversed(keyframes):
        if k != window - 1 - n:
            break
        n += 1
    return n


def anchor_keyframes(window: int, overlap: int) -> tuple[int, ...]:
    """VDA-style keyframe slots for a chain family's `window`/`overlap`: same re-run frame count.

    `overlap >= 3`: `(0, k, W-O+2 .. W-1)` with `k = round(3/8 W)` (VDA's 12 of 32): the anchor,
    one older frame and `O - 2` blended frames. `overlap == 2`: `(0, W-1)`, the anchor and one
    blended frame.
    """
    if overlap < 2 or overlap >= window:
        raise ConfigError(f"anchor slots need 2 <= overlap < window, got overlap {overlap}, window {window}")
    if overlap == 2:
        return (0, window - 1)
    tail = tuple(range(window - overlap + 2, window))
    older = min(max(1, round(0.375 * window)), tail[0] - 1)
    return (0, older, *tail)


class WindowScheduler:
    """Turns a stream of frame indices into windows, causally, or plans a known length.

    Causal use: call `add_frame()` for every frame, then `next_window()` until it returns None;
    at end of stream `next_window(final=True)` builds the last (partial) window. `plan(n)` runs
    the same logic for a sequence of known length (tests, offline tools, benchmarks).

    Args:
        window: window length W in frames.
        overlap: overlap O between consecutive windows (`0 <= O < W`).
        schedule: "chain" or "keyframe" (see module docstring).
        keyframes: keyframe slots (keyframe schedule), e.g. `(0, 12, 24, ..., 31)`; `len == O`.
        frames_rule: "any" or "4n+1".
        first_window: length of the first window (low start-up latency), or None for W.
    """

    def __init__(
        self,
        window: int,
        overlap: int,
        *,
        schedule: Schedule = "chain",
        keyframes: tuple[int, ...] | None = None,
        frames_rule: FramesRule = "any",
        first_window: int | None = None,
    ) -> None:
        window, overlap = int(window), int(overlap)
        if window < 1:
            raise ConfigError(f"window must be >= 1, got {window}")
        if not 0 <= overlap < window:
            raise ConfigError(f"overlap must be in [0, window={window}), got {overlap}")
        if frames_rule not in ("any", "4n+1"):
            raise ConfigError(f"frames_rule must be 'any' or '4n+1', got {frames_rule!r}")
        if frames_rule == "4n+1" and (window - 1) % 4:
            raise ConfigError(f"window must be 4n+1 frames for frames_rule '4n+1', got {window}")
        if schedule not in ("chain", "keyframe"):
            raise ConfigError(f"schedule must be 'chain' or 'keyframe', got {schedule!r}")
        self.window, self.overlap, self.schedule, self.frames_rule = window, overlap, schedule, frames_rule
        self.keyframes: tuple[int, ...] = ()
        self.n_context = 0
        self.interp = overlap
        if schedule == "keyframe":
            kf = tuple(int(k) for k in (keyframes or ()))
            if len(kf) != overlap or not kf or kf[0] != 0 or list(kf) != sorted(set(kf)) or kf[-1] >= window:
                raise ConfigError(
                    f"keyframes must be {overlap} increasing slots in [0, {window}) starting at 0 "
                    f"(overlap = len(keyframes)), got {list(kf)}"
                )
            self.keyframes = kf
            self.interp = interp_length(window, kf)
            self.n_context = overlap - self.interp
            if self.n_context < 1:
                raise ConfigError(f"keyframes {list(kf)} leave no anchor slot (need at least slot 0 outside the tail)")
        first = window if first_window is None else int(first_window)
        if not self.interp < first <= window:
            raise ConfigError(f"first_window must be in ({self.interp}, {window}], got {first}")
        if frames_rule == "4n+1" and (first - 1) % 4:
            raise ConfigError(f"first_window must be 4n+1 frames for frames_rule '4n+1', got {first}")
        self.first_window = first
        self.reset()

    @property
    def stride(self) -> int:
        """New frames per window (W - O)."""
        return self.window - self.overlap

    def reset(self) -> None:
        """Forget all frames and windows (stream restart)."""
        self.n_frames = 0
        self._count = 0  # windows built so far
        self._prev_end = 0  # frames [0, prev_end) were output by earlier windows
        self._anchor: int | None = None
        self._next_context: tuple[int, ...] = ()
        self._finished = False

    # -- causal API ---------------------------------------------------------------------------
    def add_frame(self) -> int:
        """Register the next frame; returns its index."""
        if self._finished:
            raise ConfigError("scheduler already finished (final window built); call reset() first")
        self.n_frames += 1
        return self.n_frames - 1

    def set_anchor(self, frame: int) -> None:
        """Replace the persistent anchor frame (keyframe schedule, anchor refresh)."""
        if frame >= self.n_frames:
            raise ConfigError(f"anchor frame {frame} has not arrived yet ({self.n_frames} frames)")
        self._anchor = int(frame)

    @property
    def anchor(self) -> int | None:
        """The persistent anchor frame of the keyframe schedule (None before the first window)."""
        return self._anchor

    def needed_frames(self) -> set[int]:
        """Frames whose images later windows still need (everything else may be released)."""
        first = self._contig_start()
        if self.schedule == "chain" and self._count:
            first = min(first, max(0, self.n_frames - self.window))  # a moved-back last window
        need = set(range(first, self.n_frames))
        if self.schedule == "keyframe" and self._count:
            need.update(self._next_context)
            if self._anchor is not None:
                need.add(self._anchor)
        return need

    def next_window(self, final: bool = False) -> Window | None:
        """The next window if enough frames have arrived (or, with `final`, the last one)."""
        if self._finished:
            return None
        start, n_ctx = self._contig_start(), self._n_context_now()
        full = (self.window if self._count else self.first_window) - n_ctx
        if self.n_frames - start >= full:
            return self._emit(start, start + full, n_ctx, last=False)
        if not final or self.n_frames <= self._prev_end:
            if final:
                self._finished = True
            return None
        self._finished = True
        return self._emit(self._partial_start(start), self.n_frames, n_ctx, last=True)

    def early_window(self) -> Window | None:
        """A window over the frames that arrived since the last one, before a full window has (a
        camera that paused): shaped as the end of a stream's (chain: moved back to full length;
        keyframe: padded by repeating the last frame), but the stream goes on: its last O (keyframe:
        I) frames stay provisional and the next window starts from them. None when no frame has
        arrived since the last window."""
        if self._finished or self.n_frames <= self._prev_end:
            return None
        start = self._partial_start(self._contig_start())
        return self._emit(start, self.n_frames, self._n_context_now(), last=False, pad_to_full=True)

    def plan(self, n_frames: int) -> list[Window]:
        """All windows for a sequence of `n_frames` frames (resets the scheduler first)."""
        self.reset()
        out: list[Window] = []
        for _ in range(n_frames):
            self.add_frame()
            while (w := self.next_window()) is not None:
                out.append(w)
        while (w := self.next_window(final=True)) is not None:
            out.append(w)
        return out

    # -- internals ----------------------------------------------------------------------------
    def _n_context_now(self) -> int:
        """Context slots of the next window (keyframe layout, after the first window)."""
        return self.n_context if (self.schedule == "keyframe" and self._count) else 0

    def _partial_start(self, start: int) -> int:
        """Start of a window over fewer frames than a full one (the stream's last, or an early one):
        the chain layout moves it back to full length (DVD demo; its real overlap then exceeds O)."""
        return max(0, self.n_frames - self.window) if self.schedule == "chain" and self._count else start

    def _contig_start(self) -> int:
        if not self._count:
            return 0
        # (an early window shorter than the overlap: the next window starts at the stream's start)
        return max(0, self._prev_end - (self.interp if self.schedule == "keyframe" else self.overlap))

    def _emit(self, start: int, end: int, n_ctx: int, last: bool, pad_to_full: bool = False) -> Window:
        contig = tuple(range(start, end))
        context: tuple[int, ...] = ()
        if n_ctx:
            anchor = self._anchor if self._anchor is not None else 0
            context = (anchor, *self._next_context)
        slots = context + contig
        overlap = max(0, self._prev_end - start)
        if self.schedule == "keyframe":
            # VDA pads the video so every window is full length; pad the last one the same way.
            target = self.window if self._count else self.first_window
            pad = max(0, target - len(slots)) if last or pad_to_full else 0
        else:
            pad = 0
        pad += pad_for_rule(len(slots) + pad, self.frames_rule)
        n_prov = 0 if last else (self.interp if self.schedule == "keyframe" else self.overlap)
        next_context: tuple[int, ...] = ()
        if self.schedule == "keyframe" and not last:
            # Previous window's frames at slots keyframes[1:m], counted from the window's end so a
            # short first window keeps the same spacing (VDA: next slot 1 = frame 22k + 12).
            full_len = len(slots)
            next_context = tuple(
                slots[max(n_ctx, full_len - (self.window - k))] for k in self.keyframes[1 : self.n_context]
            )
            if self._anchor is None:
                self._anchor = slots[0]
        win = Window(
            index=self._count,
            slots=slots,
            pad=pad,
            n_context=n_ctx,
            overlap=overlap,
            n_provisional=n_prov,
            next_context=next_context,
            is_last=last,
        )
        self._count += 1
        self._prev_end = max(self._prev_end, end)
        self._next_context = next_context
        return win
