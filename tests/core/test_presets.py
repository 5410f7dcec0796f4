"""``--preset``: named groups of option defaults (steerdiff.core.command.add_preset_flag)."""

from __future__ import annotations

import argparse
import json

import pytest

from steerdiff.core.command import (
    Preset,
    add_command_presets,
    add_preset_flag,
    add_runtime_flags,
    make_parser,
    positive_int,
    run_command,
    subcommands,
)

PRESETS = {
    "paper": Preset(
        "the paper's scale; verifies nothing on its own", {"--train-steps": 100_000, "--size": 128}
    ),
    "gpu-check": Preset(
        "sized for one GPU; verifies the loss falls at 64x64",
        {
            "--train-steps": 2000,
            "--size": "64",
            "--mode": "fast",
            "--window": "0.1 0.9".split(),
            "--skip": False,
        },
    ),
}


def build():
    parser = make_parser("tool", "a test tool", distribution="steerdiff-core")
    add = subcommands(parser)
    p = add("train", "train something")
    p.add_argument("--train-steps", type=positive_int, default=10, help="training steps")
    p.add_argument("--size", type=positive_int, default=8, help="grid size")
    p.add_argument("--mode", choices=("slow", "fast"), default="slow", help="mode")
    p.add_argument("--window", type=float, nargs=2, default=(0.0, 1.0), help="window")
    p.add_argument("--skip", action=argparse.BooleanOptionalAction, default=True, help="skip")
    add_runtime_flags(p, out="runs/tool")
    add_preset_flag(p, PRESETS)
    plain = add("plain", "no presets here")
    plain.add_argument("--size", type=positive_int, default=8, help="grid size")
    return parser


def handler(args):
    return {
        "train_steps": args.train_steps,
        "size": args.size,
        "mode": args.mode,
        "window": list(args.window),
        "skip": args.skip,
    }


def run(argv):
    return run_command(build(), {"train": handler, "plain": handler}, argv)


def summary_of(out):
    return json.loads((out / "summary.json").read_text())


def test_preset_sets_defaults_and_is_recorded(tmp_path, capsys):
    assert run(["train", "--preset", "gpu-check", "--out", str(tmp_path)]) == 0
    s = summary_of(tmp_path)
    assert (s["train_steps"], s["size"], s["mode"], s["window"], s["skip"]) == (
        2000,
        64,
        "fast",
        [0.1, 0.9],
        False,
    )
    assert type(s["size"]) is int  # text values go through the option's type
    assert s["preset"] == {
        "name": "gpu-check",
        "values": {
            "--train-steps": 2000,
            "--size": 64,
            "--mode": "fast",
            "--window": [0.1, 0.9],
            "--skip": False,
        },
        "overridden": [],
    }


@pytest.mark.parametrize("where", ["before", "after"])
def test_explicit_flag_beats_preset(tmp_path, where, capsys):
    flags = ["--train-steps", "7", "--mode", "slow"]
    preset = ["--preset", "paper"]
    argv = ["train", *(flags + preset if where == "before" else preset + flags), "--out", str(tmp_path)]
    argv += ["--skip"] if where == "before" else []
    assert run(argv) == 0
    s = summary_of(tmp_path)
    assert (s["train_steps"], s["size"], s["mode"]) == (7, 128, "slow")
    assert s["preset"]["name"] == "paper"
    assert s["preset"]["values"] == {"--train-steps": 7, "--size": 128}
    assert s["preset"]["overridden"] == ["--train-steps"]


def test_other_spellings_and_no_preset(tmp_path, capsys):
    assert run(["train", "--preset=paper", "--out", str(tmp_path / "a")]) == 0
    assert summary_of(tmp_path / "a")["size"] == 128
    assert run(["train", "--pres", "paper", "--out", str(tmp_path / "b")]) == 0  # argparse's abbreviation
    assert summary_of(tmp_path / "b")["size"] == 128
    assert run(["train", "--out", str(tmp_path / "c")]) == 0
    s = summary_of(tmp_path / "c")
    assert (s["train_steps"], s["size"], s["mode"]) == (10, 8, "slow") and "preset" not in s


def test_parser_defaults_are_restored_after_a_preset():
    parser = build()
    args = parser.parse_args(["train", "--preset", "paper"])
    assert args.size == 128
    args = parser.parse_args(["train"])
    assert args.size == 8 and args.train_steps == 10


def test_unknown_preset_is_one_line_listing_the_choices(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        run(["train", "--preset", "huge", "--out", str(tmp_path)])
    assert done.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "huge" in lines[0] and "paper" in lines[0] and "gpu-check" in lines[0]
    assert not (tmp_path / "summary.json").exists()


def test_help_lists_presets_with_what_they_verify_and_set(capsys):
    with pytest.raises(SystemExit) as done:
        build().parse_args(["train", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--preset NAME" in text
    assert "at once: paper," in text
    for name, preset in PRESETS.items():
        assert f"{name} {preset.description}" in text
    assert "sets --train-steps 100000 --size 128" in text and "--window 0.1 0.9 --no-skip" in text
    with pytest.raises(SystemExit):
        build().parse_args(["plain", "--help"])
    assert "--preset" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"--nosuch": 1}, "--nosuch, which is not an option"),
        ({"--mode": "medium"}, "not one of"),
        ({"--size": "big"}, "not a positive integer"),
        ({"--preset": "paper"}, "not an option"),
        ({"--quick": "yes"}, "is a switch"),
    ],
)
def test_a_bad_preset_is_refused_when_defined(values, fragment):
    parser = make_parser("tool", "a test tool", distribution="steerdiff-core")
    parser.add_argument("--size", type=positive_int, default=8, help="grid size")
    parser.add_argument("--mode", choices=("slow", "fast"), default="slow", help="mode")
    parser.add_argument("--quick", action="store_true", help="quick")
    with pytest.raises(ValueError, match=fragment):
        add_preset_flag(parser, {"bad": Preset("a bad one", values)})


def test_presets_by_subcommand():
    parser = make_parser("tool", "a test tool", distribution="steerdiff-core")
    add = subcommands(parser)
    for name in ("train", "solve"):
        add(name, name).add_argument("--size", type=positive_int, default=8, help="grid size")
    add_command_presets(parser, {"solve": {"big": Preset("bigger", {"--size": 32})}})
    assert parser.parse_args(["solve", "--preset", "big"]).size == 32
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--preset", "big"])  # train has no presets
    with pytest.raises(ValueError, match="not a subcommand"):
        add_command_presets(parser, {"sample": {"big": Preset("bigger", {"--size": 32})}})
