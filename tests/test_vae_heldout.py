"""experiments/vae_heldout.py: the latent fitted through the decoder never does worse than the encoder's."""

import torch
from diffusers import AutoencoderKL

from script_kit import loaded_script


def _tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                         up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4,
                         layers_per_block=1).requires_grad_(False)


def test_the_fitted_latent_beats_the_round_trip_and_frames_are_in_range():
    vae = _tiny_vae()
    with loaded_script("experiments/vae_heldout.py") as script:
        images = script.frames("heldout", 1)[:2, :, :16, :16]  # (2, 3, 16, 16)
        result = script.errors(vae, images, steps=20)
    assert images.shape == (2, 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert result["best_latent_l1"] < result["round_trip_l1"], result


def test_latent_shift_is_zero_against_itself_and_grows_with_a_changed_encoder():
    vae, other = _tiny_vae(), _tiny_vae()
    other.load_state_dict(vae.state_dict())
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with loaded_script("experiments/vae_heldout.py") as script:
        assert script.latent_shift(other, vae, images) == 0
        other.encoder.conv_in.weight.add_(0.1)
        assert script.latent_shift(other, vae, images) > 0
