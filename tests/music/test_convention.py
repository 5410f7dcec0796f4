"""The command-line convention: one-line user errors with exit code 2, help with defaults, --version."""

import argparse

import pytest

from steerdiff.music.cli import build_parser, main

from .cli_cases import user_errors


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    cases = user_errors(tmp_path)
    assert len(cases) >= 5
    for argv, fragment in cases:
        capsys.readouterr()
        code = main(argv)
        assert code == 2, (argv, code)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1, (argv, err)
        assert "Traceback" not in err and fragment in err.lower(), (argv, fragment, err)


def test_parse_errors_exit_2_and_help_exits_0(capsys):
    assert main(["generate", "--steps", "-3"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as info:
        main(["generate", "--help"])
    assert info.value.code == 0 and "--num-samples" in capsys.readouterr().out


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_option_has_help_and_shows_its_default(capsys):
    parser = build_parser()
    subs = dict(_subparsers(parser))
    assert set(subs) == {"prepare", "train", "generate", "evaluate", "demo"}
    for name, sub in subs.items():
        help_text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, (name, action.option_strings)
            if action.default not in (None, False, argparse.SUPPRESS):
                assert f"(default: {action.default})" in help_text, (name, action.option_strings)
    common = {"--num-samples", "--steps", "--seed", "--device", "--threads", "--out", "--json"}
    generate = {s for a in subs["generate"]._actions for s in a.option_strings}
    assert common | {"--solver"} <= generate
    assert "--train-steps" in {s for a in subs["train"]._actions for s in a.option_strings}


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("steerdiff-music ")
