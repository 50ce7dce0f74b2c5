"""Which settings deliver camera images between two ROS 2 processes on this machine.

A publisher process and a subscriber process (plain rclpy, no package code) exchange rgb8 Images
at a fixed rate; the table gives, per setting, the share of published images that arrived
(min/median/max over repeats) and the latency (stamp -> arrival, wall clock) median and p95.
Settings: image size, rate, QoS (publisher -> subscriber reliability and history depth), and the
Fast DDS transport of both processes: its default (shared memory + UDP), `FASTDDS_BUILTIN_TRANSPORTS`
= SHM / UDPv4 / LARGE_DATA, LARGE_DATA with larger sockets, and the profile
`config/fastdds_large_images.xml` (`FASTDDS_DEFAULT_PROFILES_FILE`). The kernel's UDP buffer
limits are read and printed, never changed.

    .venv/bin/python benchmarks/ros_delivery.py --quick   # 640x480 at 15 Hz, 4 settings, ~30 s
    .venv/bin/python benchmarks/ros_delivery.py           # full grid (36 settings), 2 repeats, 10-15 min
    .venv/bin/python benchmarks/ros_delivery.py --json out.json

Each run uses its own ROS_DOMAIN_ID (70-79), ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a
temporary ROS_LOG_DIR. The publisher starts sending once it sees the subscriber and sends
rate x seconds images; losses before that (discovery) are not counted. The load average of the
machine is printed with every row: on a busy machine a process that gets no CPU for a while
loses best-effort images, so compare settings within one run. The last line is the time the run took
(`--quick`: 25.5 and 26.4 s at load 4.5-5.7, 33.7 s at load 11, on 2 cores, 2026-12-07).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PROFILE = REPO / "config" / "fastdds_large_images.xml"
SIZES = {"640x480": (640, 480), "1280x720": (1280, 720)}
#: name -> (publisher reliability, publisher depth, subscriber reliability, subscriber depth)
QOS = {
    "BE5->BE5": ("best_effort", 5, "best_effort", 5),  # sensor_data on both sides
    "REL10->REL10": ("reliable", 10, "reliable", 10),  # a reliable driver and a reliable node
    "REL10->BE5": ("reliable", 10, "best_effort", 5),  # a reliable driver and a sensor_data node
}
_PROFILE_ENV = {"FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)}
#: name -> (publisher's environment, subscriber's environment)
TRANSPORTS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "default": ({}, {}),
    "SHM": ({"FASTDDS_BUILTIN_TRANSPORTS": "SHM"},) * 2,
    "UDPv4": ({"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"},) * 2,
    "LARGE_DATA": ({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},) * 2,
    # Fast DDS's documented recipe for large data (TCP with larger sockets)
    "LARGE_DATA+4MB": (
        {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA?max_msg_size=1MB&sockets_size=4MB&non_blocking=true"},
    )
    * 2,
    "xml-profile": (_PROFILE_ENV, _PROFILE_ENV),
    "xml-profile-pub": (_PROFILE_ENV, {}),  # only the camera driver has it
    "xml-profile-sub": ({}, _PROFILE_ENV),  # only the node has it
}
#: `--udp-over-limit`: a profile with UDP only, asking socket buffers twice net.core.rmem_max
UDP_OVER_LIMIT = """<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns="http://www.eprosima.com"><profiles>
  <transport_descriptors><transport_descriptor><transport_id>udp</transport_id><type>UDPv4</type>
    <sendBufferSize>{size}</sendBufferSize><receiveBufferSize>{size}</receiveBufferSize>
  </transport_descriptor></transport_descriptors>
  <participant profile_name="udp_over_limit" is_default_profile="true"><rtps>
    <userTransports><transport_id>udp</transport_id></userTransports>
    <useBuiltinTransports>false</useBuiltinTransports>
  </rtps></participant>
