"""Offline agents: TD3+BC (Fujimoto & Gu 2021) and IQL (Kostrikov et al. 2022), batched in PyTorch.

Both work on unit actions (env action / bound, in [-1, 1]) and z-scored observations (dataset statistics),
and expose what policy-guided diffusion needs from a target policy:

* ``log_prob(obs, action)`` in env units -> (N,), differentiable in ``action``. IQL: its Gaussian policy.
  TD3+BC is deterministic, so, as in the paper, a unit-variance Gaussian around its action (unit-action
  space);
* ``act(obs)`` (deterministic, numpy in / numpy out) for evaluation in the simulator;
* ``sample_action(obs, generator)`` for on-policy rollouts (world-model baseline).

An agent is saved as a steerdiff model bundle (domain ``"policy"``, kind ``"agent"``), written atomically in
one folder: ``config.json`` holds the algorithm, its hyper-parameters, the environment id, the observation
and action dimensions, the observation normaliser and the update step; ``networks.safetensors`` the
networks and target networks; ``optimizers.safetensors`` the optimizers' state, so training resumes from the
saved step (``steerdiff-policy train-agent --resume``). Nothing is pickled.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from steerdiff.core.bundle import BundleError, load_pretrained, save_pretrained
from steerdiff.core.runtime import resolve_device

from .nets import EnsembleMLP, mlp

__all__ = ["AGENTS", "IQL", "TD3BC", "Agent", "AgentConfig", "load_agent", "make_agent"]

LOG2PI = math.log(2 * math.pi)


@dataclass
class AgentConfig:
    obs_dim: int
    act_dim: int
    action_bound: float = 1.0
    hidden: int = 256
    layers: int = 2
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    # TD3+BC
    alpha: float = 2.5
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_freq: int = 2
    explore_std: float = 0.1  # TD3+BC's sample_action: deterministic action + this Gaussian noise
    # IQL. beta = 3 is the IQL paper's for D4RL locomotion, whose rewards are normalised; the advantage
    # spread grows with the reward scale, so with raw rewards choose beta on validation episodes
    # (benchmarks/policy_curve.py --set beta=...): on Pendulum (rewards to -16 per step) beta = 3 degrades
    # after 2000 updates while 0.1 stays at TD3+BC's return.
    expectile: float = 0.7
    beta: float = 3.0
    adv_clip: float = 100.0

    def __post_init__(self):
        for ok, msg in (
            (0.0 < self.expectile < 1.0, f"expectile must lie in (0, 1), got {self.expectile}"),
            (self.beta >= 0.0, f"beta must be >= 0 (0 = behaviour cloning), got {self.beta}"),
            (self.alpha > 0.0, f"alpha must be > 0, got {self.alpha}"),
            (0.0 < self.gamma <= 1.0, f"gamma must lie in (0, 1], got {self.gamma}"),
            (self.hidden >= 1 and self.layers >= 1, "hidden and layers must be >= 1"),
        ):
            if not ok:
                raise ValueError(f"AgentConfig: {msg}")


class Agent(nn.Module):
    name = ""

    def __init__(self, config: AgentConfig, obs_mean=None, obs_std=None, env_id: str | None = None):
        super().__init__()
        self.config = c = config
        self.env_id = env_id
        self.register_buffer(
            "obs_mean",
            torch.zeros(c.obs_dim)
            if obs_mean is None
            else torch.as_tensor(obs_mean, dtype=torch.float32).clone(),
        )
        self.register_buffer(
            "obs_std",
            torch.ones(c.obs_dim)
            if obs_std is None
            else torch.as_tensor(obs_std, dtype=torch.float32).clamp_min(1e-3).clone(),
        )
        self.updates = 0

    # ------------------------------------------------------------------------------------------- shared
    def _s(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.shape[-1] != self.config.obs_dim:
            raise ValueError(
                f"observations have dimension {obs.shape[-1]} but the agent was built for "
                f"{self.config.obs_dim}; use an agent trained on this environment"
            )
        return (obs - self.obs_mean) / self.obs_std

    def _unit(self, action: torch.Tensor) -> torch.Tensor:
        if action.shape[-1] != self.config.act_dim:
            raise ValueError(
                f"actions have dimension {action.shape[-1]} but the agent was built for {self.config.act_dim}"
            )
        return action / self.config.action_bound

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic unit action for (N, obs_dim) observations."""
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs) -> np.ndarray:
        dev = self.obs_mean.device
        a = self.mean_action(torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=dev))
        return (a * self.config.action_bound).cpu().numpy()

    def _polyak(self, target: nn.Module, source: nn.Module) -> None:
        with torch.no_grad():
            for t, s in zip(target.parameters(), source.parameters(), strict=True):
                t.lerp_(s, self.config.tau)

    def batch_to_device(self, batch: dict) -> dict:
        dev = self.obs_mean.device
        return {k: v.to(dev) for k, v in batch.items()}

    # -------------------------------------------------------------------------------------- persistence
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The agent's optimizers by attribute name (``actor_opt``, ``critic_opt``, ...)."""
        return {k: v for k, v in vars(self).items() if isinstance(v, torch.optim.Optimizer)}

    def bundle_config(self) -> dict:
        """The ``domain`` section of the agent's bundle."""
        hyper = {
            k: v for k, v in asdict(self.config).items() if k not in ("obs_dim", "act_dim", "action_bound")
        }
        return {
            "kind": "agent",
            "algorithm": self.name,
            "env_id": self.env_id,
            "obs_dim": self.config.obs_dim,
            "act_dim": self.config.act_dim,
            "action_bound": self.config.action_bound,
            "hyperparameters": hyper,
            "normalizer": {"obs_mean": self.obs_mean.tolist(), "obs_std": self.obs_std.tolist()},
            "updates": int(self.updates),
        }

    def save_pretrained(self, path) -> Path:
        """Write the agent (networks, target networks, optimizers, update step) as a bundle, atomically."""
        return save_pretrained(
            path,
            domain="policy",
            config=self.bundle_config(),
            state={"networks": self, "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()}},
        )

    @classmethod
    def from_pretrained(cls, path, device="auto") -> Agent:
        """Load an agent bundle (any algorithm; see :func:`load_agent`)."""
        return load_agent(path, device)


def _adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel where this torch has one for the parameters' device (CPU: torch 2.4+): the
    same update, about three times faster on these networks' many small tensors; plain Adam elsewhere."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def _member(ensemble: EnsembleMLP, i: int, x: torch.Tensor) -> torch.Tensor:
    """Member ``i`` of an :class:`EnsembleMLP` alone on (N, in) inputs: (N, out), the same numbers as
    ``ensemble(x)[i]`` at a fraction of the cost."""
    for layer in ensemble.layers:
        x = ensemble.act(torch.addmm(layer.bias[i], x, layer.weight[i]))
    return torch.addmm(ensemble.head.bias[i], x, ensemble.head.weight[i])


class TD3BC(Agent):
    """TD3+BC: pi = argmax lambda Q(s, pi(s)) - (pi(s) - a)^2, lambda = alpha / mean|Q|; twin critics."""

    name = "td3bc"

    def __init__(self, config: AgentConfig, obs_mean=None, obs_std=None, env_id: str | None = None):
        super().__init__(config, obs_mean, obs_std, env_id)
        c = config
        self.actor = mlp(c.obs_dim, c.act_dim, c.hidden, c.layers)
        self.critic = EnsembleMLP(2, c.obs_dim + c.act_dim, 1, c.hidden, c.layers)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self._actor_params = list(self.actor.parameters())
        self.actor_opt = _adam(self._actor_params, c.lr)
        self.critic_opt = _adam(self.critic.parameters(), c.lr)

    def mean_action(self, obs):
        return torch.tanh(self.actor(self._s(obs)))

    def log_prob(self, obs, action):
        diff = self._unit(action) - self.mean_action(obs)
        return -0.5 * (diff.pow(2).sum(-1) + self.config.act_dim * LOG2PI)

    @torch.no_grad()
    def sample_action(self, obs, generator=None):
        a = self.mean_action(obs)
        noise = torch.randn(a.shape, generator=generator, device=a.device) * self.config.explore_std
        return (a + noise).clamp(-1, 1) * self.config.action_bound

    def update(self, batch: dict) -> dict:
        c = self.config
        s, s2 = self._s(batch["obs"]), self._s(batch["next_obs"])
        a = self._unit(batch["action"])
        with torch.no_grad():
            noise = (torch.randn_like(a) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
            a2 = (torch.tanh(self.actor_target(s2)) + noise).clamp(-1, 1)
            q_next = self.critic_target(torch.cat([s2, a2], -1)).min(0).values.squeeze(-1)
            target = batch["reward"] + c.gamma * (1 - batch["done"]) * q_next
        q = self.critic(torch.cat([s, a], -1)).squeeze(-1)  # (2, N)
        critic_loss = (q - target).pow(2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        out = {"critic_loss": float(critic_loss.detach())}
        self.updates += 1
        if self.updates % c.policy_freq == 0:
            pi = torch.tanh(self.actor(s))
            q_pi = _member(self.critic, 0, torch.cat([s, pi], -1)).squeeze(-1)  # the first critic only
            lam = c.alpha / q_pi.abs().mean().detach().clamp_min(1e-6)
            actor_loss = -lam * q_pi.mean() + F.mse_loss(pi, a)
            # gradients for the actor alone: the critic's weight gradients are never computed
            params = self._actor_params
            for p, g in zip(params, torch.autograd.grad(actor_loss, params), strict=True):
                p.grad = g
            self.actor_opt.step()
            self._polyak(self.actor_target, self.actor)
            self._polyak(self.critic_target, self.critic)
            out["actor_loss"] = float(actor_loss.detach())
        return out


class IQL(Agent):
    """IQL: expectile value V, twin Q on r + gamma V(s'), advantage-weighted Gaussian policy."""

    name = "iql"

    def __init__(self, config: AgentConfig, obs_mean=None, obs_std=None, env_id: str | None = None):
        super().__init__(config, obs_mean, obs_std, env_id)
        c = config
        self.actor = mlp(c.obs_dim, c.act_dim, c.hidden, c.layers)
        self.log_std = nn.Parameter(torch.zeros(c.act_dim))
        self.critic = EnsembleMLP(2, c.obs_dim + c.act_dim, 1, c.hidden, c.layers)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = mlp(c.obs_dim, 1, c.hidden, c.layers)
        self.actor_opt = _adam([*self.actor.parameters(), self.log_std], c.lr)
        self.critic_opt = _adam(self.critic.parameters(), c.lr)
        self.value_opt = _adam(self.value.parameters(), c.lr)

    def mean_action(self, obs):
        return torch.tanh(self.actor(self._s(obs)))

    def _std(self):
        return self.log_std.clamp(-5.0, 2.0).exp()

    def _log_prob_unit(self, obs, a_unit):
        std = self._std()
        z = (a_unit - self.mean_action(obs)) / std
        return -0.5 * (z.pow(2) + LOG2PI).sum(-1) - torch.log(std).sum()

    def log_prob(self, obs, action):
        return self._log_prob_unit(obs, self._unit(action))

    @torch.no_grad()
    def sample_action(self, obs, generator=None):
        a = self.mean_action(obs)
        a = a + torch.randn(a.shape, generator=generator, device=a.device) * self._std()
        return a.clamp(-1, 1) * self.config.action_bound

    def update(self, batch: dict) -> dict:
        c = self.config
        s, s2 = self._s(batch["obs"]), self._s(batch["next_obs"])
        a = self._unit(batch["action"])
        sa = torch.cat([s, a], -1)
        with torch.no_grad():
            q_t = self.critic_target(sa).min(0).values.squeeze(-1)
        v = self.value(s).squeeze(-1)
        diff = q_t - v
        weight = torch.where(diff > 0, c.expectile, 1 - c.expectile)
        value_loss = (weight * diff.pow(2)).mean()
        self.value_opt.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_opt.step()

        with torch.no_grad():
            target = batch["reward"] + c.gamma * (1 - batch["done"]) * self.value(s2).squeeze(-1)
        q = self.critic(sa).squeeze(-1)
        critic_loss = (q - target).pow(2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        with torch.no_grad():
            w = torch.exp(c.beta * (q_t - v.detach())).clamp(max=c.adv_clip)
        actor_loss = -(w * self._log_prob_unit(batch["obs"], a.clamp(-0.999, 0.999))).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        self._polyak(self.critic_target, self.critic)
        self.updates += 1
        return {
            "value_loss": float(value_loss.detach()),
            "critic_loss": float(critic_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
        }


AGENTS = {"td3bc": TD3BC, "iql": IQL}


def make_agent(
    name: str,
    obs_dim: int,
    act_dim: int,
    action_bound: float = 1.0,
    obs_mean=None,
    obs_std=None,
    device="cpu",
    env_id: str | None = None,
    **overrides,
) -> Agent:
    """A new agent: ``name`` one of :data:`AGENTS`; ``overrides``: :class:`AgentConfig` fields."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of {sorted(AGENTS)}")
    config = AgentConfig(obs_dim=obs_dim, act_dim=act_dim, action_bound=action_bound, **overrides)
    return AGENTS[name](config, obs_mean, obs_std, env_id).to(resolve_device(device))


def load_agent(path, device="auto") -> Agent:
    """Load an agent bundle written by :meth:`Agent.save_pretrained` (or ``steerdiff-policy train-agent``),
    with its optimizers and update step, ready to act, guide or train on."""
    bundle = load_pretrained(path, domain="policy", device=device)
    cfg = bundle.config
    if cfg.get("kind") != "agent":
        raise BundleError(
            f"{path} holds a policy {cfg.get('kind', 'unknown')!r} bundle, not an agent; give the "
            "folder that steerdiff-policy train-agent wrote"
        )
    algorithm = cfg.get("algorithm")
    if algorithm not in AGENTS:
        raise BundleError(
            f"{path} holds an agent of unknown algorithm {algorithm!r}; this version reads {sorted(AGENTS)}"
        )
    known = {f.name for f in fields(AgentConfig)}
    try:
        hyper = {k: v for k, v in cfg["hyperparameters"].items() if k in known}
        config = AgentConfig(
            obs_dim=int(cfg["obs_dim"]),
            act_dim=int(cfg["act_dim"]),
            action_bound=float(cfg["action_bound"]),
            **hyper,
        )
        agent = AGENTS[algorithm](config, env_id=cfg.get("env_id"))
        agent.load_state_dict(bundle.state["networks"])
        optimizers = agent.optimizers()
        saved = bundle.state.get("optimizers", {})
        if set(saved) != set(optimizers):
            raise ValueError(f"optimizers {sorted(saved)} saved, {sorted(optimizers)} expected")
        agent = agent.to(bundle.state["networks"]["obs_mean"].device)
        for name, opt in optimizers.items():
            opt.load_state_dict(saved[name])
        agent.updates = int(cfg.get("updates", 0))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        message = " ".join(str(err).split())[:300]
        raise BundleError(
            f"{path} is not a usable {algorithm} agent ({message}); the bundle is corrupt or of "
            "another version, train the agent again"
        ) from None
    return agent.eval()
