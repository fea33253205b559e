"""The real Wan presets (wan2.1-i2v, wan2.2-ti2v) on tiny random-weight folders saved in each hub layout."""

from __future__ import annotations

import shutil

import pytest
import torch
from pydantic import ValidationError

from flashctl.config import MamSection
from flashctl.context import BuildContext
from flashctl.errors import ConfigError, WeightsNotFoundError
from flashctl.model import flash
from flashctl.model.lora import add_motion_lora
from flashctl.model.motion_alignment import install_mam

from flashctl_wan import HUB_IDS, WanOptions
from flashctl_wan.backbone import metadata_geometry
from flashctl_wan.components import char_tokenizer

FRAMES = 5  # 4k+1: two latent frames
SIDE = {"wan2.1-i2v": 32, "wan2.2-ti2v": 64}  # multiples of 16 (VAE 8x, patch 2) and 32 (VAE 16x, patch 2)


def _save_hub_folder(root, preset: str) -> None:
    """Tiny random weights in the diffusers layout of Wan2.1-I2V-14B-480P-Diffusers / Wan2.2-TI2V-5B-Diffusers:
    the transformer configs shaped like the real ones (in_channels, image_dim, added_kv_proj_dim), small."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    heads, head_dim, text_dim = 2, 16, 32
    common = dict(patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim, text_dim=text_dim,
                  freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                  eps=1e-6, rope_max_seq_len=256)
    if preset == "wan2.1-i2v":  # real: 16-channel VAE (8x), in 36 = 16 + 4 + 16, image_dim 1280, added_kv 5120
        z, clip = 16, 32
        transformer = WanTransformer3DModel(in_channels=2 * z + 4, out_channels=z, image_dim=clip,
                                            added_kv_proj_dim=heads * head_dim, **common)
        vae = AutoencoderKLWan(base_dim=16, z_dim=z, dim_mult=[1, 2, 2, 2], num_res_blocks=1)  # real mean/std
        encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=clip, intermediate_size=2 * clip, num_hidden_layers=3,
                                                   num_attention_heads=4, image_size=32, patch_size=16))
        encoder.save_pretrained(root / "image_encoder")
        CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
            root / "image_processor")
    else:  # real: 48-channel VAE, patch 2 inside the VAE (16x), residual blocks; in 48 = z_dim, no image_dim
        z = 48
        transformer = WanTransformer3DModel(in_channels=z, out_channels=z, **common)
        vae = AutoencoderKLWan(base_dim=16, decoder_base_dim=24, z_dim=z, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                               is_residual=True, in_channels=12, out_channels=12, patch_size=2,
                               scale_factor_spatial=16, latents_mean=[0.1] * z, latents_std=[1.5] * z)
    transformer.save_pretrained(root / "transformer")
    vae.save_pretrained(root / "vae")
    tokenizer = char_tokenizer(512)
    tokenizer.save_pretrained(root / "tokenizer")
    UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=text_dim, d_kv=8, d_ff=64, num_layers=2,
                                num_heads=4, dropout_rate=0.0)).save_pretrained(root / "text_encoder")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan_hub")
    for preset in SIDE:
        _save_hub_folder(root / preset, preset)
    return root


def _build(host, preset: str, base, **options):
    return host.registry.create("backbone", "wan", {"preset": preset, "base": str(base), **options}, BuildContext())


def _video(seed: int, side: int, frames: int = FRAMES) -> torch.Tensor:
    return torch.rand(1, frames, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("preset", list(SIDE))
def test_a_real_preset_loads_its_folder_trains_one_step_and_samples(host, folders, preset):
    backbone = _build(host, preset, folders / preset)
    side, z = SIDE[preset], backbone.vae.config.z_dim
    geo = backbone.geometry()
    assert (geo["preset"], geo["base"], geo["latent_channels"]) == (preset, str(folders / preset), z)
    assert geo["downsample"] == {"wan2.1-i2v": 8, "wan2.2-ti2v": 16}[preset] and geo["base_content_id"]
    assert (backbone.image_encoder is not None) == (preset == "wan2.1-i2v")
    emb = backbone.encode_prompt(["a person waves"])
    assert emb.shape == (1, 512, 32)  # Wan's 512 prompt tokens
    clip, other = backbone.encode_video(_video(0, side)), backbone.encode_video(_video(1, side))  # (1, 2, z, h, w)
    assert clip.shape == (1, 2, z, side // geo["downsample"], side // geo["downsample"])

    params = add_motion_lora(backbone, rank=2, alpha=2)
    install_mam(backbone, MamSection(motion_align=True, correspondence_align=True))
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    before = [p.detach().clone() for p in params]
    loss = flash.training_loss(backbone, clip, emb, torch.Generator().manual_seed(0), augmented=other)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and any(not torch.equal(p, b) for p, b in zip(params, before))

    decoder = host.registry.create("decoder", "vae", {}, BuildContext())
    decoder.attach(backbone)
    video = flash.sample(backbone, decoder, _video(2, side, 1)[:, 0], emb, FRAMES, 2,
                         backbone.objective.sampler("euler"), generator=torch.Generator().manual_seed(0))
    assert video.shape == (1, FRAMES, 3, side, side) and torch.isfinite(video).all()


def test_wan21_i2v_builds_the_pipelines_36_channels_and_clip_tokens(host, folders):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline
    from PIL import Image

    backbone = _build(host, "wan2.1-i2v", folders / "wan2.1-i2v")
    side = SIDE["wan2.1-i2v"]
    latents = backbone.encode_video(_video(3, side))  # (1, 2, 16, 4, 4): frame 0 is the reference
    seen = {}
    hooks = [backbone.unet.patch_embedding.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0])),
             backbone.unet.condition_embedder.image_embedder.register_forward_pre_hook(
                 lambda m, a: seen.__setitem__("image", a[0]))]
    backbone.denoise(latents, torch.tensor([500.0]), backbone.encode_prompt(["wave"]))
    for hook in hooks:
        hook.remove()
    x = seen["x"]  # (1, 36, F', h, w)
    assert x.shape == (1, 36, 2, side // 8, side // 8)
    torch.testing.assert_close(x[:, :16], latents.permute(0, 2, 1, 3, 4))  # the (noisy) latents themselves

    # the stock pipeline's own conditioning for the same reference image (the VAE decoding of latent frame 0)
    image = backbone.decode_latents(latents[:, :1])[:, 0]  # (1, 3, H, W) in [-1, 1]
    pipe = WanImageToVideoPipeline(backbone.tokenizer, backbone.text_encoder, backbone.vae,
                                   FlowMatchEulerDiscreteScheduler(), backbone.image_processor, backbone.image_encoder,
                                   backbone.unet)
    _, condition = pipe.prepare_latents(image, 1, 16, side, side, FRAMES, torch.float32, torch.device("cpu"))
    torch.testing.assert_close(x[:, 16:], condition, atol=1e-5, rtol=1e-5)  # mask (4) ++ condition latents (16)
    assert x[:, 16:20, 0].eq(1).all() and x[:, 16:20, 1:].eq(0).all()
    torch.testing.assert_close(seen["image"], backbone.image_condition.image_tokens(image))
    pixels = ((image[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte()  # (H, W, 3): the PIL image
    stock_tokens = pipe.encode_image(Image.fromarray(pixels.numpy()), torch.device("cpu"))  # (1, 3, 32)
    same_pixels = pixels.permute(2, 0, 1)[None].float() / 127.5 - 1  # (1, 3, H, W): what the stock encoder saw
    torch.testing.assert_close(backbone.image_condition.image_tokens(same_pixels), stock_tokens, atol=1e-5, rtol=1e-5)


def test_a_moved_folder_is_the_same_base_and_metadata_matches_the_built_geometry(host, folders, tmp_path):
    preset = "wan2.2-ti2v"
    moved = tmp_path / "elsewhere"
    shutil.copytree(folders / preset, moved)
    built = _build(host, preset, folders / preset).geometry()
    assert _build(host, preset, moved).geometry()["base_content_id"] == built["base_content_id"]
    meta = metadata_geometry(WanOptions(preset=preset, base=str(folders / preset)), BuildContext())
    assert meta.items() <= built.items() and {"latent_channels", "downsample", "base_content_id"} <= meta.keys()


def _error(host, preset: str, base) -> Exception:
    with pytest.raises((WeightsNotFoundError, ConfigError)) as info:
        _build(host, preset, base)
    assert "\n" not in info.value.message
    return info.value


def test_a_missing_folder_or_part_is_one_line_naming_the_folder_and_the_part(host, folders, tmp_path):
    error = _error(host, "wan2.2-ti2v", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in error.message and "not found" in error.message

    broken = tmp_path / "broken"
    shutil.copytree(folders / "wan2.1-i2v", broken)
    shutil.rmtree(broken / "image_encoder")
    error = _error(host, "wan2.1-i2v", broken)
    assert str(broken) in error.message and "image_encoder/" in error.message

    shutil.copytree(folders / "wan2.1-i2v" / "image_encoder", broken / "image_encoder")
    (broken / "vae" / "config.json").unlink()
    error = _error(host, "wan2.1-i2v", broken)
    assert str(broken / "vae") in error.message and "config.json" in error.message

    shutil.copy(folders / "wan2.1-i2v" / "vae" / "config.json", broken / "vae")
    for weights in (broken / "transformer").glob("*.safetensors"):
        weights.unlink()
    error = _error(host, "wan2.1-i2v", broken)
    assert str(broken / "transformer") in error.message and ".safetensors" in error.message


def test_a_folder_of_the_other_model_names_the_preset_that_fits(host, folders):
    error = _error(host, "wan2.2-ti2v", folders / "wan2.1-i2v")
    assert "in_channels = 36" in error.message and 'preset = "wan2.1-i2v"' in error.hint


def test_the_hub_id_default_never_downloads_offline(host):
    with pytest.raises(WeightsNotFoundError) as info:
        host.registry.create("backbone", "wan", {"preset": "wan2.2-ti2v"}, BuildContext())
    assert HUB_IDS["wan2.2-ti2v"] in info.value.message and "runtime.offline = false" in info.value.hint


def test_options_that_do_not_fit_the_preset_are_refused():
    with pytest.raises(ValidationError, match="text_len = 77 does not fit wan2.1-i2v"):
        WanOptions(preset="wan2.1-i2v", text_len=77)
    with pytest.raises(ValidationError, match="read by the real presets only"):
        WanOptions(base="some/folder")
    assert WanOptions().prompt_tokens == 32 and WanOptions(preset="wan2.2-ti2v").prompt_tokens == 512


def test_sides_the_vae_and_patches_cannot_tile_are_one_clear_error(host, folders):
    backbone = _build(host, "wan2.2-ti2v", folders / "wan2.2-ti2v")
    with pytest.raises(ConfigError) as info:
        backbone.encode_video(_video(4, 48))
    assert "multiples of 32" in info.value.message and "got 48x48" in info.value.message
    assert "prepare.size" in info.value.hint


def test_train_and_animate_through_the_cli_on_a_real_preset_folder(folders, tmp_path, capsys):
    """The motion records the folder's content id; animate pre-checks it from the folder's metadata, and a
    moved copy of the folder still animates the motion."""
    import json

    from cli_kit import run

    base = tmp_path / "Wan2.2-TI2V-5B-Diffusers"
    shutil.copytree(folders / "wan2.2-ti2v", base)
    (tmp_path / "flashctl.toml").write_text(f"""
