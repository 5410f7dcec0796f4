"""Training and checkpoints: DSM on a Gaussian mixture, exact resume, atomic saves, bad input, DDP."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steerdiff.core import checkpoint as ckpt_mod
from steerdiff.core import training as training_mod
from steerdiff.core.analytic import GaussianMixture
from steerdiff.core.checkpoint import CheckpointError, load_checkpoint, load_denoiser, load_schedule
from steerdiff.core.denoiser import Denoiser
from steerdiff.core.nets import build_network
from steerdiff.core.sampling import sample
from steerdiff.core.schedules import get_schedule, sigma_grid
from steerdiff.core.training import TrainConfig, train
from tests.torchrun import torchrun

HERE = Path(__file__).parent
MEANS = torch.tensor([[2.0, 2.0], [2.0, -2.0], [-2.0, 2.0], [-2.0, -2.0]])


@pytest.fixture(autouse=True)
def one_thread():
    """The nets here are tiny: one thread is fastest and does not fight other processes for cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture(torch.ones(4), MEANS, torch.full((4,), 0.1**2))


@pytest.fixture(scope="module")
def data(mixture):
    return mixture.sample(2048, torch.Generator().manual_seed(0)).float()


def make_denoiser(parametrization="edm", seed=0, **net_config):
    torch.manual_seed(seed)
    config = {"dim": 2, "hidden": 64, "depth": 2, "emb_dim": 32, **net_config}
    sigma_data = 2.0 if parametrization == "edm" else None  # the mixture's std is about 2
    return Denoiser(build_network("mlp", **config), parametrization, sigma_data)


def tensors_of(denoiser: Denoiser) -> dict[str, torch.Tensor]:
    return dict(denoiser.net.state_dict())


def assert_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), f"{k} differs"


def mean(xs):
    return sum(xs) / len(xs)


def fit(denoiser, data, steps, schedule="edm", out_dir=None, cond=None, **config):
    config = TrainConfig(steps=steps, **config)
    return train(denoiser, schedule, data, config, out_dir=out_dir, cond=cond, progress=False)


# -------------------------------------------------------------------------------------------- learning


def test_gmm_training_puts_samples_near_modes(mixture, data):
    denoiser = make_denoiser("edm")
    config = TrainConfig(steps=400, batch_size=256, lr=3e-3, warmup_steps=20, ema_decay=0.99)
    rng_before = torch.get_rng_state()
    result = train(denoiser, "edm", data, config, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_before), "train() must leave the global RNG alone"
    assert result.step == 400 and len(result.losses) == 400 and result.resumed_from == 0
    assert mean(result.losses[-50:]) < 0.5 * mean(result.losses[:20])
    schedule = get_schedule("edm")
    sigmas = sigma_grid(schedule, 30)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x = sample(result.ema, sigmas[0] * torch.randn(1000, 2, generator=gen), sigmas, "heun").x
    dist = torch.cdist(x, MEANS).min(dim=1).values
    assert (dist < 0.5).float().mean() > 0.8
    # every mode is visited
    counts = torch.bincount(torch.cdist(x, MEANS).argmin(dim=1), minlength=4)
    assert (counts > 100).all(), counts


@pytest.mark.parametrize(
    "parametrization,schedule",
    [("eps", "vp_cosine"), ("x0", "vp_linear"), ("v", "vp_cosine"), ("edm", "edm")],
)
def test_each_parametrization_lowers_its_loss(data, parametrization, schedule):
    denoiser = make_denoiser(parametrization)
    config = TrainConfig(steps=150, batch_size=256, lr=3e-3, warmup_steps=10)
    result = train(denoiser, schedule, data, config, progress=True)  # the bar goes to captured stderr
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert mean(result.losses[-30:]) < 0.75 * mean(result.losses[:10])


# ------------------------------------------------------------------------------------------- resuming


