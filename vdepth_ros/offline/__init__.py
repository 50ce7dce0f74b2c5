"""Offline tools: the live node's pipeline over recorded bags (`vdepth-bag`) and videos (`vdepth-video`).

Modules:
    bag: `vdepth-bag` CLI and `process_bag`.
    video: `vdepth-video` CLI and `process_video`.
    bagio: streaming rosbag2 input (`BagFrameSource`) and output (`DepthBagWriter`) on `rosbags`.
    videoio: video/image-folder input and per-frame file outputs.
    runner: pipeline construction from the node's YAML, causal/offline driving, progress, summary.
    atomic: outputs built under a temporary name and renamed into place.
    synth: writing image bags from frames (demo, benchmark, tests).
    errors: the tools' exceptions.

Nothing here imports rclpy.
"""
