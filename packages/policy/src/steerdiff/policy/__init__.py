"""steerdiff-policy: policy-guided diffusion for offline reinforcement learning.

Train a trajectory diffusion model on an offline dataset, guide its samples with a target policy's action
log-likelihood to get synthetic, nearly on-policy experience, train TD3+BC or IQL on real, synthetic or mixed
batches, and check the synthetic data in the real simulator::

    from steerdiff.policy import PolicyGuidedPipeline, load_agent

    pipe = PolicyGuidedPipeline.from_pretrained("runs/policy/train/model")
    data = pipe.synthesize(agent=load_agent("runs/policy/train-agent/agent"), coeff=1.0, num_samples=64)

Everything listed in ``__all__`` is public; the submodules hold the same names and more detail.
"""

from importlib import metadata as _metadata

from .agents import AGENTS, IQL, TD3BC, Agent, AgentConfig, load_agent, make_agent
from .collect import BEHAVIOURS, collect
from .data import (
    DatasetError,
    OfflineDataset,
    load_d4rl,
    load_dataset,
    load_minari,
    save_d4rl,
    save_minari,
    terminal_fraction,
)
from .demo import run_demo
from .diffusion import ModelConfig, SamplerConfig, TrajectoryDiffusion
from .envs import SUPPORTED, action_bounds, env_dims, normalized_score
from .evaluation import dynamics_error, evaluate_policy, policy_log_likelihood
from .guidance import PolicyGuidance, guidance_schedule, trajectory_log_likelihood
from .pipeline import PolicyGuidedPipeline
from .plots import episode_windows, plot_likelihood_vs_error, plot_return_curves, plot_state_trajectories
from .synthesis import Synthesizer
from .tasks import PolicySynthesisTask, TargetPolicies, guided_tasks
from .training import train_agent
from .trajectories import Normalizer, to_transitions, window_coverage, windows
from .world_model import WorldModel, WorldModelConfig

try:
    __version__ = _metadata.version("steerdiff-policy")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    # the pipeline and its models
    "PolicyGuidedPipeline",
    "TrajectoryDiffusion",
    "ModelConfig",
    "SamplerConfig",
    "Synthesizer",
    "PolicyGuidance",
    "guidance_schedule",
    "trajectory_log_likelihood",
    # agents
    "Agent",
    "AgentConfig",
    "TD3BC",
    "IQL",
    "AGENTS",
    "make_agent",
    "load_agent",
    "train_agent",
    # data
    "OfflineDataset",
    "DatasetError",
    "load_dataset",
    "load_d4rl",
    "save_d4rl",
    "load_minari",
    "save_minari",
    "collect",
    "BEHAVIOURS",
    "terminal_fraction",
    "Normalizer",
    "windows",
    "window_coverage",
    "to_transitions",
    # environments and evaluation
    "SUPPORTED",
    "env_dims",
    "action_bounds",
    "normalized_score",
    "evaluate_policy",
    "dynamics_error",
    "policy_log_likelihood",
    "WorldModel",
    "WorldModelConfig",
    # plots and the end-to-end example
    "episode_windows",
    "plot_return_curves",
    "plot_state_trajectories",
    "plot_likelihood_vs_error",
    "run_demo",
    # tasks of the guidance matrix (steerdiff.core.matrix)
    "guided_tasks",
    "PolicySynthesisTask",
    "TargetPolicies",
]
