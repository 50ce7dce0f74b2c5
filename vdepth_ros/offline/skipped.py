"""The bad messages an offline tool skips in a long recording, counted and told once per kind.

A robot's hours-long bag holds a few bad messages (a truncated JPEG, a compressedDepth with a corrupt
header, a message cut short in the file, an image above `max_input_pixels`). The tools skip each one
and keep going; `SkippedMessages` is how all of them do it: one WARNING per topic and kind of cause
naming the topic, the stamp and the cause (kinds ignore the numbers in a cause, so a thousand JPEGs
truncated to a thousand lengths are one line, not a thousand), a count per kind, and the lines for the
summary and `--json`, where the WARNING has long scrolled away.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

_NUMBERS = re.compile(r"\d+(?:\.\d+)?")


def cause_kind(cause: str) -> str:
    """`cause` with its numbers left out: the key one WARNING and one count stand for."""
    return _NUMBERS.sub("#", cause)


def stamp_text(stamp_ns: int, received: bool = False) -> str:
    """A message's header stamp (or, `received`, the time the bag logged it) as the user finds it in the bag
    (Foxglove, `ros2 bag` tools): seconds."""
    return f"{'logged at' if received else 'stamped'} {stamp_ns / 1e9:.6f} s"


@dataclass
class _Kind:
    topic: str
    cause: str  # the first message's cause, in full
    count: int = 0


@dataclass
class SkippedMessages:
    """Counts of skipped messages per topic and kind of cause (`cause_kind`), each kind told once.

    Attributes:
        outcome: what happened to such a message, for the WARNING ("skipped", "dropping a frame").
        told: log the first of each kind (False: count only; `vdepth-bag --flicker` reads the input again).
    """

    outcome: str = "skipped"
    told: bool = True  # False: counted only (messages another pass over the same bag has told already)
    _kinds: dict[tuple[str, str], _Kind] = field(default_factory=dict)

    def skip(self, topic: str, stamp_ns: int, cause: str, received: bool = False, outcome: str | None = None) -> bool:
        """Count one message of `topic` skipped for `cause`; the first of its kind is logged (returns True).
        `stamp_ns`: its header stamp, or (`received`: a message whose header cannot be read) its log time;
        `outcome`: what happens to it, in place of `self.outcome`."""
        kind = self._kinds.setdefault((topic, cause_kind(cause)), _Kind(topic, cause))
        kind.count += 1
        if kind.count == 1 and self.told:
            log.warning(
                "%s: the message %s: %s; %s (further ones like it are counted, not logged; the summary has the count)",
                topic,
                stamp_text(stamp_ns, received),
                cause,
                outcome or self.outcome,
            )
        return kind.count == 1

    @property
    def total(self) -> int:
        return sum(k.count for k in self._kinds.values())

    def count(self, topic: str) -> int:
        """Messages of `topic` skipped."""
        return sum(k.count for k in self._kinds.values() if k.topic == topic)

    def by_cause(self, topic: str | None = None) -> dict[str, int]:
        """Cause (the first of each kind, in full) -> messages skipped, of `topic` or of all topics."""
        return {k.cause: k.count for k in self._kinds.values() if topic is None or k.topic == topic}

    def rows(self) -> list[tuple[str, str, int]]:
        """(topic, cause: the first of its kind, count) per topic and kind."""
        return [(k.topic, k.cause, k.count) for k in self._kinds.values()]

    def to_list(self) -> list[dict[str, Any]]:
        """For `--json`: `{"topic", "cause", "count"}` per topic and kind."""
        return [{"topic": k.topic, "cause": k.cause, "count": k.count} for k in self._kinds.values()]

    def notes(self, exclude: str | None = None) -> list[str]:
        """The summary's lines: one per topic and kind (`exclude`: a topic the caller tells otherwise)."""
        return [
            f"skipped {k.count} message{'s' if k.count != 1 else ''} on {k.topic}: {k.cause}"
            + (" (and others like it)" if k.count > 1 else "")
            for k in self._kinds.values()
            if k.topic != exclude
        ]
