"""Adapters for models trained elsewhere: a diffusers UNet sampled by steerdiff equals diffusers' own loop."""

import pytest
import torch
from diffusers import DDIMScheduler, UNet1DModel, UNet2DModel

from steerdiff.core import (
    ClassifierFreeGuidance,
    DiscreteTimeDenoiser,
    EnsembleKalmanGuidance,
    FeynmanKacSteering,
    Inpainting,
    ReconstructionGuidance,
    SigmaDenoiser,
    StochasticControlGuidance,
    from_diffusers,
    gaussian,
    sample,
    sigma_grid,
    timestep_sigmas,
)
from steerdiff.core.schedules import EDM, VPLinear


def _unet(num_class_embeds=None):
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=8,
        in_channels=2,
        out_channels=2,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=num_class_embeds,
    ).eval()


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_steerdiff_ddim_equals_diffusers_ddim(prediction):
    unet = _unet()
    scheduler = DDIMScheduler(
        num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=True, prediction_type=prediction
    )
    scheduler.set_timesteps(10)
    x_t = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = x_t.clone()
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t).sample, t, x).prev_sample
    denoiser = from_diffusers(unet, scheduler)
    sigmas = timestep_sigmas(scheduler.alphas_cumprod, scheduler.timesteps)
    ours = sample(denoiser, x_t * (1 + sigmas[0] ** 2).sqrt().float(), sigmas, "ddim")
    assert ours.costs.nfe == 10
    torch.testing.assert_close(ours.x, x, atol=1e-5, rtol=1e-5)


def test_every_guidance_runs_on_a_diffusers_model():
    config = DDIMScheduler(num_train_timesteps=1000).config
    denoiser = from_diffusers(_unet(), config)
    conditional = from_diffusers(_unet(num_class_embeds=3), config)  # classes 1, 2; 0 is the null class
    sigmas = sigma_grid(VPLinear(), 6, "uniform_t")
    sigmas = sigmas.clamp(max=denoiser.sigma_max)
    x = sigmas[0] * torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(4, 2, 8, 8, dtype=torch.bool)
    mask[..., :2] = True
    loss = lambda x0: (x0.mean((1, 2, 3)) - 0.5) ** 2  # noqa: E731
    reward = lambda x0: -(x0.mean((1, 2, 3)) - 0.5).abs()  # noqa: E731
    forward = lambda x0: x0.mean((1, 2, 3))[:, None]  # noqa: E731
    runs = {
        "reconstruction": ("ddim", [ReconstructionGuidance(loss, scale=0.1)]),
        "classifier-free": (
            "ddim",
            [ClassifierFreeGuidance(torch.tensor([1]), scale=2.0, uncond=torch.tensor([0]))],
        ),
        "inpainting": ("ddpm", [Inpainting(mask, torch.zeros(4, 2, 8, 8))]),
        "scg": ("ddpm", [StochasticControlGuidance(reward, 3)]),
        "smc": ("ddpm", [FeynmanKacSteering(reward, 4)]),
        "enkg": ("euler", [EnsembleKalmanGuidance(forward, torch.tensor([0.5]), num_particles=2, scale=0.1)]),
    }
    for name, (solver, guidance) in runs.items():
        model = conditional if name == "classifier-free" else denoiser
        out = sample(model, x, sigmas, solver, guidance=guidance, generator=torch.Generator().manual_seed(2))
        assert torch.isfinite(out.x).all(), name
        assert out.x.shape == x.shape, name
    assert out.costs.forward_evals > 0


def test_adapters_recover_the_exact_denoiser():
    """An exact Gaussian prior, expressed as eps / v / x0 predictors of either adapter, gives the same x0-hat."""
    prior = gaussian([0.5, -1.0], 0.8)
    ac = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    x = torch.randn(5, 2, dtype=torch.float64)
    for t in (10, 500.0, 999):
        sigma = float(torch.sqrt((1 - ac[int(t)]) / ac[int(t)]))
        xs = x * (1 + sigma**2) ** 0.5
        exact = prior.denoise(xs, torch.full((5,), sigma, dtype=torch.float64))

        def model(x_t, tt, kind):
            s = torch.sqrt((1 - ac[tt.round().long()]) / ac[tt.round().long()])[:, None]
            x_sig = x_t * torch.sqrt(1 + s**2)
            x0 = prior.denoise(x_sig, s[:, 0])
            eps = (x_sig - x0) / s
            a = torch.rsqrt(1 + s**2)
            return {"epsilon": eps, "sample": x0, "v_prediction": a * eps - s * a * x0}[kind]

        for kind in ("epsilon", "v_prediction", "sample"):
            den = DiscreteTimeDenoiser(lambda x_t, tt, kind=kind: model(x_t, tt, kind), ac, kind)
            torch.testing.assert_close(den(xs, sigma), exact)
    cont = SigmaDenoiser(lambda x, s: (x - prior.denoise(x, s)) / s[:, None], "eps")
    torch.testing.assert_close(cont(x, 0.7), prior.denoise(x, torch.full((5,), 0.7, dtype=torch.float64)))


def test_timesteps_and_sigmas_are_inverse_and_bad_inputs_are_refused():
    ac = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    den = DiscreteTimeDenoiser(lambda x, t: x, ac)
    t = torch.tensor([0.0, 3.0, 17.25, 998.5, 999.0])
    torch.testing.assert_close(den.sigma_to_t(den.t_to_sigma(t)), t.double())
    assert den.sigma_min < 0.011 and 150 < den.sigma_max < 160
    with pytest.raises(ValueError, match="prediction type"):
        DiscreteTimeDenoiser(lambda x, t: x, ac, "score")
    with pytest.raises(ValueError, match="non-increasing"):
        DiscreteTimeDenoiser(lambda x, t: x, ac.flip(0))
    with pytest.raises(ValueError, match="between 0 and 1"):
        DiscreteTimeDenoiser(lambda x, t: x, torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="returned shape"):
        DiscreteTimeDenoiser(lambda x, t: x[:, :1], ac)(torch.ones(2, 3), 1.0)
    with pytest.raises(ValueError, match="beta_schedule"):
        from_diffusers(lambda x, t: x, {"beta_schedule": "sigmoid"})


def test_a_diffusers_1d_unet_samples_through_every_solver():
    torch.manual_seed(0)
    unet = UNet1DModel(  # the temporal U-Net layout of Diffuser (Janner et al.), as diffusers ships it
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownResnetBlock1D", "DownResnetBlock1D"),
        up_block_types=("UpResnetBlock1D",),
        mid_block_type="MidResTemporalBlock1D",
        out_block_type="OutConv1DBlock",
        act_fn="mish",
        time_embedding_type="positional",
        use_timestep_embedding=True,
        flip_sin_to_cos=False,
        freq_shift=1.0,
        norm_num_groups=4,
        extra_in_channels=0,
    ).eval()
    denoiser = from_diffusers(unet, DDIMScheduler(num_train_timesteps=1000).config)
    sigmas = sigma_grid(EDM(sigma_max=min(80.0, denoiser.sigma_max), sigma_min=denoiser.sigma_min * 1.01), 4)
    x = sigmas[0] * torch.randn(2, 4, 16)
    for solver in ("ddpm", "ddim", "euler", "heun", "dpmpp_2m"):
        assert torch.isfinite(sample(denoiser, x, sigmas, solver).x).all(), solver
