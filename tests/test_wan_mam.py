"""MAM on Wan's full 3-D attention (flashctl_wan.mam): motion alignment per spatial token over latent frames,
correspondence alignment as the original's attention over the augmented values, checked against formulas by hand."""

import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

from flashctl.config import MamSection
from flashctl.context import BuildContext
from flashctl.errors import ConfigError
from flashctl.model import flash
from flashctl.model.lora import add_motion_lora
from flashctl.model.motion_alignment import aligned, install_mam, uninstall_mam
from flashctl_wan.mam import FrameLayout, WanFrameAttnProcessor, WanMamProcessor, apply_rope

FRAMES, SIDE = 3, 4  # latent frames, patches per side: 16 tokens per frame
MOTION, CORR, BOTH = frozenset({"motion"}), frozenset({"correspondence"}), frozenset({"motion", "correspondence"})


@pytest.fixture(scope="module")
def wan(host):
    return host.registry.create("backbone", "wan", {}, BuildContext())


def _tokens(wan, seed: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """A paired batch [x; x~] of attn1 inputs (2, F'*N, C) and its 3-D RoPE."""
    width = wan.options.heads * wan.options.head_dim
    x = torch.randn(2, FRAMES * SIDE * SIDE, width, generator=torch.Generator().manual_seed(seed))  # (2, F'*N, C)
    grid = torch.zeros(2, wan.options.latent_channels, FRAMES, 2 * SIDE, 2 * SIDE)  # (2, c, F', h, w): patch 2
    return x, wan.unet.rope(grid)


def _mam(kinds: frozenset[str], donor_grad: bool = True, active: bool = True) -> WanMamProcessor:
    processor = WanFrameAttnProcessor(FrameLayout(FRAMES)).mam_processor(kinds, donor_grad)
    processor.active = active
    return processor


def _stock(attn, x, rope) -> torch.Tensor:
    return WanAttnProcessor()(attn, x, None, None, rope)  # diffusers' own processor


def _to_q_input(attn, processor, x, rope) -> torch.Tensor:
    """The hidden states ``attn.to_q`` receives when ``processor`` runs (the input after motion alignment)."""
    seen = {}
    hook = attn.to_q.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0].detach()))
    try:
        processor(attn, x, None, None, rope)
    finally:
        hook.remove()
    return seen["x"]


def _by_hand(attn, rope, probs_from: torch.Tensor, values_from: torch.Tensor) -> torch.Tensor:
    """``to_out(softmax(Q K^T / sqrt d) V)`` over all of one video's tokens, the matrix written out:
    Q, K (RMS norm, RoPE) from ``probs_from``, V from ``values_from``; each ``(F'*N, C)`` -> ``(F'*N, C)``."""
    def heads(t):  # (L, heads*d) -> (1, L, heads, d)
        return t.unflatten(-1, (attn.heads, -1))[None]

    q = apply_rope(heads(attn.norm_q(attn.to_q(probs_from))), *rope)[0].transpose(0, 1)  # (heads, L, d)
    k = apply_rope(heads(attn.norm_k(attn.to_k(probs_from))), *rope)[0].transpose(0, 1)  # (heads, L, d)
    v = heads(attn.to_v(values_from))[0].transpose(0, 1)  # (heads, L, d)
    probs = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)  # (heads, L, L)
    out = (probs @ v).transpose(0, 1).flatten(1)  # (L, heads*d)
    return attn.to_out[1](attn.to_out[0](out))


