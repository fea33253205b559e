"""Motion Alignment Module: processors checked against attention computed by hand on the tiny U-Net."""

import re
from types import SimpleNamespace

import pytest
import torch
from einops import rearrange
from pydantic import ValidationError

from flashctl.config import TrainSection
from flashctl.context import BuildContext
from flashctl.errors import ConfigError
from flashctl.model import flash
from flashctl.model.cross_frame import CrossFrameAttnProcessor
from flashctl.model.lora import add_motion_lora
from flashctl.config import MamSection
from flashctl.model.motion_alignment import (CorrespondenceAlignProcessor, MotionAlignProcessor, aligned, install_mam,
                                             uninstall_mam)

from flashctl_animatediff import AnimateDiffOptions

BOTH = {"motion_align": True, "correspondence_align": True}
from flashctl_animatediff.backbone import build_backbone

B, FRAMES, LATENT = 2, 3, 4
TINY = AnimateDiffOptions(channels=(16, 32), vae_channels=(8, 8, 8))


@pytest.fixture(scope="module")
def shared():
    backbone = build_backbone(TINY, BuildContext())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, FRAMES, 4, LATENT, LATENT, generator=gen)  # (B, F, c, h, w)
    x_aug = torch.randn(B, FRAMES, 4, LATENT, LATENT, generator=gen)  # stands in for the augmented copy
    emb = backbone.encode_prompt(["a square slides right"]).expand(2 * B, -1, -1)  # (2B, seq, dim)
    t = torch.tensor([500] * 2 * B)
    with torch.no_grad():
        stock = backbone.denoise(torch.cat([x, x_aug]), t, emb)  # (2B, F, c, h, w)
    return SimpleNamespace(backbone=backbone, batch=torch.cat([x, x_aug]), t=t, emb=emb, stock=stock)


@pytest.fixture
def mam(shared):
    yield shared
    uninstall_mam(shared.backbone.unet)


def _denoise(s, active: bool) -> torch.Tensor:
    with torch.no_grad():
        if not active:
            return s.backbone.denoise(s.batch, s.t, s.emb)
        with aligned(s.backbone.unet):
            return s.backbone.denoise(s.batch, s.t, s.emb)


def _module(backbone, processor_name: str) -> torch.nn.Module:
    return backbone.unet.get_submodule(processor_name.removesuffix(".processor"))


def _capture(module: torch.nn.Module, store: dict, key: str, output: bool = False):
    if output:
        return module.register_forward_hook(lambda m, args, out: store.__setitem__(key, out.detach()))
    return module.register_forward_pre_hook(lambda m, args, kwargs: store.__setitem__(
        key, (args[0] if args else kwargs["hidden_states"]).detach()), with_kwargs=True)


def test_installed_but_inactive_is_the_stock_model_and_uninstall_restores_it(mam):
    backbone = mam.backbone
    layers = install_mam(backbone, MamSection(**BOTH))
    processors = backbone.unet.attn_processors
    assert {n for n, p in processors.items() if isinstance(p, MotionAlignProcessor)} == set(backbone.temporal_attention)
    assert {n for n, p in processors.items()
            if isinstance(p, CorrespondenceAlignProcessor)} == set(backbone.spatial_attention)
    assert set(layers) == set(backbone.temporal_attention) | set(backbone.spatial_attention)
    torch.testing.assert_close(_denoise(mam, active=False), mam.stock, atol=1e-5, rtol=0)
    install_mam(backbone, MamSection(**BOTH))  # installing twice wraps the stock processors, not MAM ones
    assert all(type(p.stock) in (CrossFrameAttnProcessor, type(processors[n].stock))
               for n, p in backbone.unet.attn_processors.items() if n in layers)
    assert uninstall_mam(backbone.unet) == len(layers)
    restored = backbone.unet.attn_processors
    assert {type(restored[n]) for n in backbone.spatial_attention} == {CrossFrameAttnProcessor}
    assert not any(isinstance(p, (MotionAlignProcessor, CorrespondenceAlignProcessor)) for p in restored.values())


