"""Every figure of the documents comes from published data through a generated block: the blocks are
what their data produce (drift fails), no result figure stands outside them (README.md, docs/*.md,
benchmarks/README.md) or in a suite's comments, and the generated words conclude only what the
numbers support."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zepad_bench.reports.blocks import Block, Sources, block_names, documents, outside_blocks, regenerate
from zepad_bench.reports.generated import BLOCKS, update_documents

ROOT = Path(__file__).resolve().parents[1]

# --- what counts as a result figure -------------------------------------------------------------
# Prose is a document with its generated blocks, fenced and indented code, code spans, HTML comments
# and link targets cut out, read clause by clause (a clause ends at . ; : ! ? or a table cell's |).
# In prose a *result figure* is
#   - a number with a unit of measurement: %, × (a ratio, not a dimension such as 64×64 nor a product
#     2 × 6), points, s, ms, min(utes), h(ours), GB, MiB, nats, images/s (a range a–b counts once);
#   - a number written with a spread or a change: next to ± or →, or compared with "vs";
#   - any other decimal, unless its clause names a setting (ε, λ, α, step, lr, threshold, =, <, >, ≤,
#     ≥).
# Never a result figure: a budget in 255ths (16/255, 3.8/255) or in ε (0.4ε), scientific notation
# (1e-5), a version (torch 1.9, 2.14.1), a section, table or equation number (§4.1.1, Sec. 5.4), an
# argument of a call (Dropout(0.2), int(20 %)), a threshold or goal written with a comparison
# (≥ 90 %), and the exceptions below, each a constant of a paper or of the code.
UNITS = r"%|×(?!\s?\d|[A-Za-z])|points?\b|s\b|ms\b|min\b|minutes?\b|h\b|hours?\b|GB\b|MiB\b|nats\b|images/s\b"
NUMBER = r"\d+(?:[.,]\d+)*"
FIGURE = re.compile(rf"(?P<range>{NUMBER}\s?[–-]\s?)?(?P<number>{NUMBER})(?P<unit>\s?(?:{UNITS}))?")
SETTING = re.compile(r"ε|λ|α|\bstep|\blr\b|threshold|[=<>≤≥]")
ALLOWED = {
    "1.32×": "the paper's Table S6 ratio (ZePAD's inference time over the undefended model's)",
}
"""Figures allowed in prose: ``figure`` → why it is no result of ours."""

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INDENTED = re.compile(r"^(?: {4}|\t).*$", re.M)
CODE = re.compile(r"`[^`\n]*`")
COMMENT = re.compile(r"<!--.*?-->", re.S)
LINK = re.compile(r"\]\([^)]*\)")
VERSION = re.compile(r"(?:torch|python|torchvision|cuda|version|v|§|Sec\.|Table|Fig\.|Eq\.)\s?$", re.I)


def prose(text: str) -> str:
    text = outside_blocks(text)
    for pattern in (FENCE, COMMENT, CODE, LINK, INDENTED):
        text = pattern.sub(" ", text)
    return text


def clauses(text: str) -> list[str]:
    """Paragraphs joined into lines, then cut at clause ends (a decimal point does not end one)."""
    joined = re.sub(r"(?<!\n)\n(?!\n)", " ", text)
    return [c for c in re.split(r"[.;:!?](?!\s?\d)|\||\n\n+", joined) if c.strip()]


def result_figures(text: str) -> list[str]:
    """The result figures of ``text`` (markdown), by the rule above."""
    found = []
    for clause in clauses(prose(text)):
        for m in FIGURE.finditer(clause):
            before, after = clause[: m.start()], clause[m.end() :]
            figure = m.group(0).strip()
            if re.search(r"[\w./^§-]$", before) or re.match(r"[\w/ε]|\.\d|e-|·", after):
                continue  # part of a word, path, version, fraction, budget or formula
            versioned = VERSION.search(before) or m.group("number").count(".") > 1
            if versioned or re.search(r"[<>≤≥]\s?$|\w\($", before) or figure in ALLOWED:
                continue
            spread = re.search(r"(±|→|vs\.?)\s?$", before) or re.match(r"\s?(±|→|vs\b)", after)
            decimal = "." in m.group("number")
            if m.group("unit") or spread or (decimal and not SETTING.search(before)):
                found.append(f"{figure!r} in “{clause.strip()[:100]}”")
    return found


def suite_comments(text: str) -> str:
    """A suite file's comments (whole-line and trailing), as markdown-like prose, one paragraph each."""
    lines = []
    for line in text.splitlines():
        if "#" in line:
            comment = (
                line.split("#", 1)[1].strip() if not line.lstrip().startswith("#") else line.lstrip("# ")
            )
            lines.append(comment)
        else:
            lines.append("")
    return "\n".join(lines)


