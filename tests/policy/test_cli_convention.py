"""The command-line convention, checked on this package alone: every user error exits 2 with one line and no
traceback; every option has help and shows its default; --version works."""

import argparse

import pytest

from steerdiff.policy.cli import build_parser, main

from .cli_cases import user_errors


def _run(argv):
    try:
        return main(argv)
    except SystemExit as err:
        return err.code


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    cases = user_errors(tmp_path)
    assert len(cases) >= 5
    for argv, fragment in cases:
        code = _run(argv)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2, (argv, code, err)
        assert len(lines) == 1 and "Traceback" not in err, (argv, err)
        assert fragment in lines[0].lower(), (argv, fragment, lines[0])
    assert not (tmp_path / "out" / "summary.json").exists()


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_option_has_help_and_shows_its_default():
    parser = build_parser()
    subs = dict(_subparsers(parser))
    assert set(subs) == {"collect", "train", "synthesize", "train-agent", "evaluate", "demo"}
    for name, sub in subs.items():
        text = sub.format_help()
        for action in sub._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            assert action.help, (name, action.option_strings)
            if (
                action.default is not None
                and action.default is not False
                and action.default != argparse.SUPPRESS
            ):
                assert "default" in action.help, (name, action.option_strings)
        assert "(default: 0)" in text  # --seed 0 is shown too
    for flag in (
        "--num-samples",
        "--steps",
        "--solver",
        "--device",
        "--threads",
        "--seed",
        "--out",
        "--json",
    ):
        assert flag in subs["synthesize"].format_help()
    assert (
        "--train-steps" in subs["train"].format_help()
        and "--train-steps" in subs["train-agent"].format_help()
    )


def test_version(capsys):
    with pytest.raises(SystemExit) as err:
        main(["--version"])
    assert err.value.code == 0 and capsys.readouterr().out.startswith("steerdiff-policy ")
