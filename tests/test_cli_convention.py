"""One command-line convention across the five commands.

For every command: each option of each subcommand has a help line that shows its default, ``--version``
prints the installed version, and each user error (tests/<package>/cli_cases.py) exits with code 2 and one
line on stderr, without a traceback.
"""

import argparse
import importlib
import importlib.metadata

import pytest

from steerdiff.core.command import nonnegative_int, positive_int

PACKAGES = ["core", "policy", "timeseries", "music", "inverse"]
COMMON = {
    "--num-samples",
    "--steps",
    "--train-steps",
    "--solver",
    "--device",
    "--threads",
    "--seed",
    "--out",
    "--json",
}


def _cli(package):
    return importlib.import_module(f"steerdiff.{package}.cli")


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


@pytest.mark.parametrize("package", PACKAGES)
def test_every_option_has_help_and_shows_its_default(package):
    parser = _cli(package).build_parser()
    subs = list(_subparsers(parser))
    assert subs, "a command has subcommands"
    seen, counts = set(), set()
    for name, sub in subs:
        sub.format_help()  # a stray % in a help string would fail here
        formatter = sub._get_formatter()
        for action in sub._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or "-h" in action.option_strings:
                continue
            seen.update(action.option_strings)
            if action.type in (int, positive_int, nonnegative_int):
                counts.update(action.option_strings)
            assert action.help, f"{package} {name} {action.option_strings[0]} has no help line"
            if not (action.default is None or action.default is False or action.default is argparse.SUPPRESS):
                assert "%(default)" in formatter._get_help_string(action), (
                    f"{package} {name} {action.option_strings[0]} does not show its default"
                )
    assert {"--device", "--out", "--json"} <= seen, f"{package} lacks the common runtime flags"
    renamed = ({"--sampler-steps", "--num-steps"} & seen) | ({"--n", "--samples", "--num"} & counts)
    assert not renamed, f"{package} uses {sorted(renamed)} instead of the common names {sorted(COMMON)}"


@pytest.mark.parametrize("package", PACKAGES)
def test_version(package, capsys):
    with pytest.raises(SystemExit) as done:
        _cli(package).main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out.strip()
    dist = "steerdiff-core" if package == "core" else f"steerdiff-{package}"
    version = importlib.metadata.version(dist)
    assert out.endswith(version) and version


@pytest.mark.parametrize("package", PACKAGES)
def test_user_errors_exit_2_with_one_line(package, tmp_path, capsys):
    cases = importlib.import_module(f"tests.{package}.cli_cases").user_errors(tmp_path)
    assert len(cases) >= 5
    capsys.readouterr()
    for argv, fragment in cases:
        try:
            code = _cli(package).main(argv)
        except SystemExit as done:  # argparse's own usage errors
            code = done.code
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        where = f"{package} {' '.join(argv)}"
        assert code == 2, f"{where}: exit code {code}, stderr {err!r}"
        assert "Traceback" not in err, f"{where}: traceback\n{err}"
        assert len(lines) == 1, f"{where}: expected one error line, got {lines}"
        assert fragment.lower() in lines[0].lower(), f"{where}: {fragment!r} not in {lines[0]!r}"


DOMAINS = ["policy", "timeseries", "music", "inverse"]


@pytest.mark.parametrize("package", DOMAINS)
def test_presets_are_listed_in_help_with_what_they_are_for(package):
    presets = importlib.import_module(f"steerdiff.{package}.presets").PRESETS
    subs = dict(
        _subparsers(_cli(package).build_parser())
    )  # building it checks every preset's options and values
    assert any("paper" in named for named in presets.values()), f"{package} has no paper preset"
    for command, named in presets.items():
        assert {"gpu-check", "smoke"} <= set(named), (
            f"{package} {command}: gpu_check.sh needs gpu-check and smoke"
        )
        text = " ".join(subs[command].format_help().split())
        assert "--preset NAME" in text, f"{package} {command} --help lacks --preset"
        for name, preset in named.items():
            assert preset.description and preset.source, (
                f"{package} {command} {name}: say what it is and its source"
            )
            assert f"{name} {' '.join(preset.description.split())}" in text, (
                f"{package} {command}: {name} not listed"
            )
        for name, sub in subs.items():
            if name not in presets:
                assert "--preset" not in sub._option_string_actions, (
                    f"{package} {name}: --preset without presets"
                )


@pytest.mark.parametrize("package", DOMAINS)
def test_docs_list_every_preset(package):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "presets.md").read_text()
    rows = {
        line.split(" | ")[0] + " | " + line.split(" | ")[1]: line
        for line in doc.splitlines()
        if line.count(" | ") > 3
    }
    for command, named in importlib.import_module(f"steerdiff.{package}.presets").PRESETS.items():
        for name, preset in named.items():
            row = rows.get(f"| {name} | `{package} {command}`")
            assert row, f"docs/presets.md lacks {name} of {package} {command}"
            for option in preset.values:
                assert option in row or f"--no-{option[2:]}" in row, (
                    f"docs/presets.md: {package} {command} {name}"
                )
