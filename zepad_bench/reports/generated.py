"""Every generated block of the project's documents: its name, the published data it reads and the
function that renders it (:mod:`zepad_bench.reports.blocks`). ``zepad-bench docs`` rewrites them all;
the tests check that none differs from what its data produce."""

from __future__ import annotations

from pathlib import Path

from zepad_bench.errors import UserError
from zepad_bench.reports import bench_docs, fidelity_docs, readings
from zepad_bench.reports.blocks import Block, Sources, board_path, documents, record_path, regenerate
from zepad_bench.reports.readme import readme_block

OFFLINE_SUITES = (
    "fidelity_offline",
    "cross_task_offline",
    "white_box_offline",
    "retrieval_offline",
    "adaptive_offline",
    "adaptive_tasks_offline",
    "fidelity_attacks_offline",
    "protocol_ablation_offline",
    "detection_sweep_offline",
)
"""The offline suites the README lists beside the quickstart."""


def _board(name: str, render, inline: bool = False, block: str | None = None) -> Block:
    """A block made from one suite's published board."""
    return Block(block or name, (board_path(name),), lambda s: render(s.board(name)), inline)


def _quickstart(board) -> str:
    return readme_block(board) if board else fidelity_docs.not_run("quickstart")


def _records(names: tuple[str, ...], render, block: str, inline: bool = False) -> Block:
    """A block made from benchmark records."""
    return Block(
        block, tuple(record_path(n) for n in names), lambda s: render({n: s.record(n) for n in names}), inline
    )


def _offline(sources: Sources) -> str:
    return readings.suite_lines({name: sources.board(name) for name in OFFLINE_SUITES})


def _record(name: str, render, block: str, inline: bool = False) -> Block:
    """A block made from one benchmark record."""
    return Block(block, (record_path(name),), lambda s: render(s.record(name)), inline)


BLOCKS = {
    block.name: block
    for block in (
        # README.md
        _board("quickstart", _quickstart, block="quickstart-board"),
        _board("quickstart", readings.quickstart_reading, block="quickstart-reading"),
        _board("quickstart", readings.cold_time, inline=True, block="quickstart-cold-run"),
        _board("quickstart", readings.seed_spread, inline=True, block="quickstart-seed-spread"),
        Block("offline-suites", tuple(board_path(n) for n in OFFLINE_SUITES), _offline),
        _record("install_size", bench_docs.install_inline, "install-size", inline=True),
        _record("gpu-cuda-paper", bench_docs.gpu_inline, "gpu-inline", inline=True),
        _record("suite_timing-quickstart", bench_docs.timing_text, "quickstart-timing"),
        # docs/fidelity.md
        _board("fidelity_offline", fidelity_docs.protocols_side_by_side),
        _board("protocol_ablation_offline", fidelity_docs.deviations_alone, block="deviations"),
        _board("detection_sweep_offline", fidelity_docs.tuning_sweep, block="tuning-sweep"),
        _board("fidelity_attacks_offline", fidelity_docs.attack_effects, block="attack-effects"),
        _board("fidelity_attacks_offline", fidelity_docs.attack_variants, block="attack-variants"),
        _board("fidelity_attacks_offline", fidelity_docs.detection_effect, block="detection-effect"),
        _board("fidelity_attacks_offline", fidelity_docs.detection_scores, block="detection-scores"),
        _board("fidelity_attacks_offline", fidelity_docs.why_gap_fails, block="detection-why"),
        _board("fidelity_attacks_offline", fidelity_docs.other_scores, block="detection-scores-reading"),
        _board("cross_task_offline", fidelity_docs.branches_across_tasks, block="cross-task-branches"),
        _records(tuple(bench_docs.GEN_AF_VARIANTS), bench_docs.gen_af_table, "gen-af-head"),
        # benchmarks/README.md
        _records(tuple(bench_docs.ROWS), bench_docs.recorded_figures, "benchmark-figures"),
        _record("gpu-cpu-default", lambda r: bench_docs.gpu_tables(r, "gpu-cpu-default"), "gpu-cpu"),
        _record(
            "gpu-cpu-default", lambda r: bench_docs.speed_reading(r, "gpu-cpu-default"), "gpu-cpu-reading"
        ),
        _record("gpu-cuda-paper", lambda r: bench_docs.gpu_tables(r, "gpu-cuda-paper"), "gpu-cuda"),
        _record("gpu-cuda-paper", bench_docs.speed_reading, "gpu-cuda-reading"),
        _record("independent_attack-quickstart", bench_docs.independent_check, "independent-attack"),
        _record("adaptive_cost-quickstart", bench_docs.adaptive_cost_table, "adaptive-cost"),
    )
}
"""Block name → block."""


def update_documents(
    root: str | Path, files: list[Path] | None = None, write: bool = True
) -> dict[Path, list[str]]:
    """Render every generated block of ``files`` (default: the project's documents below ``root``) from
    the data below ``root``; with ``write`` rewrite the files that change. Returns each file's changed
    blocks (only files with some). A bad marker is a one-line :class:`UserError` naming the file."""
    sources = Sources(root)
    changed = {}
    for path in files if files is not None else documents(root):
        text = path.read_text(encoding="utf-8")
        try:
            new, names = regenerate(text, BLOCKS, sources)
        except ValueError as exc:
            raise UserError(f"{path}: {exc}") from None
        if names:
            changed[path] = names
            if write:
                path.write_text(new, encoding="utf-8")
    return changed
