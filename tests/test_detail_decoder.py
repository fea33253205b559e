"""The Detail Enhancement Decoder: zero-init equivalence, frozen VAE, fitting, weights on disk."""

import math

import pytest
import torch
from safetensors.torch import load_file, safe_open

from flashctl.context import BuildContext
from flashctl.errors import ConfigError, TrainingDivergedError, WeightsFileError, WeightsNotFoundError
from flashctl.model.detail_decoder import DetailEnhanceDecoder, fit_detail_decoder
from flashctl.model.interfaces import Decoder
from flashctl.progress import ListReporter

S, F, SQUARE = 32, 6, 10  # pixels, frames per clip, side of the moving square


def _textured_clips(n: int, seed: int) -> torch.Tensor:
    """(n, F, 3, S, S) in [-1, 1]: a fixed high-frequency texture per clip, a flat square moving over it."""
    g = torch.Generator().manual_seed(seed)
    clips = torch.empty(n, F, 3, S, S)
    for i in range(n):
        background = torch.rand(3, 1, 1, generator=g) * 1.2 - 0.6 + (torch.rand(3, S, S, generator=g) - 0.5) * 0.8
        colour = torch.rand(3, 1, 1, generator=g) * 2 - 1  # (3, 1, 1)
        x0, y0 = torch.randint(0, S - SQUARE, (2,), generator=g).tolist()
        dx, dy = torch.randint(-3, 4, (2,), generator=g).tolist()
        for f in range(F):
            x, y = min(max(x0 + dx * f, 0), S - SQUARE), min(max(y0 + dy * f, 0), S - SQUARE)
            frame = background.clone()  # (3, S, S)
            frame[:, y:y + SQUARE, x:x + SQUARE] = colour
            clips[i, f] = frame.clamp(-1, 1)
    return clips


@pytest.fixture(scope="module")
def backbone(host):
    """The tiny AnimateDiff backbone with its random VAE briefly trained as an autoencoder, so that it
    reconstructs the clips' shapes but blurs their texture (the detail the DED has to bring back)."""
    bb = host.registry.create("backbone", "animatediff", {}, BuildContext())
    vae, frames = bb.vae, _textured_clips(12, seed=100).flatten(0, 1)  # (12*F, 3, S, S)
    vae.requires_grad_(True)
    optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        x = frames[torch.randint(0, frames.shape[0], (8,), generator=g)]  # (8, 3, S, S)
        loss = (vae.decode(vae.encode(x).latent_dist.mode()).sample - x).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    vae.requires_grad_(False).zero_grad(set_to_none=True)
    return bb


def _decoder(host, backbone, **options) -> DetailEnhanceDecoder:
    decoder = host.registry.create("decoder", "detail-enhance", options, BuildContext())
    decoder.attach(backbone)
    return decoder


def _stock(host, backbone):
    decoder = host.registry.create("decoder", "vae", {}, BuildContext())
    decoder.attach(backbone)
    return decoder


def test_unfitted_decoder_decodes_like_the_stock_vae(host, backbone):
    default = _decoder(host, backbone)
    assert isinstance(default, Decoder) and default.has_weights and default.name == "detail-enhance"
    kinds = [(e["block"], e["kind"]) for e in default.layout]
    assert kinds == [(0, "attention"), (2, "conv")]  # default: attention lowest, a conv at the highest resolution
    decoder = _decoder(host, backbone, conv_blocks=[1, 2])  # every up block injected
    clips = _textured_clips(2, seed=1)  # (2, F, 3, S, S)
    latents = backbone.encode_video(clips)  # (2, F, c, h, w)
    out = decoder.decode(latents, clips[:, 0])  # (2, F, 3, S, S)
    assert out.shape == (2, F, 3, S, S)
    torch.testing.assert_close(out, _stock(host, backbone).decode(latents, clips[:, 0]), atol=1e-5, rtol=0)


def test_layers_change_the_output_once_nonzero_and_follow_the_options(host, backbone):
    clips = _textured_clips(1, seed=2)
    latents = backbone.encode_video(clips)  # (1, F, c, h, w)
    stock = _stock(host, backbone).decode(latents, clips[:, 0])
    for options in ({"attention_blocks": [0, 1, 2]}, {"attention_blocks": [], "conv_blocks": [2]}):
        decoder = _decoder(host, backbone, **options)
        assert {e["block"] for e in decoder.layout} == set(options.get("conv_blocks", []) + options["attention_blocks"])
        with torch.no_grad():
            for p in decoder.parameters():
                p.normal_(0, 0.1)
        assert (decoder.decode(latents, clips[:, 0]) - stock).abs().max() > 1e-3, options


