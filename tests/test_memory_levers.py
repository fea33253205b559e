"""train's low-memory settings at tiny size: each keeps what it computes, and does what it says."""

from __future__ import annotations

import pytest
import torch

from flashctl.config import MamSection, TrainSection
from flashctl.context import BuildContext
from flashctl.errors import ConfigError
from flashctl.model import flash
from flashctl.model.checkpointing import WRAPPED, checkpoint_modules
from flashctl.model.latent_backbone import LatentVideoBackbone
from flashctl.model.lora import add_motion_lora
from flashctl.model.motion_alignment import aligned, install_mam
from flashctl.model.motion_model import MotionModel
from flashctl.pipeline.train import train, train_settings
from flashctl.pipeline.train_memory import REAL_BANK, apply_memory, augmented_bank, encode_frames, resolve_memory
from motion_kit import make_action, tiny_config

from flashctl_animatediff import AnimateDiffOptions
from flashctl_animatediff.backbone import build_backbone, motion_unet
from flashctl_animatediff.components import tiny_components

BOTH = {"motion_align": True, "correspondence_align": True}
LOW = {"mixed_precision": "bf16", "gradient_checkpointing": True, "frozen_dtype": "mixed"}


def _paired_batch(backbone):
    g = torch.Generator().manual_seed(0)
    video = torch.rand(2, 4, 3, 32, 32, generator=g) * 2 - 1  # (2, F, 3, H, W): x and x~
    return backbone.encode_video(video).chunk(2), backbone.encode_prompt(["a square slides right"])


def _mam_backbone():
    backbone = build_backbone(AnimateDiffOptions(), BuildContext())
    params = add_motion_lora(backbone, rank=4, alpha=4)
    install_mam(backbone, MamSection(**BOTH))
    backbone.unet.train()
    return backbone, params


def _step(backbone, x, x_aug, emb):
    """Loss and LoRA gradients of one paired MAM step, with the bytes autograd saved for backward."""
    saved = []

    def pack(t):
        saved.append(t.untyped_storage().nbytes())
        return t

    with aligned(backbone.unet), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = flash.training_loss(backbone, x, emb, torch.Generator().manual_seed(4), augmented=x_aug)
        loss.backward()
    grads = {n: p.grad.clone() for n, p in backbone.unet.named_parameters() if p.grad is not None}
    backbone.unet.zero_grad(set_to_none=True)
    return loss.detach(), grads, sum(saved)


def test_checkpointing_through_motion_modules_keeps_loss_and_gradients_and_saves_less():
    backbone, params = _mam_backbone()
    (x, x_aug), emb = _paired_batch(backbone)
    plain_loss, plain, plain_saved = _step(backbone, x, x_aug, emb)
    backbone.unet.enable_gradient_checkpointing()  # diffusers' own: motion modules not covered
    _, _, diffusers_saved = _step(backbone, x, x_aug, emb)
    done = apply_memory(backbone, TrainSection(mixed_precision="no", gradient_checkpointing=True,
                                               frozen_dtype="float32"), params)
    assert any(".motion_modules." in n for n in done["checkpointed"])
    assert any(".attentions." in n for n in done["checkpointed"])
    loss, grads, saved = _step(backbone, x, x_aug, emb)
    torch.testing.assert_close(loss, plain_loss, atol=1e-5, rtol=1e-5)
    assert grads.keys() == plain.keys() and any(g.abs().sum() > 0 for g in plain.values())
    for name in plain:
        torch.testing.assert_close(grads[name], plain[name], atol=1e-5, rtol=1e-4)
    assert saved < diffusers_saved < plain_saved  # the motion modules' activations are no longer kept
    with torch.no_grad():  # inference goes straight through the wrapped modules
        flash.training_loss(backbone, x, emb, torch.Generator().manual_seed(4))


def test_frozen_weights_in_bfloat16_keep_the_lora_float32():
    backbone, params = _mam_backbone()
    (x, x_aug), emb = _paired_batch(backbone)
    apply_memory(backbone, TrainSection(**LOW), params)
    assert all(p.dtype == torch.float32 for p in params)
    frozen = [p for p in backbone.unet.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert all(p.dtype == torch.bfloat16 for p in backbone.text_encoder.parameters())
    assert all(p.dtype == torch.float32 for p in backbone.vae.parameters())  # the DED trains in its dtype
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, grads, _ = _step(backbone, x, x_aug, emb)
    assert torch.isfinite(loss) and grads and all(g.dtype == torch.float32 for g in grads.values())
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16), aligned(backbone.unet):
        flash.training_loss(backbone, x, emb, torch.Generator().manual_seed(4), augmented=x_aug).backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, params)) and all(p.dtype == torch.float32 for p in params)


