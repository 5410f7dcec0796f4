"""The command-line convention: one-line user errors with exit code 2, defaults in --help, --version."""

import argparse

import pytest

from steerdiff.timeseries.cli import build_parser, main

from .cli_cases import user_errors


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def test_every_user_error_is_one_line_and_exit_code_2(tmp_path, capsys):
    cases = user_errors(tmp_path)
    assert len(cases) >= 5
    for argv, fragment in cases:
        code = _exit_code(argv)
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert code == 2, (argv, captured.err)
        assert len(lines) == 1, (argv, captured.err)
        assert "Traceback" not in captured.err
        assert fragment in lines[0].lower(), (argv, lines[0])


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_help_shows_every_option_with_help_and_default():
    parser = build_parser()
    commands = _subparsers(parser)
    assert set(commands) == {
        "data",
        "train",
        "forecast",
        "impute",
        "refine",
        "synthesize",
        "evaluate",
        "demo",
    }
    for name, sub in commands.items():
        text = sub.format_help()
        for action in sub._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, (name, action.option_strings)
            if action.default not in (None, False, argparse.SUPPRESS):
                assert "(default:" in sub._get_formatter()._format_action(action), (
                    name,
                    action.option_strings,
                )
        for flag in ("--out", "--seed", "--device", "--threads", "--json"):
            assert flag in text, (name, flag)


def test_common_flags_have_the_common_names():
    commands = _subparsers(build_parser())
    flags = {name: {o for a in sub._actions for o in a.option_strings} for name, sub in commands.items()}
    assert {"--num-samples", "--steps", "--solver"} <= flags["forecast"]
    assert {"--train-steps", "--test-windows"} <= flags["train"]
    for legacy in ("--samples", "--num-steps", "--n"):
        assert all(legacy not in f for f in flags.values())


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.startswith("steerdiff-timeseries ")
