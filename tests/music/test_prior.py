"""Voice realism, the validation loss and the choice among trained stages (steerdiff.music.prior)."""

import pytest
import torch

from steerdiff.music import MusicPipeline, RollConfig, validation_loss, voice_counts, voice_realism
from steerdiff.music.prior import _choose

from .conftest import hand_roll

CFG = RollConfig(steps_per_beat=2)


def test_voice_counts_and_realism_value_by_value():
    # real: 4 voices on all 8 steps; generated: 4 voices on steps 0-3, 6 on steps 4-5, 2 on steps 6-7
    real = hand_roll(CFG, [(48, 0, 8), (55, 0, 8), (64, 0, 8), (72, 0, 8)], 8)
    gen = hand_roll(
        CFG, [(48, 0, 6), (55, 0, 6), (64, 0, 4), (72, 0, 8), (60, 4, 6), (62, 4, 8), (67, 4, 6)], 8
    )
    assert voice_counts(gen, CFG).tolist() == [[4, 4, 4, 4, 6, 6, 2, 2]]
    v = voice_realism(gen, real, CFG)
    assert v["typical_voices"] == 4
    assert (
        v["generated"]["typical"] == 0.5
        and v["generated"]["more"] == 0.25
        and v["generated"]["fewer"] == 0.25
    )
    assert v["real"] == {"typical": 1.0, "more": 0.0, "fewer": 0.0, "note_length": 8.0}
    assert v["generated"]["note_length"] == pytest.approx((6 + 6 + 4 + 8 + 2 + 4 + 2) / 7)


def test_validation_loss_is_deterministic_and_lower_for_a_better_model():
    data = torch.cat([hand_roll(CFG, [(60, 0, 8), (64, 0, 8)], 8)] * 8)
    pipe = MusicPipeline.untrained(CFG, bars=1, channels=8)
    a, b = validation_loss(pipe.denoiser, data), validation_loss(pipe.denoiser, data)
    assert a == b and a > 0


def test_the_chosen_stage_is_the_most_realistic_within_five_percent_of_the_lowest_loss():
    def stage(loss, typical):
        return {"val_loss": loss, "voices": {"generated": {"typical": typical}}, "model": f"{loss}/{typical}"}

    stages = [stage(0.100, 0.5), stage(0.104, 0.7), stage(0.120, 0.9)]
    assert _choose(stages)["model"] == "0.104/0.7"  # 0.120 is more than 5 % above the lowest loss
