"""Weight-based metrics (clip-score, lpips, fvd) on tiny random weights, and the pose trajectory math.

The weights are random, so the numbers mean nothing; what is tested is the mechanics: identical
inputs give the extreme value, a perturbation moves it the right way, the files load from the
documented layout, and missing weights fail at factory time naming the option key.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from flashctl.context import BuildContext
from flashctl.errors import FlashctlError, WeightsFileError, WeightsNotFoundError
from flashctl.plugins import build_host
from flashctl_metrics.fvd import FILENAME as FVD_FILE
from flashctl_metrics.fvd import VideoFeatureNet, frechet_distance, frechet_distance_gaussians
from flashctl_metrics.lpips import FILENAME as LPIPS_FILE
from flashctl_metrics.lpips import LPIPS
from flashctl_metrics.pose import HIPS, LANDMARKS, SHOULDERS, PoseMetric, compare_trajectories

torch.set_num_threads(1)
FRAMES, SIZE = 6, 32


@pytest.fixture(scope="module")
def registry():
    return build_host().registry


def video(seed: int = 0, frames: int = FRAMES, size: int = SIZE) -> torch.Tensor:
    """A smooth random video drifting over time: (F, 3, H, W) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(frames, 3, 4, 4, generator=g) * 2 - 1  # (F, 3, 4, 4)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def noisy(x: torch.Tensor, std: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def still(frame: torch.Tensor, frames: int = FRAMES) -> torch.Tensor:
    return frame.expand(frames, *frame.shape).clone()  # (F, 3, H, W)


# ---------------------------------------------------------------------------------------------- weights on disk

@pytest.fixture(scope="module")
def lpips_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = LPIPS(widths=(4, 4, 8, 8, 8))
    state = {k: (v.abs() if k.startswith("lin") else v) for k, v in model.state_dict().items()}  # heads >= 0
    folder = tmp_path_factory.mktemp("lpips")
    save_file(state, str(folder / LPIPS_FILE))
    return folder


@pytest.fixture(scope="module")
def fvd_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("fvd")
    save_file(VideoFeatureNet(widths=(4, 8), kernels=(3, 3)).state_dict(), str(folder / FVD_FILE))
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)  # char-level, offline
    tiny = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
    config = CLIPConfig(text_config=dict(tiny, vocab_size=len(vocab), bos_token_id=0, eos_token_id=1, pad_token_id=1),
                        vision_config=dict(tiny, image_size=224, patch_size=32), projection_dim=16)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("clip")
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessorPil().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip(registry, clip_dir):
    return registry.create("metric", "clip-score", {"weights": str(clip_dir)})


# ---------------------------------------------------------------------------------------------- registration

