import pytest
import torch

from steerdiff.music.rules import (
    CHORD_NAMES,
    ChordProgression,
    CustomRule,
    NoteDensity,
    Objective,
    PitchHistogram,
    chord_index,
    chord_root,
    degree_index,
    estimate_key,
)

from .conftest import hand_roll


def test_pitch_histogram_known_values(cfg):
    x = hand_roll(cfg, [(60, 0, 8), (64, 0, 8), (67, 0, 4), (79, 4, 8)], 8)  # C E G, then G an octave up
    h = PitchHistogram(cfg).attribute(x)[0]
    expected = torch.zeros(12)
    expected[[0, 4, 7]] = torch.tensor([8.0, 8.0, 8.0]) / 24
    torch.testing.assert_close(h, expected)
    assert PitchHistogram(cfg).attribute(-torch.ones(1, 2, 48, 8)).sum() == 0  # silence: all zeros


def test_note_density_known_values(cfg):
    bar = cfg.steps_per_bar  # 8 steps
    x = hand_roll(cfg, [(60, 0, 8), (64, 0, 4), (64, 4, 8), (48, 8, 9), (50, 10, 11), (52, 10, 12)], 16)
    d = NoteDensity(cfg).attribute(x)[0]
    # bar 1: 60 sounds 8 steps, 64 sounds 8 steps -> 2 per step; onsets at steps 0, 4
    # bar 2: 1 + 1 + 2 sounding cells over 8 steps -> 0.5; onsets at steps 8, 10
    torch.testing.assert_close(d, torch.tensor([2.0, 0.5, 2.0, 2.0]))
    assert NoteDensity(cfg).size(2 * bar) == 4


def test_chord_progression_known_values(cfg):
    bar = cfg.steps_per_bar
    chords = [[48, 52, 55], [43, 59, 62], [45, 60, 64], [41, 57, 60], []]  # C, G, Am, F, silence
    notes = [(p, i * bar, (i + 1) * bar) for i, c in enumerate(chords) for p in c]
    x = hand_roll(cfg, notes, 5 * bar)
    got = ChordProgression(cfg, mode="absolute").attribute(x)[0].long().tolist()
    assert [CHORD_NAMES[i] for i in got] == ["C", "G", "Am", "F", "N"]
    assert ChordProgression(cfg).attribute(x)[0].tolist() == [1, 5, 6, 4, 0]  # in C major: I V vi IV, silence
    assert chord_index(["C", "Db", "f#m", "N"][:2] + ["F#m", "N"]) == [0, 1, 18, 24]
    with pytest.raises(ValueError, match="unknown chord"):
        chord_index(["H7"])


def _progression(cfg, chords):
    bar = cfg.steps_per_bar
    return hand_roll(
        cfg, [(p, i * bar, (i + 1) * bar) for i, c in enumerate(chords) for p in c], len(chords) * bar
    )


def test_chord_degrees_are_relative_to_the_estimated_key(cfg):
    in_c = _progression(cfg, [[48, 52, 55], [53, 57, 60], [43, 55, 59, 62], [48, 52, 55]])  # C F G C
    in_a = _progression(cfg, [[45, 48, 52], [50, 53, 57], [52, 56, 59], [45, 48, 52]])  # Am Dm E Am
    for shift in (0, 2, 7):  # transposing a piece changes its chords' names but not their degrees
        d = ChordProgression(cfg).attribute(torch.roll(in_c, shift, dims=2))[0].tolist()
        assert d == [1, 4, 5, 1], (shift, d)
    assert ChordProgression(cfg).attribute(in_a)[0].tolist() == [1, 4, 5, 1]
    c_major, a_minor = torch.zeros(2, 12), 12 + 9
    c_major[0, [0, 4, 7]], c_major[0, [2, 5, 9, 11]] = 1.0, 0.5
    c_major[1, [9, 0, 4]], c_major[1, [11, 2, 8]] = 1.0, 0.5
    assert estimate_key(c_major).tolist() == [0, a_minor]
    assert degree_index(["I", "V7", "vi", "bVII", "viio", "N", "4"]) == [1, 5, 6, 7, 7, 0, 4]
    sets = torch.zeros(6, 12)
    for row, pcs in enumerate([[7, 11, 2, 5], [11, 2, 5], [4, 7], [0, 4, 7, 9], [9], [2, 6, 9, 0]]):
        sets[row, pcs] = 1  # G7, B dim, E-G, Am7 (C6), A, D7
    assert chord_root(sets, torch.tensor([7, 11, 4, 0, 9, 2])).tolist() == [7, 11, 4, 9, 9, 2]
    obj = Objective([(ChordProgression(cfg), ["I", "IV", "V", "I"])], 32)
    assert obj.loss(in_c).item() == 0 and obj.loss(in_a).item() == 0
    with pytest.raises(ValueError, match="unknown Roman numeral"):
        degree_index(["H"])
    with pytest.raises(ValueError, match="mode must be one of"):
        ChordProgression(cfg, mode="roman")


