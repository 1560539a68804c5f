"""Generated blocks in the project's markdown: every figure a document states comes from stored data.

A block is delimited by two markers naming it and its sources (paths below the project root)::

    <!-- generated: NAME (leaderboard/quickstart.json) -->
    …text rendered from the sources…
    <!-- /generated: NAME -->

or inline, within a sentence: ``<!-- generated: NAME (…) -->text<!-- /generated: NAME -->`` (a marker
in code — fenced, indented or right after a backtick — is quoted, not a block). The text
between the markers (and the sources named in the opening marker) is owned by the block's renderer, a
pure function of published data (board JSONs in ``leaderboard/``, benchmark records in
``benchmarks/results/``) read through :class:`Sources`: no torch, no plugins. ``zepad-bench docs``
rewrites every block; ``zepad-bench docs --check`` (and the tests) fail when one differs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from zepad_bench.reports.data import Board, read_board

START = re.compile(r"(?<!`)<!-- generated: (?P<name>[\w.:-]+)(?: \((?P<sources>[^)]*)\))? -->")
CODE = re.compile(r"^(```|~~~).*?^\1|^(?: {4}|\t)[^\n]*", re.S | re.M)
"""Fenced and indented code, where a marker is quoted, not a block."""
DOCUMENTS = ("README.md", "docs/*.md", "benchmarks/README.md")
"""The documents (globs below the project root) whose blocks ``zepad-bench docs`` keeps current."""
BOARDS = "leaderboard"
RECORDS = "benchmarks/results"


def board_path(suite: str) -> str:
    return f"{BOARDS}/{suite}.json"


def record_path(name: str) -> str:
    return f"{RECORDS}/{name}.json"


class Sources:
    """The published data below a project root, read once each: boards and benchmark records."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.board = cache(self._board)
        self.record = cache(self._record)

    def exists(self, path: str) -> bool:
        return (self.root / path).is_file()

    def _board(self, suite: str) -> Board | None:
        """The published board of ``suite`` (``leaderboard/<suite>.json``), ``None`` while there is none."""
        path = self.root / board_path(suite)
        return read_board(path) if path.is_file() else None

    def _record(self, name: str) -> dict[str, Any] | None:
        """A benchmark script's record (``benchmarks/results/<name>.json``), ``None`` while there is none."""
        path = self.root / record_path(name)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


@dataclass(frozen=True)
class Block:
    """A named block: the data it reads (paths below the root) and how its text is made from them."""

    name: str
    sources: tuple[str, ...]
    render: Callable[[Sources], str]
    inline: bool = False

    def start(self) -> str:
        return f"<!-- generated: {self.name} ({', '.join(self.sources)}) -->"

    def end(self) -> str:
        return f"<!-- /generated: {self.name} -->"

    def text(self, sources: Sources) -> str:
        body = self.render(sources).strip()
        if self.inline:
            if "\n" in body:
                raise ValueError(f"inline block {self.name!r} rendered more than one line")
            return f"{self.start()}{body}{self.end()}"
        return f"{self.start()}\n{body}\n{self.end()}"


def markers(text: str) -> list[re.Match]:
    """The opening markers of ``text`` outside code."""
    code = [m.span() for m in CODE.finditer(text)]
    return [m for m in START.finditer(text) if not any(a <= m.start() < b for a, b in code)]


def regenerate(text: str, blocks: dict[str, Block], sources: Sources) -> tuple[str, list[str]]:
    """``text`` with every generated block rendered afresh, and the names of the blocks that changed.
    A marker without its end, or naming no known block, is a ``ValueError`` naming it."""
    out, changed, position = [], [], 0
    for match in markers(text):
        if match.start() < position:  # a start marker inside a block already replaced
            continue
        name = match["name"]
        if name not in blocks:
            raise ValueError(f"unknown generated block {name!r} (known: {', '.join(sorted(blocks))})")
        block = blocks[name]
        end = text.find(block.end(), match.end())
        if end < 0:
            raise ValueError(f"generated block {name!r} has no end marker '{block.end()}'")
        old = text[match.start() : end + len(block.end())]
        new = block.text(sources)
        if new != old:
            changed.append(name)
        out += [text[position : match.start()], new]
        position = end + len(block.end())
    out.append(text[position:])
    return "".join(out), changed


def block_names(text: str) -> list[str]:
    """The names of the generated blocks in ``text``, in order."""
    return [m["name"] for m in markers(text)]


def documents(root: str | Path) -> list[Path]:
    """The project's documents with generated blocks (:data:`DOCUMENTS`), below ``root``."""
    root = Path(root)
    return sorted({p for pattern in DOCUMENTS for p in root.glob(pattern) if p.is_file()})


def outside_blocks(text: str) -> str:
    """``text`` with every generated block (markers included) cut out."""
    parts, position = [], 0
    for match in markers(text):
        if match.start() < position:
            continue
        end_marker = f"<!-- /generated: {match['name']} -->"
        end = text.find(end_marker, match.end())
        if end < 0:
            break
        parts.append(text[position : match.start()])
        position = end + len(end_marker)
    parts.append(text[position:])
    return "".join(parts)
