"""The Detail Enhancement Decoder on Wan's causal 3-D VAE: stock-exact untrained, sliced, fitted, saved, through the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from flashctl.context import BuildContext
from flashctl.model.detail_decoder import fit_detail_decoder

F, S = 5, 16  # video frames (4k+1: two latent frames), pixels


def _clips(n: int, seed: int) -> torch.Tensor:
    """(n, F, 3, S, S) in [-1, 1]: a fixed texture per clip with a flat square sliding over it."""
    g = torch.Generator().manual_seed(seed)
    clips = (torch.rand(n, 1, 3, S, S, generator=g) * 2 - 1).repeat(1, F, 1, 1, 1)  # (n, F, 3, S, S)
    for i in range(n):
        colour = torch.rand(3, 1, 1, generator=g) * 2 - 1  # (3, 1, 1)
        for f in range(F):
            clips[i, f, :, 4:10, f:f + 6] = colour
    return clips


@pytest.fixture(scope="module")
def backbone(host):
    return host.registry.create("backbone", "wan", {}, BuildContext())


def _decoder(host, backbone, **options):
    decoder = host.registry.create("decoder", "detail-enhance", options, BuildContext())
    decoder.attach(backbone)
    return decoder


def _perturbed(decoder):
    with torch.no_grad():
        for p in decoder.parameters():
            p.normal_(0, 0.1)
    return decoder


def test_unfitted_decoder_decodes_exactly_like_the_stock_wan_vae(host, backbone):
    from flashctl_wan.detail_decoder import WanInjector

    assert [(e["block"], e["kind"]) for e in _decoder(host, backbone).layout] == [(0, "attention"), (2, "conv")]
    decoder = _decoder(host, backbone, conv_blocks=[1, 2])  # every up block injected
    assert isinstance(decoder.injector, WanInjector)
    assert [(e["block"], e["kind"]) for e in decoder.layout] == [(0, "attention"), (1, "conv"), (2, "conv")]
    clips = _clips(2, seed=1)
    latents = backbone.encode_video(clips)  # (2, 2, c, h, w)
    out = decoder.decode(latents, clips[:, 0])  # (2, F, 3, S, S)
    assert out.shape == (2, F, 3, S, S)
    assert (out - backbone.decode_latents(latents)).abs().max().item() == 0.0  # bit for bit
    assert (_perturbed(decoder).decode(latents, clips[:, 0]) - out).abs().max() > 1e-3  # the layers are in the path


def test_reference_features_are_the_causal_encoders_frame_0_features(host, backbone):
    """A still image's features equal those the VAE computes for frame 0 of a clip starting with it."""
    decoder = _decoder(host, backbone)
    clips = _clips(1, seed=2)
    alone = decoder.injector.encoder_features(clips[:, 0])
    seen = []
    encoder = backbone.vae.encoder
    hooks = [m.register_forward_hook(lambda _m, _a, out: seen.append(out[:, :, 0].clone()))
             for m in (encoder.conv_in, *encoder.down_blocks, encoder.mid_block)]
    try:
        backbone.encode_video(clips)  # the stock encode: frame 0 is the first chunk, then 4 frames
    finally:
        for h in hooks:
            h.remove()
    assert len(alone) == len(encoder.down_blocks) + 2
    for mine, stock in zip(alone, seen[:len(alone)]):  # the first chunk's calls come first
        torch.testing.assert_close(mine, stock, rtol=0, atol=0)


def test_the_injector_decodes_a_wan22_layout_vae_exactly_like_its_decode():
    """Wan2.2-TI2V's VAE layout: residual up/down blocks, 2x2 patchified pixels (12 channels), 16x; with
    non-trivial latent statistics. No-op injections give ``AutoencoderKLWan.decode`` bit for bit."""
    from diffusers import AutoencoderKLWan

    from flashctl_wan.detail_decoder import WanInjector

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, decoder_base_dim=12, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                           is_residual=True, patch_size=2, in_channels=12, out_channels=12, scale_factor_spatial=16,
                           latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[2.0, 0.5, 1.5, 1.0]).eval()
    injector = WanInjector(vae)
    seen = []

    def record(block: int, x: torch.Tensor, rows: slice) -> torch.Tensor:
        seen.append((block, tuple(x.shape)))
        return x

    latents = torch.randn(2, 2, 4, 2, 2)  # (B, F', c, h, w): 5 frames of 32 px
    mean, std = torch.tensor(vae.config.latents_mean), torch.tensor(vae.config.latents_std)
    with torch.no_grad():
        out = injector.decode(latents, record).clamp(-1, 1)  # (B, F, 3, H, W)
        z = latents.permute(0, 2, 1, 3, 4) * std.view(1, 4, 1, 1, 1) + mean.view(1, 4, 1, 1, 1)  # (B, c, F', h, w)
        stock = vae.decode(z).sample.permute(0, 2, 1, 3, 4)  # (B, F, 3, H, W)
    assert out.shape == (2, 5, 3, 32, 32) and (out - stock).abs().max().item() == 0.0
    assert seen[:4] == [(0, (2, 24, 4, 4)), (1, (2, 24, 8, 8)), (2, (2, 24, 16, 16)), (3, (2, 12, 16, 16))]  # frame 0
    assert seen[4][1][0] == 2 * 2 and seen[-1][1][0] == 2 * 4  # latent frame 1 -> 2, then 4 frames per video
    feats = injector.encoder_features(torch.zeros(1, 3, 32, 32))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2, 2, 2]  # patchified 16 px, then every down block


