"""Model bundles: round trips (in this process and a fresh one), atomic writes, and clear errors."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from steerdiff.core import (
    Bundle,
    BundleError,
    Denoiser,
    build_network,
    get_schedule,
    load_pretrained,
    read_bundle_config,
    sample,
    save_pretrained,
    sigma_grid,
)
from steerdiff.core import bundle as bundle_module


def _denoiser(seed=0):
    torch.manual_seed(seed)
    return Denoiser(build_network("mlp", dim=3, hidden=16, depth=2), "edm", sigma_data=0.7)


def _draw(denoiser, schedule, seed=5):
    sigmas = sigma_grid(schedule, 6)
    gen = torch.Generator().manual_seed(seed)
    x = sigmas[0] * torch.randn(8, 3, generator=gen)
    return sample(denoiser, x, sigmas, "ddpm", generator=gen).x


def test_round_trip_keeps_weights_config_schedule_and_state(tmp_path):
    den, schedule = _denoiser(), get_schedule("vp_cosine")
    head = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(head.parameters())
    head(torch.ones(1, 3)).sum().backward()
    opt.step()
    path = save_pretrained(
        tmp_path / "m",
        domain="demo",
        config={"horizon": 24, "names": ["a", "b"]},
        denoiser=den,
        schedule=schedule,
        state={"head": head, "opt": opt, "step": {"n": torch.tensor(7)}},
    )
    b = load_pretrained(path, "demo")
    assert isinstance(b, Bundle) and b.domain == "demo" and b.config == {"horizon": 24, "names": ["a", "b"]}
    assert b.schedule.to_dict() == schedule.to_dict()
    assert b.denoiser.sigma_data == 0.7 and not b.denoiser.net.training
    assert torch.equal(_draw(b.denoiser, b.schedule), _draw(den, schedule))
    for k, v in head.state_dict().items():
        assert torch.equal(b.state["head"][k], v)
    assert b.state["opt"]["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert b.state["step"]["n"].item() == 7
    restored = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    restored.load_state_dict(b.state["opt"])  # an optimizer resumes from the bundle
    meta = json.loads((path / "config.json").read_text())
    assert meta["format"] == "steerdiff-bundle" and meta["format_version"] == 1
    assert meta["domain"]["name"] == "demo" and meta["network"]["name"] == "mlp"


def test_a_fresh_process_draws_the_same_samples(tmp_path):
    den, schedule = _denoiser(3), get_schedule("edm")
    save_pretrained(tmp_path / "m", domain="demo", denoiser=den, schedule=schedule)
    save_file({"x": _draw(den, schedule)}, str(tmp_path / "expected.safetensors"))
    code = textwrap.dedent(f"""
        import torch
        from safetensors.torch import load_file
        from steerdiff.core import load_pretrained, sample, sigma_grid
        b = load_pretrained({str(tmp_path / "m")!r}, "demo")
        sigmas = sigma_grid(b.schedule, 6)
        gen = torch.Generator().manual_seed(5)
        x = sigmas[0] * torch.randn(8, 3, generator=gen)
        got = sample(b.denoiser, x, sigmas, "ddpm", generator=gen).x
        assert torch.equal(got, load_file({str(tmp_path / "expected.safetensors")!r})["x"]), "samples differ"
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_save_cut_mid_write_leaves_the_previous_bundle(tmp_path, monkeypatch):
    path = tmp_path / "m"
    save_pretrained(path, domain="demo", config={"version": 1}, denoiser=_denoiser(0))
    before = load_pretrained(path).denoiser.net.state_dict()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process is stopped while config.json is written

    monkeypatch.setattr(bundle_module, "_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(path, domain="demo", config={"version": 2}, denoiser=_denoiser(1))
    monkeypatch.undo()
    assert read_bundle_config(path)["domain"]["version"] == 1
    after = load_pretrained(path).denoiser.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind


def test_a_save_cut_between_its_two_renames_is_recovered(tmp_path):
    path = tmp_path / "m"
    save_pretrained(path, domain="demo", config={"version": 1})
    os.rename(path, tmp_path / ".m.old-1-dead")  # the old bundle moved aside, the new one never moved in
    assert read_bundle_config(path)["domain"]["version"] == 1


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", "does not exist"),
        ("no_config", "no config.json"),
        ("old_format", "steerdiff 0.1"),
        ("bad_json", "not valid json"),
        ("truncated", "corrupt or truncated"),
        ("newer", "upgrade steerdiff-core"),
        ("wrong_domain", "not a 'music' one"),
        ("checkpoint", "only resumes training"),
    ],
)
def test_damaged_bundles_get_one_clear_error(tmp_path, damage, message):
    path = tmp_path / "m"
    save_pretrained(path, domain="timeseries", config={"horizon": 3}, denoiser=_denoiser())
    config = path / "config.json"
    if damage == "missing":
        path = tmp_path / "elsewhere"
    elif damage in ("no_config", "old_format"):
        config.unlink()
        if damage == "old_format":
            (path / "music.json").write_text("{}")
    elif damage == "bad_json":
        config.write_text('{"format": "steerdiff-bun')
    elif damage == "truncated":
        weights = path / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage in ("newer", "checkpoint"):
        meta = json.loads(config.read_text())
        meta.update({"format_version": 99} if damage == "newer" else {"format": "steerdiff-checkpoint"})
        config.write_text(json.dumps(meta))
    with pytest.raises(BundleError) as err:
        load_pretrained(path, "music" if damage == "wrong_domain" else "timeseries")
    assert message in str(err.value).lower()


def test_bad_arguments_to_save_are_refused(tmp_path):
    with pytest.raises(ValueError, match="domain"):
        save_pretrained(tmp_path / "a", domain="")
    with pytest.raises(ValueError, match="'name'"):
        save_pretrained(tmp_path / "a", domain="x", config={"name": "y"})
    with pytest.raises(ValueError, match="JSON-ready"):
        save_pretrained(tmp_path / "a", domain="x", config={"f": object()})
    with pytest.raises(ValueError, match="identifier"):
        save_pretrained(tmp_path / "a", domain="x", state={"model": {}})
    assert not (tmp_path / "a").exists()


def test_a_custom_network_loads_into_a_given_instance(tmp_path):
    class Custom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)

        def forward(self, x, c_noise, cond=None, cond_mask=None):
            return self.lin(x)

    den = Denoiser(Custom(), "eps")
    save_pretrained(tmp_path / "m", domain="demo", denoiser=den)
    with pytest.raises(BundleError, match="net="):
        load_pretrained(tmp_path / "m")
    b = load_pretrained(tmp_path / "m", net=Custom())
    assert torch.equal(b.denoiser.net.lin.weight, den.net.lin.weight)