def test_active_mam_leaves_the_original_branch_alone_and_changes_the_augmented_one(mam):
    install_mam(mam.backbone, MamSection(**BOTH))
    out = _denoise(mam, active=True)
    torch.testing.assert_close(out[:B], mam.stock[:B], atol=1e-5, rtol=0)
    assert (out[B:] - mam.stock[B:]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="paired batch"), aligned(mam.backbone.unet), torch.no_grad():
        mam.backbone.denoise(mam.batch[:1], mam.t[:1], mam.emb[:1])  # one video cannot be split into [x; x~]


def test_motion_alignment_feeds_static_part_of_augmented_plus_motion_of_original(mam):
    backbone = mam.backbone
    install_mam(backbone, MamSection(motion_align=True))
    assert not any(isinstance(p, CorrespondenceAlignProcessor) for p in backbone.unet.attn_processors.values())
    seen, hooks = {}, []
    for name in [n for n in backbone.temporal_attention if n.startswith("down_blocks.1.")]:  # attn1 and attn2
        attn = _module(backbone, name)
        hooks += [_capture(attn, seen, name + ":in"), _capture(attn.to_q, seen, name + ":q_in")]
    _denoise(mam, active=True)
    for hook in hooks:
        hook.remove()
    assert len(seen) == 4
    for name in {k.split(":")[0] for k in seen}:
        raw, used = seen[name + ":in"], seen[name + ":q_in"]  # (2*B*H*W, F, C)
        assert raw.shape[1] == FRAMES
        h, h_aug = raw.chunk(2)
        expected = h_aug.mean(dim=1, keepdim=True) + (h - h.mean(dim=1, keepdim=True))  # s~ + m
        assert (expected - h_aug).abs().max() > 1e-3  # the alignment really changes something
        torch.testing.assert_close(used[: len(h)], h, atol=0, rtol=0)
        torch.testing.assert_close(used[len(h):], expected, atol=1e-5, rtol=1e-5)


def test_reference_frame_keep_leaves_the_copys_frame_0_and_splits_over_the_noised_frames(mam):
    """reference_frame = "keep": frame 0 of the copy is its own; frames 1.. get s~ + m over frames 1.. only."""
    backbone = mam.backbone
    install_mam(backbone, MamSection(motion_align=True, reference_frame="keep"))
    name = next(n for n in backbone.temporal_attention if n.startswith("down_blocks.1."))
    seen = {}
    attn = _module(backbone, name)
    hooks = [_capture(attn, seen, "in"), _capture(attn.to_q, seen, "q_in")]
    _denoise(mam, active=True)
    for hook in hooks:
        hook.remove()
    h, h_aug = seen["in"].chunk(2)  # (B*H*W, F, C) each
    moving = h[:, 1:] - h[:, 1:].mean(dim=1, keepdim=True)  # m over frames 1..
    expected = torch.cat([h_aug[:, :1], h_aug[:, 1:].mean(dim=1, keepdim=True) + moving], dim=1)
    assert (expected - h_aug)[:, 1:].abs().max() > 1e-3  # frames 1.. really change
    used = seen["q_in"]
    torch.testing.assert_close(used[: len(h)], h, atol=0, rtol=0)
    torch.testing.assert_close(used[len(h):], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValidationError, match="reference_frame"):
        MamSection(reference_frame="drop")


def test_mam_fits_the_svd_backbone_too():
    from flashctl_svd import SVDOptions
    from flashctl_svd.backbone import build_backbone as build_svd

    backbone = build_svd(SVDOptions(), BuildContext())
    batch = torch.randn(2 * B, FRAMES, 4, LATENT, LATENT, generator=torch.Generator().manual_seed(1))
    t, emb = torch.tensor([500] * 2 * B), backbone.encode_prompt(["go"] * 2 * B)
    with torch.no_grad():
        stock = backbone.denoise(batch, t, emb)
        layers = install_mam(backbone, MamSection(**BOTH))
        assert set(layers.values()) == {"motion", "correspondence"}
        torch.testing.assert_close(backbone.denoise(batch, t, emb), stock, atol=1e-5, rtol=0)
        attn, seen = _module(backbone, backbone.temporal_attention[0]), {}
        hooks = [_capture(attn, seen, "in"), _capture(attn.to_q, seen, "q_in")]
        with aligned(backbone.unet):
            out = backbone.denoise(batch, t, emb)
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(out[:B], stock[:B], atol=1e-5, rtol=0)
    assert (out[B:] - stock[B:]).abs().max() > 1e-3
    h, h_aug = seen["in"].chunk(2)  # (B*H*W, F, C) each
    assert h.shape[1] == FRAMES
    expected = h_aug.mean(dim=1, keepdim=True) + h - h.mean(dim=1, keepdim=True)
    torch.testing.assert_close(seen["q_in"], torch.cat([h, expected]), atol=1e-5, rtol=1e-5)


