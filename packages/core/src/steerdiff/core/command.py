"""The command-line convention every steerdiff command follows.

One parser factory, one set of common flags with the same names and meanings in every command, argument
types that check values as they are read, and one runner that turns a user error into one line on stderr and
exit code 2, writes ``summary.json`` into ``--out`` and prints the summary (``--json``: the whole of it, as
JSON, never cut). Domain command lines build on these; library functions never call a command line.

Common flags: ``--num-samples``, ``--steps`` (sampler steps), ``--train-steps``, ``--solver`` (checked against
the core's solvers), ``--device``, ``--threads``, ``--seed``, ``--out``, ``--json``, ``--quiet``, ``--version``.

Presets (``add_preset_flag``): ``--preset NAME`` sets a named group of option defaults at once (a paper's scale,
a GPU check's, a smoke test's); options given on the command line still win, and the chosen preset with the
values it resolved to is recorded in ``summary.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .io import write_json
from .runtime import configure
from .solvers import SOLVERS

__all__ = [
    "Preset",
    "UsageError",
    "add_command_presets",
    "add_preset_flag",
    "add_runtime_flags",
    "add_sampling_flags",
    "existing_dir",
    "existing_file",
    "make_parser",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "nonnegative_float",
    "probability",
    "run_command",
]


class UsageError(ValueError):
    """A user's input cannot be used; the message names the problem and the fix."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every option's default (except flags that are off and options without one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default is None or default is False or default is argparse.SUPPRESS:
            return text
        if not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``prog: error: ...``, exit code 2), and whose
    ``--preset`` (``add_preset_flag``) sets option defaults before the options given are read."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        presets: dict[str, Preset] | None = getattr(self, "_steerdiff_presets", None)
        if not presets:
            return super().parse_known_args(args, namespace)
        args = list(sys.argv[1:] if args is None else args)
        # first pass: which preset (argparse itself reads --preset, its abbreviations and --preset=NAME)
        first, _ = super().parse_known_args(args, copy.copy(namespace))
        name = getattr(first, "preset", None)
        if name is None:
            return super().parse_known_args(args, namespace)
        preset = presets[name]
        actions = _preset_actions(self, preset)
        saved = {action: action.default for action in actions}
        try:  # second pass: the preset's values are the defaults, so options given still win
            for action, option in actions.items():
                action.default = _converted(self, action, preset.values[option])
            parsed, extras = super().parse_known_args(args, namespace)
        finally:
            for action, default in saved.items():
                action.default = default
        resolved = {option: _json_ready(getattr(parsed, action.dest)) for action, option in actions.items()}
        wanted = {
            option: _json_ready(_converted(self, action, preset.values[option]))
            for action, option in actions.items()
        }
        parsed._preset = {
            "name": name,
            "values": resolved,
            "overridden": sorted(option for option in resolved if resolved[option] != wanted[option]),
        }
        return parsed, extras


def package_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def make_parser(prog: str, description: str, distribution: str) -> argparse.ArgumentParser:
    """A top-level parser with ``--version`` (the installed version of ``distribution``)."""
    parser = _Parser(prog=prog, description=description, formatter_class=_HelpFormatter)
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {package_version(distribution)}",
        help="print the version and exit",
    )
    return parser


def subcommands(parser: argparse.ArgumentParser) -> Callable[..., argparse.ArgumentParser]:
    """``add(name, help)`` creates a subcommand parser with the same help formatting."""
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help, description=description or help, formatter_class=_HelpFormatter
        )

    return add


# ------------------------------------------------------------------------------------------ value types


def _number(kind: type, test: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if isinstance(value, float) and not math.isfinite(value) or not test(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _number(int, lambda v: v > 0, "a positive integer")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0, "a positive number")
nonnegative_float = _number(float, lambda v: v >= 0, "a number >= 0")
probability = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"file {path} does not exist")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file")
    return path


def existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"folder {path} does not exist")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file; give a folder")
    return path


