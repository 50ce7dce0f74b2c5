"""The DDS transport of the node's process: Fast DDS with a shared-memory segment its outputs fit in.

Fast DDS hands messages to subscribers in other processes on the same host through one shared-memory
segment per process, 512 KiB by default. A window of 640x480 outputs leaves as one burst of depth
and disparity images (1.2 MB each), clouds (4.9 MB) and camera_infos, so the segment runs full and
samples are dropped there; a reliable subscriber (RViz, depth_image_proc, a message_filters sync)
must then have them repaired, and those the node's bounded history (`output_qos_depth`) no longer
holds are lost for good: 1-26 % of a topic at 640x480 / 15 Hz on a busy machine (2 cores), and
depth images without their camera_info (`test/test_ros_consumers.py`). `config/fastdds_large_images.xml`
gives the segment 32 MiB, and what counts is the publishing process, so `vdepth-node` uses it for
itself unless the user configured Fast DDS in any way. Its 5 s participant lease (Fast DDS: 20 s)
bounds how long a stopped process that uses it (a frozen RViz, the node paused in a debugger) still
costs the processes that publish to it (docs/node.md, Threads, queue, drops, faults). Standard
library only: it runs before rclpy creates the process's DDS participant.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from vdepth_ros.paths import config_dir

PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
#: Any of these set means the user configured Fast DDS: their choice stands
#: (`FASTDDS_BUILTIN_TRANSPORTS=DEFAULT` keeps Fast DDS's own defaults).
USER_VARIABLES = (PROFILE_VARIABLE, "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS", "SKIP_DEFAULT_XML")
#: Profiles Fast DDS loads by itself from the working directory.
USER_FILES = ("DEFAULT_FASTDDS_PROFILES.xml", "DEFAULT_FASTRTPS_PROFILES.xml")
PROFILE_NAME = "fastdds_large_images.xml"
#: The profile's segment (`<segment_size>`), and the free /dev/shm below which it is not used.
SEGMENT_BYTES = 32 * 1024 * 1024
MIN_FREE_SHM_BYTES = 2 * SEGMENT_BYTES


def bundled_profile() -> Path:
    """The installed profile: this repository's `config/`, or `share/vdepth_ros/config/` under colcon."""
    return config_dir() / PROFILE_NAME


def _free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def use_large_segment_profile(
    environ: MutableMapping[str, str],
    cwd: Path,
    profile: Path | None = None,
    shm: Path = Path("/dev/shm"),
) -> str | None:
    """Point `FASTDDS_DEFAULT_PROFILES_FILE` in `environ` at the bundled profile, unless the process
    uses another middleware, the user configured Fast DDS (`USER_VARIABLES`, `USER_FILES` in `cwd`),
    or `shm` lacks room for the segment.

    Args:
        environ: the process's environment (`os.environ`), changed in place.
        cwd: the working directory (Fast DDS reads `USER_FILES` there).
        profile: the profile to use; default: `config/fastdds_large_images.xml` of the installation.
        shm: where the shared-memory segment lives.

    Returns:
        The line to log (INFO) about what was done or why not; None when there is nothing to say (another
        middleware, the user's own configuration, no profile installed).
    """
    rmw = environ.get("RMW_IMPLEMENTATION", "")
    if rmw and "fastrtps" not in rmw:
        return None
    if any(name in environ for name in USER_VARIABLES) or any((cwd / name).is_file() for name in USER_FILES):
        return None
    profile = bundled_profile() if profile is None else profile
    if not profile.is_file():
        return None
    free = _free_bytes(shm)
    if free is None:
        return None
    if free < MIN_FREE_SHM_BYTES:
        return (
            f"Fast DDS keeps its default 512 KiB shared-memory segment: {shm} has {free / 2**20:.0f} MiB free, "
            f"less than the {MIN_FREE_SHM_BYTES // 2**20} MiB the larger one ({profile}) needs, so reliable "
            "subscribers in other processes can miss large depth images and clouds; give the container more "
            "(docker run --shm-size=256m) (docs/node.md, Across processes)"
        )
    environ[PROFILE_VARIABLE] = str(profile)
    return (
        f"Fast DDS: this process uses {profile} (a {SEGMENT_BYTES // 2**20} MiB shared-memory segment), so "
        "its depth images and clouds reach subscribers in other processes whole; start RViz with "
        f"{PROFILE_VARIABLE}={profile} too, so that a frozen RViz holds this node up for 5 s, not 20; set "
        f"{PROFILE_VARIABLE} to a profile of your own, or FASTDDS_BUILTIN_TRANSPORTS=DEFAULT for Fast DDS's "
        "defaults (docs/node.md, Across processes)"
    )
