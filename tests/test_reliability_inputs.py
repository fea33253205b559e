"""Reliability: images of every PIL mode, truncated and oddly named clips, changed clips, bad weights.

Each case ends in the right pixels or a one-line error naming the file, and changes nothing saved.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from cli_kit import run
from media import make_clip, truncate
from motion_kit import make_action, tiny_config
from flashctl.errors import FlashctlError, ImageReadError, StaleCacheError, VideoReadError, WeightsFileError
from flashctl.files import sha256_file
from flashctl.library import MotionLibrary
from flashctl.pipeline.animate import load_animator
from flashctl.model.motion_files import load_lora, save_lora
from flashctl.pipeline.prepare import prepare
from flashctl.pipeline.train import train
from flashctl.video import read_frames, read_image

GREY = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))  # (4, 16): 0, 16, ..., 240


@pytest.mark.parametrize("mode, data", [
    ("I;16", (GREY.astype(np.uint16) * 257)),                   # 16-bit PNG: full range
    ("I", (GREY.astype(np.int32) * 257)),                       # 16-bit values in a 32-bit image
    ("I", GREY.astype(np.int32)),                               # 8-bit values in a 32-bit image
    ("F", GREY.astype(np.float32) / 255),                       # float in [0, 1]
    ("F", GREY.astype(np.float32)),                             # float in [0, 255]
])
def test_high_depth_grey_images_scale_to_8_bits(tmp_path, mode, data):
    path = tmp_path / "grey.tif"
    Image.fromarray(data).save(path)
    assert Image.open(path).mode == mode
    image = read_image(path)
    assert image.shape == (4, 16, 3) and np.array_equal(image[..., 0], GREY) and np.array_equal(image[..., 2], GREY)


def test_16_bit_png_is_not_white(tmp_path):
    path = tmp_path / "grey16.png"
    Image.fromarray(GREY.astype(np.uint16) * 257).save(path)
    assert np.array_equal(read_image(path)[..., 1], GREY)


@pytest.mark.parametrize("data", [np.full((4, 4), -1.0, np.float32), np.full((4, 4), 1e6, np.float32)])
def test_float_images_out_of_any_range_are_refused_by_mode(tmp_path, data):
    path = tmp_path / "odd.tif"
    Image.fromarray(data).save(path)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in info.value.message and "'F'" in info.value.message and "8-bit" in info.value.hint


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "L", "1", "RGB"])
def test_other_modes_convert(tmp_path, mode):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:, :2] = 255  # left half white, right half black
    image = Image.fromarray(rgb).convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    image.save(path)
    out = read_image(path)
    assert out.shape == (4, 4, 3) and out[:, :2].min() >= 250 and out[:, 2:].max() <= 5


def test_truncated_clip_is_called_truncated(tmp_path):
    path = truncate(make_clip(tmp_path / "cut.mkv", frames=16, size=(64, 64), fps=8), keep=0.8)
    with pytest.raises(VideoReadError) as info:
        read_frames(path, fps=8, size=32, max_frames=16)
    assert info.value.message.startswith(f"{path}: truncated:") and "16 frames" in info.value.message


def test_whole_clips_are_not_called_truncated(tmp_path):
    path = make_clip(tmp_path / "whole.mkv", frames=16, size=(64, 64), fps=8)
    assert len(read_frames(path, fps=8, size=32, max_frames=16)) == 16
    assert len(read_frames(path, fps=4, size=32)) == 8


@pytest.mark.parametrize("name", ["back\\slash.mp4", "quote\"s'.mp4", "new\nline.mp4", "sp ace.mp4", "café.mp4"])
def test_odd_clip_names_are_stored_under_safe_names(tmp_path, name):
    source = tmp_path / "in"
    source.mkdir()
    path = make_clip(source / "plain.mp4", frames=4, size=(32, 32), fps=8)
    odd = source / name
    os.rename(path, odd)
    config = tiny_config(tmp_path)
    library = MotionLibrary(config.library_path())
    prepare(config, library, "odd", [odd], "a square slides")
    manifest = library.manifest("odd")
    stored = manifest.clips[0].file
    assert stored.startswith("clips/") and all(c not in stored for c in "\\\"' \n") and stored.isprintable()
    assert library.verify("odd") == [] and manifest.clips[0].source.endswith(".mp4")


def test_a_clip_name_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = make_clip(tmp_path / "plain.mp4", frames=4, size=(32, 32), fps=8)
    odd = tmp_path / "caf\udce9.mp4"  # the byte 0xe9 alone: legal on Linux, not UTF-8
    os.rename(path, odd)
    result = run(capsys, "prepare", "odd", "--clips", odd, "--prompt", "a square slides")
    assert result.code == 1 and "Traceback" not in result.err and not (tmp_path / "motions" / "odd").exists()
    assert result.err.splitlines()[0].endswith("caf\\xe9.mp4: the file name is not UTF-8")
    assert "rename" in result.err.splitlines()[1]


def _nan_lora():
    return {"down.lora_A.weight": torch.zeros(2, 2), "down.lora_B.weight": torch.tensor([[0.0, math.nan], [1, 2]])}


def test_nan_weights_are_refused_at_save(tmp_path):
    path = tmp_path / "lora.safetensors"
    with pytest.raises(WeightsFileError) as info:
        save_lora(path, _nan_lora(), {})
    assert "'down.lora_B.weight' has 1 NaN/inf" in info.value.message and "train.lr" in info.value.hint
    assert not path.exists()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_refused_at_load(tmp_path, bad):
    from safetensors.torch import save_file

    path = tmp_path / "lora.safetensors"
    save_file({"w": torch.tensor([1.0, bad])}, str(path))
    with pytest.raises(WeightsFileError, match=r"lora.safetensors: tensor 'w' has 1 NaN/inf"):
        load_lora(path)


def test_unreadable_weights_are_one_line(tmp_path):
    path = tmp_path / "lora.safetensors"
    path.write_bytes(b"\x80\x03pickle, not safetensors")
    with pytest.raises(WeightsFileError, match="unreadable"):
        load_lora(path)


def _fake_version(config, action="slide"):
    """A trained-looking motion (weights hashed in provenance) without training anything."""
    library = make_action(config, action)
    with library.stage(action) as staging:
        (staging / "weights").mkdir()
        (staging / "weights" / "config.json").write_text(json.dumps({"lora": {"file": "lora.safetensors"}}))
        save_lora(staging / "weights" / "lora.safetensors", {"w": torch.ones(2)}, {})
        files = {rel: sha256_file(staging / rel) for rel in ("weights/config.json", "weights/lora.safetensors")}
        (staging / "provenance.json").write_text(json.dumps({"files": files}))
    return library


@pytest.mark.parametrize("damage, problem", [("tamper", "modified"), ("delete", "missing")])
def test_animate_refuses_weights_that_differ_from_provenance(tmp_path, host, damage, problem):
    config = tiny_config(tmp_path)
    library = _fake_version(config)
    lora = library.weights_dir("slide") / "lora.safetensors"
    if damage == "tamper":
        save_lora(lora, {"w": torch.zeros(2)}, {})
    else:
        lora.unlink()
    with pytest.raises(FlashctlError) as info:
        load_animator(config, library, "slide", host)
    assert info.value.message == ("motion 'slide' does not match its provenance.json: "
                                  f"weights/lora.safetensors ({problem})")
    assert "flashctl motions verify slide" in info.value.hint


def test_train_refuses_a_clip_changed_since_prepare(tmp_path, host):
    config = tiny_config(tmp_path)
    library = make_action(config)
    (library.path("slide") / "clips" / "c1.mp4").write_bytes(b"another take")
    with pytest.raises(StaleCacheError) as info:
        train(config, library, "slide", host)
    assert "clips/c1.mp4 (modified)" in info.value.message and "flashctl prepare slide" in info.value.hint
    assert not library.is_trained("slide")


def test_train_refuses_a_cache_of_other_clips(tmp_path, host):
    config = tiny_config(tmp_path)
    library = make_action(config)
    frames, meta = library.load_frames("slide")
    library.save_frames("slide", frames, {**meta, "clips": ["0" * 64, "1" * 64]})
    with pytest.raises(StaleCacheError, match="clips is"):
        train(config, library, "slide", host)


def test_base_weights_that_are_only_pickles_are_refused(tmp_path):
    from flashctl.context import BuildContext, require_weights

    base = tmp_path / "base"
    for sub in ("unet", "vae"):
        (base / sub).mkdir(parents=True)
        (base / sub / "config.json").write_text("{}")
    (base / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    (base / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(WeightsFileError) as info:
        require_weights(BuildContext(), str(base), label="base", option_key="options.backbone.x.base",
                        subfolders=("unet", "vae"))
    assert info.value.message == (f"base: {base / 'unet' / 'diffusion_pytorch_model.bin'} is a pickle file; "
                                  "flashctl loads weights from .safetensors only")
    assert "save_file" in info.value.hint
    (base / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")  # both: diffusers takes safetensors
    assert require_weights(BuildContext(), str(base), label="base", option_key="k", subfolders=("unet", "vae")) == base
