"""MAM on Wan's full 3-D attention: motion alignment per spatial token over latent frames (flashctl_wan.mam)."""

import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

from flashctl.config import MamSection
from flashctl.context import BuildContext
from flashctl.errors import ConfigError
from flashctl.model import flash
from flashctl.model.lora import add_motion_lora
from flashctl.model.motion_alignment import MotionAlignProcessor, aligned, install_mam, uninstall_mam
from flashctl_wan.mam import FrameLayout, WanFrameAttnProcessor

FRAMES, SIDE = 3, 4  # latent frames, patches per side: 16 tokens per frame


@pytest.fixture(scope="module")
def wan(host):
    return host.registry.create("backbone", "wan", {}, BuildContext())


def _tokens(wan, seed: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """A paired batch [x; x~] of attn1 inputs (2, F'*N, C) and its 3-D RoPE."""
    width = wan.options.heads * wan.options.head_dim
    x = torch.randn(2, FRAMES * SIDE * SIDE, width, generator=torch.Generator().manual_seed(seed))  # (2, F'*N, C)
    grid = torch.zeros(2, wan.options.latent_channels, FRAMES, 2 * SIDE, 2 * SIDE)  # (2, c, F', h, w): patch 2
    return x, wan.unet.rope(grid)


class Spy(WanFrameAttnProcessor):
    """Records the hidden states the stock processor receives."""

    def __call__(self, attn, hidden_states, *args, **kwargs):
        self.seen = hidden_states
        return super().__call__(attn, hidden_states, *args, **kwargs)


def _wrapped(processor: WanFrameAttnProcessor, donor_grad: bool = True) -> MotionAlignProcessor:
    return MotionAlignProcessor(processor, donor_grad)


def test_inactive_is_the_stock_wan_processor(wan):
    x, rope = _tokens(wan, 0)
    attn = wan.unet.blocks[0].attn1
    mam = _wrapped(WanFrameAttnProcessor(FrameLayout(FRAMES)))
    torch.testing.assert_close(mam(attn, x, rotary_emb=rope), WanAttnProcessor()(attn, x, None, None, rope),
                               atol=1e-5, rtol=1e-5)


def test_installed_but_inactive_is_the_stock_model_and_uninstall_restores_it(host):
    fresh = host.registry.create("backbone", "wan", {}, BuildContext())
    latents = torch.randn(2, FRAMES, 4, 8, 8, generator=torch.Generator().manual_seed(1))  # (B, F', c, h, w)
    emb, t = fresh.encode_prompt(["kick", "jump"]), torch.tensor([300.0, 800.0])
    stock = fresh.denoise(latents, t, emb)
    assert set(install_mam(fresh, MamSection(motion_align=True)).values()) == {"motion"}
    torch.testing.assert_close(fresh.denoise(latents, t, emb), stock, atol=1e-5, rtol=1e-5)
    with aligned(fresh.unet):
        assert not torch.allclose(fresh.denoise(latents, t, emb)[1], stock[1], atol=1e-4)
    assert uninstall_mam(fresh.unet) == fresh.options.layers
    torch.testing.assert_close(fresh.denoise(latents, t, emb), stock, atol=1e-5, rtol=1e-5)


def test_augmented_input_is_its_own_temporal_mean_plus_the_originals_residual(wan):
    x, rope = _tokens(wan, 2)
    spy = Spy(FrameLayout(FRAMES))
    mam = _wrapped(spy)
    mam.active = True
    mam(wan.unet.blocks[0].attn1, x, rotary_emb=rope)
    n = SIDE * SIDE
    expected = x.clone()  # (2, F'*N, C)
    for token in range(n):  # one spatial location's trajectory over latent frames, written out by hand
        rows = [f * n + token for f in range(FRAMES)]
        original, augmented = x[0, rows], x[1, rows]  # (F', C) each
        expected[1, rows] = augmented.mean(0) + (original - original.mean(0))
    torch.testing.assert_close(spy.seen, expected, atol=1e-6, rtol=1e-6)
    assert torch.equal(spy.seen[0], x[0])


def test_active_alignment_leaves_the_original_half_unchanged(wan):
    x, rope = _tokens(wan, 3)
    attn = wan.unet.blocks[0].attn1
    mam = _wrapped(WanFrameAttnProcessor(FrameLayout(FRAMES)))
    mam.active = True
    out = mam(attn, x, rotary_emb=rope)  # (2, F'*N, C)
    stock = WanAttnProcessor()(attn, x, None, None, rope)
    torch.testing.assert_close(out[0], stock[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[1], stock[1], atol=1e-3)
    same = torch.cat([x[:1], x[:1]])  # x~ = x: the swap changes nothing
    torch.testing.assert_close(mam(attn, same, rotary_emb=rope), WanAttnProcessor()(attn, same, None, None, rope),
                               atol=1e-5, rtol=1e-5)


def test_tokens_that_do_not_split_into_the_latent_frames_are_refused(wan):
    x, rope = _tokens(wan, 4)
    with pytest.raises(ValueError, match="latent frames"):
        WanFrameAttnProcessor(FrameLayout(5)).align_motion(x)


@pytest.mark.parametrize("donor_grad", [True, False])
def test_augmented_loss_trains_every_self_attention_lora_and_donor_grad_cuts_the_original(host, donor_grad):
    fresh = host.registry.create("backbone", "wan", {}, BuildContext())
    params = add_motion_lora(fresh, rank=2, alpha=2)
    install_mam(fresh, MamSection(motion_align=True, donor_grad=donor_grad))
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
    assert all(g is not None and g.abs().sum() > 0 for g in lora_b.values())
    # x reaches the augmented branch only through the motion it donates
    assert (x.grad.abs().sum() > 0).item() == donor_grad


def test_correspondence_alignment_is_a_clear_config_error_on_wan(wan):
    with pytest.raises(ConfigError) as info:
        install_mam(wan, MamSection(correspondence_align=True))
    assert "'wan'" in info.value.message and "cross-frame" in info.value.message
    assert "correspondence_align = false" in info.value.hint