def test_importing_the_plugin_imports_no_heavy_library():
    code = ("import sys, flashctl_metrics; "
            "sys.exit(sorted(m for m in ('torch', 'transformers', 'mediapipe') if m in sys.modules) or 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_traits_tell_the_pipeline_how_to_call(registry):
    fvd, clip_spec = registry.get("metric", "fvd").traits, registry.get("metric", "clip-score").traits
    assert fvd.aggregate is True and fvd.requires_target is True
    assert clip_spec.accepts_prompt is True and clip_spec.requires_target is False
    assert registry.get("metric", "pose").traits.requires_target is True
    assert not any(registry.get("metric", n).traits.aggregate for n in ("lpips", "clip-score", "pose"))


@pytest.mark.parametrize("name", ["clip-score", "lpips", "fvd"])
def test_missing_weights_fail_at_factory_time_naming_the_key(registry, tmp_path, name):
    key = f"options.metric.{name}.weights"
    with pytest.raises(WeightsNotFoundError) as unset:
        registry.create("metric", name, {})
    assert key in unset.value.message and key in unset.value.hint
    gone = tmp_path / "no-such-folder"
    with pytest.raises(WeightsNotFoundError) as missing:
        registry.create("metric", name, {"weights": str(gone)})
    assert key in missing.value.message and str(gone) in missing.value.message
    assert "\n" not in missing.value.message


@pytest.mark.parametrize(("name", "filename"), [("lpips", LPIPS_FILE), ("fvd", FVD_FILE)])
def test_an_empty_folder_names_the_expected_file(registry, tmp_path, name, filename):
    with pytest.raises(WeightsNotFoundError) as info:
        registry.create("metric", name, {"weights": str(tmp_path)})
    assert filename in info.value.message and f"options.metric.{name}.weights" in info.value.message


def test_weights_resolve_through_the_build_context(registry, lpips_dir):
    ctx = BuildContext(resolve_weights=lambda ref: lpips_dir if ref == "team/lpips-vgg16" else None)
    score = registry.create("metric", "lpips", {"weights": "team/lpips-vgg16"}, ctx=ctx)
    assert score(video(), reference=video()[0])["first_frame"] == 0.0
    with pytest.raises(WeightsNotFoundError, match="team/other"):
        registry.create("metric", "lpips", {"weights": "team/other"}, ctx=ctx)


# ---------------------------------------------------------------------------------------------- LPIPS

def test_lpips_state_dict_uses_the_torchvision_and_lpips_names():
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    expected = {f"features.{i}.{p}" for i in convs for p in ("weight", "bias")}
    expected |= {f"lin{k}.model.1.weight" for k in range(5)}
    model = LPIPS()
    assert set(model.state_dict()) == expected
    assert model.state_dict()["lin4.model.1.weight"].shape == (1, 512, 1, 1)
    assert model.taps == [3, 8, 15, 22, 29]  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3


def test_lpips_is_zero_for_identical_frames_and_grows_with_noise(registry, lpips_dir):
    score = registry.create("metric", "lpips", {"weights": str(lpips_dir)})
    frame = video()[0]
    same = score(still(frame), reference=frame)
    assert same == {"first_frame": 0.0, "flicker": 0.0}
    small = score(still(noisy(frame, 0.05)), reference=frame)["first_frame"]
    large = score(still(noisy(frame, 0.5)), reference=frame)["first_frame"]
    assert 0 < small < large
    boiling = torch.stack([noisy(frame, 0.3, seed=s) for s in range(FRAMES)])  # fresh noise every frame
    assert score(boiling, reference=frame)["flicker"] > score(still(noisy(frame, 0.3)), reference=frame)["flicker"]


def test_lpips_batches_pairwise_and_symmetrically(registry, lpips_dir):
    model = registry.create("metric", "lpips", {"weights": str(lpips_dir)}).model
    a, b = video(seed=2), video(seed=3)  # (F, 3, H, W) each
    batched = model(a, b)  # (F,)
    one_by_one = torch.stack([model(a[i:i + 1], b[i:i + 1])[0] for i in range(FRAMES)])
    assert batched.shape == (FRAMES,)
    assert torch.allclose(batched, one_by_one, atol=1e-6) and torch.allclose(batched, model(b, a), atol=1e-6)


def test_lpips_file_of_another_layout_is_named(registry, lpips_dir, tmp_path):
    from safetensors.torch import load_file

    state = load_file(str(lpips_dir / LPIPS_FILE))
    del state["features.28.bias"]
    save_file(state, str(tmp_path / LPIPS_FILE))
    with pytest.raises(WeightsFileError, match="features.28.bias"):
        registry.create("metric", "lpips", {"weights": str(tmp_path)})


# ---------------------------------------------------------------------------------------------- CLIP

def test_clip_identical_frames_score_one_and_perturbed_frames_less(clip):
    frame = video(size=64)[0]
    same = clip(still(frame), reference=frame)
    assert same["image_mean"] == pytest.approx(1.0, abs=1e-5) and same["image_min"] == pytest.approx(1.0, abs=1e-5)
    assert "text" not in same
    other = clip(video(seed=5, size=64), reference=frame)
    assert other["image_min"] <= other["image_mean"] < same["image_mean"] - 1e-4


def test_clip_text_score_uses_the_prompt_and_the_option_wins(registry, clip, clip_dir):
    gen, ref = video(size=64), video(size=64)[0]
    waving = clip(gen, reference=ref, prompt="a person waving")["text"]
    kicking = clip(gen, reference=ref, prompt="a soccer kick")["text"]
    assert -1 <= waving <= 1 and waving != pytest.approx(kicking)
    model = clip.model
    with torch.no_grad():  # the same cosine, computed directly from the CLIP towers
        text = model.text_projection(model.text_model(**clip.tokenizer(["a person waving"], return_tensors="pt"))
                                     .pooler_output)[0]
        frames = model.visual_projection(model.vision_model(pixel_values=clip.preprocess(gen)).pooler_output)
    direct = torch.nn.functional.cosine_similarity(frames, text[None]).mean()
    assert waving == pytest.approx(float(direct), abs=1e-5)
    fixed = registry.create("metric", "clip-score", {"weights": str(clip_dir), "prompt": "a person waving"})
    assert fixed(gen, reference=ref, prompt="a soccer kick")["text"] == pytest.approx(waving, abs=1e-6)


@pytest.mark.parametrize("shape", [(224, 224), (240, 320)])
def test_clip_preprocessing_matches_the_image_processor(clip, clip_dir, shape):
    from PIL import Image
    from transformers import CLIPImageProcessorPil

    from flashctl.video import tensor_to_frames

    coarse = torch.rand(1, 3, 3, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    image = torch.nn.functional.interpolate(coarse, size=shape, mode="bilinear", align_corners=False)  # (1, 3, H, W)
    processor = CLIPImageProcessorPil.from_pretrained(clip_dir)
    expected = processor(images=[Image.fromarray(tensor_to_frames(image)[0])], return_tensors="pt").pixel_values
    ours = clip.preprocess(image)
    assert ours.shape == expected.shape == (1, 3, 224, 224)
    assert (ours - expected).abs().mean() < 0.02  # 8-bit rounding and PIL's bicubic differ slightly


# ---------------------------------------------------------------------------------------------- FVD

def test_frechet_distance_hand_computed_cases():
    # 1-D: a = {0, 2}: mean 1, var 2; b = {1, 5}: mean 3, var 8 -> 4 + (sqrt 2 - sqrt 8)^2 = 6
    assert frechet_distance([[0.0], [2.0]], [[1.0], [5.0]]) == pytest.approx(6.0)
    # 2-D, non-commuting: A = I, B = [[2, 1], [1, 2]] (eigenvalues 3, 1): 2 + 4 - 2 (sqrt 3 + 1) + |mu|^2
    b = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    expected = 6 - 2 * (math.sqrt(3) + 1) + 1.0
    assert frechet_distance_gaussians(torch.zeros(2), torch.eye(2), torch.tensor([1.0, 0.0]), b) == pytest.approx(expected)
    feats = torch.randn(20, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)
    shift = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.1], dtype=torch.float64)
    assert frechet_distance(feats, feats + shift) == pytest.approx(float(shift.pow(2).sum()), rel=1e-8)
    with pytest.raises(FlashctlError, match="at least 2"):
        frechet_distance(feats[:1], feats)


