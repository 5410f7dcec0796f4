"""Policy guidance: the paper's schedule, action-only gradients, and higher target-policy likelihood."""

import math

import numpy as np
import pytest
import torch

from steerdiff.core.guidance import Inpainting
from steerdiff.policy.diffusion import SamplerConfig
from steerdiff.policy.evaluation import dynamics_error, policy_log_likelihood
from steerdiff.policy.guidance import PolicyGuidance, guidance_schedule, trajectory_log_likelihood

SAMPLER = SamplerConfig(steps=16)


def test_schedule_is_the_papers():
    n = 10
    assert guidance_schedule(0, n, 2.0, 0.3) == pytest.approx(2.0 * (1 + 0.3 * math.sin(math.pi / n)))
    assert guidance_schedule(5, n, 1.0, 0.0) == pytest.approx(0.5)
    assert guidance_schedule(9, n, 1.0, 0.3) == pytest.approx(0.1 + 0.3 * math.sin(math.pi))


def test_gradient_only_on_action_channels(model, td3bc):
    g = PolicyGuidance(policy=td3bc, normalizer=model.normalizer, normalize=True)
    traj = torch.randn(4, model.normalizer.channels, 8, generator=torch.Generator().manual_seed(0))
    grad = g.action_gradient(traj)
    assert grad[:, model.normalizer.act].abs().sum() > 0
    outside = torch.ones(model.normalizer.channels, dtype=torch.bool)
    outside[model.normalizer.act] = False
    assert grad[:, outside].abs().max() == 0
    torch.testing.assert_close(grad.flatten(1).norm(dim=1), torch.ones(4))
    # a small step along the gradient raises the log-likelihood
    lp = trajectory_log_likelihood(td3bc, traj, model.normalizer)
    lp2 = trajectory_log_likelihood(td3bc, traj + 1e-2 * grad, model.normalizer)
    assert torch.all(lp2 > lp)


def test_guidance_raises_policy_likelihood_with_bounded_dynamics_error(model, td3bc):
    def run(coeff, **kw):
        g = PolicyGuidance(policy=td3bc, normalizer=model.normalizer, coeff=coeff, **kw)
        return model.sample(32, guidance=[g], sampler=SAMPLER, generator=torch.Generator().manual_seed(0))

    plain, guided = run(0.0), run(1.0)
    assert (
        plain.costs.gradient_evals == 0 and guided.costs.gradient_evals == 32 * 2 * 15
    )  # Heun: 2 per step, not the last
    # the reference's variant moves the noisy sample once per step, with the gradient taken there
    ref = run(1.0, apply="sample", at="noisy", normalize=True)
    assert ref.costs.gradient_evals == 32 * 15 and ref.costs.network_evals == plain.costs.network_evals
    from steerdiff.policy.trajectories import to_transitions

    ds_p, ds_g, ds_r = (to_transitions(r.x, model.normalizer, "Pendulum-v1") for r in (plain, guided, ref))
    ll_p, ll_g, ll_r = (policy_log_likelihood(td3bc, d) for d in (ds_p, ds_g, ds_r))
    err_p, err_g = np.nanmean(dynamics_error(ds_p)), np.nanmean(dynamics_error(ds_g))
    assert ll_g > ll_p + 0.1, (ll_p, ll_g)
    assert ll_r > ll_p + 0.1, (ll_p, ll_r)
    assert err_g < 1.5 * err_p + 0.05, (err_p, err_g)


def test_composes_with_inpainting_and_other_solvers(model, td3bc, pendulum):
    norm = model.normalizer
    start = norm.encode(
        pendulum.observations[:1],
        pendulum.actions[:1],
        pendulum.rewards[:1],
        pendulum.terminals[:1].astype(float),
    )[0]
    values = torch.zeros(norm.channels, 8)
    mask = torch.zeros(norm.channels, 8, dtype=torch.bool)
    values[norm.obs, 0] = start[norm.obs]
    mask[norm.obs, 0] = True
    res = model.sample(
        4,
        guidance=[
            PolicyGuidance(policy=td3bc, normalizer=norm, at="noisy"),
            Inpainting(values=values, mask=mask),
        ],
        sampler=SamplerConfig(steps=8, solver="ddim"),
        generator=torch.Generator().manual_seed(1),
    )
    torch.testing.assert_close(res.x[:, norm.obs, 0], start[norm.obs].expand(4, 3))
    assert res.costs.gradient_evals == 4 * 7


def test_bad_guidance_inputs(model, td3bc):
    with pytest.raises(TypeError, match="log_prob"):
        PolicyGuidance(policy=object(), normalizer=model.normalizer)
    with pytest.raises(ValueError, match="at must be"):
        PolicyGuidance(policy=td3bc, normalizer=model.normalizer, at="x0")
    with pytest.raises(ValueError, match="apply must be"):
        PolicyGuidance(policy=td3bc, normalizer=model.normalizer, apply="noisy")
    with pytest.raises(ValueError, match="policy guidance needs trajectories"):
        model.denoiser.eval()
        from steerdiff.core.sampling import sample

        sample(
            model.denoiser,
            torch.randn(2, 5, 8),
            [1.0, 0.0],
            "ddim",
            guidance=[PolicyGuidance(policy=td3bc, normalizer=model.normalizer)],
        )


def test_model_save_load_and_synthesizer(pendulum, td3bc, tmp_path):
    from dataclasses import replace

    from steerdiff.core import BundleError
    from steerdiff.policy import Synthesizer, TrajectoryDiffusion

    from .conftest import SMALL_MODEL

    fitted = TrajectoryDiffusion.fit(
        pendulum, replace(SMALL_MODEL, steps=5), checkpoint_dir=tmp_path / "run", progress=False, device="cpu"
    )
    assert (tmp_path / "run" / "checkpoint").is_dir()  # the training checkpoint, for resuming
    fitted.save_pretrained(tmp_path / "m")
    loaded = TrajectoryDiffusion.from_pretrained(tmp_path / "m", device="cpu")
    assert loaded.normalizer == fitted.normalizer and loaded.horizon == 8 and loaded.env_id == "Pendulum-v1"
    assert loaded.config == replace(SMALL_MODEL, steps=5)
    a, b = (
        m.sample(3, 12, sampler=SamplerConfig(steps=4), generator=torch.Generator().manual_seed(0)).x
        for m in (fitted, loaded)
    )
    torch.testing.assert_close(a, b)  # same weights; and a length other than the training horizon works
    synth = Synthesizer(loaded, num=4, sampler=SamplerConfig(steps=4))
    unguided, guided = synth(None), synth(td3bc)
    assert unguided.metadata["gradient_evals"] == 0 and guided.metadata["gradient_evals"] > 0
    assert len(guided) <= 4 * 7 and guided.env_id == "Pendulum-v1"
    with pytest.raises(BundleError, match="no config.json"):
        TrajectoryDiffusion.from_pretrained(tmp_path)
    td3bc.save_pretrained(tmp_path / "agent")
    with pytest.raises(BundleError, match="not a trajectory model"):
        TrajectoryDiffusion.from_pretrained(tmp_path / "agent")
