"""MusicPipeline: train, save, load in a fresh process, generate the same pieces; corrupt bundles; outputs."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from steerdiff.core import BundleError, save_pretrained
from steerdiff.music import (
    EmpiricalDenoiser,
    MusicPipeline,
    RollConfig,
    load_samples,
    split,
    synthetic_pieces,
    windows,
)

GENERATE = dict(rules="note_density,chord_progression", method="scg", num_samples=2, steps=6, n=3, seed=7)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    roll = RollConfig(steps_per_beat=2)
    train, val = split(synthetic_pieces(roll, 6, 4), 0.34)
    pipe = MusicPipeline.train(
        train, bars=2, transpose=0, train_steps=6, batch_size=4, channels=8, device="cpu", progress=False
    )
    path = pipe.save_pretrained(tmp_path_factory.mktemp("bundle") / "model")
    return pipe, path, windows(val, 16)


def test_bundle_loads_in_a_fresh_process_and_gives_the_same_samples(trained, tmp_path):
    pipe, path, ref = trained
    save_file({"ref": ref.contiguous()}, str(tmp_path / "ref.safetensors"))
    here = pipe.generate(reference=ref, **GENERATE)
    script = textwrap.dedent(f"""
        from safetensors.torch import load_file
        from steerdiff.music import MusicPipeline
        pipe = MusicPipeline.from_pretrained({str(path)!r}, device="cpu")
        ref = load_file({str(tmp_path / "ref.safetensors")!r})["ref"]
        out = pipe.generate(reference=ref, **{GENERATE!r})
        out.save({str(tmp_path / "gen")!r}, plot=False)
    """)
    subprocess.run(
        [sys.executable, "-c", script], check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""}, timeout=120
    )
    there, roll = load_samples(tmp_path / "gen" / "samples.npz")
    assert roll == pipe.roll and there.shape == (2, 2, 48, 16)
    assert torch.equal(there, here.x.cpu())
    again = MusicPipeline.from_pretrained(path, device="cpu")
    assert again.info["training"]["steps"] == 6 and again.info["bars"] == 2 and again.length == 16
    assert again.info["pitch_range"] == [36, 83] and again.info["steps_per_bar"] == 8


def test_corrupt_or_foreign_bundles_are_refused(trained, tmp_path):
    pipe, _, _ = trained
    cut = pipe.save_pretrained(tmp_path / "cut")
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(BundleError, match="corrupt or truncated"):
        MusicPipeline.from_pretrained(cut, device="cpu")
    (cut / "config.json").unlink()
    with pytest.raises(BundleError, match="no config.json"):
        MusicPipeline.from_pretrained(cut, device="cpu")
    other = save_pretrained(tmp_path / "other", domain="timeseries", config={"horizon": 3})
    with pytest.raises(BundleError, match="'timeseries' model, not a 'music' one"):
        MusicPipeline.from_pretrained(other, device="cpu")
    with pytest.raises(ValueError, match="Denoiser"):
        MusicPipeline(EmpiricalDenoiser(torch.zeros(2, 2, 48, 16)), pipe.roll, 16).save_pretrained(
            tmp_path / "e"
        )
    # a bundle whose write was cut before its rename is not there at all; the previous one stays
    good = pipe.save_pretrained(tmp_path / "good")
    (tmp_path / ".good.tmp-123-abc").mkdir()
    assert MusicPipeline.from_pretrained(good, device="cpu").length == 16


def test_generate_targets_outputs_and_evaluation(trained, tmp_path):
    pipe, _, ref = trained
    out = pipe.generate(
        rules="chord_progression", targets={"chord_progression": "C,G"}, num_samples=3, steps=4, n=2
    )
    assert out.method == "scg" and out.rule_losses["chord_progression"].shape == (3,)
    assert out.rolls.min() >= 0 and out.rolls.max() <= 1 and len(out) == 3
    assert pipe.generate(num_samples=1, steps=3).method == "unguided"
    paths = out.save(tmp_path, wav=True)
    assert {p.name for p in paths} >= {"samples.npz", "sample_00.mid", "sample_02.wav", "pianoroll.png"}
    assert len(pipe.to_midi(out.x)[0].instruments[0].notes) >= 0
    summary = out.summary()
    assert json.loads(json.dumps(summary))["costs"]["nfe"] > 4
    ev = pipe.evaluate(out, ref, rules="note_density", reference=ref[:1])
    assert 0 <= ev["oa"]["mean"] <= 1 + 1e-6 and "note_density" in ev["rule_loss"]
    kept = pipe.generate(num_samples=2, steps=4, known=ref[0], known_bars=[0], method="unguided")
    assert torch.equal(kept.x[:, :, :, :8], ref[0, :, :, :8].expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match="needs a target"):
        pipe.generate(rules="note_density", steps=2)
    with pytest.raises(ValueError, match="unknown rule"):
        pipe.generate(rules="groove", steps=2)
    with pytest.raises(ValueError, match="unknown method"):
        pipe.generate(rules="note_density", reference=ref, method="beam")
    with pytest.raises(ValueError, match="same length"):
        pipe.generate(rules="note_density", reference=ref, bars=1)