# ----------------------------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """A named group of option defaults for one command.

    ``values`` maps option strings (``"--train-steps"``) to values, typed as the option's own values or as the
    text a user would type (converted by the option's type). ``description`` is one line, shown in ``--help``:
    what the preset is for and what a run of it verifies. ``source`` names where its numbers come from.
    """

    description: str
    values: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""


def _preset_actions(parser: argparse.ArgumentParser, preset: Preset) -> dict[argparse.Action, str]:
    actions = {}
    for option in preset.values:
        action = parser._option_string_actions.get(option)
        if action is None or option == "--preset":
            raise ValueError(f"a preset sets {option}, which is not an option of {parser.prog}")
        actions[action] = option
    return actions


def _converted(parser: argparse.ArgumentParser, action: argparse.Action, value: Any) -> Any:
    """``value`` as argparse would hold it for ``action`` (text goes through the option's type, item by item
    for an option of several values)."""
    if isinstance(value, str):
        return parser._get_value(action, value)
    if isinstance(value, (list, tuple)) and action.nargs not in (None, "?"):
        return type(value)(parser._get_value(action, v) if isinstance(v, str) else v for v in value)
    return value


def _json_ready(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def add_preset_flag(parser: argparse.ArgumentParser, presets: Mapping[str, Preset]) -> None:
    """``--preset NAME``: set the option defaults of one of ``presets`` (options given still win).

    ``--help`` lists each preset with its description and the values it sets; an unknown name is a one-line
    usage error listing the choices; the run's ``summary.json`` records the preset, the values the options it
    sets resolved to, and which of them the command line overrode (``run_command``). A preset naming an
    option the parser lacks, or a value the option refuses, is a programming error (``ValueError`` here).
    """
    if not isinstance(parser, _Parser):
        raise TypeError("add_preset_flag needs a parser made by make_parser or subcommands")
    if not presets:
        raise ValueError("add_preset_flag needs at least one preset")
    for name, preset in presets.items():
        for action, option in _preset_actions(parser, preset).items():
            try:
                value = _converted(parser, action, preset.values[option])
            except argparse.ArgumentError as err:
                raise ValueError(f"preset {name}: {err}") from None
            if action.choices is not None and value not in action.choices:
                raise ValueError(f"preset {name}: {option} {value!r} is not one of {list(action.choices)}")
            if action.nargs == 0 and not isinstance(value, bool):
                raise ValueError(f"preset {name}: {option} is a switch; give True or False")

    def shown(option: str, value: Any) -> str:
        if isinstance(value, bool):  # a switch: as it is typed (--flag, --no-flag), or its state
            negative = f"--no-{option[2:]}"
            if negative in parser._option_string_actions:
                return option if value else negative
            return f"{option} {'on' if value else 'off'}"
        return f"{option} {' '.join(str(v) for v in value) if isinstance(value, (list, tuple)) else value}"

    width = max(len(name) for name in presets) + 4
    lines = ["presets (--preset NAME sets these defaults; options you give still win):"]
    for name, preset in presets.items():
        values = " ".join(shown(option, value) for option, value in preset.values.items())
        for text, first in ((preset.description, f"  {name}"), (f"sets {values}", "")):
            wrapped = textwrap.wrap(text, 110 - width, break_on_hyphens=False, break_long_words=False)
            lines += [f"{first if i == 0 else '':<{width}}{line}" for i, line in enumerate(wrapped)]
    epilog = "\n".join(lines)
    parser.epilog = f"{parser.epilog}\n\n{epilog}" if parser.epilog else epilog
    parser.add_argument(
        "--preset",
        choices=list(presets),
        default=None,
        metavar="NAME",
        help=f"set the defaults of a named scale at once: {', '.join(presets)} (listed below with what each is "
        "for and sets); options you give still win, and summary.json records the preset and the values used",
    )
    parser._steerdiff_presets = dict(presets)  # type: ignore[attr-defined]


def add_command_presets(parser: argparse.ArgumentParser, presets: Mapping[str, Mapping[str, Preset]]) -> None:
    """``add_preset_flag`` on each subcommand named in ``presets`` (``{"train": {"paper": Preset(...)}}``)."""
    commands: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            commands.update(action.choices)
    for command, named in presets.items():
        if command not in commands:
            raise ValueError(f"presets for {command!r}, which is not a subcommand of {parser.prog}")
        add_preset_flag(commands[command], named)


# ------------------------------------------------------------------------------------------ common flags


def add_runtime_flags(
    parser: argparse.ArgumentParser, out: str | None, *, seed: int | None = 0, threads: int | None = None
) -> None:
    """``--out``, ``--seed``, ``--device``, ``--threads``, ``--json``, ``--quiet``."""
    if out is not None:
        parser.add_argument(
            "--out",
            type=Path,
            default=Path(out),
            help="output folder (summary.json and the run's files go there)",
        )
    if seed is not None:
        parser.add_argument(
            "--seed", type=int, default=seed, help="random seed; the same seed gives the same result"
        )
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument(
        "--threads",
        type=nonnegative_int,
        default=threads if threads is not None else 0,
        help="CPU threads for torch; 0 keeps torch's own choice (1 is often fastest for small networks)",
    )
    parser.add_argument("--json", action="store_true", help="print the whole summary as JSON on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_sampling_flags(
    parser: argparse.ArgumentParser,
    *,
    num_samples: int | None = None,
    steps: int | None = 32,
    solver: str | None = "heun",
    samples_help: str = "samples to draw",
) -> None:
    """``--num-samples``, ``--steps`` (sampler steps), ``--solver`` (one of the core's solvers)."""
    if num_samples is not None:
        parser.add_argument("--num-samples", type=positive_int, default=num_samples, help=samples_help)
    if steps is not None:
        parser.add_argument("--steps", type=positive_int, default=steps, help="sampler steps (noise levels)")
    if solver is not None:
        parser.add_argument("--solver", choices=sorted(SOLVERS), default=solver, help="sampler")


# ---------------------------------------------------------------------------------------------- runner


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 100 else text[:97] + "..."


def print_summary(summary: Mapping[str, Any], as_json: bool, file=None) -> None:
    """``--json``: the whole summary; otherwise one ``key: value`` line each (long values shortened)."""
    file = file or sys.stdout
    if as_json:
        print(json.dumps(summary, indent=2, default=str), file=file)
        return
    for key, value in summary.items():
        print(f"{key}: {_short(value)}", file=file)


def run_command(
    parser: argparse.ArgumentParser,
    handlers: Mapping[str, Callable[[argparse.Namespace], dict | None]],
    argv: list[str] | None = None,
) -> int:
    """Parse ``argv``, set up the runtime, run the subcommand's handler and report.

    The handler returns a JSON-ready summary; it is written to ``<out>/summary.json`` when the command has an
    ``--out`` folder and printed. A ``ValueError`` (``UsageError``, a dataset or bundle error) or an
    ``OSError`` becomes one line on stderr and exit code 2; ``STEERDIFF_DEBUG=1`` shows the traceback instead.
    """
    args = parser.parse_args(argv)
    try:
        args.device = configure(
            getattr(args, "device", "auto"), getattr(args, "threads", None), getattr(args, "seed", None)
        )
        summary = handlers[args.command](args)
        preset = getattr(args, "_preset", None)
        if summary is not None and preset is not None:
            summary = {**summary, "preset": preset}
        out = getattr(args, "out", None)
        if summary is not None and out is not None:
            summary = {**summary, "summary": str(Path(out) / "summary.json")}
            write_json(Path(out) / "summary.json", summary)
    except (ValueError, OSError) as err:
        if os.environ.get("STEERDIFF_DEBUG"):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{parser.prog} {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"{parser.prog} {args.command}: interrupted; files already written are complete", file=sys.stderr
        )
        return 130
    if summary is not None:
        print_summary(summary, getattr(args, "json", False))
    return 0
