"""Autoregressive world-model baseline (MOPO/PETS-style): an ensemble of MLP dynamics models.

Each member predicts (s' - s, r, done-logit) from (s, a) on z-scored inputs. Rollouts start at real states,
follow the target policy for ``horizon`` steps (truncated, since errors compound), and pick a random
member per row and step. Everything is batched: one ensemble call per step for all rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data import OfflineDataset
from .nets import EnsembleMLP

__all__ = ["WorldModel", "WorldModelConfig"]


@dataclass
class WorldModelConfig:
    ensemble: int = 5
    hidden: int = 200
    layers: int = 3
    lr: float = 1e-3
    steps: int = 2000
    batch_size: int = 256
    seed: int = 0


class WorldModel(torch.nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, action_bound: float, stats: dict, config: WorldModelConfig):
        super().__init__()
        self.obs_dim, self.act_dim, self.action_bound, self.config = obs_dim, act_dim, action_bound, config
        self.net = EnsembleMLP(config.ensemble, obs_dim + act_dim, obs_dim + 2, config.hidden, config.layers,
                               activation=torch.nn.SiLU)
        for k, v in stats.items():
            self.register_buffer(k, torch.as_tensor(v, dtype=torch.float32))

    @classmethod
    def fit(cls, dataset: OfflineDataset, action_bound: float, config: WorldModelConfig | None = None,
            progress: bool = False) -> WorldModel:
        config = config or WorldModelConfig()
        s = torch.from_numpy(dataset.observations)
        a = torch.from_numpy(dataset.actions) / action_bound
        delta = torch.from_numpy(dataset.next_observations) - s
        r = torch.from_numpy(dataset.rewards)
        d = torch.from_numpy(dataset.terminals.astype(np.float32))
        stats = {"s_mean": s.mean(0), "s_std": s.std(0).clamp_min(1e-3), "d_mean": delta.mean(0),
                 "d_std": delta.std(0).clamp_min(1e-3), "r_mean": r.mean(), "r_std": r.std().clamp_min(1e-3)}
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            model = cls(dataset.obs_dim, dataset.act_dim, action_bound, stats, config)
        gen = torch.Generator().manual_seed(config.seed)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        x = torch.cat([(s - model.s_mean) / model.s_std, a], -1)
        y = torch.cat([(delta - model.d_mean) / model.d_std, ((r - model.r_mean) / model.r_std)[:, None]], -1)
        e, n = config.ensemble, len(x)
        steps = range(config.steps)
        if progress:
            from tqdm.auto import tqdm
            steps = tqdm(steps, desc="world model")
        for _ in steps:
            idx = torch.randint(0, n, (e, min(config.batch_size, n)), generator=gen)  # bootstrap per member
            out = model.net(x[idx])
            loss = F.mse_loss(out[..., :-1], y[idx]) + F.binary_cross_entropy_with_logits(out[..., -1], d[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return model.eval().requires_grad_(False)

    @torch.no_grad()
    def step(self, obs: torch.Tensor, action: torch.Tensor, generator=None):
        """One model step for a batch: a random ensemble member per row. Returns (next_obs, reward, done)."""
        x = torch.cat([(obs - self.s_mean) / self.s_std, action / self.action_bound], -1)
        out = self.net(x)  # (E, N, obs_dim + 2)
        pick = torch.randint(0, self.config.ensemble, (len(obs),), generator=generator, device=obs.device)
        o = out[pick, torch.arange(len(obs), device=obs.device)]
        nxt = obs + o[:, :self.obs_dim] * self.d_std + self.d_mean
        rew = o[:, self.obs_dim] * self.r_std + self.r_mean
        return nxt, rew, torch.sigmoid(o[:, -1]) > 0.5

    @torch.no_grad()
    def rollout(self, policy, start_obs: np.ndarray, horizon: int, generator=None,
                env_id: str | None = None) -> OfflineDataset:
        """Truncated on-policy rollouts from ``start_obs`` (N, obs_dim): N * horizon transitions at most."""
        obs = torch.as_tensor(start_obs, dtype=torch.float32)
        alive = torch.ones(len(obs), dtype=torch.bool)
        rows = {k: [] for k in ("obs", "act", "rew", "done", "next", "alive")}
        for _ in range(horizon):
            act = policy.sample_action(obs, generator)
            nxt, rew, done = self.step(obs, act, generator)
            for k, v in zip(rows, (obs, act, rew, done, nxt, alive.clone())):
                rows[k].append(v)
            alive = alive & ~done
            obs = nxt
        st = {k: torch.stack(v, 1).numpy() for k, v in rows.items()}  # (N, H, ...)
        keep = st["alive"]
        last = keep & ~np.concatenate([keep[:, 1:], np.zeros_like(keep[:, :1])], axis=1)
        return OfflineDataset(observations=st["obs"][keep], actions=st["act"][keep], rewards=st["rew"][keep],
                              terminals=st["done"][keep], timeouts=(last & ~st["done"])[keep],
                              next_observations=st["next"][keep], env_id=env_id, metadata={"world_model": 1})