def test_auto_settings_resolve_by_preset(tmp_path):
    tiny = resolve_memory(TrainSection(), tiny_config(tmp_path))
    assert (tiny.mixed_precision, tiny.gradient_checkpointing, tiny.frozen_dtype, tiny.augment_bank) == \
        ("no", False, "float32", 0)  # tiny runs train as before
    real = tiny_config(tmp_path, options={"backbone": {"animatediff": {"preset": "sd15"}}})
    low = resolve_memory(TrainSection(), real)
    assert (low.mixed_precision, low.gradient_checkpointing, low.frozen_dtype, low.augment_bank) == \
        ("bf16", True, "mixed", REAL_BANK)
    mine = resolve_memory(TrainSection(mixed_precision="fp16", gradient_checkpointing=False, augment_bank=0), real)
    assert (mine.mixed_precision, mine.gradient_checkpointing, mine.frozen_dtype, mine.augment_bank) == \
        ("fp16", False, "mixed", 0)
    assert resolve_memory(TrainSection(mixed_precision="no"), real).frozen_dtype == "float32"


def test_frozen_mixed_without_mixed_precision_is_one_config_error(tmp_path):
    config = tiny_config(tmp_path, train={"frozen_dtype": "mixed"})  # tiny: precision resolves to "no"
    library = make_action(config)
    with pytest.raises(ConfigError, match="frozen_dtype") as err:
        train_settings(config, library.manifest("slide"), tmp_path / "motion.toml")
    assert "mixed_precision" in err.value.message and "\n" not in err.value.message
    with pytest.raises(ValueError, match="augment_bank"):  # pydantic's error; load_config renders it one-line
        tiny_config(tmp_path, train={"augment_bank": -1})


