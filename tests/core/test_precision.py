"""bf16 autocast and torch.compile for training and sampling: results within stated tolerances on CPU."""

import pytest
import torch

from steerdiff.core import EDM, Denoiser, TrainConfig, build_network, sample, sigma_grid, toy_dataset, train
from steerdiff.core.runtime import accelerate, autocast


def _denoiser():
    torch.manual_seed(0)
    return Denoiser(build_network("mlp", dim=2, hidden=32, depth=2), "edm")


def test_bf16_training_follows_fp32_within_tolerance():
    data = toy_dataset("moons", 512)
    runs = {}
    for precision in ("fp32", "bf16"):
        config = TrainConfig(
            steps=30, batch_size=64, lr=1e-3, seed=0, checkpoint_every=0, precision=precision
        )
        runs[precision] = train(_denoiser(), "edm", data, config, progress=False, device="cpu")
    a, b = torch.tensor(runs["fp32"].losses), torch.tensor(runs["bf16"].losses)
    rel = ((a - b).abs() / a).max()
    assert 0 < rel < 1e-2  # same batches and noise; bf16 rounds the network's arithmetic (and is on)
    assert b[-5:].mean() < b[:5].mean()  # and it learns


def test_compiled_training_equals_eager_training():
    data = toy_dataset("moons", 256)
    eager = train(
        _denoiser(),
        "edm",
        data,
        TrainConfig(steps=5, batch_size=32, checkpoint_every=0),
        progress=False,
        device="cpu",
    )
    compiled = train(
        _denoiser(),
        "edm",
        data,
        TrainConfig(steps=5, batch_size=32, checkpoint_every=0, compile="aot_eager"),
        progress=False,
        device="cpu",
    )
    torch.testing.assert_close(
        torch.tensor(compiled.losses), torch.tensor(eager.losses), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("precision, compile, tol", [("bf16", False, 1e-2), ("fp32", "aot_eager", 1e-5)])
def test_accelerated_sampling_within_tolerance(precision, compile, tol):
    den = _denoiser().eval()
    sigmas = sigma_grid(EDM(), 10)
    x = sigmas[0] * torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    ref = sample(den, x, sigmas, "heun").x
    fast = sample(accelerate(den, precision, compile), x, sigmas, "heun").x
    assert fast.dtype == ref.dtype
    assert ((fast - ref).norm() / ref.norm()) < tol
    assert precision == "fp32" or not torch.equal(fast, ref)  # bf16 autocast really ran


def test_bad_precisions_are_refused():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="precision"):
        accelerate(_denoiser(), "fp16x")
    with pytest.raises(ValueError, match="precision"):
        autocast("cpu", "half")