# --- the mechanism --------------------------------------------------------------------------------


def toy_blocks(tmp_path: Path) -> tuple[dict[str, Block], Sources]:
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "toy.json").write_text(json.dumps({"figure": 4.5}))
    record = "benchmarks/results/toy.json"

    def render(s: Sources) -> str:
        r = s.record("toy")
        return f"figure {r['figure']}" if r else "no record yet"

    blocks = {
        "toy": Block("toy", (record,), render),
        "toy-inline": Block("toy-inline", (record,), render, inline=True),
    }
    return blocks, Sources(tmp_path)


def test_a_block_is_rendered_between_its_markers_which_name_its_sources(tmp_path):
    blocks, sources = toy_blocks(tmp_path)
    text = (
        "intro `<!-- generated: quoted -->` stays\n"
        "<!-- generated: toy (old) -->\nSTALE 9.9\n<!-- /generated: toy -->\n"
        "a sentence with <!-- generated: toy-inline -->x<!-- /generated: toy-inline --> inside.\n"
    )
    new, changed = regenerate(text, blocks, sources)
    assert changed == ["toy", "toy-inline"] and "STALE" not in new
    assert (
        "<!-- generated: toy (benchmarks/results/toy.json) -->\nfigure 4.5\n<!-- /generated: toy -->" in new
    )
    assert "with <!-- generated: toy-inline (benchmarks/results/toy.json) -->figure 4.5<!-- /generated" in new
    assert new.startswith("intro `<!-- generated: quoted -->` stays\n")  # a quoted marker is no block
    assert regenerate(new, blocks, sources) == (new, [])  # current: nothing changes
    assert block_names(new) == ["toy", "toy-inline"] and "figure" not in outside_blocks(new)
    with pytest.raises(ValueError, match="unknown generated block 'nope'"):
        regenerate("<!-- generated: nope -->\n<!-- /generated: nope -->", blocks, sources)
    with pytest.raises(ValueError, match="no end marker"):
        regenerate("<!-- generated: toy -->\ntext", blocks, sources)


def test_a_block_of_absent_data_says_so_until_the_data_appear(tmp_path):
    """The drift check accepts "not yet run" only while the board is absent."""
    doc = tmp_path / "README.md"
    doc.write_text("<!-- generated: fidelity_offline -->\n<!-- /generated: fidelity_offline -->\n")
    assert update_documents(tmp_path) == {doc: ["fidelity_offline"]}
    assert "Not yet run" in doc.read_text() and update_documents(tmp_path, write=False) == {}
    (tmp_path / "leaderboard").mkdir()
    shutil.copy(ROOT / "leaderboard" / "fidelity_offline.json", tmp_path / "leaderboard")
    assert update_documents(tmp_path, write=False) == {doc: ["fidelity_offline"]}  # drifted now
    update_documents(tmp_path)
    assert "Not yet run" not in doc.read_text() and "| gen-af |" in doc.read_text()


def test_docs_check_fails_on_a_stale_block_and_docs_rewrites_it(tmp_path):
    doc = tmp_path / "docs" / "page.md"
    doc.parent.mkdir()
    doc.write_text("<!-- generated: deviations -->\nold\n<!-- /generated: deviations -->\n")
    run = [sys.executable, "-m", "zepad_bench.cli", "docs", "--root", str(tmp_path)]
    stale = subprocess.run([*run, "--check"], capture_output=True, text=True, timeout=120)
    assert stale.returncode == 2 and "page.md: deviations" in stale.stderr and "Traceback" not in stale.stderr
    assert subprocess.run(run, capture_output=True, text=True, timeout=120).returncode == 0
    assert "Not yet run" in doc.read_text()
    assert subprocess.run([*run, "--check"], capture_output=True, text=True, timeout=120).returncode == 0