def test_bank_latents_are_the_copies_encoded_on_the_fly():
    backbone = build_backbone(AnimateDiffOptions(), BuildContext())
    clips = torch.rand(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1  # (N, F, 3, S, S)
    flip = ("flip", lambda clip, g: -clip)
    shift = ("shift", lambda clip, g: (clip + torch.rand(1, generator=g)).clamp(-1, 1))
    bank = augmented_bank(clips, [flip, shift], 3, torch.Generator().manual_seed(5), backbone)  # (N, 3, F, c, h, w)
    assert bank.shape[:3] == (2, 3, 4)
    g = torch.Generator().manual_seed(5)
    for i, clip in enumerate(clips):
        picks = torch.randint(2, (3,), generator=g).tolist()
        for k, pick in enumerate(picks):
            fly = backbone.encode_video([flip, shift][pick][1](clip, g)[None])[0]  # (F, c, h, w), all frames at once
            torch.testing.assert_close(bank[i, k], fly, atol=1e-5, rtol=1e-5)
    # so the paired loss on a bank copy is the loss on that copy encoded on the fly
    emb, g = backbone.encode_prompt(["x"]), torch.Generator().manual_seed(5)
    pick = torch.randint(2, (3,), generator=g).tolist()[0]
    fly = backbone.encode_video([flip, shift][pick][1](clips[0], g)[None])  # (1, F, c, h, w)
    x = encode_frames(backbone, clips[:1])  # (1, F, c, h, w), a frame at a time
    torch.testing.assert_close(x, backbone.encode_video(clips[:1]), atol=1e-5, rtol=1e-5)
    losses = [flash.training_loss(backbone, x, emb, torch.Generator().manual_seed(2), augmented=a).item()
              for a in (bank[:1, 0], fly)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


def test_a_bank_runs_no_vae_encoder_inside_the_steps(tmp_path, host, monkeypatch):
    calls = []
    encode = LatentVideoBackbone.encode_video
    monkeypatch.setattr(LatentVideoBackbone, "encode_video", lambda self, v: calls.append(1) or encode(self, v))
    counts = {}
    for steps in (1, 3):
        config = tiny_config(tmp_path / str(steps), train={"strong_augment": True, "augment_bank": 2,
                                                           "augmentations": ["invert", "grayscale"]})
        calls.clear()
        train(config, make_action(config), "slide", host, steps=steps)
        counts[steps] = len(calls)
    # 2 clips, then 2 clips x 2 copies x 4 frames, then the preview's reference: none per step
    assert counts[1] == counts[3] == 2 + 2 * 2 * 4 + 1


def _ded_model(host, backbone) -> MotionModel:
    torch.manual_seed(0)  # the same injections every time
    decoder = host.registry.create("decoder", "detail-enhance", {"train_steps": 3}, BuildContext())
    decoder.attach(backbone)
    return MotionModel(backbone, decoder, {})


def test_decoder_fit_checkpointed_gives_the_same_losses_and_autocast_keeps_float32_layers(host):
    backbone = build_backbone(AnimateDiffOptions(), BuildContext())
    clips = torch.rand(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1  # (N, F, 3, S, S)
    plain = _ded_model(host, backbone).fit_decoder(clips, seed=0)
    model = _ded_model(host, backbone)
    assert model.fit_decoder(clips, seed=0, checkpointing=True) == pytest.approx(plain, abs=1e-5)
    assert not any(getattr(m, WRAPPED, False) for m in backbone.vae.modules())  # unwrapped after the fit
    model = _ded_model(host, backbone)
    losses = model.fit_decoder(clips, seed=0, autocast=True, checkpointing=True)
    assert losses[0] == pytest.approx(plain[0], rel=0.01) and losses[-1] < losses[0]  # bf16 rounding, then learns
    assert all(p.dtype == torch.float32 for p in model.decoder.parameters())


def test_motion_unet_is_built_on_meta_and_holds_the_loaded_tensors():
    from diffusers import UNetMotionModel

    parts = tiny_components(AnimateDiffOptions())
    stock = UNetMotionModel.from_unet2d(parts.unet2d, parts.adapter).state_dict()
    mine = motion_unet(parts.unet2d, parts.adapter)
    state = mine.state_dict()
    assert state.keys() == stock.keys() and all(torch.equal(state[k], stock[k]) for k in stock)
    assert not any(t.is_meta for t in [*mine.parameters(), *mine.buffers()])
    shared = {t.data_ptr() for t in [*parts.unet2d.state_dict().values(), *parts.adapter.state_dict().values()]}
    assert {t.data_ptr() for t in mine.parameters()} <= shared  # no second copy of any weight


def test_checkpoint_modules_wraps_each_match_once(host):
    backbone = build_backbone(AnimateDiffOptions(), BuildContext())
    first = checkpoint_modules(backbone.unet, backbone.checkpoint_modules)
    assert first and checkpoint_modules(backbone.unet, backbone.checkpoint_modules) == []
    assert checkpoint_modules(backbone.unet, None) == []


def test_a_real_preset_trains_with_the_low_memory_defaults(tmp_path, host):
    """sd15 preset (tiny weights saved in its layout): every "auto" resolves to the low-memory setting, and
    train runs all its phases (bank, bf16 frozen weights, checkpointed steps, DED fit, preview) with them."""
    build_backbone(AnimateDiffOptions(), BuildContext()).save_pretrained(tmp_path / "base")
    sd15 = {"preset": "sd15", "base": str(tmp_path / "base"), "motion_adapter": str(tmp_path / "base/motion_adapter")}
    config = tiny_config(tmp_path, train={"strong_augment": True, "mam": BOTH, "detail_decoder": True,
                                          "augmentations": ["invert", "grayscale"]},
                         model={"decoder": "detail-enhance"},
                         options={"backbone": {"animatediff": sd15}, "decoder": {"detail-enhance": {"train_steps": 2}}})
    library = make_action(config)
    train(config, library, "slide", host, steps=1)
    settings = library.provenance("slide")["train"]
    assert (settings["mixed_precision"], settings["gradient_checkpointing"], settings["frozen_dtype"],
            settings["augment_bank"]) == ("bf16", True, "mixed", REAL_BANK)
    from safetensors.torch import load_file

    lora = load_file(library.weights_dir("slide") / "lora.safetensors")
    assert lora and all(t.dtype == torch.float32 for t in lora.values())


def test_svd_trains_with_the_low_memory_settings(tmp_path, host):
    config = tiny_config(tmp_path, model={"backbone": "svd"},
                         train={**LOW, "augment_bank": 2, "strong_augment": True, "mam": BOTH,
                                "augmentations": ["invert"]}, options={"backbone": {"svd": {}}})
    library = make_action(config)
    train(config, library, "slide", host, steps=1)
    assert library.provenance("slide")["train"]["frozen_dtype"] == "mixed"


def test_a_vae_that_compresses_time_encodes_bank_copies_whole(host):
    """Wan's VAE packs 4 frames into one latent frame: its clips and bank copies are encoded whole, never a
    frame at a time (which would give one latent frame per video frame)."""
    wan = host.registry.create("backbone", "wan", {}, BuildContext())
    clips = torch.rand(1, 5, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (N, 4k+1, 3, S, S)
    whole = wan.encode_video(clips)  # (1, 2, c, h, w)
    assert whole.shape[1] == wan.latent_frames(5) == 2
    torch.testing.assert_close(encode_frames(wan, clips), whole)
    bank = augmented_bank(clips, [("same", lambda clip, g: clip)], 1, torch.Generator(), wan)  # (N, 1, F', c, h, w)
    torch.testing.assert_close(bank[:, 0], whole)
