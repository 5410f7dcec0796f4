"""The benchmark protocol (steerdiff.policy.benchmark) on a tiny setting: settings, caching, tables' rows."""

import argparse

import pytest

from steerdiff.policy.benchmark import (
    FULL,
    QUICK,
    agent_hparams,
    agent_settings,
    curve,
    dataset_and_model,
    model_settings,
    parse_hparams,
    run_task,
    split_task,
    task_arg,
)

TINY = dict(
    QUICK,
    data=240,
    model_steps=4,
    wm_steps=4,
    agent_steps=4,
    regen=2,
    seeds=1,
    episodes=1,
    ep_steps=30,
    num=4,
    sampler_steps=2,
    hidden=8,
    coeffs=(1.0,),
    long=6,
    ref_steps=2,
    ref_coeffs=(1.0,),
    models={"Pendulum-v1/random": dict(base_channels=8, emb_dim=16, horizon=8)},
    agents={},
)


def test_tasks_and_settings():
    assert split_task("Pendulum-v1") == ("Pendulum-v1", "replay")
    assert split_task("Pendulum-v1/random") == ("Pendulum-v1", "random")
    with pytest.raises(ValueError, match="unknown behaviour 'expert'"):
        split_task("Pendulum-v1/expert")
    with pytest.raises(argparse.ArgumentTypeError, match="ENV/BEHAVIOUR"):
        task_arg("Hopper-v5/expert")
    arch, steps = model_settings("Hopper-v5", FULL)
    assert (arch["base_channels"], arch["horizon"], steps) == (64, 16, 10000)
    # the agent's own entry goes over the task's, which goes over the setting's
    ag = agent_settings("Pendulum-v1/random", FULL, "td3bc")
    assert (ag["agent_steps"], ag["regen"], ag["synth_ratio"], ag["synth_num"]) == (7000, 1000, 0.5, 128)
    assert agent_hparams("Pendulum-v1/random", "td3bc", FULL) == {"hidden": 128, "alpha": 160.0}
    assert agent_hparams("Hopper-v5", "iql", FULL) == {"hidden": 128, "beta": 0.3}
    with pytest.raises(KeyError, match="unknown agent settings"):
        agent_settings("X", dict(FULL, agents={"X": {"speed": 1}}))
    assert parse_hparams(["beta=1", "hidden=32"]) == {"beta": 1.0, "hidden": 32}
    with pytest.raises(ValueError, match="KEY one of"):
        parse_hparams(["obs_dim=3"])
    with pytest.raises(ValueError, match="takes a number"):
        parse_hparams(["beta=high"])


def test_run_task_and_curve_on_a_tiny_setting(tmp_path):
    rows, dyn, info = run_task("Pendulum-v1/random", TINY, 0, tmp_path, agent_names=("td3bc",))
    sources = [r[2] for r in rows]
    assert sources == [
        "real only",
        "unguided synthetic",
        "policy-guided synthetic",
        "behaviour data (its episodes)",
    ]
    labels = [d[1] for d in dyn]
    assert labels[0] == "diffusion, unguided" and "diffusion, guided λ=1, reference-style" in labels
    assert labels[-2:] == ["real data", "scale: real data with s' := s"]
    assert info["model_cached"] is False and info["rows"] == 8 and info["returns_per_seed"]
    # the dataset and the trajectory model bundle are cached: a rerun loads them
    _, pipe, cached = dataset_and_model("Pendulum-v1/random", TINY, 0, tmp_path)
    assert cached and pipe.horizon == 8 and pipe.env_id == "Pendulum-v1"
    updates, returns, per_seed, gen = curve(
        "Pendulum-v1/random", "iql", TINY, 4, 2, 1, 1, 0, tmp_path, "guided", hparams={"beta": 0.1}
    )
    assert updates.tolist() == [2, 4] and returns.shape == (1, 2) and len(gen) == 2 and per_seed > 0