def _resume_setup(data):
    cond = torch.randn(data.shape[0], 3, generator=torch.Generator().manual_seed(5))
    # dropout in the network and CFG dropout exercise every random stream the trainer owns
    config = {
        "batch_size": 96,
        "lr": 2e-3,
        "warmup_steps": 15,
        "ema_decay": 0.95,
        "checkpoint_every": 10,
        "cfg_dropout": 0.2,
        "cond": cond,
    }
    return config, {"cond_dim": 3, "dropout": 0.1, "hidden": 32}


def test_killed_and_resumed_run_is_bit_identical(tmp_path, data):
    cfg, net_cfg = _resume_setup(data)
    full = make_denoiser(**net_cfg)
    ref = fit(full, data, 40, out_dir=tmp_path / "ref", **cfg)

    # "killed" at step 20 (a run of 20 steps with checkpoints), then a new call with the full 40 steps;
    # the second call starts from a differently initialized network: everything must come from the checkpoint
    first = fit(make_denoiser(**net_cfg), data, 20, out_dir=tmp_path / "run", **cfg)
    assert first.step == 20
    resumed_net = make_denoiser(seed=123, **net_cfg)
    resumed = fit(resumed_net, data, 40, out_dir=tmp_path / "run", **cfg)
    assert resumed.resumed_from == 20 and resumed.step == 40
    assert_identical(tensors_of(full), tensors_of(resumed_net))
    assert_identical(tensors_of(ref.ema), tensors_of(resumed.ema))
    assert resumed.losses == ref.losses
    # the saved optimizer state matches too
    a, b = load_checkpoint(tmp_path / "ref"), load_checkpoint(tmp_path / "run")
    for pid, state in a.optimizer["state"].items():
        for k, v in state.items():
            assert torch.equal(v, b.optimizer["state"][pid][k])


class Killed(BaseException):
    pass


