"""A board's files: ``<suite>.md``, ``.csv`` (one line per cell and seed), ``.json`` (the data, docs/
results.md), ``.html`` (the same board as one self-contained web page) and its figures, written side
by side with ordinary file permissions."""

from __future__ import annotations

from pathlib import Path

from zepad_bench.cache import atomic_write_bytes
from zepad_bench.reports.data import Board, to_json
from zepad_bench.reports.figures import confidence_figure, detection_figure, robustness_figure
from zepad_bench.reports.frame import results_frame
from zepad_bench.reports.html import render_html
from zepad_bench.reports.markdown import render
from zepad_bench.reports.sections import declared_figures


def publish(board: Board, out_dir: str | Path, data: bool = True) -> list[Path]:
    """Write the board into ``out_dir`` (absolute paths returned: markdown first); ``data=False`` leaves
    an existing ``<suite>.json`` alone (rendering from that very file)."""
    out = Path(out_dir).resolve()
    frame = results_frame(board.rows, board.pending)
    paths = [out / f"{board.name}.md", out / f"{board.name}.csv"]
    atomic_write_bytes(paths[0], render(board).encode())
    atomic_write_bytes(paths[1], frame.to_csv(index=False).encode())
    if data:
        paths.append(out / f"{board.name}.json")
        atomic_write_bytes(paths[-1], to_json(board))
    curves = robustness_figure(frame[frame["status"] == "ok"], out / f"{board.name}-ra-vs-eps.png")
    figures = [
        confidence_figure(board.ok, out / f"{board.name}-confidence.png"),
        detection_figure(board.ok, out / f"{board.name}-detection.png"),
        *declared_figures(board, out),
    ]
    figures = [f for f in figures if f]
    paths.append(out / f"{board.name}.html")  # its RA-vs-ε curves are drawn in the page itself
    atomic_write_bytes(paths[-1], render_html(board, {f.name: f.read_bytes() for f in figures}).encode())
    return paths + figures + ([curves] if curves else [])
