"""Sampling and the animate pipeline: determinism, the re-imposed reference, motion checks, outputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from flashctl.errors import ImageReadError, IncompatibleMotionError, MotionNotTrainedError, OutputPathError
from flashctl.model import flash
from flashctl.pipeline.animate import animate, load_animator
from flashctl.pipeline.train import train
from flashctl.video import GUTTER, LABEL_BAND
from motion_kit import FRAMES, SIZE, make_action, synthetic_clips, tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, host):
    """(config, library) with the action 'slide' trained for one step."""
    root = tmp_path_factory.mktemp("project")
    config = tiny_config(root)
    library = make_action(config)
    train(config, library, "slide", host, steps=1)
    return config, library


@pytest.fixture(scope="module")
def animator(trained, host):
    config, library = trained
    return load_animator(config, library, "slide", host)


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)  # (H, W, 3), not square


def test_same_seed_same_video_other_seed_differs(animator):
    first = animator.render(_image(), seed=7)
    assert first.shape == (FRAMES, SIZE, SIZE, 3) and first.dtype == np.uint8
    assert np.array_equal(animator.render(_image(), seed=7), first)
    assert not np.array_equal(animator.render(_image(), seed=8), first)


@pytest.mark.parametrize("name", ["ddim", "euler", "dpm++"])
def test_reference_latent_is_reimposed_every_step(animator, name):
    backbone = animator.model.backbone
    reference = torch.from_numpy(synthetic_clips(1)[0, 0]).permute(2, 0, 1)[None].float() / 127.5 - 1  # (1, 3, S, S)
    ref_latent = backbone.encode_video(reference[:, None])[:, 0]  # (1, c, h, w)
    seen = []
    original = backbone.denoise

    def spy(latents, t, emb):
        seen.append(latents[:, 0].clone())
        return original(latents, t, emb)

    backbone.denoise = spy
    try:
        latents = flash.sample_latents(backbone, ref_latent, animator.prompt_emb, FRAMES, 3,
                                       backbone.objective.sampler(name),
                                       generator=torch.Generator().manual_seed(0))
    finally:
        del backbone.denoise
    assert latents.shape == (1, FRAMES, *ref_latent.shape[1:])
    assert torch.equal(latents[:, 0], ref_latent)
    assert len(seen) == 3 and all(torch.equal(s, ref_latent) for s in seen)
    assert not torch.equal(latents[:, 1], ref_latent)


def test_classifier_free_guidance_changes_the_sample(animator):
    backbone = animator.model.backbone
    ref = backbone.encode_video(torch.zeros(1, 1, 3, SIZE, SIZE))[:, 0]
    negative = backbone.encode_prompt(["blurry"])

    def run(scale):
        return flash.sample_latents(backbone, ref, animator.prompt_emb, FRAMES, 2,
                                    backbone.objective.sampler("ddim"), scale, negative,
                                    torch.Generator().manual_seed(0))

    assert not torch.equal(run(1.0), run(4.0))
    with pytest.raises(ValueError, match="negative_emb"):
        flash.sample_latents(backbone, ref, animator.prompt_emb, FRAMES, 2,
                             backbone.objective.sampler("ddim"), 4.0, None)


def test_untrained_motion_says_how_to_train(tmp_path, host):
    config = tiny_config(tmp_path)
    library = make_action(config, "fresh")
    with pytest.raises(MotionNotTrainedError) as info:
        load_animator(config, library, "fresh", host)
    assert "fresh" in info.value.message and "flashctl train fresh" in info.value.hint


def test_motion_for_other_base_weights_is_refused_naming_both(trained, host):
    config, library = trained
    other = tiny_config(config.root(), options={"backbone": {"animatediff": {"init_seed": 1}}})
    with pytest.raises(IncompatibleMotionError) as info:
        load_animator(other, library, "slide", host)
    assert "tiny(init_seed=0)" in info.value.message and "tiny(init_seed=1)" in info.value.message
    assert "flashctl train slide" in info.value.hint


def test_animate_writes_each_format_and_a_contact_sheet(trained, host, tmp_path):
    config, library = trained
    images = []
    for i in range(2):
        images.append(tmp_path / f"person{i}.png")
        Image.fromarray(_image(i)).save(images[-1])
    results = animate(config, library, "slide", images, tmp_path / "out", host, formats=["gif"], seed=3)
    assert [r.image for r in results] == images
    for r, image in zip(results, images):
        assert r.frames == FRAMES
        assert sorted(p.name for p in r.outputs) == sorted([f"{image.stem}.gif", f"{image.stem}_sheet.png"])
        assert all(p.is_file() and p.stat().st_size > 0 for p in r.outputs)
        assert Image.open(tmp_path / "out" / f"{image.stem}.gif").n_frames == FRAMES
        sheet = np.asarray(Image.open(tmp_path / "out" / f"{image.stem}_sheet.png"))  # source line, frames, indices
        assert sheet.shape == (LABEL_BAND + SIZE + LABEL_BAND, FRAMES * (SIZE + GUTTER) - GUTTER, 3)
        assert (sheet[:LABEL_BAND] < 128).any()  # "person0.png · slide" is written above the frames


def test_unreadable_image_fails_before_anything_is_written(trained, host, tmp_path):
    config, library = trained
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ImageReadError):
        animate(config, library, "slide", [bad], tmp_path / "out", host, formats=["gif"])
    assert not (tmp_path / "out").exists()


def test_anchor_cancels_a_constant_decoder_error_and_keeps_the_change():
    reference = torch.rand(1, 3, 8, 8) - 0.5  # (B, 3, H, W), away from the clamp at +-1
    drift = torch.tensor([0.1, -0.05, 0.02]).view(1, 1, 3, 1, 1)  # the decoder's colour error, every frame
    motion = torch.zeros(1, 4, 3, 8, 8)
    motion[:, 2, :, 2:4, 2:4] = 0.3  # something moves in frame 2 only
    decoded = reference[:, None] + drift + motion  # (B, F, 3, H, W)
    anchored = flash.anchor_to_reference(decoded, reference)
    assert torch.equal(anchored[:, 0], reference)
    assert torch.allclose(anchored[:, 1], reference, atol=1e-6)
    assert torch.allclose(anchored[:, 2] - reference, motion[:, 2], atol=1e-6)


def test_soft_anchor_keeps_moving_pixels_decoded_and_still_ones_exact():
    reference = torch.rand(1, 3, 16, 16) - 0.5  # (B, 3, H, W)
    drift = torch.tensor([0.1, -0.05, 0.02]).view(1, 1, 3, 1, 1)
    motion = torch.zeros(1, 3, 3, 16, 16)
    motion[:, 2, :, 10:14, 10:14] = 0.8  # a large change in one corner of frame 2
    decoded = reference[:, None] + drift + motion  # (B, F, 3, H, W)
    soft = flash.anchor_to_reference(decoded, reference, tolerance=0.2)
    assert torch.equal(soft[:, 0], reference)
    torch.testing.assert_close(soft[:, 2, :, :4, :4], reference[:, :, :4, :4])  # still: drift cancelled
    torch.testing.assert_close(soft[:, 2, :, 11:13, 11:13], decoded[:, 2, :, 11:13, 11:13].clamp(-1, 1),
                               atol=1e-3, rtol=0)  # moving: the decoded pixels, no frame-0 ghost added back
    assert torch.equal(flash.anchor_to_reference(decoded, reference, 0.0), flash.anchor_to_reference(decoded, reference))


def test_anchor_setting_makes_frame_zero_the_input_image(trained, host):
    config, library = trained
    image = np.random.default_rng(3).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    unanchored = config.model_copy(update={"animate": config.animate.model_copy(update={"anchor": False})})
    plain = load_animator(unanchored, library, "slide", host).render(image, seed=1)
    anchoring = config.model_copy(update={"animate": config.animate.model_copy(update={"anchor": True})})
    anchored = load_animator(anchoring, library, "slide", host).render(image, seed=1)
    assert np.abs(anchored[0].astype(int) - image).max() <= 1  # [-1, 1] round trip
    assert np.abs(plain[0].astype(int) - image).max() > 10  # the random VAE does not reproduce it


def test_strength_zero_is_the_base_alone_and_one_is_the_trained_motion(trained, animator, host):
    config, library = trained
    base_alone = load_animator(tiny_config(config.root(), animate={"strength": 0.0}), library, "slide", host)
    zeroed = load_animator(config, library, "slide", host)  # the same LoRA with its up-projections zeroed
    for name, p in zeroed.model.backbone.unet.named_parameters():
        if "lora_B" in name:
            p.data.zero_()
    image = _image(3)
    assert np.array_equal(base_alone.render(image, seed=2), zeroed.render(image, seed=2))
    assert not np.array_equal(animator.render(image, seed=2), base_alone.render(image, seed=2))


def test_reference_start_is_the_reference_noised_to_the_first_step(animator):
    backbone = animator.model.backbone
    reference = torch.from_numpy(synthetic_clips(1)[0, 0]).permute(2, 0, 1)[None].float() / 127.5 - 1  # (1, 3, S, S)
    ref_latent = backbone.encode_video(reference[:, None])[:, 0]  # (1, c, h, w)
    first_inputs = {}
    original = backbone.denoise

    def spy(latents, t, emb):
        first_inputs.setdefault(current, latents.clone())
        return original(latents, t, emb)

    backbone.denoise = spy
    try:
        for current in ("noise", "reference"):
            flash.sample_latents(backbone, ref_latent, animator.prompt_emb, FRAMES, 3,
                                 backbone.objective.sampler("ddim"),
                                 generator=torch.Generator().manual_seed(0), start=current)
    finally:
        del backbone.denoise
    scheduler = backbone.objective.sampler("ddim")
    scheduler.set_timesteps(3)
    abar = scheduler.alphas_cumprod[scheduler.timesteps[0]]
    noise = first_inputs["noise"][:, 1:]  # DDIM starts from unit-variance noise
    expected = abar.sqrt() * ref_latent[:, None] + (1 - abar).sqrt() * noise
    assert torch.allclose(first_inputs["reference"][:, 1:], expected, atol=1e-5)
    assert torch.equal(first_inputs["reference"][:, 0], ref_latent)
    with pytest.raises(ValueError, match="start"):
        flash.sample_latents(backbone, ref_latent, animator.prompt_emb, FRAMES, 2,
                             backbone.objective.sampler("ddim"), start="middle")


# -- outputs: -o FILE, distinct names, no silent overwrite, the umask, --fit --------------------------------

def _save(path, seed=0, shape=(40, 48, 3)):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def _mode(path) -> int:
    import os
    import stat

    return stat.S_IMODE(os.stat(path).st_mode)


def test_out_file_writes_exactly_that_file(trained, host, tmp_path):
    config, library = trained
    image = _save(tmp_path / "me.png")
    for name, fmt in (("clip.mp4", "mp4"), ("clip.gif", "GIF"), ("anim.png", "PNG")):
        (result,) = animate(config, library, "slide", [image], tmp_path / "out" / name, host)
        assert result.videos == [tmp_path / "out" / name] and result.extras == []
        assert (tmp_path / "out" / name).is_file()
        if fmt != "mp4":
            with Image.open(tmp_path / "out" / name) as opened:
                assert opened.format == fmt and opened.n_frames == FRAMES
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["anim.png", "clip.gif", "clip.mp4"]


def test_out_file_with_several_images_is_refused_before_the_model_loads(trained, host, tmp_path):
    from flashctl.errors import OutputPathError

    config, library = trained
    images = [_save(tmp_path / "a.png"), _save(tmp_path / "b.png", 1)]
    with pytest.raises(OutputPathError) as info:
        animate(config, library, "nothing-loaded", images, tmp_path / "clip.mp4", host)
    assert "2 images" in info.value.message and "\n" not in info.value.message
    assert not (tmp_path / "clip.mp4").exists()


def test_same_stem_gets_distinct_names_and_reruns_never_overwrite(trained, host, tmp_path):
    from flashctl.progress import ListReporter

    config, library = trained
    images = [_save(tmp_path / "coffee.jpg"), _save(tmp_path / "coffee.webp", 1)]
    out = tmp_path / "out"
    first = animate(config, library, "slide", images, out, host, formats=["gif"])
    assert [r.videos[0].name for r in first] == ["coffee.gif", "coffee-webp.gif"]
    before = (out / "coffee.gif").read_bytes()
    reporter = ListReporter()
    again = animate(config, library, "slide", images[:1], out, host, formats=["gif"], seed=5, reporter=reporter)
    assert again[0].videos == [out / "coffee-1.gif"] and again[0].extras == [out / "coffee-1_sheet.png"]
    assert (out / "coffee.gif").read_bytes() == before  # the first run's file is untouched
    (note,) = [n for n in reporter.notes("warning") if "exists" in n]
    assert str(out / "coffee.gif") in note and "coffee-1.gif" in note and "--overwrite" in note
    replaced = animate(config, library, "slide", images[:1], out, host, formats=["gif"], seed=5, overwrite=True)
    assert replaced[0].videos == [out / "coffee.gif"] and (out / "coffee.gif").read_bytes() != before
    (single,) = animate(config, library, "slide", images[:1], out / "coffee.gif", host)
    assert single.videos == [out / "coffee-2.gif"]  # -o FILE that exists: numbered too


def test_outputs_and_weights_follow_the_umask(trained, host, tmp_path):
    import os

    config, library = trained
    old = os.umask(0o002)
    try:
        (result,) = animate(config, library, "slide", [_save(tmp_path / "me.png")], tmp_path / "out", host,
                            formats=["mp4", "gif"])
    finally:
        os.umask(old)
    assert {p.name: _mode(p) for p in result.outputs} == {p.name: 0o664 for p in result.outputs}
    weights = library.weights_dir("slide")
    files = [p for p in weights.iterdir() if p.suffix == ".safetensors"]
    assert files and all(_mode(p) == 0o666 & ~old for p in files), {p.name: oct(_mode(p)) for p in files}


@pytest.mark.parametrize("fit, needle", [("crop", "cropped to its centre 40x40: 17% of the image cut off"),
                                         ("pad", "padded to 48x48: 17% of the frame is padding"),
                                         ("stretch", "stretched")])
def test_fit_says_how_much_is_cropped_or_padded(trained, host, tmp_path, fit, needle):
    from flashctl.progress import ListReporter

    config, library = trained
    reporter = ListReporter()
    (result,) = animate(config, library, "slide", [_save(tmp_path / "wide.png")], tmp_path / "out", host,
                        formats=["gif"], fit=fit, reporter=reporter)
    assert any(needle in n and "48x40" in n for n in reporter.notes()), reporter.notes()
    square = _save(tmp_path / "square.png", shape=(32, 32, 3))
    reporter = ListReporter()
    animate(config, library, "slide", [square], tmp_path / "out", host, formats=["gif"], fit=fit, reporter=reporter)
    assert not any("square.png" in n for n in reporter.notes())


def test_fit_pad_keeps_the_whole_image():
    from flashctl.video import fit_square

    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :, 0] = 200  # red everywhere, so the padding (border median) is red too
    image[:, :2] = 0  # the left edge: cropped away, kept by pad
    assert fit_square(image, 40, "crop")[:, :2].max() == 200  # left edge gone
    padded = fit_square(image, 40, "pad")
    assert padded.shape == (40, 40, 3) and padded[20, 0, 0] < 50 and padded[0, 20, 0] == 200


def test_progress_counts_denoising_steps_and_each_result_comes_as_soon_as_it_is_written(trained, host, tmp_path):
    from flashctl.progress import ListReporter

    config, library = trained  # animate.steps = 2
    reporter = ListReporter()
    images = [_save(tmp_path / "a.png"), _save(tmp_path / "b.png", 1)]
    animate(config, library, "slide", images, tmp_path / "out", host, formats=["gif"], reporter=reporter,
            on_result=lambda r: reporter.events.append(("result", r.image.name)))
    events = [(kind, value) for kind, value in reporter.events if kind != "note"]
    assert events == [("start", ("animate (denoising steps)", 4)),
                      ("advance", (1, {"image": 1})), ("advance", (1, {"image": 1})), ("result", "a.png"),
                      ("advance", (1, {"image": 2})), ("advance", (1, {"image": 2})), ("result", "b.png"),
                      ("finish", None)]


def test_sampler_calls_on_step_after_every_step(animator):
    calls = []
    animator.render(_image(), seed=0, on_step=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 2), (2, 2)]


@pytest.mark.parametrize("fit, size, upscale, shape", [
    ("crop", None, False, (SIZE, SIZE)), ("crop", 100, False, (100, 100)), ("crop", None, True, (40, 40)),
    ("pad", 96, False, (80, 96)), ("pad", None, True, (40, 48)), ("stretch", 24, False, (20, 24)),
    ("stretch", None, True, (40, 48))])
def test_size_and_upscale_set_the_video_size(trained, host, tmp_path, fit, size, upscale, shape):
    config, library = trained
    (result,) = animate(config, library, "slide", [_save(tmp_path / "wide.png")], tmp_path / "out", host,
                        formats=["gif"], fit=fit, size=size, upscale=upscale)  # wide.png is 48x40
    with Image.open(result.videos[0]) as gif:
        assert (gif.height, gif.width) == shape and gif.n_frames == FRAMES
    with Image.open(result.extras[0]) as sheet:
        assert sheet.height < 3 * SIZE + 40  # the contact sheet stays at the model's size


def test_upscale_with_pad_cuts_the_padding_away():
    from flashctl.pipeline.animate import output_shape, resize_video
    from flashctl.video import fit_square

    image = np.zeros((30, 60, 3), np.uint8)
    image[:, :30] = (200, 40, 40)  # left half red, right half blue: the padding (border median) is neither
    image[:, 30:] = (40, 40, 200)
    frames = fit_square(image, 64, "pad")[None].repeat(2, axis=0)  # (2, 64, 64, 3) as the model would return
    video = resize_video(frames, 30, 60, "pad", output_shape(30, 60, "pad", None, True))
    assert video.shape == (2, 30, 60, 3)
    assert np.abs(video[0].astype(int) - image).mean() < 12  # the image back, no padding band left


def test_size_and_upscale_together_are_refused(trained, host, tmp_path):
    config, library = trained
    with pytest.raises(OutputPathError, match="--size 64 and --upscale"):
        animate(config, library, "slide", [_save(tmp_path / "a.png")], tmp_path / "out", host, size=64, upscale=True)