# --- the project's documents ----------------------------------------------------------------------


def test_every_generated_block_is_what_its_data_produce():
    stale = update_documents(ROOT, write=False)
    assert not stale, f"run `zepad-bench docs`: {stale}"


def test_the_documents_hold_every_block_and_every_block_is_used():
    names = {path.relative_to(ROOT).as_posix(): block_names(path.read_text()) for path in documents(ROOT)}
    assert {"quickstart-board", "quickstart-reading", "offline-suites", "quickstart-cold-run"} <= set(
        names["README.md"]
    )
    assert {"deviations", "fidelity_offline", "tuning-sweep", "attack-effects", "detection-effect"} <= set(
        names["docs/fidelity.md"]
    )
    assert {"benchmark-figures", "gpu-cuda", "independent-attack", "adaptive-cost"} <= set(
        names["benchmarks/README.md"]
    )
    assert {n for found in names.values() for n in found} == set(BLOCKS)


def test_no_result_figure_stands_outside_a_generated_block():
    found = {
        path.relative_to(ROOT).as_posix(): result_figures(path.read_text())
        for path in documents(ROOT)
        if path.name != "parameters.md"  # generated from the plugins' option declarations (test_params)
    }
    assert not {k: v for k, v in found.items() if v}, found


def test_the_figure_rule_catches_typed_results_and_spares_settings():
    typed = [
        "RA 31.5–57.6 % against 83.2 % under the noise control.",
        "BA 97.90 ± 0.43 against 96.60 ± 0.60 undefended.",
        "The mean gap moves from 0.056 (clean) to only 0.106 (attacked).",
        "| digits | none | 90.7 | 31.4 |",
        "cold 172 s, cached re-run 6.6 s (≈26×)",
        "ZePAD inference 2.81× the undefended time; tuned at ε 0.015 RA 50.0 → 95.0.",
    ]
    assert all(result_figures(t) for t in typed), [t for t in typed if not result_figures(t)]
    settings = (
        "Tuned at ε 0.015 (≈ 3.8/255), step 0.004, λ = 20, threshold 0.1; flag at ≥ 90 %; torch 1.9 "
        "and 2.14.1; §4.1.1; 64×64 inputs; within 1e-5; 0.4ε; `RA 12.5 %` in code; the paper's 1.32×."
    )
    assert result_figures(settings) == []


def test_suite_comments_carry_no_result_figures():
    found = {
        path.name: result_figures(suite_comments(path.read_text()))
        for path in sorted((ROOT / "suites").glob("*.toml"))
    }
    assert not {k: v for k, v in found.items() if v}, found


def test_every_suite_is_named_as_its_file():
    """The docs find a suite's published board as leaderboard/<file stem>.json."""
    import tomllib

    for path in sorted((ROOT / "suites").glob("*.toml")):
        assert tomllib.loads(path.read_text())["suite"]["name"] == path.stem, path.name


def test_the_cold_run_reading_names_the_cells_later_runs_recomputed():
    """A board whose cold run was followed by runs that recomputed some cells (their rows replace the
    cold run's) says so beside the cold run's time; a board with no such run does not."""
    from zepad_bench.reports.data import Board
    from zepad_bench.reports.readings import cold_time

    def run(finished: str, kind: str, cells: int, seconds: float) -> dict:
        machine = {"cpus": 2, "device": "cpu"}
        return {
            "finished": finished,
            "kind": kind,
            "cells_computed": cells,
            "seconds": seconds,
            "machine": machine,
        }

    cold = run("2026-01-01T00:10:00", "cold", 450, 1024.0)
    board = Board("quickstart", runs=[cold, run("2026-01-01T01:00:00", "warm", 0, 11.0)])
    assert "recomputed" not in cold_time(board) and cold_time(board).startswith("17 min 4 s on 2 CPUs")
    board.runs.append(run("2026-01-01T02:00:00", "warm", 18, 497.0))
    assert cold_time(board).endswith("; cells recomputed since by later runs: 18 in 8 min 17 s")
    board.runs.append(run("2026-01-01T03:00:00", "forced", 18, 10.0))
    assert cold_time(board).endswith("later runs: 18 in 8 min 17 s; 18 in 10.0 s")
