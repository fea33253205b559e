"""experiments/mam_gradients.py on the tiny random U-Net: the gradient comparison and the original-half check."""

import pytest
import torch
from script_kit import loaded_script

from flashctl.config import MamSection
from flashctl.context import BuildContext
from flashctl.model.motion_alignment import MamProcessor, install_mam, uninstall_mam

from flashctl_animatediff import AnimateDiffOptions
from flashctl_animatediff.backbone import build_backbone

TINY = AnimateDiffOptions(channels=(16, 32), vae_channels=(8, 8, 8))
BOTH = {"motion_align": True, "correspondence_align": True}


@pytest.fixture(scope="module")
def kit():
    with loaded_script("experiments/mam_gradients.py") as module:
        backbone = build_backbone(TINY, BuildContext())
        params = module.fresh_lora(backbone, 4, 4.0, seed=0)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, 4, 4, 4, generator=gen)  # (B, F, c, h, w)
        x_aug = torch.randn(2, 3, 4, 4, 4, generator=gen)  # stands in for the re-coloured copies
        prompt = backbone.encode_prompt(["a square slides right"])  # (1, seq, dim)
        noise, timesteps = module.draw(backbone.objective, x, 3)
        yield module, backbone, params, x, x_aug, prompt, noise, timesteps
    uninstall_mam(backbone.unet)


@pytest.mark.parametrize("options", [None, BOTH, BOTH | {"reference_frame": "keep"}])
def test_a_copy_equal_to_the_original_gives_the_same_gradient(kit, options):
    """x~ = x: the aligned copy is the original itself (s~ = s, V~ = V), so g_x~ = g_x with or without MAM."""
    module, backbone, params, x, _, prompt, noise, timesteps = kit
    if options is not None:
        install_mam(backbone, MamSection(**options))
    try:
        r = module.term_gradients(backbone, params, x, x.clone(), prompt, noise, timesteps)
    finally:
        uninstall_mam(backbone.unet)
    assert r["cos"] == pytest.approx(1.0, abs=1e-4)
    assert r["ratio"] == pytest.approx(1.0, abs=1e-4)
    assert r["loss_aug"] == pytest.approx(r["loss"], rel=1e-5)


def test_a_different_copy_gives_a_different_gradient(kit):
    module, backbone, params, x, x_aug, prompt, noise, timesteps = kit
    r = module.term_gradients(backbone, params, x, x_aug, prompt, noise, timesteps)
    assert r["cos"] < 0.99 and r["ratio"] != pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("options", [{"motion_align": True}, BOTH, BOTH | {"reference_frame": "keep"}])
def test_mam_leaves_the_original_half_of_the_paired_batch_untouched(kit, options):
    module, backbone, _, x, x_aug, prompt, noise, timesteps = kit
    install_mam(backbone, MamSection(**options))
    try:
        assert module.original_half_difference(backbone, x, x_aug, prompt, noise, timesteps) == 0.0
    finally:
        uninstall_mam(backbone.unet)


def test_row_gradients_averages_its_draws_and_removes_the_mam(kit):
    module, backbone, params, x, x_aug, prompt, _, _ = kit
    row = module.row_gradients(backbone, params, x, x_aug, prompt, {"motion_align": True}, [10, 11])
    assert len(row["cos_per_draw"]) == 2 and row["cos"] == pytest.approx(sum(row["cos_per_draw"]) / 2)
    assert not any(isinstance(p, MamProcessor) for p in backbone.unet.attn_processors.values())


def test_frame0_figures_see_no_change_when_the_copy_is_the_original(kit):
    module, backbone, _, x, x_aug, prompt, noise, timesteps = kit
    same = module.frame0_figures(backbone, x, x.clone(), prompt, noise, timesteps)
    assert same and all(f["change_frame0"] < 1e-5 and f["change_frames1"] < 1e-5 for f in same.values())
    other = module.frame0_figures(backbone, x, x_aug, prompt, noise, timesteps)
    assert set(other) == set(same) and all(f["change_frames1"] > 1e-3 for f in other.values())
    assert not any(isinstance(p, MamProcessor) for p in backbone.unet.attn_processors.values())


def test_fresh_lora_is_the_same_for_the_same_seed_whatever_the_global_generator_did(kit):
    module = kit[0]
    loras = []
    for global_seed in (5, 6):
        torch.manual_seed(global_seed)
        loras.append(module.fresh_lora(build_backbone(TINY, BuildContext()), 4, 4.0, seed=0))
    assert all(torch.equal(a, b) for a, b in zip(*loras))
    assert all(p.abs().max() > 0 for p in loras[0])  # B is random, not peft's zeros
