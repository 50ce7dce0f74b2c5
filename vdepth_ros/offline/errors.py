"""Errors of the offline tools (`vdepth-bag`, `vdepth-video`). Each message names the culprit."""

from __future__ import annotations

from vdepth_ros.errors import InputError, VdepthError


class InterruptedAfterOutput(KeyboardInterrupt):
    """Ctrl-C once the output is complete and in place (e.g. during `vdepth-bag --flicker`)."""

    def __init__(self, output: str, stopped: str) -> None:
        super().__init__(output, stopped)
        self.output, self.stopped = output, stopped


class InterruptedRun(KeyboardInterrupt):
    """Ctrl-C that ended a run's input (`runner.StopAtCtrlC`) whose output is not kept: `why` says
    how far it got and what is left (e.g. the earlier output an --overwrite run would have replaced)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def interrupted_line(prog: str, exc: BaseException | None = None) -> str:
    """What a tool prints on Ctrl-C / SIGTERM (exit status 130), whenever it arrives."""
    if isinstance(exc, InterruptedRun):
        return f"{prog}: interrupted {exc.why}"
    if isinstance(exc, InterruptedAfterOutput):
        return f"{prog}: interrupted during {exc.stopped}; the output {exc.output} was complete and is kept"
    return f"{prog}: interrupted; no output was written under the final name"


class OfflineError(VdepthError):
    """Base class of the offline tools' errors; the CLIs print it and exit with status 2."""


class BagReadError(OfflineError):
    """A bag cannot be read: corrupt or truncated storage, unknown storage plugin, bad metadata."""


class EmptyBagError(BagReadError):
    """The bag, or the selected image topic in it, holds no messages."""


class MissingTopicError(BagReadError):
    """A requested topic is not in the bag; the message lists the topics that are."""


class UnsupportedEncodingError(OfflineError, InputError):
    """An image message uses an encoding or message type the tools cannot convert."""


class OutputExistsError(OfflineError, FileExistsError):
    """The output path exists and `--overwrite` was not given."""


class VideoReadError(OfflineError):
    """A video file or image folder cannot be opened or holds no decodable frames."""
