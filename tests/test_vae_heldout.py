"""experiments/vae_heldout.py: the latent fitted through the decoder never does worse than the encoder's."""

import torch
from diffusers import AutoencoderKL

from script_kit import loaded_script


def test_the_fitted_latent_beats_the_round_trip_and_frames_are_in_range():
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4,
                        layers_per_block=1).requires_grad_(False)
    with loaded_script("experiments/vae_heldout.py") as script:
        images = script.frames("heldout", 1)[:2, :, :16, :16]  # (2, 3, 16, 16)
        result = script.errors(vae, images, steps=20)
    assert images.shape == (2, 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert result["best_latent_l1"] < result["round_trip_l1"], result
