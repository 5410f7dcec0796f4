import pytest
import torch

from steerdiff.core.training import TrainConfig
from steerdiff.music.guide import bars_mask, generate
from steerdiff.music.metrics import attributes, oa_table, overlapping_area
from steerdiff.music.model import EmpiricalDenoiser, load_model, save_model, train_model
from steerdiff.music.roll import roll_to_midi
from steerdiff.music.rules import ChordProgression, NoteDensity, Objective, PitchHistogram

from .conftest import hand_roll

SEEDS = range(4)


@pytest.fixture(scope="module")
def model(train_windows):
    return EmpiricalDenoiser(train_windows, bandwidth=0.1)


def _mean_loss(model, cfg, obj, method, n, steps=12):
    out = []
    for seed in SEEDS:
        res = generate(
            model, cfg, 8, 32, steps, method, obj, n=n, generator=torch.Generator().manual_seed(seed)
        )
        out.append(obj.loss(res.x).mean())
    return float(torch.stack(out).mean()), res


@pytest.mark.parametrize("rule", ["note_density", "chord_progression"])
def test_scg_with_more_candidates_lowers_the_rule_loss(cfg, model, train_windows, rule):
    r = NoteDensity(cfg) if rule == "note_density" else ChordProgression(cfg)
    target = (
        r.attribute(train_windows[-1:]).expand(8, -1)
        if rule == "note_density"
        else torch.tensor([2.0, 6, 3, 7])
    )  # a progression the data rarely has: ii vi iii vii
    obj = Objective([(r, target)], 32)
    losses = [_mean_loss(model, cfg, obj, "scg" if n > 1 else "unguided", n)[0] for n in (1, 4, 16)]
    assert losses[0] > losses[1] > losses[2], losses


def test_methods_report_equal_budgets(cfg, model, train_windows):
    obj = Objective.from_reference([PitchHistogram(cfg)], train_windows[:4])
    steps = 10
    costs = {
        m: generate(
            model,
            cfg,
            4,
            32,
            steps,
            m,
            obj,
            n=4,
            window=(0.0, 1.0),
            generator=torch.Generator().manual_seed(0),
        ).costs
        for m in ("unguided", "best_of_n", "smc", "scg", "dps")
    }
    assert costs["unguided"].nfe == steps
    assert costs["best_of_n"].nfe == costs["smc"].nfe == 4 * steps
    assert 3 * steps < costs["scg"].nfe <= 4 * steps
    assert costs["dps"].nfe == steps and costs["dps"].gradient_evals == 4 * steps
    with pytest.raises(ValueError, match="none were given"):
        generate(model, cfg, 2, 32, 5, "scg")
    with pytest.raises(ValueError, match="unknown method"):
        generate(model, cfg, 2, 32, 5, "beam", obj)


def test_dps_lowers_the_relaxed_pitch_loss(cfg, model, train_windows):
    target = torch.zeros(12)
    target[[0, 4, 7]] = 1 / 3  # C major only
    obj = Objective([(PitchHistogram(cfg), target)], 32)
    base = _mean_loss(model, cfg, obj, "unguided", 1)[0]
    dps = _mean_loss(model, cfg, obj, "dps", 1)[0]
    assert dps < base


