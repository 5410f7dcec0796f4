"""The benchmark protocol (steerdiff.music.benchmark) on a tiny setting: budgets, grids, validation,
records."""

import pytest

from steerdiff.music import RollConfig, synthetic_pieces
from steerdiff.music.benchmark import (
    BENCH_METHODS,
    TREE_SPLITS,
    grids,
    label,
    run_benchmark,
    scg_configs,
    stand_in_data,
    tree_configs,
    tune_defaults,
)


@pytest.mark.parametrize("steps, k", [(28, 6), (10, 3), (28, 16)])
def test_every_setting_fits_the_budget(steps, k):
    budget = k * steps
    for quick, compact in ((False, False), (False, True), (True, False)):
        for method, options in grids(steps, k, quick, compact).items():
            for c in options:
                if method == "scg":
                    nfe = c["steps"] + (c["G"] - 1) * (c["n"] - 1)
                elif method == "dps":
                    nfe = 2 * c["steps"]
                elif method == "tree_search":  # every step guided; the last keeps one child per beam
                    nfe = (c["steps"] - 1) * c["beams"] * c["n"] + c["beams"]
                else:
                    nfe = c["n"] * c["steps"]
                assert method == "unguided" or nfe <= budget, (label(c), nfe, budget)
    wide = scg_configs(28, 6, (6, 16))
    assert [c["G"] for c in wide] == [28, 10]  # n = 16 only fits on the last 10 of 28 steps
    assert scg_configs(28, 6, (), (3,))[0] == {
        "method": "scg",
        "n": 3,
        "steps": 56,
        "window": (0.0, 1.0),
        "G": 56,
    }
    assert (
        label(wide[0]) == "scg n=6 G=28/28" and label(grids(28, 6, False)["smc"][0]) == "smc 2p 84 st, lam 8"
    )


def test_protocol_validates_then_tests_each_method():
    data = stand_in_data(synthetic_pieces(RollConfig(steps_per_beat=2), 10, 6), seed=0)
    lines = []
    r = run_benchmark(
        data,
        samples=2,
        val_samples=2,
        steps=4,
        k=2,
        bootstrap=2,
        quick=True,
        wanted=("note_density", "chord_progression"),
        log=lines.append,
    )
    assert [row[0] for row in r["rows"]] == ["note_density"] * 6 + ["chord_progression"] * 6
    assert r["rows"][8] == ("chord_progression", "dps", None, None, None, None, None, None, None)
    assert [rec["method"] for rec in r["records"]] == list(BENCH_METHODS) + [
        m for m in BENCH_METHODS if m != "dps"
    ]
    for rec in r["records"]:
        assert rec["method"] == "unguided" or rec["budget"] <= r["budget_nfe"]
        assert rec["rule_loss"] >= 0 and 0 <= rec["oa_mean"] <= 1 + 1e-6
        if rec["method"] in ("smc", "scg", "tree_search"):  # chosen on validation among several settings
            assert len(rec["validation"]) > 1 and rec["label"] in [v["label"] for v in rec["validation"]]
    assert any("validation picks" in line for line in lines) and len(r["real_oa"]) == 2
    with pytest.raises(ValueError, match="unknown objective"):
        run_benchmark(data, wanted=("groove",))
    with pytest.raises(ValueError, match="unknown method"):
        run_benchmark(data, methods=("beam",))


def test_tree_search_settings_split_the_budget():
    for steps, k in ((28, 6), (28, 16)):
        budget = k * steps
        for c in tree_configs(steps, k, TREE_SPLITS):
            used = (c["steps"] - 1) * c["beams"] * c["n"] + c["beams"]
            # the most steps that fit: one more step would exceed the budget
            assert used <= budget < used + c["beams"] * c["n"], c
    assert label({**tree_configs(28, 6, [(2, 3)])[0], "selection": "sample", "temp_units": 0.3}) == (
        "tree 2x3 28 st, sample T 0.3"
    )


def test_defaults_are_tuned_on_validation_with_the_core_search():
    data = stand_in_data(synthetic_pieces(RollConfig(steps_per_beat=2), 10, 6), seed=0)
    out = tune_defaults(data.pipe, data.val_pieces, samples=2, steps=3, n=2, budget=2, log=None)
    assert out["dps_scale"] > 0 and 0 <= out["window_start"] <= 0.9
    assert set(out["lam"]) == {"pitch_histogram", "note_density", "chord_progression", "multi"}
    assert all(len(t["trials"]) <= 2 for t in out["trials"].values())
