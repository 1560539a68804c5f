"""Sections a suite asks its board for: ``[suite] reports = ["deviations", …]``, stored in the board
JSON's suite section, so a board shows them whoever renders it (by the declaration in the data, never
by the suite's name).

Each section is a pure function of the board's finished rows: a markdown block and, for some, a
figure written beside the board.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zepad_bench.reports.data import Board
from zepad_bench.reports.deviations import deviations_markdown
from zepad_bench.reports.tuning_sweep import sweep_figure, sweep_markdown

Rows = Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class Section:
    title: str
    intro: str
    markdown: Callable[[Rows], str]
    figure: Callable[[Rows, Path], Path | None] | None = None


SECTIONS = {
    "deviations": Section(
        "One deviation at a time",
        "Each protocol deviation alone: every table that departs from a protocol preset in the parameters "
        "it sets beyond it, beside that preset (`zepad_bench.reports.deviations`).",
        deviations_markdown,
    ),
    "tuning-sweep": Section(
        "ZePAD's tuning ε against a fixed attack ε",
        "Per attack and tuning ε: fused and per-branch RA, each branch's confidence on clean → attacked "
        "images and the detectors' AUROC (`zepad_bench.reports.tuning_sweep`); figure: "
        "`{name}-tuning-sweep.png`.",
        sweep_markdown,
        sweep_figure,
    ),
}
"""Section name (as a suite declares it) → how to render it."""


def declared(board: Board) -> list[tuple[str, str, list[str]]]:
    """``(name, title, markdown lines)`` of every section ``board`` declares, in the declared order."""
    out = []
    for name in board.reports:
        section = SECTIONS.get(name)
        if section is None:
            known = ", ".join(SECTIONS)
            out.append((name, name, [f"A section this zepad-bench does not know (it knows {known})."]))
            continue
        lines = [section.intro.format(name=board.name), "", section.markdown(board.ok)]
        out.append((name, section.title, lines))
    return out


def declared_lines(board: Board) -> list[str]:
    """The declared sections as markdown, each under its ``##`` title."""
    return [line for _, title, lines in declared(board) for line in (f"## {title}", "", *lines, "")]


def declared_figures(board: Board, out: Path) -> list[Path]:
    """The figures of the declared sections, written into ``out`` (those with something to draw)."""
    paths = []
    for name in board.reports:
        draw = SECTIONS[name].figure if name in SECTIONS else None
        path = draw(board.ok, out / f"{board.name}-{name}.png") if draw else None
        if path:
            paths.append(path)
    return paths