</profiles></dds>
"""


def _qos(reliability: str, depth: int) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def run_publisher(args: argparse.Namespace) -> None:
    """Wait for the subscriber, send `rate * seconds` images on a fixed schedule, report `sent`."""
    import rclpy
    from sensor_msgs.msg import Image

    width, height = SIZES[args.size]
    rclpy.init()
    node = rclpy.create_node("delivery_pub")
    pub = node.create_publisher(Image, args.topic, _qos(args.reliability, args.depth))
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
    msg.data = bytes(range(256)) * (width * height * 3 // 256)
    deadline = time.monotonic() + 15.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)  # let the subscriber's side of discovery finish too
    count = int(args.rate * args.seconds)
    start = time.monotonic()
    for seq in range(count):
        time.sleep(max(0.0, start + seq / args.rate - time.monotonic()))
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        msg.header.frame_id = str(seq)
        pub.publish(msg)
    matched = pub.get_subscription_count()
    end = time.monotonic() + 1.5  # reliable writers may still be repairing
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({"sent": count, "matched": matched, "send_s": time.monotonic() - start}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def run_subscriber(args: argparse.Namespace) -> None:
    """Count images and their latency until stdin closes; print the result as JSON."""
    import rclpy
    from sensor_msgs.msg import Image

    seen: set[int] = set()
    latencies: list[float] = []

    def on_image(msg: Image) -> None:
        now = time.time_ns()
        seen.add(int(msg.header.frame_id))
        latencies.append((now - (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)) / 1e6)

    rclpy.init()
    node = rclpy.create_node("delivery_sub")
    node.create_subscription(Image, args.topic, on_image, _qos(args.reliability, args.depth))
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set():
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({"received": len(seen), "latencies_ms": latencies}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def _child_env(domain: int, extra: dict[str, str], log_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTDDS_", "FASTRTPS_"))}
    env.update(
        ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=log_dir, PYTHONUNBUFFERED="1"
    )
    env.update(extra)
    return env


def measure(size: str, rate: float, qos: str, transport: str, seconds: float, domain: int) -> dict[str, Any]:
    """One run: a subscriber and a publisher process started together (the publisher waits until
    it sees the subscriber); their JSON reports joined."""
    pub_rel, pub_depth, sub_rel, sub_depth = QOS[qos]
    # a topic of this run alone: other ROS processes on the machine may share the domain id
    topic = f"/vdepth_delivery_{os.getpid()}_{domain}_{time.monotonic_ns()}/image"
    common = [
        sys.executable,
        __file__,
        "--size",
        size,
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--topic",
        topic,
    ]
    with tempfile.TemporaryDirectory(prefix="vdepth-delivery-") as log_dir:
        pub_env, sub_env = (_child_env(domain, extra, log_dir) for extra in TRANSPORTS[transport])
        sub_err = Path(log_dir) / "sub.stderr"
        with sub_err.open("w") as err_file:
            sub = subprocess.Popen(
                [*common, "--role", "sub", "--reliability", sub_rel, "--depth", str(sub_depth)],
                env=sub_env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err_file,
                text=True,
            )
            try:
                pub = subprocess.run(
                    [*common, "--role", "pub", "--reliability", pub_rel, "--depth", str(pub_depth)],
                    env=pub_env,
                    capture_output=True,
                    text=True,
                    timeout=seconds + 60,
                    check=False,
                )
                out, _ = sub.communicate(input="", timeout=30)  # closing stdin stops the subscriber
            finally:
                if sub.poll() is None:
                    sub.kill()
                    sub.wait()
        if pub.returncode != 0 or sub.returncode != 0:
            raise RuntimeError(
                f"run failed: pub rc={pub.returncode} {pub.stderr[-500:]} sub rc={sub.returncode} "
                f"{sub_err.read_text()[-500:]}"
            )
    sent = json.loads(pub.stdout.strip().splitlines()[-1])
    got = json.loads(out.strip().splitlines()[-1])
    return {**sent, **got}


def _stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Delivered share per repeat (min/median/max); latency over every delivered image of all repeats."""
    fractions = [r["received"] / r["sent"] for r in runs]
    latencies = sorted(x for r in runs for x in r["latencies_ms"])
    return {
        "delivered": [f"{r['received']}/{r['sent']}" for r in runs],
        "fraction_min": min(fractions),
        "fraction_median": statistics.median(fractions),
        "fraction_max": max(fractions),
        "latency_median_ms": statistics.median(latencies) if latencies else None,
        "latency_p95_ms": latencies[math.ceil(0.95 * len(latencies)) - 1] if latencies else None,  # nearest rank
    }


def grid(quick: bool, sizes: list[str] | None = None) -> list[tuple[str, float, str, str]]:
    """(size, rate, qos, transport). Quick: 640x480 at 15 Hz, best-effort and reliable, with the
    default transport and the profile. Full: for both sizes and rates, best-effort with the
    default transport and the profile (in both processes, or only one), reliable and reliable ->
    best-effort with default and profile; Fast DDS's built-in alternatives at 640x480, 15 Hz."""
    if quick:
        return [("640x480", 15.0, q, t) for q in ("BE5->BE5", "REL10->REL10") for t in ("default", "xml-profile")]
    out = []
    for size, rate in itertools.product(sizes or SIZES, (15.0, 30.0)):
        out += [(size, rate, "BE5->BE5", t) for t in ("default", "xml-profile", "xml-profile-pub", "xml-profile-sub")]
        if (size, rate) == ("640x480", 15.0):
            out += [(size, rate, "BE5->BE5", t) for t in ("SHM", "UDPv4", "LARGE_DATA", "LARGE_DATA+4MB")]
        out += [(size, rate, q, t) for q in ("REL10->REL10", "REL10->BE5") for t in ("default", "xml-profile")]
    return out