def test_fvd_accumulates_and_scores_the_set(registry, fvd_dir):
    fvd = registry.create("metric", "fvd", {"weights": str(fvd_dir), "size": 16})
    reals = [video(seed=s) for s in range(4)]
    assert fvd(reals[0], reference=reals[0][0], target=reals[0]) == {}
    assert fvd.compute() == {}  # one pair is no distribution
    assert fvd(reals[1], reference=reals[1][0]) == {}  # no target: nothing accumulated
    for real in reals[1:]:
        fvd.update(real, real)
    assert len(fvd.generated) == len(fvd.real) == 4 and fvd.generated[0].shape == (8,)
    assert fvd.compute()["fvd"] == pytest.approx(0.0, abs=1e-9)

    worse = registry.create("metric", "fvd", {"weights": str(fvd_dir), "size": 16})
    for real in reals:
        worse.update(noisy(real, 0.5), real)
    assert worse.compute()["fvd"] > 1e-6


def test_fvd_features_take_any_frame_count_and_size(registry, fvd_dir):
    fvd = registry.create("metric", "fvd", {"weights": str(fvd_dir), "size": 16})
    assert fvd.features(video(frames=3, size=40)).shape == fvd.features(video(frames=9, size=24)).shape == (8,)


# ---------------------------------------------------------------------------------------------- pose

def skeleton(frames: int = 8, scale: float = 40.0, offset=(100.0, 80.0), phase: float = 0.0) -> np.ndarray:
    """A standing figure whose wrists (15, 16) swing: (F, 33, 3) pixel keypoints, all visible."""
    base = np.zeros((LANDMARKS, 2))
    base[list(SHOULDERS)] = [[-0.5, -1.0], [0.5, -1.0]]
    base[list(HIPS)] = [[-0.3, 0.0], [0.3, 0.0]]
    base[0] = [0.0, -1.5]  # nose
    t = np.arange(frames)[:, None]
    track = np.repeat(base[None], frames, axis=0)  # (F, 33, 2)
    track[:, 15] = np.hstack([-0.9 + 0.4 * np.sin(t / 2 + phase), -0.5 + 0.6 * np.cos(t / 2 + phase)])
    track[:, 16] = np.hstack([0.9 - 0.4 * np.sin(t / 2 + phase), -0.5 + 0.6 * np.cos(t / 2 + phase)])
    track[:, 0, 1] += 0.1 * np.sin(t[:, 0])
    points = track * scale + np.asarray(offset)
    visible = np.zeros((frames, LANDMARKS, 1))
    visible[:, [0, 11, 12, 15, 16, 23, 24]] = 1.0
    return np.concatenate([points, visible], axis=-1)


