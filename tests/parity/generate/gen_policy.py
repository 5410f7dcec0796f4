"""Produce tests/parity/fixtures/policy_pgd.npz from the official policy-guided diffusion code
(EmptyJackson/policy-guided-diffusion, JAX).

Needs a checkout of the official code (not part of steerdiff) and jax on CPU (here installed with
`pip install --target /tmp/offjax "jax[cpu]"`); run
    cd /tmp/official/EmptyJackson+policy-guided-diffusion && OMP_NUM_THREADS=1 python \
        /work/main/tests/parity/generate/gen_policy.py /work/main/tests/parity/fixtures
flax, distrax, gym and wandb are replaced by stand-ins: `flax.struct.dataclass` by a frozen dataclass (it only
holds the sampler's hyper-parameters), `distrax.Normal` is used only with det_guidance (not here), gym and wandb
only by the data and logging helpers that `util` imports.
"""

import dataclasses
import json
import sys
import types

import numpy as np

sys.path.append("/tmp/offjax")
sys.path.insert(0, ".")
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

sys.modules["flax"] = types.SimpleNamespace(
    struct=types.SimpleNamespace(dataclass=dataclasses.dataclass(frozen=True))
)
sys.modules["distrax"] = types.SimpleNamespace(Normal=None)
sys.modules["wandb"] = types.SimpleNamespace()
sys.modules["gym"] = types.SimpleNamespace(spaces=types.SimpleNamespace(Dict=dict, Box=object))
from diffusion import edm  # noqa: E402

out = sys.argv[1]
SOURCE = "EmptyJackson/policy-guided-diffusion@9da606ca16389c626fab7cef2a07ca82d74fd14f"
g = np.random.default_rng(0)
OBS, ACT, L, N_STEPS = 3, 2, 6, 8
C = OBS + ACT + 2
M = g.standard_normal((C, C)) / np.sqrt(C)
P = g.standard_normal((OBS, ACT))
LOG_STD = np.array([-0.3, 0.2])
stats = {
    "obs": {"mean": jnp.array(g.standard_normal(OBS) * 0.5), "std": jnp.array(g.uniform(0.5, 2.0, OBS))},
    "action": {"mean": jnp.array(g.standard_normal(ACT) * 0.2), "std": jnp.array(g.uniform(0.5, 1.5, ACT))},
}


def apply_fn(params, z, c_noise):  # network stand-in F(c_in x, c_noise), x (L, C)
    return jnp.tanh(z @ jnp.array(M) + 0.1 * c_noise)


class GaussianPolicy:  # pi(a | s) = N(tanh(s P), exp(log_std)^2), elementwise log_prob like distrax.Normal
    def __init__(self, obs):
        self.mean, self.std = jnp.tanh(obs @ jnp.array(P)), jnp.exp(jnp.array(LOG_STD))

    def log_prob(self, a):
        return -0.5 * ((a - self.mean) / self.std) ** 2 - jnp.log(self.std) - 0.5 * jnp.log(2 * jnp.pi)


hyper = edm.DenoiserHyperparams(diffusion_timesteps=N_STEPS, s_churn=0.0)  # deterministic: no churn noise
edm.construct_rollout = lambda traj, *args: traj  # return the denoised trajectory itself
state = types.SimpleNamespace(apply_fn=apply_fn, params=None)
arrays = {
    "M": M,
    "P": P,
    "log_std": LOG_STD,
    **{f"{k}_{s}": np.asarray(v[s]) for k, v in stats.items() for s in v},
}
rng = jax.random.PRNGKey(0)
_, _rng = jax.random.split(rng)
arrays["init_noise"] = np.asarray(
    jax.random.normal(_rng, (L, C))
)  # sample_trajectory's first draw (x sigma_max)
cases = {
    "unguided": dict(policy_guidance_coeff=0.0),
    "noisy": dict(policy_guidance_coeff=0.5, policy_guidance_cosine_coeff=0.3),
    "noisy_delay1": dict(
        policy_guidance_coeff=0.5, policy_guidance_cosine_coeff=0.3, policy_guidance_delay_steps=1
    ),
    "denoised": dict(policy_guidance_coeff=0.5, policy_guidance_cosine_coeff=0.3, denoised_guidance=True),
    "noisy_unnormalized": dict(
        policy_guidance_coeff=0.05, policy_guidance_cosine_coeff=0.3, normalize_action_guidance=False
    ),
}
for name, kw in cases.items():
    traj = edm.sample_trajectory(
        rng,
        state,
        L,
        OBS,
        ACT,
        stats,
        hyper,
        agent_apply_fn=lambda p, o: GaussianPolicy(o),
        agent_params={},
        **kw,
    )
    arrays[f"final_{name}"] = np.asarray(traj)
meta = {
    "source": SOURCE,
    "file": "diffusion/edm.py",
    "function": "sample_trajectory(rng=PRNGKey(0), ..., denoiser_hyperparams=DenoiserHyperparams(diffusion_timesteps=8, "
    "s_churn=0.0)) with construct_rollout replaced by the identity",
    "cases": {k: {kk: vv for kk, vv in v.items()} for k, v in cases.items()},
    "network": "apply_fn(params, z, c_noise) = tanh(z @ M + 0.1 c_noise), EDM preconditioning sigma_data = 1",
    "policy": "N(tanh(obs @ P), exp(log_std)^2) on the tanh-squashed action, summed over rows and action dims",
    "sizes": {
        "obs_dim": OBS,
        "act_dim": ACT,
        "length": L,
        "steps": N_STEPS,
        "sigma_max": 80,
        "sigma_min": 0.002,
    },
    "jax": jax.__version__,
    "command": "cd /tmp/official/EmptyJackson+policy-guided-diffusion && OMP_NUM_THREADS=1 python "
    "/work/main/tests/parity/generate/gen_policy.py /work/main/tests/parity/fixtures",
}
np.savez_compressed(f"{out}/policy_pgd.npz", **arrays, meta=json.dumps(meta))
print({k: np.round(v[:, OBS : OBS + ACT], 3).tolist() for k, v in arrays.items() if k.startswith("final")})
