"""Launch the vdepth_ros depth node with the shared params file and topic remappings.

    ros2 launch vdepth_ros depth.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info namespace:=robot1

`use_sim_time:=true` runs the node on /clock (a bag played with --clock, a simulator).

`depth_camera_info` (the intrinsics of depth, disparity and points) follows `depth` unless given, and
`depth/image_rect` (depth again, the image RViz and depth_image_proc pair with it) goes beside it.

Several cameras in one process, sharing the loaded model (docs/node.md, "Several cameras"):

    ros2 launch vdepth_ros depth.launch.py cameras:="front rear" namespace:=robot1

starts `depth_node --cameras robot1/front robot1/rear`: topics /robot1/front/image ->
/robot1/front/depth, ...; a single-camera topic argument (image:=..., which would apply to every
camera) is refused then, naming the full-name remap to write in a launch file of your own.
`managed:=true` starts it as a lifecycle node (`--managed`) that waits for configure/activate.

Needs `launch`/`launch_ros` (a real ROS 2 install). Where ROS comes from pip, the equivalent is
    vdepth-node [--cameras ...] --ros-args --params-file $(share)/config/depth.yaml -r image:=... -r camera_info:=...
"""

import os

try:
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription
except ModuleNotFoundError as err:  # ROS from pip: no launch/launch_ros wheels
    raise ModuleNotFoundError(
        f"depth.launch.py needs the ROS 2 packages launch and launch_ros ({err.name} is missing): a ROS 2 install. "
        "With ROS from pip, run the node directly: vdepth-node [--managed] [--cameras ...] --ros-args "
        "--params-file config/depth.yaml -r image:=... -r camera_info:=... (docs/node.md)",
        name=err.name,
    ) from err


#: The launch arguments that remap one camera's topics: argument -> the node's topic (its default).
#: With `cameras` they would apply to every camera.
TOPIC_ARGUMENTS = {
    "image": "image",
    "camera_info": "camera_info",
    "sparse_depth": "sparse_depth",
    "camera_pose": "camera_pose",
    "depth": "depth",
    "disparity": "disparity",
    "points": "points",
    "depth_camera_info": "depth/camera_info",  # default: next to wherever `depth` goes
}


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("vdepth_ros"), "config", "depth.yaml")
    args = [
        DeclareLaunchArgument(
            "params_file",
            default_value=default_params,
            description="node parameters (config/depth.yaml layout, '/**:' section)",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument(
            "image", default_value="image", description="input image topic (sensor_msgs/Image, or .../compressed)"
        ),
        DeclareLaunchArgument("camera_info", default_value="camera_info", description="input camera_info topic"),
        DeclareLaunchArgument(
            "sparse_depth",
            default_value="sparse_depth",
            description="optional metric depth (Image or PointCloud2; see param sparse_depth)",
        ),
        DeclareLaunchArgument(
            "camera_pose",
            default_value="camera_pose",
            description="optional camera optical-frame poses (PoseStamped; param sparse_depth: pose)",
        ),
        DeclareLaunchArgument("depth", default_value="depth", description="output depth topic (32FC1, metres)"),
        DeclareLaunchArgument("disparity", default_value="disparity", description="output relative disparity topic"),
        DeclareLaunchArgument("points", default_value="points", description="output organized point cloud topic"),
        DeclareLaunchArgument(
            "depth_camera_info",
            default_value="",
            description="output intrinsics of depth, disparity and points (empty: DEPTH/camera_info, next to depth)",
        ),
        DeclareLaunchArgument("log_level", default_value="info", description="node log level"),
        DeclareLaunchArgument(
            "use_sim_time",
            default_value="",
            description="true: the node's clock is /clock (a bag played with --clock, a simulator); empty: the "
            "params file's use_sim_time (false if it has none)",
        ),
        DeclareLaunchArgument(
            "managed",
            default_value="false",
            description="true: a managed (lifecycle) node that waits for configure/activate (e.g. Nav2's "
            "lifecycle_manager)",
        ),
        DeclareLaunchArgument(
            "cameras",
            default_value="",
            description="space-separated camera names: one process, one node per camera in namespace/NAME, "
            "one shared model (empty: one camera, the topic arguments above)",
        ),
    ]
    return LaunchDescription([*args, OpaqueFunction(function=depth_nodes)])


def _parameters(context: object) -> list:
    """The params file, then `use_sim_time` when given: the ROS launch argument every simulation and bag
    replay passes, which launch would otherwise ignore without a word (an undeclared argument), leaving the
    node on the wall clock; given only when set, so it does not override a params file's own."""
    sim = LaunchConfiguration("use_sim_time").perform(context).strip()
    if not sim:
        return [LaunchConfiguration("params_file")]
    if sim.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise RuntimeError(f"use_sim_time:={sim} must be true or false")
    return [LaunchConfiguration("params_file"), {"use_sim_time": sim.lower() in ("true", "1", "yes")}]


def depth_nodes(context: object) -> list[Node]:
    """The node action, once the launch arguments are known (`cameras` changes its command line)."""
    cameras = LaunchConfiguration("cameras").perform(context).split()
    log_level = LaunchConfiguration("log_level").perform(context)
    flags = ["--managed"] if LaunchConfiguration("managed").perform(context).lower() in ("true", "1", "yes") else []
    if cameras:
        # No `namespace=` and no relative remappings: both would apply to every camera of the process.
        prefix = LaunchConfiguration("namespace").perform(context).strip("/")
        names = [f"{prefix}/{c.strip('/')}" if prefix else c.strip("/") for c in cameras]
        given = {a: LaunchConfiguration(a).perform(context) for a in TOPIC_ARGUMENTS}
        given = {a: v for a, v in given.items() if v not in (TOPIC_ARGUMENTS[a], "")}  # not left at its default
        if given:  # ignored without a word, the camera would wait on /NAME/image for ever
            remaps = ", ".join(f"('/{names[0]}/{TOPIC_ARGUMENTS[a]}', '{v}')" for a, v in given.items())
            raise RuntimeError(
                f"{', '.join(f'{a}:={v}' for a, v in given.items())} remaps one camera's topic, but cameras:= "
                f"starts {len(names)} camera(s) whose topics are /{names[0]}/image, ...: remap each camera's "
                f"topics by full name in a launch file of your own (Node(..., remappings=[{remaps}, ...]); "
                "docs/node.md, Several cameras in one process), or leave cameras empty for one camera"
            )
        return [
            Node(
                package="vdepth_ros",
                executable="depth_node",
                name="depth_node",
                output="screen",
                emulate_tty=True,
                parameters=_parameters(context),
                arguments=[*flags, "--cameras", *names, "--ros-args", "--log-level", log_level],
            )
        ]
    info = LaunchConfiguration("depth_camera_info").perform(context)  # empty: the node puts it beside depth
    node = Node(
        package="vdepth_ros",
        executable="depth_node",
        name="depth_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=_parameters(context),
        remappings=[
            (topic, LaunchConfiguration(arg)) for arg, topic in TOPIC_ARGUMENTS.items() if arg != "depth_camera_info"
        ]
        + ([("depth/camera_info", info)] if info else []),
        arguments=[*flags, "--ros-args", "--log-level", log_level],
    )
    return [node]
