"""flashctl.video: ffmpeg discovery, probing (ffprobe and PyAV), decoding, images, writers, layouts."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from flashctl import video
from flashctl.errors import FFmpegNotFoundError, ImageReadError, VideoReadError, VideoWriteError
from media import make_audio, make_clip, make_image, square_centre, square_frames, truncate

REAL_WHICH = shutil.which


@pytest.fixture(params=["ffprobe", "pyav"])
def prober(request, monkeypatch):
    """Run the test once with ffprobe and once with PyAV probing (ffprobe hidden)."""
    if request.param == "pyav":
        monkeypatch.setattr(shutil, "which", lambda name: None if name == "ffprobe" else REAL_WHICH(name))
    return request.param


def xs(frames):
    return [square_centre(f)[1] for f in frames]


# -- find_ffmpeg ---------------------------------------------------------------------------
def test_find_ffmpeg_prefers_path(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/bin/{name}")
    assert video.find_ffmpeg() == "/opt/bin/ffmpeg"


def test_find_ffmpeg_falls_back_to_imageio(monkeypatch):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert video.find_ffmpeg() == imageio_ffmpeg.get_ffmpeg_exe()


def test_find_ffmpeg_missing_names_both_fixes(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(FFmpegNotFoundError) as info:
        video.find_ffmpeg()
    assert "apt-get install ffmpeg" in info.value.hint and "imageio-ffmpeg" in info.value.hint


# -- probe ---------------------------------------------------------------------------------
def test_probe_reports_geometry(tmp_path, prober):
    info = video.probe(make_clip(tmp_path / "a.mp4", frames=12, size=(40, 30), fps=10))
    assert (info.width, info.height, info.frames, info.rotation, info.codec) == (40, 30, 12, 0, "h264")
    assert info.fps == pytest.approx(10) and info.duration == pytest.approx(1.2, abs=0.05)


def test_probe_rotation_swaps_display_size(tmp_path, prober):
    info = video.probe(make_clip(tmp_path / "r.mp4", size=(40, 30), rotate=90))
    assert (info.width, info.height, info.rotation) == (30, 40, 90)


def test_probe_estimates_frames_when_container_has_no_count(tmp_path, prober):
    info = video.probe(make_clip(tmp_path / "odd.mkv", frames=12, size=(41, 31), fps=10))
    assert (info.width, info.height, info.frames) == (41, 31, 12)


def _bad_file(kind, tmp_path):
    if kind == "missing":
        return tmp_path / "nope.mp4", "no such file"
    if kind == "folder":
        (tmp_path / "clip.mp4").mkdir()
        return tmp_path / "clip.mp4", "folder"
    if kind == "empty":
        (tmp_path / "e.mp4").write_bytes(b"")
        return tmp_path / "e.mp4", "empty"
    if kind == "truncated":
        return truncate(make_clip(tmp_path / "t.mp4")), "not a readable video"
    if kind == "text":
        (tmp_path / "notes.mp4").write_text("these are not frames\n")
        return tmp_path / "notes.mp4", "not a readable video"
    if kind == "png":
        png = make_image(tmp_path / "still.png")
        return png.rename(tmp_path / "still.mp4"), "still image"
    return make_audio(tmp_path / "tone.wav"), "no video stream"


@pytest.mark.parametrize("kind", ["missing", "folder", "empty", "truncated", "text", "png", "audio"])
def test_probe_rejects_bad_files(tmp_path, prober, kind):
    path, words = _bad_file(kind, tmp_path)
    with pytest.raises(VideoReadError) as info:
        video.probe(path)
    assert str(path) in info.value.message and words in info.value.message
    assert "\n" not in info.value.message and info.value.hint


@pytest.mark.parametrize("kind", ["missing", "truncated", "png"])
def test_read_frames_rejects_bad_files(tmp_path, kind):
    path, words = _bad_file(kind, tmp_path)
    with pytest.raises(VideoReadError, match=words):
        video.read_frames(path)


def test_probe_rejects_unreadable_file(tmp_path, monkeypatch):
    path = make_clip(tmp_path / "locked.mp4")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads any file: simulate the refusal mode 000 means for everyone else
        def refuse(file, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(file))

        monkeypatch.setattr(video, "open", refuse, raising=False)
    with pytest.raises(VideoReadError, match="cannot read it .Permission denied"):
        video.probe(path)


# -- read_frames ---------------------------------------------------------------------------
def test_read_frames_decodes_every_frame_in_order(tmp_path):
    frames = video.read_frames(make_clip(tmp_path / "a.mp4", frames=12, size=(40, 30)))
    assert frames.shape == (12, 30, 40, 3) and frames.dtype == np.uint8
    expected = square_frames(12, (40, 30))
    assert np.abs(frames.astype(int) - expected).mean() < 6
    assert xs(frames) == sorted(xs(frames)) and xs(frames)[-1] - xs(frames)[0] > 20


def test_read_frames_same_with_bundled_ffmpeg(tmp_path, monkeypatch):
    pytest.importorskip("imageio_ffmpeg")
    clip = make_clip(tmp_path / "a.mp4", rotate=90)
    system = video.read_frames(clip, fps=5, size=16)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    bundled = video.read_frames(clip, fps=5, size=16)
    assert bundled.shape == system.shape == (6, 16, 16, 3)
    assert np.abs(bundled.astype(int) - system).max() <= 8


def test_read_frames_trims_resamples_and_limits(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", frames=12, fps=10)
    full = video.read_frames(clip)
    assert xs(video.read_frames(clip, start=0.5))[0] == pytest.approx(xs(full)[5], abs=1)
    halved = video.read_frames(clip, fps=5)
    assert len(halved) == 6 and xs(halved) == pytest.approx(xs(full)[::2], abs=1)
    assert len(video.read_frames(clip, max_frames=4)) == 4
    assert len(video.read_frames(clip, fps=5, max_frames=100)) == 6  # fewer than asked: what exists


def test_read_frames_start_past_the_end(tmp_path):
    with pytest.raises(VideoReadError, match="no frames after start=5s"):
        video.read_frames(make_clip(tmp_path / "a.mp4"), start=5.0)


def test_read_frames_square_crop_and_resize(tmp_path):
    frames = video.read_frames(make_clip(tmp_path / "wide.mp4", frames=6, size=(60, 20)), size=16)
    assert frames.shape == (6, 16, 16, 3)
    # the centre 20x20 of a 60-wide frame: the square is outside it at the start and end
    visible = [(f.mean(axis=-1) > 160).any() for f in frames]
    assert not visible[0] and not visible[-1] and any(visible)


def test_read_frames_odd_sizes(tmp_path):
    clip = make_clip(tmp_path / "odd.mkv", frames=5, size=(41, 31))
    assert video.read_frames(clip).shape == (5, 31, 41, 3)
    assert video.read_frames(clip, size=24).shape == (5, 24, 24, 3)


def test_read_frames_honours_rotation(tmp_path):
    frames = video.read_frames(make_clip(tmp_path / "r.mp4", frames=8, size=(40, 30), rotate=90))
    assert frames.shape == (8, 40, 30, 3)
    # stored moving right; turned 90 degrees counter-clockwise it moves up, in the middle column
    rows = [square_centre(f)[0] for f in frames]
    assert rows[0] - rows[-1] > 20 and all(abs(square_centre(f)[1] - 14.5) < 2 for f in frames)


def test_read_frames_resamples_variable_frame_rate(tmp_path):
    clip = make_clip(tmp_path / "vfr.mp4", times=[0.0, 0.1, 0.2, 0.6, 0.7, 0.8])
    frames = video.read_frames(clip, fps=10)
    assert len(frames) == 9  # 0.0 .. 0.8 s at 10 fps
    positions = xs(frames)
    assert positions == sorted(positions)
    assert positions[2] == positions[3] == positions[4] == positions[5]  # the 0.4 s gap repeats frame 2
    assert len(video.read_frames(clip)) == 6  # without fps: the frames as stored


# -- read_image ----------------------------------------------------------------------------
def test_read_image_applies_exif_orientation(tmp_path):
    plain = video.read_image(make_image(tmp_path / "a.jpg", size=(40, 30)))
    turned = video.read_image(make_image(tmp_path / "b.jpg", size=(40, 30), exif_orientation=6))
    assert plain.shape == (30, 40, 3) and turned.shape == (40, 30, 3)
    # orientation 6 = turn 90 degrees clockwise for display: the top-left block goes top-right
    assert plain[2, 2].min() > 200 and turned[2, -3].min() > 200 and turned[2, 2].min() < 200


def test_read_image_composites_transparency_on_white(tmp_path):
    image = video.read_image(make_image(tmp_path / "a.png", size=(40, 30), mode="RGBA"))
    assert image.shape == (30, 40, 3)
    assert (image[15, 30] == 255).all() and tuple(image[15, 10]) == (200, 30, 30)


def test_read_image_centre_square(tmp_path):
    image = video.read_image(make_image(tmp_path / "a.png", size=(60, 30)), size=16)
    assert image.shape == (16, 16, 3) and image[:4].mean() < 250  # the corner block was cropped away


@pytest.mark.parametrize("kind", ["missing", "folder", "text", "truncated"])
def test_read_image_rejects_bad_files(tmp_path, kind):
    path = tmp_path / "ref.png"
    if kind == "folder":
        path.mkdir()
    elif kind == "text":
        path.write_text("not pixels")
    elif kind == "truncated":
        truncate(make_image(path, size=(64, 64)), keep=0.3)
    with pytest.raises(ImageReadError) as info:
        video.read_image(path)
    assert str(path) in info.value.message and info.value.hint


# -- writers -------------------------------------------------------------------------------
def test_write_mp4_pads_odd_sizes_and_round_trips(tmp_path):
    frames = square_frames(6, (41, 31))
    out = video.write_mp4(tmp_path / "out.mp4", frames, fps=8)
    info = video.probe(out)
    assert (info.width, info.height, info.frames, info.fps) == (42, 32, 6, 8)
    back = video.read_frames(out)[:, :31, :41]
    assert np.abs(back.astype(int) - frames).mean() < 4
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_write_mp4_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous result")
    monkeypatch.setattr(video, "find_ffmpeg", lambda: "false")  # an "ffmpeg" that always fails
    with pytest.raises(VideoWriteError, match="out.mp4"):
        video.write_mp4(target, square_frames(4), fps=8)
    assert target.read_bytes() == b"previous result" and len(list(tmp_path.iterdir())) == 1


def test_write_gif(tmp_path):
    out = video.write_gif(tmp_path / "a.gif", square_frames(5, (20, 10)), fps=10)
    with Image.open(out) as gif:
        assert gif.n_frames == 5 and gif.size == (20, 10) and gif.info["duration"] == 100


def test_write_png_sequence_replaces_folder(tmp_path):
    folder = tmp_path / "frames"
    video.write_png_sequence(folder, square_frames(5))
    video.write_png_sequence(folder, square_frames(3))
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    assert np.array_equal(np.asarray(Image.open(folder / "frame_0002.png")), square_frames(3)[2])
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_contact_sheet_layout_and_labels():
    frames = np.stack([np.full((20, 16, 3), i * 10, np.uint8) for i in range(5)])
    sheet = video.contact_sheet(frames, columns=3)
    band, gap = video.LABEL_BAND, video.GUTTER
    assert sheet.shape == (2 * (20 + band), 3 * 16 + 2 * gap, 3)
    assert sheet[0, 0, 0] == 0 and sheet[0, 16 + gap, 0] == 10 and sheet[20 + band, 0, 0] == 30
    assert (sheet[:20, 16:16 + gap] == 255).all()  # the gutter between frames
    assert (sheet[20 + band:, 2 * (16 + gap):] == 255).all()  # the empty sixth cell
    for row, col in ((0, 0), (0, 2), (1, 1)):  # each frame's index is printed in the band under it
        y, x = row * (20 + band) + 20, col * (16 + gap)
        assert (sheet[y:y + band, x:x + 16] < 128).any()
    assert (sheet[:band] == 0).any()  # no source line: the first frame starts at the top

    labelled = video.contact_sheet(frames, columns=3, source="me.png · wave")
    assert labelled.shape[0] == sheet.shape[0] + band
    assert (labelled[:band] < 128).any() and np.array_equal(labelled[band:], sheet)


def test_frames_tensor_round_trip():
    torch = pytest.importorskip("torch")
    frames = np.random.default_rng(0).integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    tensor = video.frames_to_tensor(frames)
    assert tuple(tensor.shape) == (3, 3, 5, 7) and tensor.min() >= -1 and tensor.max() <= 1
    assert float(tensor[1, 2, 3, 4]) == pytest.approx(frames[1, 3, 4, 2] / 127.5 - 1)
    assert np.array_equal(video.tensor_to_frames(tensor), frames)
    extremes = video.tensor_to_frames(torch.tensor([-5.0, 5.0, 0.999]).view(1, 3, 1, 1))
    assert extremes.tolist() == [[[[0, 255, 255]]]]  # clamped, then rounded


# -- the videoio plugin --------------------------------------------------------------------
@pytest.fixture
def formats():
    from importlib.metadata import entry_points

    from flashctl.plugins import build_host

    others = [ep.name for ep in entry_points(group="flashctl") if ep.name != "videoio"]
    return build_host(disable=others).registry


def test_videoio_registers_four_formats(formats, tmp_path):
    specs = {s.name: s for s in formats.specs("video_format")}
    assert {n: s.traits.extensions for n, s in specs.items()} == {"gif": (".gif",), "mp4": (".mp4",), "png": ("",),
                                                                     "apng": (".png",)}
    assert all(s.plugin == "videoio" and s.traits.summary for s in specs.values())
    frames = square_frames(4, (20, 10))
    mp4 = formats.create("video_format", "mp4", {"crf": 0})(tmp_path / "a.mp4", frames, 8)
    assert video.probe(mp4).frames == 4 and np.abs(video.read_frames(mp4).astype(int)[:, :10] - frames).mean() < 2
    gif = formats.create("video_format", "gif", {"loop": 2})(tmp_path / "a.gif", frames, 8)
    with Image.open(gif) as image:
        assert image.n_frames == 4 and image.info["loop"] == 2
    folder = formats.create("video_format", "png")(tmp_path / "a", frames, 8)
    assert len(list(folder.glob("frame_*.png"))) == 4
    apng = formats.create("video_format", "apng")(tmp_path / "a.png", frames, 8)
    with Image.open(apng) as image:
        assert image.format == "PNG" and image.n_frames == 4


def test_videoio_options_are_validated(formats):
    from flashctl.errors import ConfigError

    with pytest.raises(ConfigError, match="crf"):
        formats.create("video_format", "mp4", {"crf": 99})
    with pytest.raises(ConfigError, match="unknown key"):
        formats.create("video_format", "gif", {"fps": 3})


def test_importing_the_plugin_stays_light():
    import subprocess

    code = "import sys, flashctl_videoio; print(sorted({'numpy', 'torch', 'flashctl.video'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_change_map_is_the_mean_absolute_change_where_pixels_move():
    frames = np.zeros((3, 4, 4, 3), np.uint8)
    frames[1, 2, 1] = 90  # one pixel flashes on in frame 1 and off again in frame 2
    change = video.change_map(frames)
    assert change.shape == (4, 4) and change[2, 1] == 90  # |90 - 0| and |0 - 90|, averaged
    change[2, 1] = 0
    assert not change.any()