def _by_hand(attn, probs_from: torch.Tensor, values_from: torch.Tensor) -> torch.Tensor:
    """Frame f attends to [frame 0, frame f]: softmax(Q K^T / sqrt d) of ``probs_from``, values of ``values_from``."""
    def heads(t):  # (B*F, N, heads*d) -> (B*F, heads, N, d)
        return rearrange(t, "bf n (h d) -> bf h n d", h=attn.heads)

    def context(t):  # (B*F, heads, N, d) -> (B*F, heads, 2N, d)
        t = rearrange(t, "(b f) h n d -> b f h n d", f=FRAMES)
        return rearrange(torch.cat([t[:, :1].expand_as(t), t], dim=3), "b f h n d -> (b f) h n d")

    q, k = heads(attn.to_q(probs_from)), context(heads(attn.to_k(probs_from)))
    v = context(heads(attn.to_v(values_from)))
    probs = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)  # (B*F, heads, N, 2N)
    out = rearrange(probs @ v, "bf h n d -> bf n (h d)")
    return attn.to_out[1](attn.to_out[0](out))  # (B*F, N, C)


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])  # runtime.attention
def test_correspondence_alignment_is_original_probabilities_times_augmented_values(mam, kernel):
    backbone = mam.backbone
    cross_frame = [backbone.unet.attn_processors[n] for n in backbone.spatial_attention]
    for processor in cross_frame:
        processor.kernel = kernel
    try:
        install_mam(backbone, MamSection(correspondence_align=True))
        assert {backbone.unet.attn_processors[n].kernel for n in backbone.spatial_attention} == {kernel}
        name = next(n for n in backbone.spatial_attention if n.startswith("down_blocks.0."))
        attn, seen = _module(backbone, name), {}
        hooks = [_capture(attn, seen, "in"), _capture(attn, seen, "out", output=True)]
        _denoise(mam, active=True)
        for hook in hooks:
            hook.remove()
    finally:
        for processor in cross_frame:
            processor.kernel = "sdpa"
    hidden, out = seen["in"], seen["out"]  # (2*B*F, N, C)
    x, x_aug = hidden.chunk(2)
    with torch.no_grad():
        original = _by_hand(attn, x, x)
        aligned_aug = _by_hand(attn, x, x_aug)
        own_aug = _by_hand(attn, x_aug, x_aug)
    torch.testing.assert_close(out[: len(x)], original, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[len(x):], aligned_aug, atol=1e-5, rtol=1e-5)
    assert (aligned_aug - own_aug).abs().max() > 1e-3  # differs from the augmented clip's own attention


def test_paired_loss_noises_both_halves_alike_in_one_call(mam, monkeypatch):
    backbone, (x, x_aug) = mam.backbone, mam.batch.chunk(2)
    objective = backbone.objective
    noise, t = objective.draw(x, torch.Generator().manual_seed(5))  # drawn for x only: (B, ...), (B,)
    calls = []
    real = backbone.denoise
    monkeypatch.setattr(backbone, "denoise", lambda *a: calls.append(a[0].shape[0]) or real(*a))
    with torch.no_grad():
        loss, loss_aug = flash.paired_denoising_loss(backbone, objective, x, x_aug, noise, t, mam.emb[:1])
        assert calls == [2 * B]  # one denoiser call on [x; x~]
        torch.testing.assert_close(loss_aug, flash.denoising_loss(backbone, objective, x_aug, noise, t, mam.emb[:1]),
                                   atol=1e-5, rtol=1e-4)
        weighted = flash.training_loss(backbone, x, mam.emb[:1], torch.Generator().manual_seed(5), augmented=x_aug,
                                       augmented_weight=0.25)
    torch.testing.assert_close(weighted, loss.mean() + 0.25 * loss_aug.mean())


