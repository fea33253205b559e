"""The AnimateDiff backbone plugin, cross-frame attention and the stock VAE decoder."""

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from flashctl.context import BuildContext
from flashctl.errors import WeightsNotFoundError
from flashctl.model.cross_frame import CrossFrameAttnProcessor
from flashctl.model.interfaces import Backbone, Decoder

F, S = 4, 32  # frames, pixels


@pytest.fixture(scope="module")
def backbone(host):
    return host.registry.create("backbone", "animatediff", {}, BuildContext())


def _video(seed: int) -> torch.Tensor:
    return torch.rand(1, F, 3, S, S, generator=torch.Generator().manual_seed(seed)) * 2 - 1  # (B, F, 3, H, W)


def test_backbone_shapes_and_geometry(backbone):
    assert isinstance(backbone, Backbone)
    geo = backbone.geometry()
    down, c = geo["downsample"], geo["latent_channels"]
    assert (geo["backbone"], geo["preset"], down) == ("animatediff", "tiny", 4)
    latents = backbone.encode_video(_video(0))
    assert latents.shape == (1, F, c, S // down, S // down)
    emb = backbone.encode_prompt(["a person waves", "squat"])
    assert emb.shape[0] == 2 and emb.shape[2] == 32
    out = backbone.denoise(latents, torch.tensor([500]), emb[:1])
    assert out.shape == latents.shape
    assert backbone.decode_latents(latents).shape == (1, F, 3, S, S)
    assert len(backbone.spatial_attention) > 0 and len(backbone.temporal_attention) > 0
    assert all(isinstance(backbone.unet.attn_processors[n], CrossFrameAttnProcessor)
               for n in backbone.spatial_attention)


def test_same_options_same_base_and_geometry(host, backbone):
    again = host.registry.create("backbone", "animatediff", {}, BuildContext())
    other = host.registry.create("backbone", "animatediff", {"init_seed": 1}, BuildContext())
    ref = dict(backbone.unet.named_parameters())
    assert all(torch.equal(p, ref[n]) for n, p in again.unet.named_parameters())
    assert again.geometry() == backbone.geometry()
    assert other.geometry()["base_config_sha256"] != backbone.geometry()["base_config_sha256"] or \
        other.geometry()["base"] != backbone.geometry()["base"]


def _attention() -> Attention:
    torch.manual_seed(0)
    return Attention(query_dim=16, heads=2, dim_head=8)


def test_cross_frame_with_one_frame_is_stock():
    attn = _attention()
    x = torch.randn(3, 10, 16)  # (B*F, N, C) with F = 1
    stock = AttnProcessor2_0()(attn, x)
    assert torch.equal(CrossFrameAttnProcessor(num_frames=1)(attn, x), stock)


def test_cross_frame_attends_to_frame_zero_and_itself():
    attn, proc = _attention(), CrossFrameAttnProcessor(num_frames=4)
    x = torch.randn(4, 10, 16)  # one video, 4 frames of 10 tokens
    base = proc(attn, x)
    change0, change2 = x.clone(), x.clone()
    change0[0] += 1.0
    change2[2] += 1.0
    out0, out2 = proc(attn, change0), proc(attn, change2)
    assert not torch.allclose(out0[3], base[3])  # frame 3 sees frame 0
    assert torch.equal(out2[3], base[3])  # ... but not frame 2
    assert not torch.allclose(out2[2], base[2])  # frame 2 sees itself
    # frame 0 attends only to itself: equal to stock self-attention on frame 0 alone
    torch.testing.assert_close(base[:1], AttnProcessor2_0()(attn, x[:1]))


def test_cross_frame_projects_every_frame_once(monkeypatch):
    """Frame 0's keys/values are gathered from the one projection of all frames, never projected again per frame."""
    attn, proc = _attention(), CrossFrameAttnProcessor(num_frames=4)
    rows = []
    for name in ("to_q", "to_k", "to_v"):
        getattr(attn, name).register_forward_hook(lambda mod, args, out, name=name: rows.append((name, args[0].shape[0])))
    x = torch.randn(8, 10, 16)  # two videos of 4 frames: (B*F, N, C)
    proc(attn, x)
    assert sorted(rows) == [("to_k", 8), ("to_q", 8), ("to_v", 8)]


def test_unet_with_one_frame_matches_stock_processors(backbone):
    latents = backbone.encode_video(_video(1)[:, :1])  # (1, 1, c, h, w)
    emb = backbone.encode_prompt(["wave"])
    ours = backbone.denoise(latents, torch.tensor([100]), emb)
    saved = backbone.unet.attn_processors
    try:
        backbone.unet.set_attn_processor(AttnProcessor2_0())
        stock = backbone.denoise(latents, torch.tensor([100]), emb)
    finally:
        backbone.unet.set_attn_processor(saved)
    assert torch.equal(ours, stock)


def test_vae_decoder_plugin_decodes_like_the_backbone(host, backbone):
    decoder = host.registry.create("decoder", "vae", {}, BuildContext())
    assert isinstance(decoder, Decoder) and not decoder.has_weights
    decoder.attach(backbone)
    latents = backbone.encode_video(_video(2))
    assert torch.equal(decoder.decode(latents, _video(2)[:, 0]), backbone.decode_latents(latents))


def test_sd15_offline_without_folder_names_it(host, tmp_path):
    missing = tmp_path / "sd15-base"
    with pytest.raises(WeightsNotFoundError) as info:
        host.registry.create("backbone", "animatediff", {"preset": "sd15", "base": str(missing)}, BuildContext())
    assert str(missing) in info.value.message and str(missing) in info.value.hint


def test_sd15_loads_a_folder_in_sd15_layout(host, backbone, tmp_path):
    backbone.save_pretrained(tmp_path / "base")
    opts = {"preset": "sd15", "base": str(tmp_path / "base"), "motion_adapter": str(tmp_path / "base/motion_adapter")}
    loaded = host.registry.create("backbone", "animatediff", opts, BuildContext())
    geo = loaded.geometry()
    assert geo["preset"] == "sd15" and geo["base"] == str(tmp_path / "base")
    assert geo["base_config_sha256"] == backbone.geometry()["base_config_sha256"]
    latents = backbone.encode_video(_video(3))
    torch.testing.assert_close(loaded.encode_video(_video(3)), latents)
    emb = backbone.encode_prompt(["kick"])
    torch.testing.assert_close(loaded.encode_prompt(["kick"]), emb)
    t = torch.tensor([250])
    torch.testing.assert_close(loaded.denoise(latents, t, emb), backbone.denoise(latents, t, emb))