def test_vae_slicing_decodes_a_frame_at_a_time_with_the_same_result(host, backbone, monkeypatch):
    decoder = _decoder(host, backbone)
    with torch.no_grad():
        for p in decoder.parameters():
            p.normal_(0, 0.1)  # fitted-looking layers: the reference attention is in play
    clips = _textured_clips(2, seed=4)  # (2, F, 3, S, S)
    latents = backbone.encode_video(clips)  # (2, F, c, h, w)
    was = backbone.vae.use_slicing  # the backbone fixture is shared: put its switch back
    try:
        backbone.vae.disable_slicing()
        batched = decoder.decode(latents, clips[:, 0])
        calls, real = [], decoder.injector.decode_frames
        monkeypatch.setattr(decoder.injector, "decode_frames", lambda z, inject: calls.append(z.shape[1]) or real(z, inject))
        backbone.vae.enable_slicing()
        sliced = decoder.decode(latents, clips[:, 0])
    finally:
        backbone.vae.use_slicing = was
    assert calls == [1] * F
    torch.testing.assert_close(sliced, batched, atol=1e-5, rtol=0)


def test_bad_block_options_name_the_key(host, backbone):
    with pytest.raises(ConfigError, match="attention_blocks: up block 3 does not exist"):
        _decoder(host, backbone, attention_blocks=[3])
    with pytest.raises(ConfigError, match="heads: 5 does not divide"):
        _decoder(host, backbone, heads=5)
    with pytest.raises(ConfigError, match="both attention_blocks and conv_blocks"):
        _decoder(host, backbone, attention_blocks=[1], conv_blocks=[1])
    with pytest.raises(ConfigError, match="nothing to add"):
        _decoder(host, backbone, attention_blocks=[], conv_blocks=[])


def test_gradients_reach_only_the_new_layers(host, backbone):
    # a conv first (block 0): its input needs no grad, the case that crashed torch's GroupNorm backward
    decoder = _decoder(host, backbone, attention_blocks=[1], conv_blocks=[0, 2])
    vae_before = {k: v.clone() for k, v in backbone.vae.state_dict().items()}
    layers_before = {k: v.clone() for k, v in decoder.state_dict().items()}
    reporter = ListReporter()
    history = fit_detail_decoder(decoder, _textured_clips(2, seed=3), steps=3, lr=1e-2, seed=0, reporter=reporter)
    assert len(history) == 3 and all(math.isfinite(v) for v in history)
    assert all(p.grad is None and not p.requires_grad for p in backbone.vae.parameters())
    assert all(torch.equal(v, vae_before[k]) for k, v in backbone.vae.state_dict().items())
    assert all(p.grad is not None for p in decoder.parameters())
    changed = [k for k, v in decoder.state_dict().items() if not torch.equal(v, layers_before[k])]
    assert {k.split(".")[1] for k in changed} == {"0", "1", "2"}  # every injection (injections.N) learned something
    assert reporter.events[0] == ("start", ("detail decoder", 3)) and reporter.events[-1] == ("finish", None)
    assert [v[1]["loss"] for kind, v in reporter.events if kind == "advance"] == history


def test_fitting_restores_held_out_detail(host, backbone):
    """Fitted on some clips, the DED beats the stock decoder on frames of other clips, and only with
    each clip's own reference (it copies that clip's texture, not an average look)."""
    train, held_out = _textured_clips(8, seed=10), _textured_clips(4, seed=20)  # (N, F, 3, S, S)
    decoder = _decoder(host, backbone)
    history = fit_detail_decoder(decoder, train, steps=60, lr=2e-2, batch_frames=8, seed=0)
    latents = backbone.encode_video(held_out)[:, 1:]  # (4, F-1, c, h, w)
    targets, own, swapped = held_out[:, 1:], held_out[:, 0], held_out[:, 0].roll(1, dims=0)  # refs (4, 3, S, S)
    stock = (_stock(host, backbone).decode(latents, own) - targets).abs().mean().item()
    fitted = (decoder.decode(latents, own) - targets).abs().mean().item()
    wrong_ref = (decoder.decode(latents, swapped) - targets).abs().mean().item()
    figures = (f"held-out L1: stock {stock:.4f}, DED {fitted:.4f}, DED with another clip's reference "
               f"{wrong_ref:.4f}; train loss {history[0]:.4f} -> {sum(history[-10:]) / 10:.4f}")
    assert fitted < 0.9 * stock, figures
    assert fitted < wrong_ref, figures


