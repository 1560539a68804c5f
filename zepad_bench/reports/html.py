"""The HTML board of a suite: one self-contained page rendered from its
:class:`~zepad_bench.reports.data.Board` alone, as the markdown board is (no torch, no plugins).

Everything is inline — style and script (``html.css``, ``html.js`` beside this module), figures as
data URIs, RA-vs-ε curves as SVG — so the page fetches nothing. Its tables are the markdown board's
(:mod:`~zepad_bench.reports.tables`, the summary of :mod:`~zepad_bench.reports.ranking`): sortable by
a click on a header, each entry's per-seed values on hover, filtered by task, scenario, ε and defense
(an element carries ``data-filter``, ``{dimension: [values]}``, and is hidden when a dimension has
none of its values selected). The prose — flags, failed and pending cells, glossary, provenance — is
the markdown board's own lines, converted by markdown-it.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable
from html import escape
from importlib.resources import files
from typing import Any

import pandas as pd
from markdown_it import MarkdownIt

from zepad_bench.interfaces import SCENARIOS
from zepad_bench.reports.curves import ra_curves
from zepad_bench.reports.data import Board
from zepad_bench.reports.flags import SETTING, flags
from zepad_bench.reports.frame import eps_text, results_frame
from zepad_bench.reports.glossary import host_lines, legend, metric_lines, threat_model_lines
from zepad_bench.reports.markdown import (
    SUMMARY_INTRO,
    adaptive_logs,
    curve_section,
    entry_text,
    failure_sections,
    flag_section,
    per_dataset_section,
    summaries,
)
from zepad_bench.reports.provenance import noise_note, provenance, status_line, surrogates
from zepad_bench.reports.ranking import GROUPS, holds_up
from zepad_bench.reports.sections import declared
from zepad_bench.reports.tables import WORST, Column, Entry, Table, attacked_tables, clean_table
from zepad_bench.statistics import mark_best

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
"""One colour per defense in the curves (matplotlib's tab10, without its two palest)."""
DIMENSIONS = ("task", "scenario", "eps", "defense")
"""What the page filters by (``data-filter`` keys)."""
_NUMBER = re.compile(r"[≈*\s]*[-+]?\d")
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def _asset(name: str) -> str:
    return files("zepad_bench.reports").joinpath(name).read_text(encoding="utf-8")


def _filter(**dimensions: Iterable[Any]) -> str:
    """The ``data-filter`` attribute of an element shown for these values (JSON: any name is safe)."""
    return f' data-filter="{escape(json.dumps({k: list(v) for k, v in dimensions.items()}))}"'


def markdown_html(lines: list[str]) -> str:
    """Markdown lines as HTML (tables sortable, number cells right-aligned, raw HTML escaped)."""
    tokens = _MARKDOWN.parse("\n".join(lines))
    for token, inline in zip(tokens, tokens[1:]):
        if token.type == "table_open":
            token.attrSet("class", "sortable")
        if token.type in ("th_open", "td_open"):
            token.attrs.pop("style", None)
            if token.type == "td_open" and _NUMBER.match(inline.content):
                token.attrSet("class", "num")
    return _MARKDOWN.renderer.render(tokens, _MARKDOWN.options, {})


def seed_title(entry: Entry) -> str:
    """An entry's hover text: each seed's value, and its failed, pending and outdated seeds."""
    lines = [f"seed {s}: {v:.2f}" for s, v in zip(entry.seeds, entry.stat.values)]
    lines += [f"{entry.failed} seed(s) failed (see Failed cells)"] if entry.failed else []
    lines += [f"{entry.pending} seed(s) pending (no result yet)"] if entry.pending else []
    lines += ["† a stored row is outdated (see Outdated rows)"] if entry.outdated else []
    return "\n".join(lines)


def _column_filter(column: Column) -> dict[str, list[str]]:
    if column.attack is not None:
        return {"scenario": [column.attack.scenario]}
    if column.group:
        return {"scenario": list(dict(GROUPS)[column.group]), "eps": [eps_text(column.eps)]}
    return {}


def _column_title(column: Column) -> str:
    if column.attack is not None:
        a = column.attack
        return f"{a.attack}: plugin {a.plugin}, {a.scenario}" + (" (a control)" if a.control else "")
    if column.group:
        return (
            f"worst RA over the {column.group} attacks at ε {eps_text(column.eps)} per seed, then mean ± std"
        )
    if column.label == WORST:
        return "per seed the worst over every attack of this table (controls excluded), then mean ± std"
    return ""


def _header(column: Column) -> str:
    label = column.label + ("°" if column.attack is not None and column.attack.control else "")
    where = _column_filter(column)
    attrs = _filter(**where) if where else ""
    title = _column_title(column)
    attrs += f' title="{escape(title)}"' if title else ""
    if column.notes:
        return f"<th{attrs}>{escape(label)}</th>"
    return f'<th class="num" data-higher="{int(column.higher_is_better)}"{attrs}>{escape(label)}</th>'


def _cell(column: Column, entry: Entry, marked: str) -> str:
    where = _column_filter(column)
    attrs = _filter(**where) if where else ""
    if column.notes:
        return f'<td class="note"{attrs}>{escape(entry.label)}</td>'
    classes = [] if entry.label and not entry.stat.n else ["num"]
    classes += ["best"] if marked.startswith("**") else []
    if not entry.stat.n and not entry.label:
        classes += ["failed" if entry.failed else "pending" if entry.pending else "none"]
    classes += ["outdated"] if entry.outdated else []
    if entry.stat.n:
        attrs += f' data-sort="{entry.stat.mean!r}"'
    title = seed_title(entry)
    attrs += f' title="{escape(title)}"' if title else ""
    return f'<td class="{" ".join(classes)}"{attrs}>{escape(entry_text(entry, marked.strip("*")))}</td>'


def table_html(table: Table) -> str:
    """A board table: a row per defense (``data-filter`` defense), columns filtered by scenario and
    ε, best per column bold (ties within noise ≈), per-seed values on hover, sortable."""
    marked = [
        mark_best([row.entries[i].stat for row in table.rows], column.higher_is_better)
        for i, column in enumerate(table.columns)
    ]
    head = [f"<th>{escape(h)}</th>" for h in [*table.block_headers, "defense"]]
    head += [_header(c) for c in table.columns]
    body = []
    for r, row in enumerate(table.rows):
        cells = [f"<td>{escape(v)}</td>" for v in [*row.blocks.values(), row.defense]]
        cells += [_cell(c, e, marked[i][r]) for i, (c, e) in enumerate(zip(table.columns, row.entries))]
        body.append(f"<tr{_filter(defense=[row.defense])}>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table class="sortable board"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _table_figure(table: Table) -> str:
    where: dict[str, list[str]] = {"task": [table.task]}
    if table.eps is not None:
        scenarios = dict.fromkeys(c.attack.scenario for c in table.columns if c.attack is not None)
        where.update(eps=[eps_text(table.eps)], scenario=list(scenarios))
    return (
        f'<figure class="table"{_filter(**where)}><figcaption>{escape(table.title)}</figcaption>'
        f"{table_html(table)}</figure>"
    )


def _panel(title: str, part: pd.DataFrame, colours: dict[str, str]) -> str:
    """One RA-vs-ε plot as SVG: ε on a log₂ axis (in /255), RA 0–100 %, a line per defense with
    mean ± std over seeds as error bars; each point names its values on hover."""
    width, height, left, right, top, bottom = 440, 250, 44, 14, 12, 38
    ticks = sorted(float(e) for e in part["eps"].unique())
    lo, hi = math.log2(ticks[0]), math.log2(ticks[-1])

    def x(eps: float) -> float:
        return left + (math.log2(eps) - lo) / (hi - lo) * (width - left - right)

    def y(ra: float) -> float:
        return top + (100 - ra) / 100 * (height - top - bottom)

    middle = 'text-anchor="middle"'
    svg = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    svg.append(f"<title>{escape(title)}</title>")
    for ra in (0, 25, 50, 75, 100):
        svg.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(ra):.1f}" y2="{y(ra):.1f}"/>')
        svg.append(f'<text x="{left - 6}" y="{y(ra) + 4:.1f}" text-anchor="end">{ra}</text>')
    for eps in ticks:
        svg.append(f'<text x="{x(eps):.1f}" y="{height - bottom + 16}" {middle}>{eps * 255:g}</text>')
    svg.append(f'<text x="{(left + width - right) / 2}" y="{height - 4}" {middle}>ε (/255)</text>')
    svg.append(
        f'<text transform="translate(12 {(top + height - bottom) / 2}) rotate(-90)" {middle}>RA (%)</text>'
    )
    for defense, line in part.groupby("defense", sort=False):
        colour = colours[defense]
        line = line.sort_values("eps")
        points = " ".join(f"{x(e):.1f},{y(m):.1f}" for e, m in zip(line["eps"], line["mean"]))
        svg.append(f'<g{_filter(defense=[defense])} stroke="{colour}" fill="{colour}">')
        svg.append(f'<polyline points="{points}" fill="none" stroke-width="1.8"/>')
        for p in line.itertuples():
            spread = f" ± {p.std:.2f}" if p.std == p.std else ""
            seeds = f"{p.seeds} seed{'s' if p.seeds > 1 else ''}"
            if p.std == p.std and p.std > 0:
                svg.append(
                    f'<line x1="{x(p.eps):.1f}" x2="{x(p.eps):.1f}" y1="{y(min(p.mean + p.std, 100)):.1f}" '
                    f'y2="{y(max(p.mean - p.std, 0)):.1f}" stroke-width="1"/>'
                )
            svg.append(
                f'<circle cx="{x(p.eps):.1f}" cy="{y(p.mean):.1f}" r="3.2"><title>{escape(defense)}, '
                f"ε {eps_text(p.eps)}: RA {p.mean:.2f}{spread} ({seeds})</title></circle>"
            )
        svg.append("</g>")
    svg.append("</svg>")
    keys = "".join(
        f'<li{_filter(defense=[d])}><span class="swatch" style="background:{colours[d]}"></span>'
        f"{escape(d)}</li>"
        for d in dict.fromkeys(part["defense"])
    )
    caption = f"<figcaption>{escape(title)}</figcaption>"
    return f'<figure class="curve">{caption}{"".join(svg)}<ul class="keys">{keys}</ul></figure>'


def curve_panels(frame: pd.DataFrame) -> list[str]:
    """RA against ε for every attack that ran at several budgets (any scenario; controls excluded), a
    panel per (victim, D_f, task, D_d, scenario, attack), filtered by task and scenario."""
    if "RA" not in frame:
        return []
    curves = ra_curves(frame[frame["status"] == "ok"], "RA", scenario=None)
    defenses = list(dict.fromkeys(frame["defense"]))
    colours = {d: COLOURS[i % len(COLOURS)] for i, d in enumerate(defenses)}
    order = {s: i for i, s in enumerate(SCENARIOS)}
    keys = [*SETTING, "scenario", "attack"]
    panels = []
    at = keys.index("scenario")
    groups = sorted(curves.groupby(keys, sort=False), key=lambda g: order.get(g[0][at], len(order)))
    for (victim, tuning, task, task_data, scenario, attack), part in groups:
        if part["eps"].nunique() < 2:
            continue
        part = part.sort_values("defense", key=lambda d: d.map(defenses.index), kind="stable")
        title = f"{task}: {attack} [{scenario}] on {task_data} (victim {victim}, D_f {tuning})"
        panels.append(f"<div{_filter(task=[task], scenario=[scenario])}>{_panel(title, part, colours)}</div>")
    return panels


def filter_bar(frame: pd.DataFrame, board: Board) -> str:
    """A checkbox per value of each dimension (all checked)."""
    order = {s: i for i, s in enumerate(SCENARIOS)}
    values = {
        "task": board.task_ids(),
        "scenario": sorted(dict.fromkeys(frame["scenario"]), key=lambda s: order.get(s, len(order))),
        "eps": [eps_text(e) for e in sorted(frame["eps"].unique())],
        "defense": list(dict.fromkeys(frame["defense"])),
    }
    labels = {"task": "task", "scenario": "scenario", "eps": "ε", "defense": "defense"}
    sets = [
        f'<fieldset data-dimension="{dim}"><legend>{labels[dim]}</legend>'
        + "".join(
            f'<label><input type="checkbox" value="{escape(v)}" checked> {escape(v)}</label>'
            for v in values[dim]
        )
        + "</fieldset>"
        for dim in DIMENSIONS
    ]
    return (
        f'<form id="filters">{"".join(sets)}<p class="hint">Click a column header to sort; hover a number '
        "for its per-seed values; unticked values hide their tables, columns, rows and curves.</p></form>"
    )


def _section(anchor: str, title: str, body: list[str], where: str = "") -> list[str]:
    return [f'<section id="{anchor}"{where}><h2>{escape(title)}</h2>', *body, "</section>"]


def _demoted(lines: list[str]) -> list[str]:
    """Markdown sections one level down (``##`` → ``###``), under a section of the page."""
    return [line.replace("## ", "### ", 1) if line.startswith("## ") else line for line in lines]


def _summary(board: Board, frame: pd.DataFrame, found: list[dict[str, Any]]) -> list[str]:
    body = [markdown_html([SUMMARY_INTRO])]
    for table in summaries(board, frame, found):
        body += [f"<div{_filter(task=[table.task])}><h3>{escape(table.task)}</h3>"]
        body += [markdown_html(holds_up(table)), table_html(table), "</div>"]
    return body + [markdown_html([status_line(board), "", noise_note(frame)])]


def _task(board: Board, frame: pd.DataFrame, task: str) -> tuple[str, list[str]]:
    """A task's title and its tables (clean, then one per attacked metric and ε), adaptive logs."""
    part = frame[frame["task"] == task]
    described = board.metrics(task)
    plugin = board.tasks.get(task, {}).get("plugin", "")
    tables = [clean_table(part, task, described), *attacked_tables(part, task, described)]
    body = ['<div class="tables">', *(_table_figure(t) for t in tables if t), "</div>"]
    logs = adaptive_logs(part, task)
    body += [f"<div{_filter(scenario=['adaptive'])}>{markdown_html(logs)}</div>"] if logs else []
    return f"Task {task}" + (f" (plugin {plugin})" if plugin and plugin != task else ""), body


def _glossary(board: Board, frame: pd.DataFrame) -> list[str]:
    body = ["<h3>Threat models</h3>", markdown_html(threat_model_lines(frame, surrogates(board)))]
    body += ["<h3>Columns and marks</h3>", markdown_html([*legend(frame), "", *host_lines()])]
    for task in board.task_ids():
        lines = metric_lines(frame[frame["task"] == task], board.metrics(task))
        body += [f"<div{_filter(task=[task])}><h3>Metrics of {escape(task)}</h3>", markdown_html(lines)]
        body += ["</div>"]
    return body


def _image(name: str, data: bytes) -> str:
    uri = f"data:image/png;base64,{base64.b64encode(data).decode()}"
    return f'<figure><figcaption>{escape(name)}</figcaption><img alt="{escape(name)}" src="{uri}"></figure>'


def render_html(board: Board, figures: dict[str, bytes] | None = None) -> str:
    """The board as one HTML page; ``figures`` (file name → PNG bytes: the board's confidence and
    detection figures) are embedded as data URIs. The same board and figures give the same text."""
    frame = results_frame(board.rows, board.pending)
    found = flags(frame[frame["status"] == "ok"])
    parts = [
        (f"section-{name}", title, [markdown_html(_demoted(lines))]) for name, title, lines in declared(board)
    ]
    parts.append(("summary", "Summary", _summary(board, frame, found)))
    tasks = {}  # section → its data-filter attribute
    for i, task in enumerate(board.task_ids()):
        parts.append((f"task-{i}", *_task(board, frame, task)))
        tasks[f"task-{i}"] = _filter(task=[task])
    panels = curve_panels(frame)
    if panels:
        note = "Mean over seeds of each attack's RA at every budget it ran at; bars: ± std over seeds."
        curves = [f"<p>{note}</p>", '<div class="panels">', *panels, "</div>"]
        parts.append(("curves", "RA against ε", [*curves, markdown_html(_demoted(curve_section(frame)))]))
    if figures:
        parts.append(("figures", "Figures", [_image(name, data) for name, data in figures.items()]))
    for anchor, title, lines in (
        ("flags", "Sanity flags", flag_section(found)),
        ("cells", "Failed, pending and outdated cells", failure_sections(board)),
    ):
        if lines:
            parts.append((anchor, title, [markdown_html(_demoted(lines))]))
    parts.append(("glossary", "Glossary", _glossary(board, frame)))
    parts.append(("provenance", "Provenance", [markdown_html(provenance(board, frame))]))
    if frame["task_data"].nunique() > 1:
        layout = [markdown_html(per_dataset_section(board, frame))]
        parts.append(("per-dataset", "Per downstream dataset (paper Tables 3–4 layout)", layout))
    if board.reference:
        parts.append(("reference", "Beside the paper", [markdown_html(board.reference)]))
    links = " ".join(f'<a href="#{anchor}">{escape(title)}</a>' for anchor, title, _ in parts)
    description = [f"<p>{escape(board.description)}</p>"] if board.description else []
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>Leaderboard: {escape(board.name)}</title>",
            f"<style>\n{_asset('html.css')}</style></head><body>",
            f"<h1>Leaderboard: {escape(board.name)}</h1>",
            *description,
            f"<nav>{links}</nav>",
            filter_bar(frame, board),
            *(line for a, title, body in parts for line in _section(a, title, body, tasks.get(a, ""))),
            f"<script>\n{_asset('html.js')}</script>",
            "</body></html>",
            "",
        ]
    )
