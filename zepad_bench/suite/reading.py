"""Reading a suite file: UTF-8 TOML → tables; anything unreadable is one error naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib

from zepad_bench.errors import SuiteError, UserError


def read_toml(path: Path) -> dict[str, Any]:
    """The suite file as TOML tables; unreadable, binary or non-UTF-8 input is one ``UserError``."""
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a suite file (give a .toml file)")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such suite file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the suite file: {exc.strerror or exc}") from None
    if b"\0" in data:
        raise SuiteError(path, "", "not a text file (binary content); a suite is a UTF-8 TOML file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(
            path, "", f"not UTF-8 text (byte {exc.start}); save the suite as UTF-8 TOML"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(path, "", f"TOML syntax error: {exc}") from None
