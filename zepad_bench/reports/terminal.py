"""What a run prints at its end: the summary of the board's first task, sized to the terminal, its
completeness and the absolute paths of its files (the wide tables stay in the board)."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table as RichTable

from zepad_bench.reports.data import Board
from zepad_bench.reports.flags import flags
from zepad_bench.reports.frame import results_frame
from zepad_bench.reports.markdown import entry_text, summaries
from zepad_bench.reports.provenance import status_line
from zepad_bench.statistics import mark_best


def print_summary(board: Board, paths: list[Path], console: Console) -> None:
    frame = results_frame(board.rows, board.pending)
    tables = summaries(board, frame, flags(frame[frame["status"] == "ok"]))
    if tables:
        table = tables[0]
        title = f"{board.name}: {table.task} (mean ± std over seeds; best in bold)"
        shown = RichTable(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
        for header in [
            *table.block_headers,
            "defense",
            *(c.label.replace(" ", "\n", 1) for c in table.columns),
        ]:
            shown.add_column(header, overflow="fold")
        marked = [
            mark_best([r.entries[i].stat for r in table.rows], c.higher_is_better)
            for i, c in enumerate(table.columns)
        ]
        for r, row in enumerate(table.rows):
            cells = [
                e.label if c.notes else _bold(entry_text(e, marked[i][r]))
                for i, (c, e) in enumerate(zip(table.columns, row.entries))
            ]
            shown.add_row(*row.blocks.values(), row.defense, *cells)
        console.print(shown)
        others = [t.task for t in tables[1:]]
        if others:
            console.print(f"other tasks on the board: {', '.join(others)}", highlight=False)
    console.print(status_line(board), highlight=False)
    console.print(f"board: {paths[0]}", highlight=False, soft_wrap=True)
    beside = [p.name if p.parent == paths[0].parent else str(p) for p in paths[1:]]
    console.print(f"also: {', '.join(beside)}", highlight=False, soft_wrap=True)


def _bold(text: str) -> str:
    """Markdown's **bold** as rich markup (entries hold digits, signs and words only)."""
    return text.replace("**", "[bold]", 1).replace("**", "[/bold]", 1) if text.startswith("**") else text
