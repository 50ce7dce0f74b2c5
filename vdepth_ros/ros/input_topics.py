"""The input topics' names by image_transport's conventions, and what to change when a topic carries
another message type than the node subscribes there (`input_checks.InputGraphChecks.check_topic_types`).
"""

from __future__ import annotations

from rclpy.qos import ReliabilityPolicy

from vdepth_ros.inputs.assembly import DEPTH_STREAM_FIX, VIDEO_STREAM_TYPES, image_transport_of, is_depth_stream_name


def image_camera_info_topic(image_topic: str) -> str:
    """The camera_info topic of an image topic by image_transport's convention (`getCameraInfoTopic`):
    `camera_info` in the namespace of the image's base topic (`/cam/color/image_raw` and its
    `/cam/color/image_raw/compressed` -> `/cam/color/camera_info`)."""
    base = image_topic.rstrip("/").removesuffix("/compressed")
    return base.rsplit("/", 1)[0] + "/camera_info"


def image_subscription(image_topic: str, transport: str) -> tuple[str, bool]:
    """(topic, compressed) the node subscribes for the resolved `image` topic and `image_transport`.

    image_transport's convention: with the compressed transport, base topic `/cam/image_raw` is
    read from `/cam/image_raw/compressed`; a base topic that already names the compressed stream
    (ends in `/compressed`) is taken as it is, so both ways of writing it work. `auto` picks
    compressed for a topic ending in `/compressed`, else raw.
    """
    named_compressed = image_topic.endswith("/compressed")
    if transport == "compressed":
        return (image_topic if named_compressed else image_topic.rstrip("/") + "/compressed"), True
    return image_topic, transport == "auto" and named_compressed


def reliability_name(reliability: ReliabilityPolicy) -> str:
    return "reliable" if reliability == ReliabilityPolicy.RELIABLE else "best effort"


def topic_type_fix(is_image: bool, wanted: str, published: str, topic: str = "") -> str:
    """What to change when `topic` carries `published` and this node wants `wanted` there."""
    if is_image and is_depth_stream_name(topic):  # no transport makes a depth image a colour one
        return DEPTH_STREAM_FIX
    if is_image and wanted.endswith("/CompressedImage") and published.endswith("/Image"):
        return "remap image to the camera's base topic (compressed reads <base>/compressed), or image_transport:=raw"
    if is_image and published in VIDEO_STREAM_TYPES:
        return (
            "it is a video stream (H.264/H.265/Theora packets, each frame depending on earlier ones), which this node "
            "does not decode: remap image to the camera's raw topic, or to its compressed (jpeg/png) one"
        )
    if is_image and wanted.endswith("/Image") and published.endswith("/CompressedImage"):
        base, transport = topic.rstrip("/").rpartition("/")[0], image_transport_of(topic)
        if transport == "compressed":
            return "set image_transport:=compressed (or auto), or remap image to the raw stream"
        if transport:  # (zstd: a CompressedImage of another plugin, whose frames no jpeg/png decoder reads)
            return (
                f"'{transport}' is an image_transport plugin this node does not decode: remap image:={base} (raw), or "
                f"to its compressed transport ({base}/compressed, jpeg or png)"
            )
        # (image_transport:=compressed would read '<topic>/compressed', as image_transport does: nothing there)
        return (
            "this node reads compressed images under image_transport's name only, '<base topic>/compressed': have "
            f"the publisher use that name (e.g. {topic}/compressed, read with image:={topic}/compressed), or remap "
            "image to the raw stream"
        )
    if not is_image and wanted.endswith("/Image") and published.endswith("/CompressedImage"):
        return (
            "a depth camera's compressed stream is read by its image_transport name, <base>/compressedDepth (or "
            "<base>/compressed): remap sparse_depth to it (e.g. /camera/aligned_depth_to_color/image_raw/"
            "compressedDepth), or to the raw depth topic"
        )
    return "check the remapping of this topic (and the sparse_depth parameter for sparse_depth / camera_pose)"