def test_vae_slicing_decodes_a_video_at_a_time_with_the_same_result(host, backbone, monkeypatch):
    decoder = _perturbed(_decoder(host, backbone))
    clips = _clips(3, seed=3)
    latents = backbone.encode_video(clips)  # (3, 2, c, h, w)
    was = backbone.vae.use_slicing
    try:
        backbone.vae.disable_slicing()
        batched = decoder.decode(latents, clips[:, 0])
        calls, real = [], decoder.injector.decode_videos
        monkeypatch.setattr(decoder.injector, "decode_videos",
                            lambda z, inject, rows, warm: calls.append((z.shape[0], rows)) or real(z, inject, rows, warm))
        backbone.vae.enable_slicing()
        sliced = decoder.decode(latents, clips[:, 0])
    finally:
        backbone.vae.use_slicing = was
    assert calls == [(1, slice(i, i + 1)) for i in range(3)]  # each video with its own reference
    torch.testing.assert_close(sliced, batched, atol=1e-5, rtol=0)


def test_a_fitting_step_decodes_a_window_after_a_gradient_free_warm_up_of_the_causal_cache(host, backbone):
    """9-frame clips (3 latent frames), 4 target frames a step: one latent frame with gradient, at latent frame
    1 or 2, the frames before it decoded without gradient; the window's frames are the full decode's."""
    decoder = _perturbed(_decoder(host, backbone))
    clips = torch.rand(2, 9, 3, S, S, generator=torch.Generator().manual_seed(6)) * 2 - 1  # (2, 9, 3, S, S)
    latents = backbone.encode_video(clips)  # (2, 3, c, h, w)
    g, starts = torch.Generator().manual_seed(0), set()
    for _ in range(8):
        batch = decoder.injector.fit_batch(latents, clips, 4, g)
        start = batch.warm
        starts.add(start)
        assert batch.latents.shape[1] == start + 1 and batch.target.shape[1] == 4 * start + 1
        assert batch.frames == slice(4 * start - 3, None) and len(batch.clips) == 1  # 4 target frames, 1 clip
    assert starts == {1, 2}
    grad_on = []

    def record(block: int, x: torch.Tensor, rows: slice) -> torch.Tensor:
        grad_on.append((x.shape[0], torch.is_grad_enabled()))
        return x

    decoder.injector.decode(latents[:1], record, warm=2)
    assert [on for _, on in grad_on] == [False] * 6 + [True] * 3  # 3 up blocks per latent frame
    features = decoder.reference_features(clips[:, 0])
    with torch.no_grad():
        full = decoder.decode_with(latents, features)  # (2, 9, 3, S, S)
    window = decoder.decode_with(latents[:, :2], features, warm=1)  # (2, 5, 3, S, S)
    assert window.requires_grad
    torch.testing.assert_close(window.detach(), full[:, :5], rtol=0, atol=1e-6)  # causal: the same first frames


