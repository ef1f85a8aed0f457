"""Set values in a YAML config file without rewriting it: every other line, comment and key
order stays as it was. For the block-style files under configs/ (two-space indents), which
calibration writes its targets into and the default-point study a submission's `default:` and
`provenance:` blocks; the result is checked by reloading it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from harness.core.store import atomic_write


def set_values(path: Path, block: Sequence[str], values: Mapping[str, object]) -> None:
    """Set `values` in the mapping at the key path `block` of the YAML file `path` ([]: the top
    level), replacing each key's lines where it is (a comment on those lines goes with them) and
    appending the keys it lacks at the end of the block. The file is replaced atomically, so a
    reader sees the old or the new text.

    Raises KeyError when `block` is not in the file, ValueError when the edit would change
    anything besides `values` (the file is then left unchanged)."""
    atomic_write(path, set_in_text(path.read_text(), block, values))


def set_in_text(text: str, block: Sequence[str], values: Mapping[str, object]) -> str:
    """`text` with `values` set in the mapping at `block` (see `set_values`). A value that is a
    mapping replaces the key's whole block (comments inside it go too) with one written in block
    style; a string stays on one line, however long.

    Raises KeyError when `block` is not in `text`, ValueError when the edit would change
    anything besides `values`."""
    lines = text.splitlines()
    for key, value in values.items():
        lines = _set_key(lines, block, key, yaml.safe_dump({key: value}, sort_keys=False, width=math.inf).splitlines())
    new_text = "\n".join(lines) + "\n"
    _check_edit(yaml.safe_load(text), yaml.safe_load(new_text), block, values)
    return new_text


def _block_range(lines: list[str], block: Sequence[str]) -> tuple[int, int, int]:
    """(first line, end line, indent) of the mapping at `block` (top level for [])."""
    start, end, indent = 0, len(lines), 0
    for name in block:
        found = _key_line(lines, start, end, indent, name)
        if found is None:
            raise KeyError(f"no {'.'.join(block)} in the YAML text")
        start, indent = found + 1, indent + 2
        end = next((i for i in range(start, end) if lines[i].strip() and not lines[i].lstrip().startswith("#") and _indent(lines[i]) < indent), end)
    return start, end, indent


def _key_line(lines: list[str], start: int, end: int, indent: int, key: str) -> int | None:
    return next((i for i in range(start, end) if _indent(lines[i]) == indent and lines[i].strip().startswith(f"{key}:")), None)


def _set_key(lines: list[str], block: Sequence[str], key: str, dumped: list[str]) -> list[str]:
    """Replace (or append) `key` and its nested lines in `block` with `dumped`."""
    start, end, indent = _block_range(lines, block)
    new = [" " * indent + line for line in dumped]
    at = _key_line(lines, start, end, indent, key)
    if at is None:
        last = max((i for i in range(start, end) if lines[i].strip()), default=start - 1)
        return lines[:last + 1] + new + lines[last + 1:]
    stop = next((i for i in range(at + 1, end) if lines[i].strip() and _indent(lines[i]) <= indent), end)
    return lines[:at] + new + lines[stop:]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _check_edit(before: dict, after: dict, block: Sequence[str], values: Mapping[str, object]) -> None:
    """Raises ValueError unless `after` is `before` with `values` set at `block`."""
    expected = yaml.safe_load(yaml.safe_dump(before))
    inner = expected
    for name in block:
        inner = inner[name]
    inner.update(yaml.safe_load(yaml.safe_dump(dict(values), sort_keys=False)))
    if after != expected:
        raise ValueError(f"setting {', '.join(values)} in {'.'.join(block) or 'the top level'} would change other keys; text left unchanged")