def _kernel_buffers() -> str:
    values = {}
    for name in ("rmem_default", "rmem_max", "wmem_default", "wmem_max"):
        try:
            values[name] = int(Path(f"/proc/sys/net/core/{name}").read_text())
        except OSError:
            values[name] = None
    writable = os.access("/proc/sys/net/core/rmem_max", os.W_OK)
    return f"kernel socket buffers {values} (rmem_max writable by this user: {writable}; not changed here)"


def check_udp_over_limit() -> int:
    """Best effort 640x480 at 15 Hz over UDP only, with socket buffers of twice `rmem_max`."""
    limit = int(Path("/proc/sys/net/core/rmem_max").read_text())
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
        f.write(UDP_OVER_LIMIT.format(size=2 * limit))
    TRANSPORTS["udp-over-limit"] = ({"FASTDDS_DEFAULT_PROFILES_FILE": f.name},) * 2
    try:
        run = measure("640x480", 15.0, "BE5->BE5", "udp-over-limit", 3.0, 79)
    finally:
        Path(f.name).unlink()
    arrived = f"{run['received']}/{run['sent']}"
    print(f"load {os.getloadavg()[0]:.1f}; UDP buffers {2 * limit} > rmem_max {limit}: {arrived} arrived")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="640x480 at 15 Hz, 4 settings, 1 repeat of 3 s: ~30 s in all")
    p.add_argument("--repeats", type=int, help="runs per setting (default 2; --quick 1)")
    p.add_argument("--seconds", type=float, help="publishing time per run (default 4; --quick 3)")
    p.add_argument("--sizes", nargs="+", choices=sorted(SIZES), help="full grid for these image sizes only")
    p.add_argument(
        "--udp-over-limit",
        action="store_true",
        help="only check what a profile asking UDP buffers over net.core.rmem_max does (640x480, 15 Hz)",
    )
    p.add_argument("--json", type=Path, help="also write all runs here")
    p.add_argument("--role", choices=("pub", "sub"), help=argparse.SUPPRESS)
    p.add_argument("--size", default="640x480", help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, default=15.0, help=argparse.SUPPRESS)
    p.add_argument("--reliability", default="reliable", help=argparse.SUPPRESS)
    p.add_argument("--depth", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--topic", default="image", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role:
        (run_publisher if args.role == "pub" else run_subscriber)(args)
        return 0
    if args.udp_over_limit:
        return check_udp_over_limit()
    repeats = args.repeats or (1 if args.quick else 2)
    seconds = args.seconds or (3.0 if args.quick else 4.0)
    started = time.monotonic()
    print(f"load average at start: {os.getloadavg()}  cores: {os.cpu_count()}")
    print(_kernel_buffers())
    print(f"{repeats} repeat(s) of {seconds:g} s per setting; delivered = received/sent per repeat\n")
    header = f"{'size':9} {'Hz':>3} {'QoS pub->sub':13} {'transport':15} {'delivered':22} {'min/med/max %':15} "
    print(header + f"{'lat med ms':>10} {'p95 ms':>7} {'load':>5}")
    rows, domain = [], itertools.cycle(range(70, 80))
    for size, rate, qos, transport in grid(args.quick, args.sizes):
        load = os.getloadavg()[0]
        runs = [measure(size, rate, qos, transport, seconds, next(domain)) for _ in range(repeats)]
        s = _stats(runs)
        rows.append({"size": size, "rate": rate, "qos": qos, "transport": transport, "load": load, **s, "runs": runs})
        pct = f"{100 * s['fraction_min']:.0f}/{100 * s['fraction_median']:.0f}/{100 * s['fraction_max']:.0f}"
        lat = (
            f"{s['latency_median_ms']:10.1f} {s['latency_p95_ms']:7.1f}"
            if s["latency_median_ms"]
            else f"{'-':>10} {'-':>7}"
        )
        print(
            f"{size:9} {rate:3.0f} {qos:13} {transport:15} {' '.join(s['delivered']):22} {pct:15} {lat} {load:5.1f}",
            flush=True,
        )
    print(f"\nload average at end: {os.getloadavg()}")
    if args.json:
        for row in rows:
            for run in row["runs"]:
                run.pop("latencies_ms")
        args.json.write_text(json.dumps({"load_start_end": os.getloadavg(), "rows": rows}, indent=1))
    print(f"took {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
