"""vdepth-video on a tiny generated mp4 and on an image folder."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import LuminanceEngine, with_exif_orientation

from vdepth_ros.config import PipelineConfig
from vdepth_ros.offline import video as videocli
from vdepth_ros.offline.errors import OfflineError, VideoReadError
from vdepth_ros.offline.synth import synthetic_frames
from vdepth_ros.offline.video import process_video
from vdepth_ros.offline.videoio import depth_from_png, depth_png, read_ply
from vdepth_ros.pipeline import DepthPipeline, FrameInput

H, W, N = 48, 64, 12
RANGE = (0.5, 4.0)


def make_engine() -> LuminanceEngine:
    return LuminanceEngine(height=48, width=64, frames=8, overlap=3)


def make_mp4(path: Path, n: int = N) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (W, H))
    assert vw.isOpened()
    for rgb in synthetic_frames(n, H, W):
        vw.write(np.ascontiguousarray(rgb[..., ::-1]))
    vw.release()
    return path


def make_folder(path: Path, n: int = N) -> Path:
    path.mkdir()
    for i, rgb in enumerate(synthetic_frames(n, H, W)):
        cv2.imwrite(str(path / f"frame_{i}.png"), np.ascontiguousarray(rgb[..., ::-1]))  # natural sort: 2 < 10
    (path / "notes.txt").write_text("not an image")
    return path


def test_mp4_to_depth_pngs_npz_and_preview(tmp_path: Path) -> None:
    clip = make_mp4(tmp_path / "clip.mp4")
    s = process_video(
        clip, tmp_path / "out", params={}, engine=make_engine(), formats=("png", "npy", "npz"), depth_range=RANGE
    )
    out = tmp_path / "out"
    assert s.frames_in == N and s.frames_out == N and s.dropped == 0
    pngs = sorted((out / "depth").glob("*.png"))
    assert len(pngs) == N and pngs[0].name == "000000.png"
    png = cv2.imread(str(pngs[3]), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == (H, W)
    npy = np.load(out / "depth" / "000003.npy")
    assert npy.dtype == np.float32
    np.testing.assert_array_equal(png, depth_png(npy))  # millimetres, with codes for NaN / +-Inf
    np.testing.assert_allclose(depth_from_png(png), npy, atol=5e-4)  # equal_nan: codes read back as NaN / +-Inf
    with np.load(out / "depth" / "000003.npz") as z:
        np.testing.assert_array_equal(z["depth"], npy)
        assert z["disparity"].shape == (H, W) and int(z["stamp_ns"]) == round(3 * 1e9 / 15)
    cap = cv2.VideoCapture(str(out / "preview.mp4"))
    assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 2 * W  # no intrinsics given: still image | depth side by side
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == N and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(15.0)
    rows = list(csv.DictReader((out / "frames.csv").open()))
    assert [int(r["index"]) for r in rows] == list(range(N)) and {r["scale_source"] for r in rows} == {"range"}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "depth" and meta["depth_range"] == list(RANGE) and "millimetres" in meta["units"]


def test_folder_matches_pipeline_and_writes_ply(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "frames")
    K = (60.0, 60.0, 31.5, 23.5)
    s = process_video(
        folder,
        tmp_path / "out",
        params={"cloud_stride": 1},
        engine=make_engine(),
        formats=("npy",),
        depth_range=RANGE,
        ply=True,
        intrinsics=K,
        preview=False,
    )
    assert s.frames_out == N and s.clouds == N
    assert not (tmp_path / "out" / "preview.mp4").exists()

    from vdepth_ros.stream.cloud import CameraModel

    config = PipelineConfig.from_params(
        {"scale_source": "range", "near": RANGE[0], "far": RANGE[1], "cloud_stride": 1}
    )[0]
    cam = CameraModel(*K, width=W, height=H)
    frames = [
        FrameInput(rgb=f, stamp_ns=round(i * 1e9 / 30), camera=cam) for i, f in enumerate(synthetic_frames(N, H, W))
    ]
    expected = list(DepthPipeline(config, engine=make_engine()).run_offline(frames))
    for f in expected:  # lossless PNG input -> identical to the pipeline on the same frames
        np.testing.assert_array_equal(np.load(tmp_path / "out" / "depth" / f"{f.index:06d}.npy"), f.depth)
        pts = read_ply(tmp_path / "out" / "clouds" / f"{f.index:06d}.ply")
        finite = f.points.reshape(-1, 3)[np.isfinite(f.points.reshape(-1, 3)).all(axis=1)]
        np.testing.assert_array_equal(pts, finite)


def test_a_folder_of_a_12_bit_cameras_16_bit_pngs_gives_the_depth_of_its_picture(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Frames a 12-bit camera saved as 16-bit PNGs (values 0-4095, as machine-vision capture tools
    write them) were read to their top 8 bits: the depth of an almost black picture. They are read
    by the node's auto bit depth rule, said once, and give the depth of the 8-bit frames."""
    eight, twelve = make_folder(tmp_path / "eight"), tmp_path / "twelve"
    twelve.mkdir()
    for i, rgb in enumerate(synthetic_frames(N, H, W)):
        cv2.imwrite(str(twelve / f"frame_{i}.png"), np.ascontiguousarray(rgb[..., ::-1]).astype(np.uint16) << 4)
    outs = {}
    for folder in (eight, twelve):
        with caplog.at_level(logging.INFO):
            process_video(folder, tmp_path / f"out_{folder.name}", params={}, engine=make_engine(), formats=("npy",),
                          depth_range=RANGE, preview=False)  # fmt: skip
        outs[folder.name] = [np.load(p) for p in sorted((tmp_path / f"out_{folder.name}" / "depth").glob("*.npy"))]
    assert len(outs["twelve"]) == N
    for a, b in zip(outs["eight"], outs["twelve"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert sum("samples use 12 bits" in r.getMessage() for r in caplog.records) == 1


def test_without_scale_source_writes_disparity_and_says_so(tmp_path: Path) -> None:
    s = process_video(
        make_mp4(tmp_path / "c.mp4"), tmp_path / "out", params={}, engine=make_engine(), ply=True, assume_hfov=70.0
    )
    assert (tmp_path / "out" / "disparity").is_dir() and not (tmp_path / "out" / "depth").exists()
    assert not (tmp_path / "out" / "clouds").exists()
    assert len(list((tmp_path / "out" / "disparity").glob("*.png"))) == N
    assert any("DISPARITY, not metric depth" in n for n in s.notes)
    assert any("no .ply written" in n for n in s.notes)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["kind"] == "disparity" and meta["png_scale"] > 0 and "NOT metric" in meta["units"]


def test_assumed_intrinsics_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        s = process_video(
            make_mp4(tmp_path / "c.mp4", 9),
            tmp_path / "out",
            params={},
            engine=make_engine(),
            ply=True,
            assume_hfov=70.0,
            depth_range=RANGE,
        )
    assert any("ASSUMED" in r.getMessage() and "distorted" in r.getMessage() for r in caplog.records)
    cap = cv2.VideoCapture(str(tmp_path / "out" / "preview.mp4"))
    assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 2 * W  # frames carry colours: RGB | depth side by side
    assert s.clouds == 9 and json.loads((tmp_path / "out" / "meta.json").read_text())["intrinsics_assumed"]


def test_errors(tmp_path: Path) -> None:
    clip = make_mp4(tmp_path / "c.mp4", 4)
    with pytest.raises(OfflineError, match="--ply needs --intrinsics"):
        process_video(clip, tmp_path / "o1", params={}, engine=make_engine(), ply=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="holds no images"):
        process_video(tmp_path / "empty", tmp_path / "o2", params={}, engine=make_engine())
    (tmp_path / "empty" / "IMG_0001.HEIC").write_bytes(b"ftypheic")  # an iPhone's photos: named, with the way out
    with pytest.raises(VideoReadError, match=r"holds no images .*its 1 HEIC/HEIF photos .* convert them to JPEG"):
        process_video(tmp_path / "empty", tmp_path / "o2", params={}, engine=make_engine())
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoReadError, match="cannot open video"):
        process_video(tmp_path / "bad.mp4", tmp_path / "o3", params={}, engine=make_engine())
    with pytest.raises(OfflineError, match="NEAR < FAR"):
        process_video(clip, tmp_path / "o4", params={}, engine=make_engine(), depth_range=(3.0, 1.0))
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))


