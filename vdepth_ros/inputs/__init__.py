"""The input side shared by the live node and the offline tools, with no ROS imports.

Camera messages (rclpy's or rosbags', duck-typed on their fields) become the pipeline's
`FrameInput`s here, by one set of rules: `sync` pairs images with camera_info, `resets` says when a
stream must restart, and the node (`vdepth_ros.ros`) and `vdepth-bag` (`vdepth_ros.offline`) both
call them, so a causal bag run reproduces the live node. Imports: numpy, cv2, `encodings`,
`rectify`, `triangulate`, `pipeline` types; never rclpy or rosbags.
"""
