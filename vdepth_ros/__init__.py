"""vdepth_ros: temporally consistent video depth for ROS 2."""

__version__ = "0.1.0"