def test_nan_loss_raises_and_keeps_the_layers(host, backbone):
    decoder = _decoder(host, backbone)
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    clips = _textured_clips(1, seed=4)
    clips[0, 1:] = float("nan")
    with pytest.raises(TrainingDivergedError, match="loss became nan at step 1"):
        fit_detail_decoder(decoder, clips, steps=2, seed=0)
    assert all(torch.equal(v, before[k]) for k, v in decoder.state_dict().items())


def test_save_load_round_trip(host, backbone, tmp_path):
    clips = _textured_clips(2, seed=5)
    latents = backbone.encode_video(clips)  # (2, F, c, h, w)
    decoder = _decoder(host, backbone)
    with torch.no_grad():
        for p in decoder.parameters():
            p.normal_(0, 0.1)
    path = decoder.save(tmp_path / "ded.safetensors")
    assert {f"injections.{k}" for k in load_file(str(path))} == set(decoder.state_dict())  # only the new layers
    assert not any(k.startswith(("encoder", "decoder")) for k in load_file(str(path)))
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata()["format"] == "flashctl-detail-decoder/1"
    again = _decoder(host, backbone)
    again.load(path)
    assert torch.equal(again.decode(latents, clips[:, 0]), decoder.decode(latents, clips[:, 0]))


def test_a_file_fitted_with_other_heads_and_kv_size_decodes_as_fitted(host, backbone, tmp_path):
    """heads and kv_size change what the attention computes but not its tensors: the file's own values rule."""
    clips = _textured_clips(2, seed=6)
    latents = backbone.encode_video(clips)  # (2, F, c, h, w)
    fitted = _decoder(host, backbone, heads=2, kv_size=2)
    with torch.no_grad():
        for p in fitted.parameters():
            p.normal_(0, 0.1)
    path = fitted.save(tmp_path / "ded.safetensors")
    default = _decoder(host, backbone)
    default.load_state_dict(fitted.state_dict())
    assert not torch.allclose(default.decode(latents, clips[:, 0]), fitted.decode(latents, clips[:, 0]), atol=1e-4)
    default.load(path)
    assert torch.equal(default.decode(latents, clips[:, 0]), fitted.decode(latents, clips[:, 0]))


def test_concat_conv_is_the_conv_over_the_concatenated_normalised_features():
    """The split, channels-last form computes x + proj(cat([norm(x), norm_ref(ref)])) for every frame."""
    from flashctl.model.detail_layers import ReferenceConcatConv

    torch.manual_seed(0)
    layer = ReferenceConcatConv(8, 4)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(6, 8, 5, 7).contiguous(memory_format=torch.channels_last)  # (B*F, c, h, w), B = 2, F = 3
    ref = torch.randn(2, 4, 5, 7)  # (B, c_ref, h, w)
    by_frame = torch.cat([layer.norm(x), layer.norm_ref(ref).repeat_interleave(3, dim=0)], dim=1)  # (B*F, 12, h, w)
    expected = x + layer.proj(by_frame)
    assert torch.allclose(layer(x, layer.reference(ref)), expected, atol=1e-5)
    assert torch.allclose(layer(x.contiguous(), layer.reference(ref)), expected, atol=1e-5)


def test_load_refuses_missing_corrupt_and_mismatched_files(host, backbone, tmp_path):
    decoder = _decoder(host, backbone)
    with pytest.raises(WeightsNotFoundError, match="nope.safetensors not found"):
        decoder.load(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsFileError, match="unreadable"):
        decoder.load(bad)
    path = _decoder(host, backbone, attention_blocks=[], conv_blocks=[2]).save(tmp_path / "other.safetensors")
    with pytest.raises(WeightsFileError, match="layout"):
        decoder.load(path)
    assert all(not v.any() for k, v in decoder.state_dict().items() if "to_out" in k or "proj" in k)  # untouched
