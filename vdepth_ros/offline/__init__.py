"""Offline tools: the live node's pipeline over recorded bags (`vdepth-bag`) and videos (`vdepth-video`).

Modules:
    bag: `vdepth-bag` CLI and `process_bag`.
    bag_notes: what a vdepth-bag summary says about the run (drops, ignored inputs, flicker).
    video: `vdepth-video` CLI and `process_video`.
    bag_reader: streaming rosbag2 input (`BagFrameSource`) on `rosbags`.
    bag_topics: the topics vdepth-bag reads and writes (`resolve_topics`); which of a bag's are the inputs.
    bag_writer: rosbag2 output of the node's messages (`DepthBagWriter`).
    bag_messages: opening a bag and decoding single messages (reader and `vdepth-flicker`).
    bag_storage: a bag's storage files; readable copies of unclosed recordings (reader side).
    bag_outputs: what is at vdepth-bag's output path (a bag, one it wrote, the storage a name implies).
    bag_types: message type names, typestores, storages, `BagFrameMeta` (reader -> writer).
    flicker: `vdepth-flicker`, frame-to-frame flicker of a depth bag.
    entry: the console scripts of `vdepth-bag` and `vdepth-flicker` (one line without the `bag` extra).
    video_source: video/image-folder input (`VideoFrameSource`), which files are images.
    videoio: `vdepth-video`'s per-frame file outputs (`VideoOutputWriter`).
    runner: pipeline construction from the node's YAML, causal/offline driving, progress, summary.
    atomic: outputs built under a temporary name and renamed into place.
    synth: writing image bags from frames (demo, benchmark, tests).
    errors: the tools' exceptions.

Nothing here imports rclpy.
"""