[model]
backbone = "wan"
decoder = "vae"

[options.backbone.wan]
preset = "wan2.2-ti2v"
base = "{base}"

[prepare]
frames = {FRAMES}
size = 64

[train]
steps = 1
strong_augment = true
augmentations = ["invert"]

[train.mam]
motion_align = true
correspondence_align = true

[animate]
steps = 1
scheduler = "euler"
formats = ["mp4"]
""")
    for argv in (("--clips", "1", "--out", tmp_path / "clips"),
                 ("--clips", "1", "--seed", "100", "--reference-only", "--out", tmp_path / "photos")):
        assert run(capsys, "synth", "arm_wave", *argv).code == 0
    assert run(capsys, "prepare", "wave", "--clips", tmp_path / "clips", "--prompt", "waving").code == 0
    r = run(capsys, "train", "wave")
    assert r.code == 0, r.err
    record = json.loads((tmp_path / "motions" / "wave" / "weights" / "config.json").read_text())
    geometry = record["backbone"]["geometry"]
    assert (geometry["preset"], geometry["latent_channels"], geometry["downsample"]) == ("wan2.2-ti2v", 48, 16)
    assert geometry["base_content_id"] == _build_id(base)

    moved = tmp_path / "moved"
    base.rename(moved)
    r = run(capsys, "animate", "-a", "wave", "-i", tmp_path / "photos", "--out", tmp_path / "out", "--set",
            f"options.backbone.wan.base={moved}")
    assert r.code == 0, r.err
    assert len(r.out.split()) == 1 and r.out.strip().endswith(".mp4")


def _build_id(folder) -> str:
    return metadata_geometry(WanOptions(preset="wan2.2-ti2v", base=str(folder)), BuildContext())["base_content_id"]