def test_given_bars_are_kept_exactly_and_combine_with_rules(cfg, model, train_windows):
    known = train_windows[7]
    mask = bars_mask(cfg, 32, [0, 1])
    obj = Objective([(NoteDensity(cfg), torch.tensor([3.0, 3, 3, 3, 4, 4, 4, 4]))], 32)
    res = generate(
        model,
        cfg,
        3,
        32,
        12,
        "scg",
        obj,
        n=4,
        known=known,
        known_mask=mask,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(res.x[:, mask], known[mask].expand(3, -1))
    with pytest.raises(ValueError, match="outside the 4 bars"):
        bars_mask(cfg, 32, [4])
    with pytest.raises(ValueError, match="needs both"):
        generate(model, cfg, 1, 32, 4, known=known)


def test_metrics_known_values_and_oa(cfg, train_windows):
    x = hand_roll(cfg, [(60, 0, 4), (64, 0, 2), (67, 4, 8), (72, 8, 16)], 16)
    a = {k: float(v[0]) for k, v in attributes(x, cfg).items()}
    assert a["used_pitches"] == 4 and a["pitch_range"] == 12 and a["notes_per_bar"] == 2
    assert a["mean_duration"] == pytest.approx(18 / 4) and a["mean_ioi"] == pytest.approx(4)
    assert a["polyphony"] == pytest.approx(18 / 16)
    assert overlapping_area([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1, abs=1e-3)
    assert overlapping_area([0, 0.1, 0.2], [100, 100.1, 100.2]) < 1e-3
    assert overlapping_area([5, 5, 5], [5, 5, 5]) == pytest.approx(1, abs=1e-3)  # constant samples work
    oa = oa_table(train_windows[:40], train_windows[40:80], cfg)
    assert 0 < oa["mean"] <= 1.0 + 1e-6


def test_unet_trains_saves_loads_and_samples_to_midi(cfg, train_windows, tmp_path):
    res = train_model(
        train_windows[:64],
        cfg,
        tmp_path / "run",
        config=TrainConfig(steps=20, batch_size=8, lr=1e-3, checkpoint_every=0),
        progress=False,
    )
    assert res.losses[-1] < res.losses[0]
    save_model(tmp_path / "model", res.ema, cfg, 32)
    loaded = load_model(tmp_path / "model")
    den, cfg2, length = loaded.denoiser, loaded.roll, loaded.length
    assert cfg2 == cfg and length == 32 and loaded.bars == 4
    x = generate(den, cfg, 2, 32, 4, generator=torch.Generator().manual_seed(0)).x
    assert x.shape == (2, 2, 48, 32) and torch.isfinite(x).all()
    roll_to_midi(x[0], cfg, model_space=True)
    with pytest.raises(ValueError, match="does not exist"):
        load_model(tmp_path / "nothing")
    with pytest.raises(ValueError, match="not a steerdiff model bundle"):
        load_model(tmp_path / "run")  # a training checkpoint folder is not a model
    with pytest.raises(ValueError, match="training data"):
        train_model(train_windows[:, :1], cfg, tmp_path / "bad")


@pytest.mark.parametrize("window, guided", [((0.25, 1.0), 9), ((0.0, 1.0), 12), ((11 / 12, 1.0), 1)])
def test_scg_guides_exactly_the_steps_of_its_window(cfg, model, train_windows, window, guided):
    obj = Objective.from_reference([NoteDensity(cfg)], train_windows[:2])
    res = generate(
        model,
        cfg,
        2,
        32,
        12,
        "scg",
        obj,
        n=4,
        window=window,
        generator=torch.Generator().manual_seed(0),
    )
    assert res.costs.reward_evals == 2 * 4 * guided
    # unguided steps cost 1, the first guided step 1 + n, later guided steps n, the last one (sigma -> 0) 0
    assert res.costs.nfe == 12 - guided + 1 + (guided - 1) * 4
    for bad in ((0.5, 0.5), (-0.1, 1.0), (0.2, 1.5), (0.3,), "late"):
        with pytest.raises(ValueError, match="window"):
            generate(model, cfg, 2, 32, 12, "scg", obj, window=bad)


def test_defaults_are_the_values_chosen_on_validation():
    import json
    from pathlib import Path

    from steerdiff.music import DEFAULTS

    chosen = json.loads((Path(__file__).parents[2] / "docs/music/defaults.json").read_text())
    assert DEFAULTS["dps_scale"] == chosen["dps_scale"]
    assert DEFAULTS["lam"] == chosen["lam"]
    for method in ("scg", "smc", "tree_search"):
        assert DEFAULTS["window"][method] == (chosen["window_start"], 1.0)