@pytest.mark.parametrize("donor_grad", [True, False])
def test_augmented_loss_reaches_lora_and_donor_grad_switch_cuts_the_donor(shared, donor_grad):
    backbone = build_backbone(TINY, BuildContext())
    params = add_motion_lora(backbone, rank=4, alpha=4)
    install_mam(backbone, MamSection(**BOTH, donor_grad=donor_grad))
    x, x_aug = shared.batch.chunk(2)
    objective = backbone.objective
    noise, t = objective.draw(x, torch.Generator().manual_seed(3))
    loss, loss_aug = flash.paired_denoising_loss(backbone, objective, x, x_aug, noise, t, shared.emb[:1])
    assert loss.shape == loss_aug.shape == (B,)
    with torch.no_grad():  # the original half is the plain loss of x alone
        torch.testing.assert_close(loss, flash.denoising_loss(backbone, objective, x, noise, t, shared.emb[:1]),
                                   atol=1e-5, rtol=1e-4)
    loss_aug.mean().backward()
    grads = {n: p.grad for n, p in backbone.unet.named_parameters() if p.requires_grad and ".lora_B." in n}
    assert len(grads) and len(params)

    def norm(names):
        return sum(0.0 if grads[n] is None else grads[n].abs().sum().item() for n in names)

    temporal = [n for n in grads if ".motion_modules." in n]
    cross_frame_q = [n for n in grads if ".attentions." in n and ".attn1.to_q." in n]
    assert temporal and cross_frame_q
    assert all(norm([n]) > 0 for n in temporal)  # the augmented branch trains the temporal LoRA itself
    # the cross-frame query only shapes the augmented output through the donor's probabilities
    assert (norm(cross_frame_q) > 0) == donor_grad


def test_gradient_checkpointing_gives_the_same_gradients_when_backward_runs_inside_aligned(shared):
    backbone = build_backbone(TINY, BuildContext())
    add_motion_lora(backbone, rank=4, alpha=4)
    install_mam(backbone, MamSection(**BOTH))
    backbone.unet.train()
    x, x_aug = shared.batch.chunk(2)

    def lora_grads() -> dict[str, torch.Tensor]:
        with aligned(backbone.unet):
            loss = flash.training_loss(backbone, x, shared.emb[:1], torch.Generator().manual_seed(4), augmented=x_aug)
            loss.backward()
        grads = {n: p.grad.clone() for n, p in backbone.unet.named_parameters() if p.grad is not None}
        backbone.unet.zero_grad(set_to_none=True)
        return grads

    plain = lora_grads()
    backbone.unet.enable_gradient_checkpointing()
    recomputed = lora_grads()
    assert plain.keys() == recomputed.keys() and any(g.abs().sum() > 0 for g in plain.values())
    for name in plain:
        torch.testing.assert_close(recomputed[name], plain[name], atol=1e-5, rtol=1e-4)


