"""Training objectives (flashctl.model.objectives): the protocol both kinds keep, and flow matching's algebra."""

import pytest
import torch

from flashctl.errors import ConfigError
from flashctl.model.objectives import DiffusionObjective, FlowMatchingObjective, Objective

SD15 = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "linear",
        "prediction_type": "v_prediction", "clip_sample": False, "steps_offset": 1, "set_alpha_to_one": False}


def _latents(seed: int = 0) -> torch.Tensor:
    return torch.randn(3, 4, 2, 4, 4, generator=torch.Generator().manual_seed(seed))  # (B, F, c, h, w)


@pytest.mark.parametrize("objective", [DiffusionObjective(SD15), FlowMatchingObjective(shift=3.0)])
def test_both_keep_the_protocol_and_draw_the_same_per_seed(objective):
    assert isinstance(objective, Objective)
    x = _latents()
    noise, t = objective.draw(x, torch.Generator().manual_seed(1))
    again, t2 = objective.draw(x, torch.Generator().manual_seed(1))
    assert noise.shape == x.shape and t.shape == (3,) and torch.equal(noise, again) and torch.equal(t, t2)
    assert objective.add_noise(x, noise, t).shape == objective.target(x, noise, t).shape == x.shape
    assert torch.equal(objective.loss_weight(t), torch.ones(3))


def test_diffusion_v_target_recovers_the_clean_latent():
    objective = DiffusionObjective(SD15)
    x, noise, t = _latents(), _latents(1), torch.tensor([5, 500, 995])
    noisy, v = objective.add_noise(x, noise, t), objective.target(x, noise, t)
    signal, sigma = objective.signal_and_noise(t, x)
    torch.testing.assert_close(signal * noisy - sigma * v, x, atol=1e-4, rtol=0)  # x0 = sqrt(abar) x_t - sqrt(1-abar) v


def test_flow_matching_interpolates_and_its_velocity_leads_from_data_to_noise():
    objective = FlowMatchingObjective()
    x, noise = _latents(), _latents(1)
    t = torch.tensor([0.0, 250.0, 1000.0])
    noisy, v = objective.add_noise(x, noise, t), objective.target(x, noise, t)
    torch.testing.assert_close(noisy[0], x[0])  # t = 0: the data
    torch.testing.assert_close(noisy[2], noise[2])  # t = T: pure noise
    s = (t / 1000).view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(noisy - s * v, x)  # x0 = x_s - s v
    shifted = FlowMatchingObjective(shift=3.0).draw(x, torch.Generator().manual_seed(0))[1]
    plain = FlowMatchingObjective().draw(x, torch.Generator().manual_seed(0))[1]
    assert (shifted >= plain).all() and (shifted < 1000).all()  # shift moves training towards noise


@pytest.mark.parametrize("name", ["euler", "unipc"])
def test_flow_matching_sampler_with_the_exact_velocity_lands_on_the_data(name):
    objective = FlowMatchingObjective(shift=3.0)
    x, noise = _latents(), _latents(1)
    sampler = objective.sampler(name)
    sampler.set_timesteps(4)
    latents = noise * sampler.init_noise_sigma
    for t in sampler.timesteps:
        latents = sampler.step(noise - x, t, sampler.scale_model_input(latents, t)).prev_sample
    torch.testing.assert_close(latents, x, atol=1e-4, rtol=0)
    start = objective.start(sampler, x, noise)  # the reference noised to the first step
    s = sampler.sigmas[0]
    assert 0.5 < s <= 1  # shifted towards noise
    torch.testing.assert_close(start, (1 - s) * x + s * noise)


def test_unknown_sampler_names_the_choices():
    with pytest.raises(ConfigError, match="unknown scheduler 'heun'"):
        DiffusionObjective(SD15).sampler("heun")
    with pytest.raises(ConfigError) as err:
        FlowMatchingObjective().sampler("ddim")
    assert "euler" in err.value.hint
    with pytest.raises(ConfigError, match="sample"):
        DiffusionObjective({**SD15, "prediction_type": "sample"})
