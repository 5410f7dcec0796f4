"""Autoregressive world-model baseline (MOPO/PETS-style): an ensemble of MLP dynamics models.

Each member predicts (s' - s, r) and a done logit from (s, a) on z-scored inputs, each member on its own
bootstrap batches. With ``probabilistic=True`` (the default, as in PETS and MOPO) a member outputs a
diagonal Gaussian over (s' - s, r): mean and log-variance, the log-variance soft-bounded between learned
limits, trained by Gaussian negative log-likelihood; ``probabilistic=False`` trains the mean alone by MSE.

Rollouts start at real states and follow the target policy for ``horizon`` steps (truncated, since errors
compound). At every step each row picks a random member and, by default for a probabilistic model,
*samples* from that member's Gaussian (``sample=False`` takes the member's mean instead). Everything is
batched: one ensemble call per step for all rollouts.
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
    probabilistic: bool = True  # Gaussian NLL with a log-variance head (PETS/MOPO); False: mean by MSE
    seed: int = 0


class WorldModel(torch.nn.Module):
    def __init__(
        self, obs_dim: int, act_dim: int, action_bound: float, stats: dict, config: WorldModelConfig
    ):
        super().__init__()
        self.obs_dim, self.act_dim, self.action_bound, self.config = obs_dim, act_dim, action_bound, config
        d = obs_dim + 1  # (s' - s, r)
        out = 2 * d + 1 if config.probabilistic else d + 1
        self.net = EnsembleMLP(
            config.ensemble, obs_dim + act_dim, out, config.hidden, config.layers, activation=torch.nn.SiLU
        )
        if config.probabilistic:  # soft limits of the log-variance (z-scored units), learned as in PETS
            self.max_logvar = torch.nn.Parameter(torch.full((d,), 0.5))
            self.min_logvar = torch.nn.Parameter(torch.full((d,), -10.0))
        for k, v in stats.items():
            self.register_buffer(k, torch.as_tensor(v, dtype=torch.float32))

    @classmethod
    def fit(
        cls,
        dataset: OfflineDataset,
        action_bound: float,
        config: WorldModelConfig | None = None,
        progress: bool = False,
    ) -> WorldModel:
        config = config or WorldModelConfig()
        s = torch.from_numpy(dataset.observations)
        a = torch.from_numpy(dataset.actions) / action_bound
        delta = torch.from_numpy(dataset.next_observations) - s
        r = torch.from_numpy(dataset.rewards)
        d = torch.from_numpy(dataset.terminals.astype(np.float32))
        stats = {
            "s_mean": s.mean(0),
            "s_std": s.std(0).clamp_min(1e-3),
            "d_mean": delta.mean(0),
            "d_std": delta.std(0).clamp_min(1e-3),
            "r_mean": r.mean(),
            "r_std": r.std().clamp_min(1e-3),
        }
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
            mean, logvar, done_logit = model.predict(x[idx])
            if config.probabilistic:
                nll = ((mean - y[idx]) ** 2 * torch.exp(-logvar) + logvar).mean()
                loss = nll + 0.01 * (model.max_logvar.sum() - model.min_logvar.sum())
            else:
                loss = F.mse_loss(mean, y[idx])
            loss = loss + F.binary_cross_entropy_with_logits(done_logit, d[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return model.eval().requires_grad_(False)

    def predict(self, x: torch.Tensor):
        """Every member's (mean, log-variance or None, done logit) of the z-scored (s' - s, r)."""
        out = self.net(x)  # (E, N, out)
        d = self.obs_dim + 1
        if not self.config.probabilistic:
            return out[..., :d], None, out[..., -1]
        logvar = self.max_logvar - F.softplus(self.max_logvar - out[..., d : 2 * d])
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return out[..., :d], logvar, out[..., -1]

    def _sample(self, sample: bool | None) -> bool:
        sample = self.config.probabilistic if sample is None else sample
        if sample and not self.config.probabilistic:
            raise ValueError(
                "sample=True needs a probabilistic world model (WorldModelConfig(probabilistic="
                "True)); this one predicts means only, so pass sample=False or None"
            )
        return sample

    @torch.no_grad()
    def step(self, obs: torch.Tensor, action: torch.Tensor, generator=None, sample: bool | None = None):
        """One model step for a batch: a random ensemble member per row, its Gaussian sampled (``sample``,
        default: when the model is probabilistic) or its mean taken. Returns (next_obs, reward, done)."""
        sample = self._sample(sample)
        x = torch.cat([(obs - self.s_mean) / self.s_std, action / self.action_bound], -1)
        mean, logvar, done_logit = self.predict(x)
        pick = torch.randint(0, self.config.ensemble, (len(obs),), generator=generator, device=obs.device)
        rows = torch.arange(len(obs), device=obs.device)
        o = mean[pick, rows]
        if sample:
            noise = torch.randn(o.shape, generator=generator, device=o.device)
            o = o + torch.exp(0.5 * logvar[pick, rows]) * noise
        nxt = obs + o[:, : self.obs_dim] * self.d_std + self.d_mean
        rew = o[:, self.obs_dim] * self.r_std + self.r_mean
        return nxt, rew, torch.sigmoid(done_logit[pick, rows]) > 0.5

    @torch.no_grad()
    def rollout(
        self,
        policy,
        start_obs: np.ndarray,
        horizon: int,
        generator=None,
        env_id: str | None = None,
        sample: bool | None = None,
    ) -> OfflineDataset:
        """Truncated rollouts of ``policy.sample_action`` from ``start_obs`` (N, obs_dim): N * horizon
        transitions at most (fewer when a predicted done ends a rollout); ``sample`` as in :meth:`step`."""
        sample = self._sample(sample)
        obs = torch.as_tensor(start_obs, dtype=torch.float32)
        alive = torch.ones(len(obs), dtype=torch.bool)
        rows = {k: [] for k in ("obs", "act", "rew", "done", "next", "alive")}
        for _ in range(horizon):
            act = policy.sample_action(obs, generator)
            nxt, rew, done = self.step(obs, act, generator, sample)
            for k, v in zip(rows, (obs, act, rew, done, nxt, alive.clone()), strict=True):
                rows[k].append(v)
            alive = alive & ~done
            obs = nxt
        st = {k: torch.stack(v, 1).numpy() for k, v in rows.items()}  # (N, H, ...)
        keep = st["alive"]
        last = keep & ~np.concatenate([keep[:, 1:], np.zeros_like(keep[:, :1])], axis=1)
        return OfflineDataset(
            observations=st["obs"][keep],
            actions=st["act"][keep],
            rewards=st["rew"][keep],
            terminals=st["done"][keep],
            timeouts=(last & ~st["done"])[keep],
            next_observations=st["next"][keep],
            env_id=env_id,
            metadata={"world_model": 1, "sampled": int(sample)},
        )