def test_layer_filter_limits_which_processors_are_replaced(mam):
    backbone = mam.backbone
    replaced = install_mam(backbone, MamSection(**BOTH, layers=r"^down_blocks\."))
    expected = [n for n in backbone.temporal_attention + backbone.spatial_attention if n.startswith("down_blocks.")]
    assert sorted(replaced) == sorted(expected) and len(expected) < len(backbone.unet.attn_processors)
    mam_names = {n for n, p in backbone.unet.attn_processors.items()
                 if isinstance(p, (MotionAlignProcessor, CorrespondenceAlignProcessor))}
    assert mam_names == set(expected)
    replaced = install_mam(backbone, MamSection(**BOTH, layers=[r"mid_block\.motion", r"up_blocks\.1\.attentions\.0\."]))
    assert replaced == {"mid_block.motion_modules.0.transformer_blocks.0.attn1.processor": "motion",
                        "mid_block.motion_modules.0.transformer_blocks.0.attn2.processor": "motion",
                        "up_blocks.1.attentions.0.transformer_blocks.0.attn1.processor": "correspondence"}
    only_spatial = re.escape(r"train.mam.layers = '\.attentions\.'")
    with pytest.raises(ConfigError, match="train.mam.motion_align = true.*" + only_spatial):
        install_mam(backbone, MamSection(**BOTH, layers=r"\.attentions\."))  # only spatial layers match
    with pytest.raises(ValidationError, match="bad regex"):
        MamSection(**BOTH, layers=["ok", "(unclosed"])


def test_correspondence_alignment_needs_cross_frame_layers(mam):
    plain = next(n for n in mam.backbone.unet.attn_processors if n.endswith("attn2.processor")
                 and ".attentions." in n)  # text cross-attention: not a cross-frame processor
    fake = SimpleNamespace(name="fake", unet=mam.backbone.unet, spatial_attention=[plain], temporal_attention=[])
    with pytest.raises(ConfigError, match=r"train.mam.correspondence_align: layer .*attn2.* not cross-frame"):
        install_mam(fake, MamSection(correspondence_align=True))
    with pytest.raises(ConfigError, match="lists no temporal-attention layers.*train.mam.motion_align = false"):
        install_mam(fake, MamSection(motion_align=True))


ROWS = [  # strong_augment, motion_align, correspondence_align, detail_decoder -> row, weight of L(x~)
    ((False, False, False, False), "#1", 1.0),
    ((True, False, False, False), "#2", 1.0),
    ((True, True, False, False), "#3", 0.5),
    ((True, False, True, False), "#4", 2.0),
    ((True, True, True, False), "#5", 2.5),
    ((True, True, True, True), "#6", 2.5),
]


@pytest.mark.parametrize("switches,row,weight", ROWS)
def test_every_ablation_row_maps_to_its_switches(switches, row, weight):
    mam = MamSection(motion_align=switches[1], correspondence_align=switches[2], lambda_motion=0.5, lambda_corr=2.0)
    train = TrainSection(strong_augment=switches[0], detail_decoder=switches[3], mam=mam)
    assert train.ablation_row == row and train.mam.augmented_weight == weight


def _config_error(*overrides: str) -> ConfigError:
    from flashctl.config import load_config

    with pytest.raises(ConfigError) as info:
        load_config(None, list(overrides))
    return info.value


def test_impossible_switch_combinations_name_their_keys():
    both = _config_error("train.mam.motion_align=true", "train.mam.correspondence_align=true")
    assert re.search(r"train.mam.motion_align and train.mam.correspondence_align = true need "
                     r"train.strong_augment = true", both.message)
    one = _config_error("train.mam.correspondence_align=true")
    assert "train.mam.correspondence_align = true needs train.strong_augment" in one.message
    zero = _config_error("train.strong_augment=true", "train.mam.motion_align=true", "train.mam.lambda_motion=0")
    assert "train.mam.lambda_motion = 0: the aligned branch (train.mam.motion_align)" in zero.message
    assert MamSection(**BOTH, lambda_motion=0.0).augmented_weight == 1.0  # lambda_c still weighs it
    assert TrainSection(detail_decoder=True).ablation_row == "custom"


def test_old_flat_keys_say_where_they_moved():
    error = _config_error("train.motion_align=false")
    assert "'motion_align' moved to [train.mam]" in error.message and "train.mam.motion_align" in error.message
    assert "moved to [train.mam]: write it as train.mam.layers" in _config_error("train.mam_layers='x'").message


def test_layer_filter_comes_from_config_and_bad_regex_names_the_key():
    from flashctl.config import load_config
    from flashctl.errors import ConfigError

    assert load_config(None, ["train.mam.layers='down_blocks.*'"]).train.mam.layers == "down_blocks.*"
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.mam.layers='(unclosed'"])
    assert "train.mam.layers" in info.value.message
