"""vdepth_ros.resize: sizes, frame resizing and upsampling; VDA's exact preprocessing against the authors' code."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import cv2
import numpy as np
import pytest

from vdepth_ros.errors import ConfigError
from vdepth_ros.paths import reference_code_dir
from vdepth_ros.resize import (
    closest_aspect,
    edge_aware_upsample,
    edge_snap_upsample,
    lower_bound_size,
    registered_size,
    resize_frame,
    upsample,
    vda_working_size,
    working_size,
)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@pytest.fixture
def vda_reference(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The authors' `video_depth_anything.video_depth` module, imported with stand-ins for the
    packages it imports but this test never calls (torchvision's Compose is re-implemented: it
    only chains callables; easydict and einops are used by model layers that are not built)."""
    root = reference_code_dir()
    if root is None or not (root / "video-depth-anything").is_dir():
        pytest.skip("../shared/reference-code/video-depth-anything is absent (authors' code for parity)")
    tv = types.ModuleType("torchvision")
    tvt = types.ModuleType("torchvision.transforms")

    class Compose:
        def __init__(self, fns: list[Any]) -> None:
            self.fns = fns

        def __call__(self, x: Any) -> Any:
            for f in self.fns:
                x = f(x)
            return x

    tvt.Compose = Compose
    tv.transforms = tvt
    ed = types.ModuleType("easydict")
    ed.EasyDict = dict
    ein = types.ModuleType("einops")
    ein.rearrange = ein.repeat = lambda *a, **k: None
    for name, mod in {"torchvision": tv, "torchvision.transforms": tvt, "easydict": ed, "einops": ein}.items():
        if name not in sys.modules or name == "torchvision.transforms":
            monkeypatch.setitem(sys.modules, name, mod)
    for name in [n for n in sys.modules if n == "utils" or n.startswith(("utils.", "video_depth_anything"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(root / "video-depth-anything"))
    mod = importlib.import_module("video_depth_anything.video_depth")
    yield mod
    for name in [n for n in sys.modules if n == "utils" or n.startswith(("utils.", "video_depth_anything"))]:
        sys.modules.pop(name, None)


def test_lower_bound_size_equals_vda_resize_get_size(vda_reference: Any) -> None:
    from video_depth_anything.util.transform import Resize

    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(40, 2000, size=2))
        size, mult = int(rng.integers(20, 600)), int(rng.choice([1, 8, 14, 32]))
        ref = Resize(size, size, keep_aspect_ratio=True, ensure_multiple_of=mult, resize_method="lower_bound")
        rw, rh = ref.get_size(w, h)
        assert lower_bound_size(h, w, size, mult) == (int(rh), int(rw)), (h, w, size, mult)


class _FakeVDA:
    """`self` for the authors' `infer_video_depth`: records the network input, returns seeded depth."""

    metric = False

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []
        self.outputs: list[np.ndarray] = []

    def forward(self, x: Any) -> Any:
        import torch

        self.inputs.append(x.numpy().copy())
        g = torch.Generator().manual_seed(len(self.inputs))
        out = torch.rand(x.shape[0], x.shape[1], x.shape[3], x.shape[4], generator=g) * 20.0 + 0.5
        self.outputs.append(out.numpy().copy())
        return out


@pytest.mark.parametrize(("size", "input_size"), [((97, 131), 70), ((60, 150), 70), ((150, 113), 56)])
def test_vda_preprocessing_and_upsampling_match_infer_video_depth(
    vda_reference: Any, size: tuple[int, int], input_size: int
) -> None:
    """One window of the authors' `infer_video_depth` on random frames (4:3-ish, wider than 1.78:1,
    portrait): our working size, bicubic resize + their normalisation, and our align-corners
    upsampling of the network output reproduce theirs to <= 1e-5."""
    h, w = size
    frames = np.random.default_rng(1).integers(0, 256, size=(6, h, w, 3), dtype=np.uint8)
    fake = _FakeVDA()
    depth, _ = vda_reference.VideoDepthAnything.infer_video_depth(
        fake, frames, 30, input_size=input_size, device="cpu", fp32=True
    )
    (x,) = fake.inputs
    wh, ww = vda_working_size(h, w, input_size)
    assert x.shape[-2:] == (wh, ww)
    for i in range(len(frames)):
        ours = (resize_frame(frames[i], wh, ww, "bicubic") - IMAGENET_MEAN) / IMAGENET_STD
        np.testing.assert_allclose(ours.transpose(2, 0, 1), x[0, i], rtol=0, atol=1e-5)
        up = upsample(fake.outputs[0][0, i], h, w, "bilinear_align_corners")
        np.testing.assert_allclose(up, depth[i], rtol=1e-5, atol=1e-5 * float(np.abs(depth[i]).max()))


def test_closest_aspect_and_working_size() -> None:
    shapes = [(160, 224), (160, 288)]
    assert closest_aspect(480, 640, shapes) == (160, 224)  # 4:3 -> 7:5, not 9:5
    assert closest_aspect(720, 1280, shapes) == (160, 288)
    assert closest_aspect(1080, 1920, shapes + [(320, 576)]) == (160, 288)  # tie on aspect: pixel budget
    assert working_size(720, 1280, fixed=shapes, default=(160, 224), multiple=32) == (160, 288)
    assert working_size(480, 640, fixed=None, default=(160, 224), multiple=32) == (160, 224)
    assert working_size(720, 1280, fixed=None, default=(160, 224), multiple=32) == (160, 288)
    assert working_size(480, 640, fixed=None, default=(160, 224), multiple=32, short_side=192) == (192, 256)
    with pytest.raises(ConfigError):
        closest_aspect(480, 640, [])


@pytest.mark.parametrize(
    ("size", "kwargs", "expected"),
    [
        ((480, 640), {}, (480, 640)),
        ((480, 640), {"pixels": 160 * 224}, (165, 220)),  # 55 x (3, 4): exact 4:3
        ((480, 640), {"max_width": 320}, (240, 320)),
        ((720, 1280), {"pixels": 160 * 288}, (162, 288)),
        ((720, 1280), {"max_width": 1000}, (558, 992)),
        ((376, 1241), {"pixels": 160 * 480}, (153, 503)),  # no exact integer 1241:376 size: rounded
        ((120, 160), {"pixels": 160 * 224}, (120, 160)),  # never larger than the input
    ],
)
def test_registered_size_keeps_the_aspect(size: tuple[int, int], kwargs: dict, expected: tuple[int, int]) -> None:
    got = registered_size(*size, **kwargs)
    assert got == expected
    h, w = got
    assert abs((w / h) / (size[1] / size[0]) - 1) < 1.0 / min(h, w)
    if kwargs.get("max_width"):
        assert w <= kwargs["max_width"]


def test_upsample_methods_shapes_and_registration() -> None:
    """A linear ramp stays a ramp through the pixel-centre methods (registration), and nearest and
    align-corners differ from it exactly as their conventions say."""
    small = np.tile(np.arange(8, dtype=np.float32), (6, 1))  # value = working column index
    for method in ("bilinear", "edge_aware", "edge_snap"):
        guide = np.full((24, 32, 3), 128, np.uint8)
        up = upsample(small, 24, 32, method, guide=guide)
        centre = (np.arange(32) + 0.5) * (8 / 32) - 0.5  # working column of each output pixel centre
        np.testing.assert_allclose(up[5, 2:-2], centre[2:-2], atol=2e-3)
    ac = upsample(small, 24, 32, "bilinear_align_corners")
    np.testing.assert_allclose(ac[0], np.arange(32) * 7 / 31, atol=1e-5)
    nn = upsample(small, 24, 32, "nearest")
    assert set(np.unique(nn)) <= set(range(8)) and nn[0, 3] == 0 and nn[0, 4] == 1
    with pytest.raises(ConfigError):
        upsample(small, 24, 32, "lanczos")


def test_edge_aware_upsampling_keeps_the_edge_where_the_image_has_it() -> None:
    """A foreground square whose true edge lies between working pixels: bilinear makes a ramp of
    in-between depths (flying pixels in a cloud); edge_aware follows the image edge."""
    big_h, big_w, f = 120, 160, 4
    edge = 62  # not a multiple of the factor: the working grid straddles it
    truth = np.full((big_h, big_w), 1.0, np.float32)
    truth[:, :edge] = 5.0  # near (high disparity) left part
    rgb = np.full((big_h, big_w, 3), 40, np.uint8)
    rgb[:, :edge] = 220
    small = cv2.resize(truth, (big_w // f, big_h // f), interpolation=cv2.INTER_AREA)
    lin = upsample(small, big_h, big_w, "bilinear")
    ea = edge_aware_upsample(small, rgb)
    mixed_lin = np.mean((lin > 1.2) & (lin < 4.8))
    mixed_ea = np.mean((ea > 1.2) & (ea < 4.8))
    assert mixed_ea < 0.25 * mixed_lin
    assert np.abs(ea - truth).mean() < 0.5 * np.abs(lin - truth).mean()
    assert ea.min() >= small.min() - 1e-5 and ea.max() <= small.max() + 1e-5


def test_resize_frame_methods() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    area = resize_frame(rgb, 24, 32, "area")
    assert area.dtype == np.uint8 and area.shape == (24, 32, 3)
    cub = resize_frame(rgb, 24, 32, "bicubic")
    assert cub.dtype == np.float32 and abs(float(cub.mean()) - rgb.mean() / 255) < 0.01
    shifted = resize_frame(rgb, 24, 32, "bicubic", value_range=(-1.0, 1.0))
    np.testing.assert_allclose(shifted, cub * 2 - 1, atol=1e-5)
    with pytest.raises(ConfigError):
        resize_frame(rgb, 24, 32, "lanczos")


def test_edge_aware_leaves_slanted_surfaces_bilinear() -> None:
    """A plane's disparity is affine in the pixel coordinates: no second differences, so no texture
    of the image is copied into a slanted floor."""
    v, u = np.mgrid[0:40, 0:56].astype(np.float32)
    plane = 0.5 + 0.03 * u + 0.05 * v
    texture = np.random.default_rng(3).integers(0, 256, (120, 168, 3), dtype=np.uint8)
    np.testing.assert_array_equal(edge_aware_upsample(plane, texture), upsample(plane, 120, 168, "bilinear"))


def test_edge_snap_puts_no_depth_between_the_sides_of_a_step() -> None:
    """A sharp step (a vertical and a diagonal edge) at the working resolution: bilinear blends the
    two sides (flying points in the cloud), edge_snap outputs only the two sides' values, and every
    pixel whose 2x2 support lies on one side is exactly bilinear."""
    h, w, big_h, big_w = 30, 40, 90, 124  # not integer scales: the output grid straddles the step
    v, u = np.mgrid[0:h, 0:w]
    small = np.where((u < 17) | (u + v < 12), 5.0, 1.0).astype(np.float32)
    lin = upsample(small, big_h, big_w, "bilinear")
    snap = edge_snap_upsample(small, big_h, big_w)
    between = (lin > 1.0 + 1e-4) & (lin < 5.0 - 1e-4)
    assert between.mean() > 0.02  # bilinear does float between the sides here
    assert not np.any((snap > 1.0 + 1e-4) & (snap < 5.0 - 1e-4))
    np.testing.assert_array_equal(snap[~between], lin[~between])
    # each snapped pixel takes the side it is mostly on (the one its bilinear value is closer to)
    np.testing.assert_array_equal(snap[between], np.where(lin[between] > 3.0, 5.0, 1.0))


def test_edge_snap_takes_one_of_the_four_working_values_at_a_blurred_edge() -> None:
    """An edge between working pixels (area-averaged: one column of in-between values, as a model's
    own output has): snapped pixels take one of their four working values, never a blend of them
    (the in-between column itself is the model's, not the upsampler's, and stays)."""
    big_h, big_w, f = 120, 160, 4
    truth = np.full((big_h, big_w), 1.0, np.float32)
    truth[:, :62] = 5.0
    small = cv2.resize(truth, (big_w // f, big_h // f), interpolation=cv2.INTER_AREA)
    snap = upsample(small, big_h, big_w, "edge_snap")
    lin = upsample(small, big_h, big_w, "bilinear")
    working_values = np.unique(small)  # 1, 5 and the in-between column's 3
    assert np.isin(snap, working_values).all()
    assert not np.isin(lin, working_values).all()


def test_edge_snap_is_bilinear_on_flat_and_slanted_surfaces() -> None:
    """No discontinuity, no snapping: a flat wall, a gently curved surface and a plane steep enough
    that neighbouring working pixels differ by far more than SNAP_RATIO (a floor near the horizon:
    large relative steps, but no second difference) all come out exactly bilinear."""
    v, u = np.mgrid[0:40, 0:56].astype(np.float32)
    surfaces = {
        "flat": np.full((40, 56), 0.7, np.float32),
        "curved": (1.0 + 0.2 * np.sin(u / 9.0) * np.cos(v / 7.0)).astype(np.float32),
        "floor": (0.02 * (v + 1.0)).astype(np.float32),  # rows differ by up to 100 % of their value
    }
    for name, disp in surfaces.items():
        np.testing.assert_array_equal(
            edge_snap_upsample(disp, 120, 168), upsample(disp, 120, 168, "bilinear"), err_msg=name
        )