def test_pose_same_motion_at_another_place_and_size_matches():
    scores = compare_trajectories(skeleton(scale=80.0, offset=(30.0, 200.0)), skeleton())
    assert scores["joint_error"] == pytest.approx(0.0, abs=1e-9)
    assert scores["motion_correlation"] == pytest.approx(1.0) and scores["detected"] == 1.0


def test_pose_frozen_or_shifted_motion_scores_worse():
    target = skeleton()
    frozen = np.repeat(target[:1], len(target), axis=0)
    lagged = compare_trajectories(skeleton(phase=2.0), target)
    assert compare_trajectories(frozen, target)["motion_correlation"] == 0.0
    assert compare_trajectories(frozen, target)["joint_error"] > 0.1
    assert lagged["motion_correlation"] < 0.5 and lagged["joint_error"] > 0.1


def test_pose_ignores_invisible_joints_and_needs_a_torso():
    target, generated = skeleton(), skeleton()
    generated[:, 15, :2] += 500.0
    generated[:, 15, 2] = 0.2  # below the visibility threshold: not compared
    assert compare_trajectories(generated, target)["joint_error"] == pytest.approx(0.0, abs=1e-9)
    generated[:, 23, 2] = 0.0  # one hip never seen: no torso, nothing to normalise by
    assert compare_trajectories(generated, target) == {}


def test_pose_metric_runs_the_detector_on_both_videos():
    seen = []

    def detector(clip: torch.Tensor) -> np.ndarray:
        seen.append(tuple(clip.shape))
        return skeleton(frames=len(clip))

    metric = PoseMetric(detector)
    gen, tgt = video(frames=6), video(frames=8)
    assert metric(gen, reference=gen[0]) == {} and seen == []
    scores = metric(gen, reference=gen[0], target=tgt)
    assert seen == [tuple(gen.shape), tuple(tgt.shape)]
    assert scores["joint_error"] == pytest.approx(0.0, abs=1e-9) and scores["detected"] == 1.0


def _has_mediapipe() -> bool:
    import importlib.util

    return importlib.util.find_spec("mediapipe") is not None


@pytest.mark.skipif(_has_mediapipe(), reason="mediapipe is installed")
def test_pose_without_mediapipe_says_how_to_install(registry):
    with pytest.raises(WeightsNotFoundError, match="mediapipe") as info:
        registry.create("metric", "pose", {})
    assert "flashctl[pose]" in info.value.hint


@pytest.mark.skipif(not _has_mediapipe(), reason="needs the optional mediapipe==0.10.21 (flashctl[pose])")
def test_pose_with_mediapipe_finds_nobody_in_a_blank_video(registry):
    metric = registry.create("metric", "pose", {})
    blank = torch.zeros(4, 3, 64, 64)
    assert metric.detector(blank).shape == (4, LANDMARKS, 3)
    assert metric(blank, reference=blank[0], target=blank) == {}


@pytest.mark.parametrize(("name", "pickle"), [("lpips", "lpips.pth"), ("fvd", "video_net.pt"),
                                              ("clip-score", "pytorch_model.bin")])
def test_a_folder_of_pickles_only_is_refused_with_the_conversion_command(registry, tmp_path, name, pickle):
    """Metric nets load from safetensors only: a pickle is never opened, and the error says how to convert."""
    (tmp_path / pickle).write_bytes(b"\x80\x04not really a pickle")
    if name == "clip-score":
        (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsFileError) as info:
        registry.create("metric", name, {"weights": str(tmp_path)})
    message, hint = info.value.message, info.value.hint
    assert str(tmp_path / pickle) in message and ".safetensors only" in message and "\n" not in message
    assert "safetensors.torch" in hint and "save_file" in hint and f"options.metric.{name}.weights" in message