def test_fitting_trains_only_the_new_layers_and_brings_back_the_own_reference(host, backbone):
    """Fitted on some clips, the DED beats the stock decode on other clips' frames, and only with each
    clip's own reference; the VAE is untouched and gets no gradient."""
    train, held_out = _clips(6, seed=10), _clips(3, seed=20)
    decoder = _decoder(host, backbone)
    vae_before = {k: v.clone() for k, v in backbone.vae.state_dict().items()}
    history = fit_detail_decoder(decoder, train, steps=30, lr=2e-2, batch_frames=8, seed=0)
    assert len(history) == 30 and all(math.isfinite(v) for v in history)
    assert all(p.grad is None and not p.requires_grad for p in backbone.vae.parameters())
    assert all(torch.equal(v, vae_before[k]) for k, v in backbone.vae.state_dict().items())
    assert all(p.grad is not None for p in decoder.parameters())

    latents, targets = backbone.encode_video(held_out), held_out[:, 1:]  # loss frames: not the reference
    own, swapped = held_out[:, 0], held_out[:, 0].roll(1, dims=0)
    stock = (backbone.decode_latents(latents)[:, 1:] - targets).abs().mean().item()
    fitted = (decoder.decode(latents, own)[:, 1:] - targets).abs().mean().item()
    wrong = (decoder.decode(latents, swapped)[:, 1:] - targets).abs().mean().item()
    figures = f"held-out L1: stock {stock:.4f}, DED {fitted:.4f}, DED with another clip's reference {wrong:.4f}"
    assert fitted < 0.9 * stock and fitted < wrong, figures


def test_save_load_round_trip_and_a_wrong_layout_is_refused(host, backbone, tmp_path):
    from safetensors import safe_open

    from flashctl.errors import WeightsFileError

    clips = _clips(1, seed=5)
    latents = backbone.encode_video(clips)
    decoder = _perturbed(_decoder(host, backbone))
    path = decoder.save(tmp_path / "ded.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata()["format"] == "flashctl-detail-decoder/1"
        assert {f"injections.{k}" for k in fh.keys()} == set(decoder.state_dict())
    again = _decoder(host, backbone)
    again.load(path)
    assert torch.equal(again.decode(latents, clips[:, 0]), decoder.decode(latents, clips[:, 0]))
    with pytest.raises(WeightsFileError, match="layout"):
        _decoder(host, backbone, attention_blocks=[], conv_blocks=[2]).load(path)


CONFIG = f"""
[model]
backbone = "wan"
decoder = "detail-enhance"

[options.decoder.detail-enhance]
train_steps = 3

[prepare]
frames = {F}
size = 32
fps = 8.0

[train]
steps = 2
detail_decoder = true

[animate]
steps = 2
scheduler = "euler"
formats = ["mp4"]
"""


def test_train_fits_and_animate_uses_the_wan_ded_through_the_cli(tmp_path, capsys):
    from cli_kit import run
    from flashctl.video import probe

    (tmp_path / "flashctl.toml").write_text(CONFIG)
    for argv in (("--clips", "2", "--out", tmp_path / "clips"),
                 ("--clips", "1", "--seed", "100", "--reference-only", "--out", tmp_path / "photos")):
        assert run(capsys, "synth", "arm_wave", *argv).code == 0
    assert run(capsys, "prepare", "wave", "--clips", tmp_path / "clips", "--prompt", "a person waving").code == 0
    r = run(capsys, "train", "wave", "--json")
    assert r.code == 0, r.err
    weights = tmp_path / "motions" / "wave" / "weights"
    record = json.loads((weights / "config.json").read_text())
    assert record["decoder"]["name"] == "detail-enhance" and record["decoder"]["file"] == "decoder.safetensors"
    assert (weights / "decoder.safetensors").is_file()

    sheets = {}
    for decoder in ("detail-enhance", "vae"):  # the fitted DED, then the stock decoder on the same motion
        out = tmp_path / decoder
        r = run(capsys, "animate", "-a", "wave", "-i", tmp_path / "photos", "--out", out,
                "--set", f"model.decoder={decoder}")
        assert r.code == 0, r.err
        (mp4,) = r.out.split()
        info = probe(mp4)
        assert info.frames == F and (info.width, info.height) == (32, 32)
        sheets[decoder] = next(out.glob("*_sheet.png")).read_bytes()
    assert sheets["detail-enhance"] != sheets["vae"]  # the fitted layers decode differently


def test_checkpointing_leaves_the_causal_up_blocks_alone_and_the_fit_runs(host, backbone):
    """The real presets' fit asks for checkpointed up blocks; Wan's update their frame cache in place, so a rerun
    in backward would read the wrong state: the injector says so and the fit runs as without checkpointing."""
    from flashctl.model.motion_model import MotionModel

    def fit(checkpointing: bool) -> list[float]:
        torch.manual_seed(0)  # the same injections every time
        model = MotionModel(backbone, _decoder(host, backbone, train_steps=2), {})
        return model.fit_decoder(_clips(2, 5), seed=0, checkpointing=checkpointing)

    assert _decoder(host, backbone).injector.recomputable is False
    assert fit(True) == fit(False)