def test_kill_between_checkpoints_loses_only_unsaved_steps(tmp_path, data, monkeypatch):
    cfg, net_cfg = _resume_setup(data)
    ref_net = make_denoiser(**net_cfg)
    ref = fit(ref_net, data, 40, **cfg)

    real_save, calls = training_mod.save_checkpoint, []

    def save_then_die(*args, **kwargs):
        calls.append(kwargs["step"])
        if len(calls) == 3:  # the process dies at step 30, before its checkpoint: steps 21-30 are lost
            raise Killed
        return real_save(*args, **kwargs)

    monkeypatch.setattr(training_mod, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        fit(make_denoiser(**net_cfg), data, 40, out_dir=tmp_path, **cfg)
    monkeypatch.setattr(training_mod, "save_checkpoint", real_save)
    assert load_checkpoint(tmp_path).step == 20
    net = make_denoiser(seed=7, **net_cfg)
    resumed = fit(net, data, 40, out_dir=tmp_path, **cfg)
    assert resumed.resumed_from == 20
    assert_identical(tensors_of(ref_net), tensors_of(net))
    assert_identical(tensors_of(ref.ema), tensors_of(resumed.ema))
    # a finished run resumed again has nothing to do
    again = fit(make_denoiser(**net_cfg), data, 40, out_dir=tmp_path, **cfg)
    assert again.step == 40 and again.resumed_from == 40 and again.losses == ref.losses


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, data, monkeypatch):
    fit(make_denoiser(hidden=16), data, 10, out_dir=tmp_path, batch_size=64, checkpoint_every=10)
    good = load_denoiser(tmp_path)
    x = torch.randn(8, 2)
    expected = good(x, 1.0)

    def half_written_then_fail(tensors, filename, metadata=None):
        Path(filename).write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')  # a truncated file
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod, "save_file", half_written_then_fail)
    with pytest.raises(OSError, match="No space left"):
        fit(make_denoiser(hidden=16), data, 20, out_dir=tmp_path, batch_size=64, checkpoint_every=10)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path).step == 10
    torch.testing.assert_close(load_denoiser(tmp_path)(x, 1.0), expected, rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"], "the failed save left debris"

    # a process killed mid-save (no clean-up ran) leaves a partial hidden directory: ignored, then removed
    stale = tmp_path / ".checkpoint.tmp-999-dead"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    torch.testing.assert_close(load_denoiser(tmp_path)(x, 1.0), expected, rtol=0, atol=0)
    # killed between the two renames of a save: the previous checkpoint is moved back into place
    (tmp_path / "checkpoint").rename(tmp_path / ".checkpoint.old-999-dead")
    torch.testing.assert_close(load_denoiser(tmp_path)(x, 1.0), expected, rtol=0, atol=0)
    result = fit(make_denoiser(hidden=16), data, 20, out_dir=tmp_path, batch_size=64, checkpoint_every=10)
    assert result.resumed_from == 10 and load_checkpoint(tmp_path).step == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


# ------------------------------------------------------------------------------------ checkpoint files


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("trained")
    denoiser = make_denoiser("v", hidden=16)
    result = fit(denoiser, data, 30, "vp_cosine", out_dir=out, batch_size=64, ema_decay=0.9)
    return out, denoiser, result


def test_load_denoiser_round_trip(trained):
    out, denoiser, result = trained
    x, sigma = torch.randn(16, 2), torch.rand(16) * 5 + 0.01
    with torch.no_grad():
        for loaded, original in [
            (load_denoiser(out), result.ema),
            (load_denoiser(out, ema=False), denoiser),
            (load_denoiser(out / "checkpoint", ema=False), denoiser),
        ]:
            assert loaded.parametrization == "v" and loaded.sigma_data == 1.0
            assert torch.equal(loaded(x, sigma), original(x, sigma))
    assert load_schedule(out).to_dict() == get_schedule("vp_cosine").to_dict()
    config = json.loads((out / "checkpoint" / "config.json").read_text())
    assert config["network"]["name"] == "mlp" and config["step"] == 30 and config["training"]["steps"] == 30
    assert config["format_version"] == ckpt_mod.FORMAT_VERSION


def _corrupt_copy(src: Path, dst: Path, how: str) -> Path:
    import shutil

    shutil.copytree(src / "checkpoint", dst / "checkpoint")
    ck = dst / "checkpoint"
    if how == "config.json":
        (ck / "config.json").write_text('{"format_version": 1, "step": ')
    elif how == "model.safetensors":
        raw = (ck / "model.safetensors").read_bytes()
        (ck / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    elif how == "ema.safetensors":
        (ck / "ema.safetensors").unlink()
    elif how == "trainer_state.json":
        (ck / "trainer_state.json").write_text("not json")
    return dst


@pytest.mark.parametrize("how", ["config.json", "model.safetensors", "ema.safetensors"])
def test_damaged_checkpoint_names_the_file(trained, tmp_path, how):
    out = _corrupt_copy(trained[0], tmp_path, how)
    with pytest.raises(CheckpointError, match=how.replace(".", r"\.")):
        load_denoiser(out)


def test_checkpoint_errors(trained, tmp_path, data):
    out = trained[0]
    with pytest.raises(CheckpointError, match="does not exist"):
        load_denoiser(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="is a file"):
        load_denoiser(out / "checkpoint" / "model.safetensors")
    # weights of another shape
    with pytest.raises(CheckpointError, match=r"ema\.safetensors.*shape"):
        load_denoiser(out, net=build_network("mlp", dim=2, hidden=32, depth=2, emb_dim=32))
    # a broken trainer_state.json stops a resume with the file's name
    broken = _corrupt_copy(out, tmp_path / "b", "trainer_state.json")
    with pytest.raises(CheckpointError, match=r"trainer_state\.json"):
        train(
            make_denoiser("v", hidden=16),
            "vp_cosine",
            data,
            TrainConfig(steps=40, batch_size=64),
            out_dir=broken,
            progress=False,
        )
    # resuming with another network or parametrization
    with pytest.raises(CheckpointError, match="shape"):
        fit(make_denoiser("v", hidden=8), data, 40, "vp_cosine", out_dir=out, batch_size=64, ema_decay=0.9)
    with pytest.raises(CheckpointError, match="parametrization"):
        fit(make_denoiser("eps", hidden=16), data, 40, "vp_cosine", out_dir=out, batch_size=64, ema_decay=0.9)
    # checkpoints hold no pickles
    assert not any(p.suffix in {".pt", ".pth", ".pkl", ".bin"} for p in (out / "checkpoint").iterdir())


# ------------------------------------------------------------------------------------------- bad input


def test_nan_in_data_is_named(data):
    bad = data.clone()
    bad[17, 1] = float("nan")
    bad[40, 0] = float("inf")
    with pytest.raises(ValueError, match=r"2 non-finite value.*2 sample.*index 17 \(entry \(17, 1\)\)"):
        train(make_denoiser(), "edm", bad, TrainConfig(steps=5, batch_size=16), progress=False)


@pytest.mark.parametrize(
    "bad,match",
    [
        (lambda d: d.double(), "torch.float64 but the network's parameters are torch.float32"),
        (lambda d: d.long(), "floating-point"),
        (lambda d: d[:, 0], r"shape \(N, \.\.\.\)"),
        (lambda d: d[:0], "empty"),
        (lambda d: d[:10], "larger than the dataset"),
    ],
)
def test_bad_data_is_rejected(data, bad, match):
    with pytest.raises(ValueError, match=match):
        train(make_denoiser(), "edm", bad(data), TrainConfig(steps=5, batch_size=16), progress=False)


def test_bad_cond_and_config_are_rejected(data):
    with pytest.raises(ValueError, match="cond must be a tensor of shape"):
        train(
            make_denoiser(cond_dim=3),
            "edm",
            data,
            TrainConfig(steps=5, batch_size=16),
            cond=torch.zeros(10, 3),
            progress=False,
        )
    cond = torch.zeros(data.shape[0], 3)
    cond[3, 2] = float("nan")
    with pytest.raises(ValueError, match="cond contains 1 non-finite"):
        fit(make_denoiser(cond_dim=3), data, 5, cond=cond, batch_size=16)
    with pytest.raises(TypeError, match="torch.Tensor"):
        train(make_denoiser(), "edm", data.numpy(), TrainConfig(steps=5, batch_size=16), progress=False)
    for bad in [{"steps": 0}, {"ema_decay": 1.0}, {"cfg_dropout": 1.0}, {"grad_clip": 0.0}]:
        with pytest.raises(ValueError, match="TrainConfig"):
            TrainConfig(**bad)


# ------------------------------------------------------------------------------------------------- DDP


def test_ddp_two_ranks_stay_identical(tmp_path, monkeypatch):
    torchrun(str(HERE / "ddp_worker.py"), str(tmp_path))
    w0, w1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert_identical(w0, w1)
    assert all(torch.isfinite(v).all() for v in w0.values())
    l0, l1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert l0 == l1 and l0["step"] == 30
    assert mean(l0["losses"][-5:]) < mean(l0["losses"][:5])
    # only rank 0 wrote the checkpoint, and it holds the final weights
    saved = load_checkpoint(tmp_path / "run")
    assert saved.step == 30
    assert_identical(
        {f"net.{k}": v for k, v in saved.model.items()}, {k: v for k, v in w0.items() if k.startswith("net.")}
    )

    # the same run in one process: each rank took half of the same global batch, so the weights agree up to
    # the rounding of the gradient all-reduce
    spec = importlib.util.spec_from_file_location("ddp_worker", HERE / "ddp_worker.py")
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    single = tmp_path / "single"
    single.mkdir()
    worker.run(single)
    ref = load_file(str(single / "rank0.safetensors"))
    for k in ref:
        torch.testing.assert_close(w0[k], ref[k], rtol=1e-4, atol=1e-5)


def test_cosine_learning_rate_schedule():
    from steerdiff.core.training import _lr

    cfg = TrainConfig(steps=110, lr=1e-3, warmup_steps=10, lr_schedule="cosine")
    lrs = [_lr(cfg, s) for s in range(cfg.steps)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warm-up
    assert lrs[10] == pytest.approx(1e-3) and lrs[60] == pytest.approx(5e-4)  # half-way down the cosine
    assert lrs[109] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert _lr(TrainConfig(steps=110, lr=1e-3, warmup_steps=10), 100) == 1e-3  # constant by default
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")
