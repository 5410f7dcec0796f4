"""``steerdiff-inverse`` follows the command-line convention: help, defaults, --version, one-line errors."""

import argparse

import pytest

from steerdiff.inverse.cli import build_parser, main

from .cli_cases import user_errors


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_option_has_help_and_shows_its_default():
    parser = build_parser()
    subs = _subparsers(parser)
    assert set(subs) == {"make-data", "train-prior", "solve", "benchmark", "demo"}
    for name, sub in subs.items():
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings} has no help"
            if (
                action.default is not None
                and action.default is not False
                and action.default != argparse.SUPPRESS
            ):
                assert f"(default: {action.default})" in text, (
                    f"{name} {action.option_strings} hides its default"
                )
    options = {o for o in subs["solve"]._option_string_actions}
    assert {"--num-samples", "--steps", "--device", "--threads", "--seed", "--out", "--json"} <= options
    assert "--train-steps" in subs["train-prior"]._option_string_actions


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("steerdiff-inverse ")


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    cases = user_errors(tmp_path)
    assert len(cases) >= 10
    for argv, fragment in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1, (argv, err)
        assert "Traceback" not in err
        assert fragment in lines[0].lower(), (argv, fragment, lines[0])