def test_inactive_is_the_stock_wan_processor(wan):
    x, rope = _tokens(wan, 0)
    attn = wan.unet.blocks[0].attn1
    stock = _stock(attn, x, rope)
    torch.testing.assert_close(WanFrameAttnProcessor(FrameLayout(FRAMES))(attn, x, rotary_emb=rope), stock,
                               atol=1e-5, rtol=1e-5)
    for kinds in (MOTION, CORR, BOTH):
        torch.testing.assert_close(_mam(kinds, active=False)(attn, x, rotary_emb=rope), stock, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("switches,kind", [({"motion_align": True}, "motion"),
                                           ({"correspondence_align": True}, "correspondence"),
                                           ({"motion_align": True, "correspondence_align": True},
                                            "motion+correspondence")])
def test_installed_but_inactive_is_the_stock_model_and_uninstall_restores_it(host, switches, kind):
    fresh = host.registry.create("backbone", "wan", {}, BuildContext())
    latents = torch.randn(2, FRAMES, 4, 8, 8, generator=torch.Generator().manual_seed(1))  # (B, F', c, h, w)
    emb, t = fresh.encode_prompt(["kick", "jump"]), torch.tensor([300.0, 800.0])
    stock = fresh.denoise(latents, t, emb)
    layers = install_mam(fresh, MamSection(**switches))
    assert layers == {f"blocks.{i}.attn1.processor": kind for i in range(fresh.options.layers)}
    torch.testing.assert_close(fresh.denoise(latents, t, emb), stock, atol=1e-5, rtol=1e-5)
    with aligned(fresh.unet):
        out = fresh.denoise(latents, t, emb)
    torch.testing.assert_close(out[0], stock[0], atol=1e-5, rtol=1e-5)  # the original branch is the stock model
    assert not torch.allclose(out[1], stock[1], atol=1e-4)
    assert uninstall_mam(fresh.unet) == fresh.options.layers
    torch.testing.assert_close(fresh.denoise(latents, t, emb), stock, atol=1e-5, rtol=1e-5)


def test_augmented_input_is_its_own_temporal_mean_plus_the_originals_residual(wan):
    x, rope = _tokens(wan, 2)
    seen = _to_q_input(wan.unet.blocks[0].attn1, _mam(MOTION), x, rope)  # (2, F'*N, C)
    n = SIDE * SIDE
    expected = x.clone()  # (2, F'*N, C)
    for token in range(n):  # one spatial location's trajectory over latent frames, written out by hand
        rows = [f * n + token for f in range(FRAMES)]
        original, augmented = x[0, rows], x[1, rows]  # (F', C) each
        expected[1, rows] = augmented.mean(0) + (original - original.mean(0))
    torch.testing.assert_close(seen, expected, atol=1e-6, rtol=1e-6)
    assert torch.equal(seen[0], x[0])


@pytest.mark.parametrize("kinds", [MOTION, CORR, BOTH])
def test_active_alignment_leaves_the_original_half_unchanged(wan, kinds):
    x, rope = _tokens(wan, 3)
    attn = wan.unet.blocks[0].attn1
    mam = _mam(kinds)
    out = mam(attn, x, rotary_emb=rope)  # (2, F'*N, C)
    stock = _stock(attn, x, rope)
    torch.testing.assert_close(out[0], stock[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[1], stock[1], atol=1e-3)
    same = torch.cat([x[:1], x[:1]])  # x~ = x: neither alignment changes anything
    torch.testing.assert_close(mam(attn, same, rotary_emb=rope), _stock(attn, same, rope), atol=1e-5, rtol=1e-5)


def test_correspondence_output_is_the_originals_attention_over_the_augmented_values(wan):
    x, rope = _tokens(wan, 6)  # (2, F'*N, C): one video and its augmented copy
    attn = wan.unet.blocks[0].attn1
    with torch.no_grad():
        out = _mam(CORR)(attn, x, rotary_emb=rope)
        aligned_aug = _by_hand(attn, rope, x[0], x[1])  # softmax(Q_x K_x^T / sqrt d) V~
        own_aug = _by_hand(attn, rope, x[1], x[1])
        torch.testing.assert_close(out[0], _by_hand(attn, rope, x[0], x[0]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1], aligned_aug, atol=1e-5, rtol=1e-5)
    assert (aligned_aug - own_aug).abs().max() > 1e-3  # not the augmented clip's own attention


def test_both_alignments_aggregate_the_motion_aligned_values_with_the_originals_attention(wan):
    x, rope = _tokens(wan, 7)
    attn = wan.unet.blocks[0].attn1
    swapped = WanFrameAttnProcessor(FrameLayout(FRAMES)).align_motion(x)  # [x; s~ + m]
    with torch.no_grad():
        out = _mam(BOTH)(attn, x, rotary_emb=rope)
        expected = _by_hand(attn, rope, x[0], swapped[1])
    torch.testing.assert_close(out[1], expected, atol=1e-5, rtol=1e-5)
    assert (expected - _by_hand(attn, rope, x[0], x[1])).abs().max() > 1e-3  # the values really are aligned


def test_the_paired_batch_is_one_fused_attention_call(wan, monkeypatch):
    import flashctl_wan.mam as wan_mam

    calls, real = [], wan_mam.dispatch_attention_fn
    monkeypatch.setattr(wan_mam, "dispatch_attention_fn",
                        lambda q, k, v, **kw: calls.append(q.shape) or real(q, k, v, **kw))
    x, rope = _tokens(wan, 8)
    _mam(CORR)(wan.unet.blocks[0].attn1, x, rotary_emb=rope)
    width = wan.options.head_dim
    assert calls == [(2, FRAMES * SIDE * SIDE, wan.options.heads, width)]  # one call on [x; x~]: (2B, L, heads, d)


def test_tokens_that_do_not_split_into_the_latent_frames_are_refused(wan):
    x, rope = _tokens(wan, 4)
    with pytest.raises(ValueError, match="latent frames"):
        WanFrameAttnProcessor(FrameLayout(5)).align_motion(x)


SWITCHES = {"motion": {"motion_align": True}, "correspondence": {"correspondence_align": True},
            "both": {"motion_align": True, "correspondence_align": True}}


@pytest.mark.parametrize("donor_grad", [True, False])
@pytest.mark.parametrize("which", list(SWITCHES))
def test_augmented_loss_reaches_the_lora_only_where_it_should(host, which, donor_grad):
    fresh = host.registry.create("backbone", "wan", {}, BuildContext())
    params = add_motion_lora(fresh, rank=2, alpha=2)
    install_mam(fresh, MamSection(**SWITCHES[which], donor_grad=donor_grad))
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, FRAMES, 4, 8, 8, generator=gen).requires_grad_()  # (B, F', c, h, w)
    x_aug = torch.randn(1, FRAMES, 4, 8, 8, generator=gen)  # (B, F', c, h, w)
    emb = fresh.encode_prompt(["kick"])
    noise, t = fresh.objective.draw(x, gen)
    loss, loss_aug = flash.paired_denoising_loss(fresh, fresh.objective, x, x_aug, noise, t, emb)
    with torch.no_grad():  # the original half is the plain loss of x alone
        torch.testing.assert_close(loss, flash.denoising_loss(fresh, fresh.objective, x, noise, t, emb),
                                   atol=1e-5, rtol=1e-4)
    loss_aug.mean().backward()
    lora_b = {n: p.grad for n, p in fresh.unet.named_parameters() if p.requires_grad and ".lora_B." in n}
    assert len(lora_b) == 4 * fresh.options.layers and len(params) == 2 * len(lora_b)
    trained = {n for n, g in lora_b.items() if g is not None and g.abs().sum() > 0}
    query_key = {n for n in lora_b if ".to_q." in n or ".to_k." in n}
    # values and output projections always shape the augmented output
    assert set(lora_b) - query_key <= trained
    # with correspondence alignment the augmented branch attends with the original's queries and keys only,
    # so their LoRA learns from it through the donor; with motion alignment alone it uses its own
    assert (query_key <= trained) == (donor_grad or which == "motion")
    assert query_key.isdisjoint(trained) == (not donor_grad and which != "motion")
    # x reaches the augmented branch only through what it donates (motion; queries and keys)
    assert (x.grad.abs().sum() > 0).item() == donor_grad


def test_a_backbone_without_a_layer_to_align_correspondences_in_is_a_clear_config_error(wan):
    from types import SimpleNamespace

    plain = SimpleNamespace(name="plain", unet=wan.unet, spatial_attention=[],
                            temporal_attention=wan.temporal_attention)
    with pytest.raises(ConfigError) as info:
        install_mam(plain, MamSection(correspondence_align=True))
    assert "'plain'" in info.value.message and "lists no cross-frame-attention layers" in info.value.message
    assert "correspondence_align = false" in info.value.hint


def test_a_layer_listed_as_both_whose_processor_aligns_one_kind_is_a_clear_config_error(wan):
    from types import SimpleNamespace

    name = "blocks.0.attn2.processor"  # text cross-attention: a stock WanAttnProcessor
    fake = SimpleNamespace(name="fake", unet=wan.unet, spatial_attention=[name], temporal_attention=[name])
    with pytest.raises(ConfigError) as info:
        install_mam(fake, MamSection(motion_align=True, correspondence_align=True))
    assert "'blocks.0.attn2.processor'" in info.value.message and "WanAttnProcessor" in info.value.message
    assert not any(isinstance(p, WanMamProcessor) for p in wan.unet.attn_processors.values())  # nothing installed