def test_an_mp4_whose_recording_was_not_finalized_says_so(tmp_path: Path) -> None:
    """A clip whose camera, phone or ffmpeg was stopped before it wrote the index at the end (the 'moov' box), or
    a copy cut short: "OpenCV/FFmpeg could not read it", the cause only in FFmpeg's log line. Now the error names
    it and the way out; a file that is no MP4 at all keeps the plain error."""
    data = make_mp4(tmp_path / "c.mp4", 8).read_bytes()
    assert data.find(b"moov") > data.find(b"mdat")  # as recorders write it: the index last
    (tmp_path / "cut.mp4").write_bytes(data[: data.find(b"moov") - 4])
    with pytest.raises(VideoReadError, match=r"cut\.mp4: it has no index \(no 'moov' box\): a recording stopped"):
        process_video(tmp_path / "cut.mp4", tmp_path / "o1", params={}, engine=make_engine())
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoReadError, match=r"junk\.mp4: OpenCV/FFmpeg could not read it"):
        process_video(tmp_path / "junk.mp4", tmp_path / "o2", params={}, engine=make_engine())
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(videocli, "build_pipeline", lambda config, engine=None: DepthPipeline(config, make_engine()))
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    cloud_stride: 2\n")
    clip = make_mp4(tmp_path / "c.mp4", 6)
    args = [
        str(clip),
        "-o",
        str(tmp_path / "out"),
        "--params",
        str(params),
        "--format",
        "png,npz",
        "--depth-range",
        "0.5",
        "4",
        "--no-progress",
    ]
    assert videocli.main(args) == 0
    assert "6 frames in, 6 out" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "depth").glob("*.npz"))) == 6
    assert videocli.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert videocli.main([*args, "--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frames_out"] == 6
    with pytest.raises(SystemExit):
        videocli.main([*args, "--format", "tiff"])


def test_cli_a_tilde_the_shell_did_not_expand_means_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o=~/depth` or `--output=~/depth` (bash expands no `~` after `=`), a quoted path or one from a
    script: every console tool reads `~` as the home folder (`paths.expand_home`) instead of writing
    a folder literally named `~` in the working directory."""
    monkeypatch.setattr(videocli, "build_pipeline", lambda config, engine=None: DepthPipeline(config, make_engine()))
    home = tmp_path / "home"
    home.mkdir()
    make_mp4(home / "c.mp4", 3)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert videocli.main(["~/c.mp4", "--output=~/depth", "--no-progress", "--no-preview"]) == 0
    assert len(list((home / "depth" / "disparity").glob("*.png"))) == 3
    assert not (tmp_path / "~").exists()
    capsys.readouterr()


def test_cli_runs_openblas_on_one_thread_unless_the_user_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tools set numpy's OpenBLAS to 1 thread (its spinning pool slowed stitching 5-8x on 2
    cores, vdepth_ros/blas.py), but an explicit OPENBLAS_NUM_THREADS wins."""
    from vdepth_ros.blas import blas_threads, set_blas_threads

    if not blas_threads():
        pytest.skip("numpy is not linked against OpenBLAS here")
    monkeypatch.setattr(videocli, "build_pipeline", lambda config, engine=None: DepthPipeline(config, make_engine()))
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    clip = make_mp4(tmp_path / "c.mp4", 3)
    before = set_blas_threads(2)
    try:
        assert videocli.main([str(clip), "-o", str(tmp_path / "a"), "--no-progress", "--no-preview"]) == 0
        assert set(blas_threads().values()) == {1}
        set_blas_threads(2)
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
        assert videocli.main([str(clip), "-o", str(tmp_path / "b"), "--no-progress", "--no-preview"]) == 0
        assert set(blas_threads().values()) == {2}
    finally:
        for n in set(before.values()):
            set_blas_threads(n)
    capsys.readouterr()


def test_cli_applies_the_params_files_blas_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vdepth-video --params` sets numpy's OpenBLAS threads from the node's `blas_threads`, by the
    same rule as `vdepth-bag` and the node (0 = leave as is); before, it always set 1."""
    from vdepth_ros.blas import blas_threads, set_blas_threads

    if not blas_threads():
        pytest.skip("numpy is not linked against OpenBLAS here")
    monkeypatch.setattr(videocli, "build_pipeline", lambda config, engine=None: DepthPipeline(config, make_engine()))
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    clip = make_mp4(tmp_path / "c.mp4", 3)
    params = tmp_path / "params.yaml"
    before = set_blas_threads(1)
    try:
        for n, expect in ((2, 2), (0, 2), (1, 1)):
            params.write_text(f"/**:\n  ros__parameters:\n    blas_threads: {n}\n")
            out = tmp_path / f"out{n}"
            args = [str(clip), "-o", str(out), "--params", str(params), "--no-progress", "--no-preview"]
            assert videocli.main(args) == 0
            assert set(blas_threads().values()) == {expect}, n
    finally:
        for k in set(before.values()):
            set_blas_threads(k)
    capsys.readouterr()


def test_camera_info_file_equals_intrinsics_and_rectify_undistorts(tmp_path: Path) -> None:
    """`--camera-info` (camera_calibration's YAML) gives the same run as `--intrinsics`; with lens
    distortion and `--rectify` each frame is undistorted first (as the node's `rectify`)."""
    folder = make_folder(tmp_path / "frames")
    K = (60.0, 60.0, 31.5, 23.5)
    cal = tmp_path / "cam.yaml"
    cal.write_text(
        f"image_width: {W}\nimage_height: {H}\ncamera_matrix: {{rows: 3, cols: 3, data: "
        f"[{K[0]}, 0, {K[2]}, 0, {K[1]}, {K[3]}, 0, 0, 1]}}\ndistortion_model: plumb_bob\n"
        "distortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}\n"
    )
    kw = {"params": {"cloud_stride": 1}, "formats": ("npy",), "depth_range": RANGE, "ply": True, "preview": False}
    process_video(folder, tmp_path / "k", engine=make_engine(), intrinsics=K, **kw)
    process_video(folder, tmp_path / "file", engine=make_engine(), camera_info=cal, **kw)
    meta = json.loads((tmp_path / "file" / "meta.json").read_text())
    assert meta["input_intrinsics"] == list(K)  # the calibration's camera at the clip's size, as --intrinsics
    for i in range(N):
        name = f"{i:06d}.npy"
        np.testing.assert_array_equal(
            np.load(tmp_path / "file" / "depth" / name), np.load(tmp_path / "k" / "depth" / name)
        )
        ply = f"{i:06d}.ply"
        np.testing.assert_array_equal(
            read_ply(tmp_path / "file" / "clouds" / ply), read_ply(tmp_path / "k" / "clouds" / ply)
        )

    cal.write_text(cal.read_text().replace("data: [0, 0, 0, 0, 0]", "data: [-0.3, 0.1, 0, 0, 0]"))
    s = process_video(folder, tmp_path / "rect", engine=make_engine(), camera_info=cal, rectify=True, **kw)
    meta = json.loads((tmp_path / "rect" / "meta.json").read_text())
    assert meta["rectified"] is True and meta["camera_info"] == str(cal)
    assert s.frames_out == N
    assert not np.array_equal(
        np.load(tmp_path / "rect" / "depth" / "000003.npy"),
        np.load(tmp_path / "k" / "depth" / "000003.npy"),
        equal_nan=True,
    )
    with pytest.raises(OfflineError, match="one of --intrinsics, --assume-hfov and --camera-info"):
        process_video(folder, tmp_path / "x", engine=make_engine(), camera_info=cal, intrinsics=K, **kw)
    with pytest.raises(OfflineError, match="--rectify needs --camera-info"):
        process_video(folder, tmp_path / "y", engine=make_engine(), intrinsics=K, rectify=True, **kw)


class VariableRateCapture:
    """`cv2.VideoCapture` of a variable-frame-rate clip (as phones record): frames at these times
    (ms, a 2 s pause in the middle), 2.3 frames/s on average."""

    TIMES = (0.0, 33.3, 66.7, 100.0, 2100.0, 2133.3, 2166.7)

    def __init__(self, path: str) -> None:
        self.frames = list(synthetic_frames(len(self.TIMES), H, W))
        self.i = -1

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def get(self, prop: int) -> float:
        values = {
            cv2.CAP_PROP_FPS: len(self.TIMES) / 3.0,
            cv2.CAP_PROP_FRAME_COUNT: len(self.TIMES),
            cv2.CAP_PROP_FRAME_WIDTH: W,
            cv2.CAP_PROP_FRAME_HEIGHT: H,
            cv2.CAP_PROP_POS_MSEC: self.TIMES[self.i] if self.i >= 0 else 0.0,
        }
        return float(values.get(prop, 0.0))

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.i += 1
        if self.i >= len(self.frames):
            return False, None
        return True, np.ascontiguousarray(self.frames[self.i][..., ::-1])

    def release(self) -> None:
        pass


@pytest.mark.parametrize("fps", [None, 10.0])
def test_variable_frame_rate_video_keeps_its_frame_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fps: float | None
) -> None:
    """The stamps written (npz, frames.csv) are the video's own frame times, not index / average fps
    (which put the frame after a 2 s pause 1.7 s early); `--fps` still sets them as index / fps."""
    import vdepth_ros.offline.video_source as video_source

    clip = make_mp4(tmp_path / "phone.mp4", n=2)  # exists; its frames come from the fake capture
    monkeypatch.setattr(video_source.cv2, "VideoCapture", VariableRateCapture)
    n = len(VariableRateCapture.TIMES)
    s = process_video(
        clip, tmp_path / "out", params={}, engine=make_engine(), formats=("npz",), preview=False, fps=fps, mode="causal"
    )
    assert s.frames_out == n
    want = [round(t * 1e6) for t in VariableRateCapture.TIMES] if fps is None else [round(i * 1e8) for i in range(n)]
    rows = list(csv.DictReader((tmp_path / "out" / "frames.csv").open()))
    assert [int(r["stamp_ns"]) for r in sorted(rows, key=lambda r: int(r["index"]))] == want
    for i in range(n):
        with np.load(tmp_path / "out" / "disparity" / f"{i:06d}.npz") as z:
            assert int(z["stamp_ns"]) == want[i]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-frames", "0", "--max-frames must be at least 1"),
        ("--max-frames", "-1", "--max-frames must be at least 1"),
        ("--fps", "0", "--fps must be a positive frame rate"),
        ("--fps", "-5", "--fps must be a positive frame rate"),
        ("--assume-hfov", "0", "--assume-hfov must be"),
        ("--assume-hfov", "200", "--assume-hfov must be"),
    ],
)
def test_meaningless_numbers_are_refused(
    tmp_path: Path, option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-frames 0 used to write an 'output' with no frames and report a 'None/' folder and a
    preview that did not exist; --fps 0 and --assume-hfov 0 silently became 30 and 60."""
    clip = make_mp4(tmp_path / "clip.mp4", n=2)
    args = [str(clip), "-o", str(tmp_path / "out"), "--no-progress", option, value]
    if option == "--assume-hfov":
        args += ["--ply", "--depth-range", "0.5", "4"]
    assert videocli.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_an_undecodable_image_is_dropped_wherever_it_sorts(tmp_path: Path) -> None:
    """A damaged file sorting first (here 'broken.png' before 'frame_0.png') failed the whole folder
    ("cannot decode image"), while the same file anywhere else was dropped and counted."""
    folder = make_folder(tmp_path / "frames", n=4)
    (folder / "broken.png").write_bytes(b"not a png")
    s = process_video(folder, tmp_path / "out", params={}, engine=make_engine(), preview=False)
    assert (s.frames_in, s.frames_out, s.dropped) == (5, 4, 1)
    rows = list(csv.DictReader((tmp_path / "out" / "frames.csv").open()))
    assert [r["source"] for r in rows] == [f"frame_{i}.png" for i in range(4)]
    for name in ("broken.png", "frame_0.png", "frame_1.png", "frame_2.png", "frame_3.png"):
        (folder / name).write_bytes(b"not a png")
    with pytest.raises(VideoReadError, match="none of its 5 image files can be decoded"):
        process_video(folder, tmp_path / "out2", params={}, engine=make_engine())
    assert not (tmp_path / "out2").exists()


def test_a_jpeg_frame_cut_short_is_dropped_not_read_half_grey(tmp_path: Path) -> None:
    """A folder of JPEG frames with one cut short (a copy interrupted): OpenCV's imread decodes it with the
    missing rows grey, saying so only on standard error, and its depth was written as a frame's. Now it is
    dropped and counted as undecodable."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, rgb in enumerate(synthetic_frames(4, H, W)):
        cv2.imwrite(str(folder / f"frame_{i}.jpg"), np.ascontiguousarray(rgb[..., ::-1]))
    cut = folder / "frame_2.jpg"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 2 // 3])
    s = process_video(folder, tmp_path / "out", params={}, engine=make_engine(), preview=False)
    assert (s.frames_in, s.frames_out, s.dropped) == (4, 3, 1)
    rows = list(csv.DictReader((tmp_path / "out" / "frames.csv").open()))
    assert [r["source"] for r in rows] == ["frame_0.jpg", "frame_1.jpg", "frame_3.jpg"]


def test_a_folder_of_phone_photos_taken_upright_is_read_upright(tmp_path: Path) -> None:
    """A phone stores a photo taken upright landscape, with EXIF orientation 6; OpenCV decodes it turned upright
    (portrait), while the folder's size was read from the JPEG headers (landscape): every frame was dropped as
    "another size" and the run failed with "no decodable frames". Now the headers' size is turned alike."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, rgb in enumerate(synthetic_frames(6, H, W)):
        jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()
        (folder / f"IMG_{i:04d}.jpg").write_bytes(with_exif_orientation(jpeg, 6))
    s = process_video(folder, tmp_path / "out", params={}, engine=make_engine(), preview=False, formats=("npy",))
    assert (s.frames_in, s.frames_out, s.dropped) == (6, 6, 0)
    [first, *_] = sorted((tmp_path / "out" / "disparity").glob("*.npy"))
    assert np.load(first).shape == (W, H)  # portrait, as the photo is shown


def test_a_folder_of_mixed_sizes_is_one_warning_and_a_summary_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder whose images are not all one size (a thumbnail or a resized batch among the frames):
    every image of another size printed its own warning line (thousands for a long folder), then one
    line per size (a folder of crops, each its own size, flooded the log all the same), and the
    summary said only how many were dropped, not why. Now it is one warning for the kind of problem,
    and one summary line naming the commonest sizes with their counts."""
    folder = make_folder(tmp_path / "frames", n=4)
    for i, rgb in enumerate(synthetic_frames(12, H // 2, W // 2)):
        cv2.imwrite(str(folder / f"frame_{i + 4}.png"), np.ascontiguousarray(rgb[..., ::-1]))
    cv2.imwrite(str(folder / "frame_99.png"), np.zeros((H * 2, W * 2, 3), np.uint8))
    for i in range(1, 6):  # crops, each of its own size
        cv2.imwrite(str(folder / f"frame_{100 + i}.png"), np.zeros((H + i, W, 3), np.uint8))
    with caplog.at_level(logging.WARNING):
        s = process_video(folder, tmp_path / "out", params={}, engine=make_engine(), preview=False)
    assert (s.frames_in, s.frames_out, s.dropped) == (22, 12, 10)  # the size most images have is kept
    (dropping,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dropping")]
    assert dropping.startswith("dropping frame_0.png: it is 64x48, not 32x24 as most"), dropping
    (line,) = [n for n in s.notes if n.startswith("dropped")]
    assert line.startswith(
        "dropped 10 frame(s) of other sizes: 64x48 (4), 128x96 (1), 64x49 (1) and 4 more sizes, not 32x24 as most of "
        "the folder's images (the first: frame_4.png)"
    ), line


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_an_image_whose_header_claims_gigapixels_is_dropped_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ext: str
) -> None:
    """A PNG mid-folder whose header says 30000x30000 (0.9 GP, under OpenCV's own 1 GP limit: a panorama or a
    damaged header among the frames) was handed to the decoder, twice, to learn its size (2.7 GB of pixels for
    a file that decodes). Now its header says it is not the clip's size: dropped and counted as such, never
    decoded. So is a TIFF's, whose header (its IFD) comes after its pixels, as libtiff writes it: its size was
    unknown, so it was decoded."""
    import struct
    import zlib

    folder = make_folder(tmp_path / "frames", n=6)
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    # a TIFF of 70000 bytes of "pixels", then one IFD of two LONG entries: width, height
    tiff = b"II*\x00" + struct.pack("<I", 70008) + bytes(70000)
    tiff += struct.pack("<H", 2) + struct.pack("<HHII", 256, 4, 1, 30000) + struct.pack("<HHII", 257, 4, 1, 30000)
    (folder / f"frame_2a{ext}").write_bytes(png + b"\0" * 64 if ext == ".png" else tiff + bytes(4))
    decoded: list[str] = []
    real = cv2.imread

    def imread(path: str, *flags: int) -> np.ndarray | None:
        decoded.append(Path(path).name)
        return None if Path(path).stem == "frame_2a" else real(path, *flags)  # (not 2.7 GB in a test)

    monkeypatch.setattr(cv2, "imread", imread)
    s = process_video(folder, tmp_path / "out", params={}, engine=make_engine(), preview=False)
    assert (s.frames_in, s.frames_out, s.dropped) == (7, 6, 1)
    assert "dropped 1 frame(s) of 30000x30000, not 64x48" in s.format()
    assert f"frame_2a{ext}" not in decoded


@pytest.mark.parametrize("many", [False, True])
def test_a_stray_image_sorting_first_does_not_drop_the_folder(many: bool, tmp_path: Path) -> None:
    """A thumbnail (`000_thumb.jpg`, `cover.png`) that sorts before the frames: its size was taken as the
    clip's and every real frame was dropped, the whole folder lost to one file. With more images than are
    sampled for the size (`SIZE_SAMPLES`) too. Run as the user runs it."""
    import subprocess
    import sys

    from vdepth_ros.offline.video_source import SIZE_SAMPLES

    n = SIZE_SAMPLES * 2 + 5 if many else 6
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "000_thumb.png"), np.zeros((H // 4, W // 4, 3), np.uint8))
    for i in range(n):
        cv2.imwrite(str(folder / f"frame_{i:04d}.png"), np.full((H, W, 3), 10 + i % 200, np.uint8))
    vdepth_video = str(Path(sys.executable).parent / "vdepth-video")
    args = [vdepth_video, str(folder), "-o", str(tmp_path / "out"), "--no-progress", "--no-preview", "--json"]
    args += ["--max-frames", "6"]  # the size is still the folder's
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert (summary["frames_out"], summary["dropped"]) == (6, 1), summary
    assert "dropping 000_thumb.png: it is 16x12, not 64x48" in proc.stderr


def test_frames_named_by_their_time_in_seconds_are_read_in_time_order(tmp_path: Path) -> None:
    """Frames saved as `str(time.time()) + ".png"` (a common capture script): the fractions differ in
    length ("1700000000.1" after "1700000000.0666666"), and the natural sort compared them as whole
    numbers (1 < 666666), putting frames out of order."""
    folder = tmp_path / "frames"
    folder.mkdir()
    names = [f"{1700000000 + k / 30}.png" for k in range(12)]
    for name, rgb in zip(names, synthetic_frames(12, H, W), strict=True):
        cv2.imwrite(str(folder / name), np.ascontiguousarray(rgb[..., ::-1]))
    process_video(folder, tmp_path / "out", params={}, engine=make_engine(), preview=False)
    rows = list(csv.DictReader((tmp_path / "out" / "frames.csv").open()))
    assert [r["source"] for r in rows] == names


def test_hidden_files_in_a_folder_are_not_frames(tmp_path: Path) -> None:
    """Frames copied from a Mac onto a USB stick get a hidden "._frame_N.png" beside each: every one
    was counted as an input frame that cannot be decoded (frames in doubled, a drop per frame)."""
    folder = make_folder(tmp_path / "frames", n=6)
    for i in range(6):
        (folder / f"._frame_{i}.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    s = process_video(folder, tmp_path / "out", params={}, engine=make_engine(), preview=False)
    assert (s.frames_in, s.frames_out, s.dropped) == (6, 6, 0)


def test_a_video_cut_short_says_how_much_of_it_was_read(tmp_path: Path) -> None:
    """A clip whose copy was interrupted (the second half of the file missing) gave a depth output
    of its first half, with a summary as if that were the whole clip."""
    clip = tmp_path / "clip.mkv"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (W, H))
    for rgb in synthetic_frames(40, H, W):
        vw.write(np.ascontiguousarray(rgb[..., ::-1]))
    vw.release()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    s = process_video(cut, tmp_path / "out", params={}, engine=make_engine(), preview=False)
    assert 10 < s.frames_out < 30
    assert f"cut.mkv ended after {s.frames_out} of the 40 frames its header declares" in s.format()
    whole = process_video(clip, tmp_path / "out2", params={}, engine=make_engine(), preview=False)
    assert whole.frames_out == 40 and "ended after" not in whole.format()
    limited = process_video(clip, tmp_path / "out3", params={}, engine=make_engine(), preview=False, max_frames=10)
    assert "ended after" not in limited.format()


def _calibration(path: Path, width: int, height: int, k: list[float]) -> Path:
    path.write_text(
        f"image_width: {width}\nimage_height: {height}\ncamera_matrix: {{rows: 3, cols: 3, data: {k}}}\n"
        "distortion_model: plumb_bob\ndistortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}\n"
    )
    return path


@pytest.mark.parametrize(
    ("camera", "match"),
    [
        # a 16:9 calibration on the 4:3 clip: scaled per axis it would stretch every cloud
        ({"camera_info": (1280, 720, [900, 0, 640, 0, 900, 360, 0, 0, 1])}, "another aspect ratio"),
        # an uncalibrated file (camera_calibration's template): no clouds, and nothing said
        ({"camera_info": (W, H, [0] * 9)}, "all zero"),
        # intrinsics of the camera's full resolution given for a downscaled clip
        ({"intrinsics": (900.0, 900.0, 640.0, 360.0)}, "outside the 64x48 image"),
        ({"camera_info": (W, H, [60, 0, 200, 0, 60, 23.5, 0, 0, 1])}, "outside the 64x48 image"),
        ({"intrinsics": (-60.0, 60.0, 31.5, 23.5)}, "focal lengths must be positive"),
    ],
    ids=["aspect", "uncalibrated", "intrinsics_off_image", "file_off_image", "negative_focal"],
)
def test_a_camera_that_cannot_be_the_clips_is_refused_before_anything_is_written(
    tmp_path: Path, camera: dict, match: str
) -> None:
    """The calibration the clouds and meta.json's camera come from is checked against the clip as the
    node checks a camera_info against its image (`inputs.assembly.camera_info_problem`): a wrong
    one used to be scaled onto the clip without a word (fx 13.5 / fy 18 px from a 16:9 file on
    a 4:3 clip), or, all zero, to give no clouds in silence."""
    folder = make_folder(tmp_path / "frames")
    if "camera_info" in camera:
        camera = {"camera_info": _calibration(tmp_path / "cam.yaml", *camera["camera_info"])}
    with pytest.raises(OfflineError, match=match):
        process_video(folder, tmp_path / "out", params={}, engine=make_engine(), depth_range=RANGE, ply=True, **camera)
    assert not (tmp_path / "out").exists()


def test_a_lens_rectify_cannot_undo_is_refused_naming_the_file(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "frames")
    cal = _calibration(tmp_path / "cam.yaml", W, H, [60, 0, 31.5, 0, 60, 23.5, 0, 0, 1])
    cal.write_text(cal.read_text().replace("cols: 5, data: [0, 0, 0, 0, 0]", "cols: 3, data: [-0.2, 0.05, 0]"))
    with pytest.raises(OfflineError, match=r"cam\.yaml: plumb_bob distortion needs 4, 5, 8, 12 or 14 coefficients"):
        process_video(folder, tmp_path / "out", params={}, engine=make_engine(), camera_info=cal, rectify=True)
    assert not (tmp_path / "out").exists()