@pytest.mark.parametrize(
    "make",
    [
        PitchHistogram,
        NoteDensity,
        ChordProgression,
        lambda c: CustomRule(c, lambda r: r[:, 0].sum((1, 2)), name="note_count"),
    ],
)
def test_a_rule_loss_is_zero_at_its_own_target_and_positive_elsewhere(cfg, train_windows, make):
    rule = make(cfg)
    x = train_windows[:6]
    target = rule.attribute(x)
    assert torch.all(rule.loss(rule.attribute(x), target) == 0)
    obj = Objective([(rule, target)], 32)
    assert torch.all(obj.loss(x) == 0) and torch.all(obj.reward(x) == 0)
    other = train_windows[torch.arange(6) + 40]
    assert obj.loss(other).sum() > 0


def test_targets_of_the_wrong_size_and_rolls_of_the_wrong_shape_are_named(cfg):
    with pytest.raises(ValueError, match="must have 12 entries"):
        Objective([(PitchHistogram(cfg), torch.ones(11))], 32)
    with pytest.raises(ValueError, match="must have 8 entries"):
        Objective([(NoteDensity(cfg), torch.ones(6))], 32)
    with pytest.raises(ValueError, match="not a multiple"):
        NoteDensity(cfg).attribute(-torch.ones(1, 2, 48, 12))
    with pytest.raises(ValueError, match="integers 0..7"):
        Objective([(ChordProgression(cfg), [0.5, 1, 2, 3])], 32)
    with pytest.raises(ValueError, match="integers 0..24"):
        Objective([(ChordProgression(cfg, mode="absolute"), [0, 1, 2, 25])], 32)
    with pytest.raises(ValueError, match="48 pitches"):
        PitchHistogram(cfg).attribute(-torch.ones(1, 2, 40, 32))
    obj = Objective([(PitchHistogram(cfg), torch.ones(12) / 12)], 32)
    with pytest.raises(ValueError, match="built for rolls of 32 steps"):
        obj.loss(-torch.ones(1, 2, 48, 16))
    with pytest.raises(ValueError, match="does not divide"):
        Objective([(PitchHistogram(cfg), torch.ones(3, 12) / 12)], 32).loss(-torch.ones(4, 2, 48, 32))


def test_weighted_multi_rule_objective_and_per_sample_targets(cfg, train_windows):
    x = train_windows[:4]
    ph, nd = PitchHistogram(cfg), NoteDensity(cfg)
    t_ph, t_nd = torch.full((12,), 1 / 12), torch.ones(8)
    obj = Objective([(ph, t_ph, 40.0), (nd, t_nd, 1.0)], 32)
    losses = obj.losses(x)
    torch.testing.assert_close(obj.loss(x), 40 * losses["pitch_histogram"] + losses["note_density"])
    per_sample = Objective.from_reference([ph], x)  # one target row per reference piece
    assert torch.all(per_sample.loss(x) == 0)
    rows = per_sample.loss(x.repeat_interleave(3, 0))  # candidates of sample b are rows 3b..3b+2
    assert torch.all(rows == 0)


def test_relaxations_agree_on_binary_rolls_and_carry_gradients(cfg, train_windows):
    x = train_windows[:3].clone().requires_grad_(True)
    for rule in (PitchHistogram(cfg), NoteDensity(cfg)):
        soft = rule.attribute(x, relaxed=True)
        torch.testing.assert_close(soft, rule.attribute(x.detach()))
        (g,) = torch.autograd.grad(soft.sum(), x)
        assert torch.isfinite(g).all()
    with pytest.raises(TypeError, match="no differentiable relaxation"):
        ChordProgression(cfg).attribute(x, relaxed=True)
    obj = Objective([(ChordProgression(cfg), torch.zeros(4)), (PitchHistogram(cfg), torch.ones(12) / 12)], 32)
    with pytest.raises(TypeError, match="no differentiable relaxation"):
        obj.relaxed_loss(x)
    assert obj.relaxed_loss(x, partial=True).requires_grad


def test_custom_rule_must_return_one_row_per_roll(cfg):
    bad = CustomRule(cfg, lambda r: torch.zeros(5, 2), name="bad")
    with pytest.raises(ValueError, match="must return shape"):
        bad.attribute(-torch.ones(3, 2, 48, 8))
    with pytest.raises(TypeError, match="callable"):
        CustomRule(cfg, 3)


def test_guidance_reward_reads_the_soft_estimate_for_pitch_and_the_notes_for_the_rest(cfg, train_windows):
    x = train_windows[:3]
    ph, nd = PitchHistogram(cfg), NoteDensity(cfg)
    obj = Objective([(ph, torch.full((12,), 1 / 12), 40.0), (nd, torch.ones(8), 1.0)], 32)
    torch.testing.assert_close(obj.guidance_reward(x), obj.reward(x))  # clean rolls: the same
    blurred = 0.6 * x - 0.3  # the same notes decoded (threshold 0), but soft values
    torch.testing.assert_close(obj.reward(blurred), obj.reward(x))
    soft_ph = ph.loss(ph.attribute(blurred, relaxed=True), torch.full((1, 12), 1 / 12))
    want = -(40 * soft_ph + nd.loss(nd.attribute(blurred), torch.ones(1, 8)))
    torch.testing.assert_close(obj.guidance_reward(blurred), want)
    assert not torch.allclose(obj.guidance_reward(blurred), obj.reward(blurred))
