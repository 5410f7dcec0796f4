"""InversePipeline and the prior bundle: round trip in a fresh process, corrupt bundles, black-box solving."""

import json
import os
import subprocess
import sys

import pytest
import torch

import steerdiff.core.bundle as core_bundle
from steerdiff.core.bundle import BundleError, save_pretrained
from steerdiff.inverse import (
    FunctionForwardModel,
    InversePipeline,
    LinearProblem,
    PriorConfig,
    load_dataset,
    load_prior,
    make_dataset,
    save_dataset,
)
from steerdiff.inverse.cli import main

TINY = PriorConfig(base_channels=8, channel_mults=(1, 2), steps=6, batch_size=8)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny prior trained through the public API on a linear problem, and its bundle."""
    problem = LinearProblem(size=8, stride=2, noise_std=0.1)
    fields = problem.sample_fields(32, gen())
    pipe = InversePipeline.train(fields, problem, TINY, device="cpu")
    path = pipe.save_pretrained(tmp_path_factory.mktemp("bundle") / "prior")
    return pipe, path


CHILD = """
import sys, torch
from safetensors.torch import save_file
from steerdiff.core import set_threads
from steerdiff.inverse import InversePipeline
set_threads(int(sys.argv[3]))
pipe = InversePipeline.from_pretrained(sys.argv[1], device="cpu")
y = pipe.problem.forward.measure(pipe.problem.grf.sample(2, torch.Generator().manual_seed(5)),
                                 torch.Generator().manual_seed(6))
sol = pipe.solve(y, method="enkg", particles=4, steps=6, seed=2)
save_file({"samples": pipe.sample(3, steps=6, seed=1), "estimate": sol.estimate}, sys.argv[2])
"""


def test_bundle_round_trip_in_a_fresh_process(trained, tmp_path):
    pipe, path = trained
    config = json.loads((path / "config.json").read_text())
    domain = config["domain"]
    assert domain["name"] == "inverse" and domain["kind"] == "field_prior"
    assert domain["field_shape"] == [1, 8, 8] and domain["problem"]["name"] == "linear"
    assert domain["problem"]["options"]["stride"] == 2 and domain["scale"] == pytest.approx(pipe.prior.scale)
    out = tmp_path / "child.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(out), str(torch.get_num_threads())],
        check=True,
        env=env,
        timeout=300,
    )
    from safetensors.torch import load_file

    child = load_file(str(out))
    y = pipe.problem.forward.measure(pipe.problem.grf.sample(2, gen(5)), gen(6))
    estimate = pipe.solve(y, method="enkg", particles=4, steps=6, seed=2).estimate
    samples = pipe.sample(3, steps=6, seed=1)
    assert samples.shape == (3, 1, 8, 8) and torch.isfinite(samples).all()
    assert (child["samples"] - samples).abs().max() <= 1e-6
    assert (child["estimate"] - estimate).abs().max() <= 1e-6


def test_pipeline_loads_the_problem_and_solves_with_any_forward_model(trained):
    pipe, path = trained
    loaded = InversePipeline.from_pretrained(path, device="cpu", noise_std=0.2)
    assert loaded.problem.forward.noise_std == 0.2 and loaded.field_shape == (1, 8, 8)
    a = loaded.problem.matrix()

    def numpy_model(x):  # a black box: no autograd
        return torch.from_numpy(x.reshape(len(x), -1).double().numpy() @ a.numpy().T).reshape(-1, 1, 4, 4)

    box = FunctionForwardModel(numpy_model, (1, 8, 8), (1, 4, 4), name="numpy_box", noise_std=0.1)
    y = loaded.problem.forward(loaded.problem.grf.sample(1, gen(3)))
    sol = loaded.solve(y, forward=box, method="enkg", particles=4, steps=6)
    assert sol.ensemble.shape == (1, 4, 1, 8, 8) and sol.costs["forward_calls"] > 0
    assert sol.costs["gradient_evals"] == 0
    bare = InversePipeline(loaded.prior, None, device="cpu")  # no problem: the forward model defines it
    assert bare.solve(y, forward=box, method="eki", particles=4, iterations=3).estimate.shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="unknown solver options"):
        loaded.solve(y, method="enkg", particles=4, steps=6, temperature=2.0)
    with pytest.raises(ValueError, match="needs a diffusion prior"):
        InversePipeline(None, loaded.problem, device="cpu").solve(y, method="enkg")
    wrong = FunctionForwardModel(numpy_model, (1, 16, 16), (1, 4, 4))
    with pytest.raises(ValueError, match=r"inputs of shape \(1, 16, 16\)"):
        loaded.solve(y, forward=wrong)
    with pytest.raises(ValueError, match="trained on 8x8"):
        InversePipeline(loaded.prior, LinearProblem(size=16), device="cpu")


def test_corrupt_and_foreign_bundles_get_clear_errors(trained, tmp_path):
    pipe, path = trained
    cut = pipe.save_pretrained(tmp_path / "cut")
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(BundleError, match="corrupt or truncated"):
        InversePipeline.from_pretrained(cut, device="cpu")
    gone = pipe.save_pretrained(tmp_path / "gone")
    (gone / "config.json").unlink()
    with pytest.raises(BundleError, match="no config.json"):
        load_prior(gone)
    old = tmp_path / "old"
    old.mkdir()
    (old / "prior.json").write_text("{}")
    with pytest.raises(BundleError, match="prior.json"):
        load_prior(old)
    foreign = save_pretrained(tmp_path / "music", domain="music", config={"rules": []})
    with pytest.raises(BundleError, match="'music' model"):
        load_prior(foreign)
    data = save_dataset(tmp_path / "data", make_dataset(LinearProblem(size=8, stride=2, noise_std=0.1), 4, 1))
    assert load_dataset(data).y.shape == (1, 1, 4, 4)
    for bad in (cut, gone):
        assert (
            main(
                [
                    "solve",
                    "--data",
                    str(data),
                    "--prior",
                    str(bad),
                    "--out",
                    str(tmp_path / "o"),
                    "--device",
                    "cpu",
                    "--quiet",
                ]
            )
            == 2
        )


def test_a_save_cut_mid_write_leaves_the_previous_bundle(trained, tmp_path, monkeypatch):
    pipe, _ = trained
    path = pipe.save_pretrained(tmp_path / "prior")
    before = (path / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(core_bundle, "_write_json", crash)  # config.json is written last
    with pytest.raises(OSError, match="disk full"):
        pipe.save_pretrained(path)
    monkeypatch.undo()
    assert (path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prior"]
    x = torch.randn(2, 1, 8, 8, generator=gen())
    torch.testing.assert_close(load_prior(path)(x, 1.0), pipe.prior(x, 1.0))


def test_the_readme_example_runs_on_the_public_api(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    import steerdiff.inverse as inverse

    readme = Path(__file__).parents[2] / "packages" / "inverse" / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)
    assert len(blocks) == 1 and len(readme.read_text().splitlines()) < 150
    imported = re.findall(r"from steerdiff\.inverse import (.+)", blocks[0])
    names = {n.strip() for line in imported for n in line.split(",")}
    assert names and names <= set(inverse.__all__)
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], str(readme), "exec"), {})
    assert (tmp_path / "runs" / "linear-prior" / "config.json").exists()
