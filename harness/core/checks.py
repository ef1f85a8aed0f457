"""Checked conversions of input values: one line naming the key when a value is of the wrong
kind or out of range (a bool is never a number, NaN fails every range, text is not a number).

They raise ValueError; the caller that knows the context (a workload's config, the command
line) turns it into its one-line `PacerUserError`. `parse_options` and `folder_argument` are the
same for the option verbs' argparse parsers (harness/cli.py)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import NoReturn

from harness.core.errors import PacerUserError


def whole_number(key: str, value: object, minimum: int = 1) -> int:
    """`value` as an int >= `minimum`. Raises ValueError naming `key` for anything else (a
    bool, a fraction such as 1.7, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key}={value!r} must be an integer >= {minimum}")
    return value


def whole_numbers(key: str, values: object, minimum: int = 1) -> tuple[int, ...]:
    """`values`, a non-empty sequence such as a list (an OmegaConf ListConfig too, not text), as
    a tuple of ints >= `minimum`. Raises ValueError naming `key` (or the element, as `key[i]`)
    for anything else."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{key}={values!r} must be a non-empty list of integers >= {minimum}")
    return tuple(whole_number(f"{key}[{i}]", value, minimum) for i, value in enumerate(values))


def finite_number(key: str, value: object, minimum: float = -math.inf, *, exclusive: bool = False) -> float:
    """`value` as a finite float >= `minimum` (> with `exclusive`). Raises ValueError naming
    `key` (text, a bool, NaN, inf, a number below the minimum)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < minimum or (exclusive and value == minimum):
        bound = f" {'>' if exclusive else '>='} {minimum:g}" if minimum > -math.inf else ""
        raise ValueError(f"{key}={value!r} must be a finite number{bound}")
    return float(value)


def seconds(key: str, value: object, *, zero_ok: bool = False) -> float:
    """`value` as a finite number of seconds > 0 (>= 0 with `zero_ok`). Raises ValueError naming `key`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 <= value if zero_ok else 0 < value) or not math.isfinite(value):
        raise ValueError(f"{key}={value!r} must be a {'' if zero_ok else 'positive '}finite number of seconds")
    return float(value)


def flag(key: str, value: object) -> bool:
    """`value` if it is a bool. Raises ValueError naming `key` for anything else (1, "yes", "false")."""
    if not isinstance(value, bool):
        raise ValueError(f"{key}={value!r} must be true or false")
    return value


def check_choice(key: str, value: object, choices: Collection[str]) -> str:
    """`value` if it is one of `choices`. Raises ValueError naming `key` and the valid choices."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{key} {value!r} is not one of {', '.join(choices)}")
    return value


def parse_options(parser: argparse.ArgumentParser, args: Sequence[str]) -> argparse.Namespace:
    """argparse, but bad arguments raise PacerUserError (one line naming the first culprit, exit 2)
    instead of printing the usage and exiting."""
    def refuse(message: str) -> NoReturn:
        raise PacerUserError(f"{parser.prog}: {message} (see {parser.prog} --help)")

    known = parser._option_string_actions  # noqa: SLF001 - argparse keeps no public list of its options
    if unknown := [a for a in args if a.startswith("-") and a.split("=", 1)[0] not in known and not re.fullmatch(r"-\d+(\.\d*)?", a)]:
        refuse(f"unknown option {unknown[0]}")
    parser.error = refuse  # type: ignore[method-assign]
    return parser.parse_args(list(args))


def folder_argument(text: str) -> Path:
    """An output folder option's value (an argparse `type=`); an empty one (which would write
    into the current folder) is refused with argparse.ArgumentTypeError."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path names no folder")
    return Path(text)
