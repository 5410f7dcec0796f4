"""The benchmark protocol (steerdiff.inverse.benchmark) on a tiny setting."""

import dataclasses
import math

import pytest
import torch

from steerdiff.core.benchmarking import format_table
from steerdiff.inverse.benchmark import (
    FULL,
    IDENTIFIABILITY_HEADERS,
    QUICK,
    RESULT_HEADERS,
    Setting,
    band_limited,
    default_cache,
    identifiability_row,
    override,
    prepare,
    ratio_lines,
    results_table,
    rows_table,
    run,
)
from steerdiff.inverse.prior import PriorConfig

TINY = Setting(
    size=16,
    dt=5e-2,
    num_train=16,
    prior=PriorConfig(base_channels=8, channel_mults=(1,), steps=3, batch_size=8),
    num_test=1,
    num_val=1,
    num_particles=4,
    num_steps=6,
    num_candidates=2,
    noise_levels=(0.0, 1.0),
    methods=("enkg", "eki", "smc"),
    tune={"enkg": (1.0, 2.0)},
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the tiny prior is trained once."""
    return tmp_path_factory.mktemp("cache")


def test_run_tunes_caches_and_reports_every_method(cache, monkeypatch):
    tmp_path = cache
    logged = []
    rows, chosen = run(TINY, tmp_path, log=logged.append, progress=False)
    assert [(r["noise"], r["method"]) for r in rows] == [(n, m) for n in (0.0, 1.0) for m in TINY.methods]
    assert chosen["enkg"] in (1.0, 2.0) and chosen["eki"] == TINY.defaults["eki"]
    assert len(logged) == 1 and logged[0].startswith("tune enkg scale: 1 -> ")
    for r in rows:
        assert math.isfinite(r["rel_l2"]) and r["forward_calls"] > 0 and r["budget"]["num_particles"] == 4
    smc = [r for r in rows if r["method"] == "smc"]
    assert smc[1]["budget"]["likelihood_std"] >= 1.0  # never below the measurement noise
    # the prior is a bundle in the cache; a second run loads it instead of training
    bundle = tmp_path / TINY.key() / "model"
    assert (bundle / "config.json").exists() and (tmp_path / TINY.key() / "checkpoint").is_dir()
    import steerdiff.inverse.benchmark as bench

    def no_training(*args, **kwargs):
        raise AssertionError("the cached prior should be loaded, not trained again")

    monkeypatch.setattr(bench, "train_prior", no_training)
    prior = prepare(TINY, tmp_path)
    assert prior.field_shape == (1, 16, 16) and prior.problem_spec["name"] == "navier_stokes"

    title, headers, table, notes = results_table(TINY, rows, chosen, total=1.0)
    assert headers == RESULT_HEADERS and len(table) == len(rows) and "16x16" in title
    assert notes[-1] == "total 1 s including data, prior and tuning"
    assert "tuned on a validation field" in notes[1]
    text = rows_table(TINY, rows, chosen, quick=True)
    assert text.startswith("## Navier-Stokes") and "quick" in text and format_table(headers, table) in text
    lines = ratio_lines(TINY, rows)
    assert len(lines) == 2 and lines[0].startswith("noise 0: EnKG/EKI error ratio")


def test_settings_cache_key_and_overrides(monkeypatch, tmp_path):
    assert override(FULL, size=None, num_particles=7).num_particles == 7
    assert override(FULL, size=None) == FULL
    assert dataclasses.replace(QUICK, num_steps=3).key() == QUICK.key()
    monkeypatch.setenv("STEERDIFF_CACHE", str(tmp_path))
    assert default_cache() == tmp_path / "inverse_ns"


def test_band_limited_interpolation_is_exact_for_band_limited_fields():
    size = 16
    y, x = torch.meshgrid(
        torch.arange(size) * 2 * math.pi / size, torch.arange(size) * 2 * math.pi / size, indexing="ij"
    )
    field = (torch.cos(2 * x + y) + 0.5 * torch.sin(3 * y))[None, None].double()
    up = band_limited(field[..., ::2, ::2].float(), size)
    assert up.shape == (1, 1, size, size)
    torch.testing.assert_close(up.double(), field, atol=1e-5, rtol=0)


def test_identifiability_row_on_a_small_grid():
    row = identifiability_row(16, 2, 5e-2, num_fields=1, iterations=3)
    assert len(row) == len(IDENTIFIABILITY_HEADERS) and row[:2] == ["16x16", "every 2"]
    assert 0 <= row[2] <= 1 and row[3] > 0 and math.isfinite(row[4]) and row[6] >= 0


def test_the_benchmark_command_runs_the_protocol(cache, tmp_path, monkeypatch, capsys):
    import json

    import steerdiff.inverse.benchmark as bench
    from steerdiff.inverse.cli import main

    tiny = dataclasses.replace(TINY, noise_levels=(0.0,), methods=("eki", "smc"), tune={})
    monkeypatch.setattr(bench, "QUICK", tiny)
    argv = ["benchmark", "--quick", "--cache", str(cache), "--out", str(tmp_path / "out"), "--json"]
    assert main([*argv, "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert set(summary["rel_l2"]) == {"eki noise 0", "smc noise 0"}
    assert "| noise | method |" in captured.err  # the table goes to stderr, the JSON alone to stdout
    rows = json.loads((tmp_path / "out" / "benchmark.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["eki", "smc"]
