"""benchmarks/README.md's figures (and the README's and docs' mentions of them), rendered from the
scripts' records (:mod:`zepad_bench.bench_record`; ``benchmarks/results/<name>.json``). Each figure is
shown with its machine, date and commit; a record transcribed from a past run's printed output says so.
Pure functions of the records (``None`` while a record is absent)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Record = Mapping[str, Any] | None

COMMANDS = {
    "suite_timing-quickstart": "python benchmarks/suite_timing.py suites/quickstart.toml",
    "attacks_cost-cpu": "python benchmarks/attacks_cost.py",
    "pretrain_throughput-cpu": "python benchmarks/pretrain_throughput.py --device cpu",
    "install_size": "python benchmarks/install_size.py",
    "gpu-cpu-default": "python benchmarks/gpu.py --device cpu",
    "gpu-cuda-paper": "python benchmarks/gpu.py --paper --device cuda --repeats 30",
    "independent_attack-quickstart": (
        "python benchmarks/independent_attack.py suites/quickstart.toml --workdir WD"
    ),
    "adaptive_cost-quickstart": "python benchmarks/adaptive_cost.py suites/quickstart.toml --workdir WD",
}
"""The command that writes each record the docs cite."""


def missing(name: str) -> str:
    return f"no record yet: `{COMMANDS[name]}` writes `benchmarks/results/{name}.json`"


def provenance(record: Mapping[str, Any]) -> str:
    """Where, when and how a record was made: ``measured … on …`` or ``transcribed …``."""
    machine = record.get("machine", {})
    where = machine.get("gpu") or f"{machine.get('cpus', '?')} CPUs ({machine.get('platform', '?')})"
    load = machine.get("load")
    extra = [f"torch {machine['torch']}"] if machine.get("torch") else []
    extra += [f"{machine['threads']} threads"] if machine.get("threads") else []
    extra += [f"load average {load[0]:g} at the end"] if load else []
    commit = record.get("commit") or "unknown"
    commit = commit[:12] + (" with uncommitted changes" if commit.endswith("+dirty") else "")
    how = (
        "transcribed from the printed output of"
        if record.get("provenance") == "transcribed"
        else "measured by"
    )
    return (
        f"{how} `{record['command']}` on {record['date'][:10]}, {where}"
        + (f", {', '.join(extra)}" if extra else "")
        + f", commit {commit}"
    )


def _f(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _timing_row(f: Mapping[str, Any]) -> tuple[str, str]:
    cold, warm = f["cold"], f["warm"]
    return f"`suite_timing.py` on `{f['suite']}`", (
        f"cold {_f(cold['wall_s'])} s wall ({_f(cold['cpu_percent'], 0)} % CPU, peak memory "
        f"{_f(cold['peak_rss_mib'], 0)} MiB), cached re-run {_f(warm['wall_s'])} s "
        f"({_f(f['ratio'], 0)}× faster)"
    )


def _cost_row(f: Mapping[str, Any]) -> tuple[str, str]:
    pgd, s = f["pgd"], f["settings"]
    art = ", ".join(
        f"ART {_f(v['ms'])} ms at batch {b} ({v['ms'] / pgd['ours_ms']:.1f}×)"
        for b, v in pgd["art_ms"].items()
    )
    fits = ", ".join(f"{a} {_f(v['fit_s'])} s" for a, v in f["attacks"].items())
    what = (
        f"`attacks_cost.py`: PGD-{pgd['steps']} per image ({s['arch']}, {s['size']} px); fit time per attack "
        "at its light settings"
    )
    return what, f"ours {_f(pgd['ours_ms'])} ms; {art}; fits: {fits}"


def _throughput_row(f: Mapping[str, Any]) -> tuple[str, str]:
    s = f["settings"]
    rates = ", ".join(f"{m} {_f(v['train_images_per_s'])}" for m, v in f["methods"].items())
    what = (
        f"`pretrain_throughput.py`: {s['arch']} {s['image_size']}×{s['image_size']} training, batch "
        f"{s['batch_size']}, {s['steps']} timed steps, images/s"
    )
    return what, rates


ROWS = {
    "suite_timing-quickstart": ("`suite_timing.py` on `suites/quickstart.toml`", _timing_row),
    "attacks_cost-cpu": ("`attacks_cost.py`", _cost_row),
    "pretrain_throughput-cpu": ("`pretrain_throughput.py`", _throughput_row),
    "install_size": ("`install_size.py`", lambda f: ("`install_size.py`", install_text(f))),
}
"""The CPU records of benchmarks/README.md's table: name → (label while absent, row from its figures)."""


def recorded_figures(records: Mapping[str, Record]) -> str:
    """The table of CPU figures: one line per record (or how to make it)."""
    lines = ["| what | figures | how, where and when |", "|---|---|---|"]
    for name, (label, row) in ROWS.items():
        record = records.get(name)
        if record:
            what, figures = row(record["figures"])
            lines.append(f"| {what} | {figures} | {provenance(record)} |")
        else:
            lines.append(f"| {label} | — | {missing(name)} |")
    return "\n".join(lines)


def timing_text(record: Record) -> str:
    """The quickstart timed from outside (``suite_timing.py``): cold and cached wall time, CPU, memory."""
    if not record:
        return f"Timed from outside: {missing('suite_timing-quickstart')}."
    f = record["figures"]
    return (
        f"Timed from outside, publishing included: cold {_f(f['cold']['wall_s'])} s wall "
        f"({_f(f['cold']['cpu_percent'], 0)} % CPU, peak memory {_f(f['cold']['peak_rss_mib'], 0)} MiB), "
        f"cached re-run {_f(f['warm']['wall_s'])} s; {provenance(record)}."
    )


def install_text(f: Mapping[str, Any]) -> str:
    """The install size from ``install_size.py``'s figures."""
    size = f["bytes"]
    return (
        f"{size['total'] / 1e9:.1f} GB for torch {f['versions']['torch']} with torchvision, triton and the "
        f"CUDA runtime wheels, of which {size['nvidia-*'] / 1e9:.1f} GB `nvidia-*`"
    )


def install_inline(record: Record) -> str:
    """The README's install line (inline)."""
    if not record:
        return missing("install_size")
    return f"{install_text(record['figures'])}; {provenance(record)}"


def _paths(figures: Mapping[str, Any], precision: str) -> dict[str, Mapping[str, Any]]:
    return {r["path"]: r for r in figures.get("inference", []) if r["precision"] == precision}


def gpu_tables(record: Record, name: str) -> str:
    """``gpu.py``'s three parts as tables, with the record's provenance."""
    if not record:
        return missing(name)
    f = record["figures"]
    s = f["settings"]
    how = provenance(record)
    lines = [
        f"{how[0].upper()}{how[1:]}; {s['arch']} at {s['size']}×{s['size']}, batch {s['batch']}, "
        f"{s['repeats']} timed batches. {record.get('note', '')}".strip(),
        "",
    ]
    if f.get("inference"):
        lines += [
            "| precision | path | ms per batch | peak MiB | time vs none | memory vs none |",
            "|---|---|---|---|---|---|",
        ]
        for r in f["inference"]:
            lines.append(
                f"| {r['precision']} | {r['path']} | {_f(r['ms'])} | {_f(r['peak_mib'], 0)} | "
                f"{_f(r['time_vs_none'], 2, '×')} | {_f(r['memory_vs_none'], 2, '×')} |"
            )
        lines.append("")
    rows = []
    if f.get("tuning"):
        t = f["tuning"]
        rows.append(
            f"| ZePAD MPAE adversarial tuning, one epoch of {t['fp32']['images']} images, images/s | "
            f"{_f(t['fp32']['images_per_s'])} | {_f(t['bf16']['images_per_s'])} |"
        )
    if f.get("cell"):
        c = f["cell"]

        def cell(p: str) -> str:
            parts = ", ".join(f"{k} {_f(v)}" for k, v in c[p]["timings"].items())
            return f"{_f(c[p]['wall_s'])} ({parts}); BA {_f(c[p]['BA'])}, RA {_f(c[p]['RA'])}"

        rows.append(
            f"| one cell (digits {s['per_class']}/class, SSL victim + auxiliary {s['epochs']} epoch(s), "
            f"UAPGD, ZePAD, classification), wall s | {cell('fp32')} | {cell('bf16')} |"
        )
    if rows:
        lines += ["| figure | fp32 | bf16 |", "|---|---|---|", *rows]
    missing_parts = [p for p in ("inference", "tuning", "cell") if not f.get(p)]
    if missing_parts:
        lines += ["", f"Not in this record: {', '.join(missing_parts)}."]
    return "\n".join(lines)


def speed_reading(record: Record, name: str = "gpu-cuda-paper") -> str:
    """What a ``gpu.py`` record says about ZePAD's inference paths and bf16, in words its figures support."""
    if not record:
        return missing(name)
    f = record["figures"]
    fp32 = _paths(f, "fp32")
    sequential, streams, stacked = (
        fp32.get(p) for p in ("ZePAD, sequential", "ZePAD, CUDA streams", "ZePAD, stacked (vmap)")
    )
    lines = []
    if sequential and streams:
        saving = 100 * (1 - streams["ms"] / sequential["ms"])
        memory = streams.get("memory_vs_none")
        lines.append(
            f"- **ZePAD inference (fp32)**: {sequential['time_vs_none']:.2f}× the undefended time with its "
            f"branches one after another, {streams['time_vs_none']:.2f}× on CUDA streams (streams save "
            f"{saving:.0f} % of the sequential time); peak memory {_f(memory, 2, '×')} the undefended one. "
            "The paper's Table S6 reports 1.32× on an RTX 4090."
        )
    if stacked and streams:
        slower = stacked["ms"] > streams["ms"]
        lines.append(
            f"- **Stacked weights with `vmap`**: {stacked['time_vs_none']:.2f}× the undefended time and "
            f"{_f(stacked.get('memory_vs_none'), 2, '×')} its memory: "
            + ("slower than CUDA streams here." if slower else "faster than CUDA streams here.")
        )
    bf16 = _paths(f, "bf16")
    if fp32.get("none") and bf16.get("none"):
        speedups = [f"inference {fp32['none']['ms'] / bf16['none']['ms']:.2f}×"]
        if f.get("tuning"):
            t = f["tuning"]
            speedups.append(
                f"adversarial tuning {t['bf16']['images_per_s'] / t['fp32']['images_per_s']:.2f}×"
            )
        if f.get("cell"):
            c = f["cell"]
            speedups.append(f"one cell {c['fp32']['wall_s'] / c['bf16']['wall_s']:.2f}×")
            speedups.append(
                f"that cell's RA {_f(c['bf16']['RA'])} (bf16) against {_f(c['fp32']['RA'])} (fp32), one seed"
            )
        lines.append(f"- **bf16 autocast against fp32**: {', '.join(speedups)}.")
    return "\n".join(lines)


def gpu_inline(record: Record) -> str:
    """The README's mention of the GPU figures (inline)."""
    if not record:
        return missing("gpu-cuda-paper")
    streams = _paths(record["figures"], "fp32").get("ZePAD, CUDA streams")
    if not streams:
        return "the record has no inference figures"
    return (
        f"ZePAD inference on CUDA streams {streams['time_vs_none']:.2f}× the undefended time, memory "
        f"{_f(streams.get('memory_vs_none'), 2, '×')}; {provenance(record)}"
    )


GEN_AF_VARIANTS = {
    "gen_af_head-corrected-logits-lambda20": (
        "L_f on head logits (the authors' choice), λ = 20",
        "--seeds 0 1",
    ),
    "gen_af_head-corrected-logits-lambda0": ("λ = 0 (CE on PGD examples only)", "--lambda-f 0 --seeds 0 1"),
    "gen_af_head-corrected-features-lambda20": (
        "**L_f on encoder features** (our default), λ = 20",
        "--lf-on features --seeds 0 1",
    ),
}
"""The stage-I variants docs/fidelity.md compares: record name → (label, ``gen_af_head.py`` options)."""


def gen_af_table(records: Mapping[str, Record]) -> str:
    """Gen-AF stage I per variant and seed: joint-head BA, kNN-10 on the tuned encoder, the share of the
    top class and the logits' participation ratio (top-2 principal components' share)."""
    lines = [
        "| stage I variant | seed | BA (joint head) | kNN-10 | top class % | logits PR (top-2 PCs %) |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for name, (label, options) in GEN_AF_VARIANTS.items():
        record = records.get(name)
        if not record:
            lines.append(
                f"| {label} | — | no record yet: `python benchmarks/gen_af_head.py {options}` | | | |"
            )
            continue
        for seed, r in record["figures"]["seeds"].items():
            lines.append(
                f"| {label} | {seed} | {_f(r['BA'])} | {_f(r['kNN-10'])} | {_f(r['top class %'])} | "
                f"{_f(r['logit PR'], 2)} ({_f(r['top-2 PC %'])}) |"
            )
        notes.append(f"- {label}: {provenance(record)}")
    return "\n".join([*lines, "", *notes]) if notes else "\n".join(lines)


TOLERANCE = 3.0
"""Issue 17's criterion: an independent attack may find a robust accuracy at most this many points
below the board's adaptive RA, for every defense and seed."""


def _cell(r: Mapping[str, Any]) -> str:
    """Where a figure of ``independent_attack.py``'s record comes from: defense, task, seed (and ε)."""
    eps = f", {r['eps'] * 255:g}/255" if "eps" in r else ""
    return f"{r['defense']} ({r['task']}, seed {r['seed']}{eps})"


def _shortfall(rows: list[Mapping[str, Any]]) -> str:
    """Whether the independent RA stays within :data:`TOLERANCE` points below the board's, and the gap."""
    if not rows:
        return "No classification cell in this record: the criterion cannot be judged from it."
    gap = lambda r: r["board_RA"] - r["independent_RA"]  # noqa: E731
    worst = max(rows, key=gap)
    largest = (
        f"largest gap {gap(worst):.1f} points: {_cell(worst)}"
        if gap(worst) > 0
        else "the independent attack never finds a lower RA than the board's"
    )
    beyond = [r for r in rows if gap(r) > TOLERANCE]
    if not beyond:
        return (
            f"**Issue 17's criterion holds** in this record: for no defense and seed is the independent RA "
            f"more than {TOLERANCE:g} points below the board's adaptive RA ({largest})."
        )
    cells = ", ".join(f"{_cell(r)} by {gap(r):.1f} points" for r in beyond)
    return (
        f"**Issue 17's criterion fails** in this record: the independent RA is more than {TOLERANCE:g} "
        f"points below the board's adaptive RA for {cells}; {largest}."
    )


def _retrieval_reading(rows: list[Mapping[str, Any]]) -> str:
    """Whether retrieval's adaptive RA is at or below its lowest transfer RA for every defense and seed."""
    if not rows:
        return "Retrieval: no defense and seed with both an adaptive and a transfer RA in this record."
    above = [r for r in rows if r["adaptive_RA"] > r["lowest_transfer_RA"]]
    if not above:
        return (
            "Retrieval: the adaptive RA is at or below the lowest transfer RA for every defense and seed "
            f"({len(rows)} of {len(rows)})."
        )
    cells = ", ".join(f"{_cell(r)}: {_f(r['adaptive_RA'])} vs {_f(r['lowest_transfer_RA'])}" for r in above)
    return f"Retrieval: the adaptive RA is **above** the lowest transfer RA for {cells}."


def independent_check(record: Record, name: str = "independent_attack-quickstart") -> str:
    """``independent_attack.py``'s record: the board's adaptive RA beside the independent attack's per
    defense and seed, whether issue 17's criterion holds, and retrieval's adaptive vs transfer RA."""
    if not record:
        return missing(name)
    f = record["figures"]
    s, rows = f["settings"], f["classification"]
    how = provenance(record)
    lines = [
        f"{how[0].upper()}{how[1:]}, in {_f(f['seconds'], 0)} s. PGD (step {s['step']:g}·ε) on "
        f"cross-entropy with {s['restarts']} restarts, then a targeted margin against the top-{s['targets']} "
        f"other classes, {s['steps']} steps each, per-sample worst case, on the images the board's "
        f"adaptive attack attacked (`{f['suite']}`). Δ = independent − board: below zero, the "
        "independent attack finds the defense less robust than the board does.",
        "",
        "| defense | task | seed | ε | n | board adaptive RA | independent RA | Δ |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['defense']} | {r['task']} | {r['seed']} | {r['eps'] * 255:g}/255 | {r['n']} | "
            f"{_f(r['board_RA'])} | {_f(r['independent_RA'])} | "
            f"{r['delta']:+.1f} |"
            for r in rows
        ),
        "",
        _shortfall(rows),
        "",
        "| defense | task | seed | retrieval adaptive RA | lowest transfer RA |",
        "|---|---|---|---|---|",
        *(
            f"| {r['defense']} | {r['task']} | {r['seed']} | {_f(r['adaptive_RA'])} | "
            f"{_f(r['lowest_transfer_RA'])} |"
            for r in f["retrieval"]
        ),
        "",
        _retrieval_reading(f["retrieval"]),
    ]
    return "\n".join(lines)


def adaptive_cost_table(record: Record, name: str = "adaptive_cost-quickstart") -> str:
    """``adaptive_cost.py``'s record: per adaptive cell its n, RA, CPU and wall seconds."""
    if not record:
        return missing(name)
    f = record["figures"]
    how = provenance(record)
    return "\n".join(
        [
            f"{how[0].upper()}{how[1:]}; `{f['suite']}`, {f['threads']} torch thread(s), the adaptive "
            "stage recomputed and every other stage from the cache.",
            "",
            "| defense | task | seed | n | RA | cell CPU s | cell wall s | adaptive stage wall s |",
            "|---|---|---|---|---|---|---|---|",
            *(
                f"| {r['defense']} | {r['task']} | {r['seed']} | {_f(r['n'], 0)} | {_f(r['RA'])} | "
                f"{_f(r['cpu_s'])} | {_f(r['wall_s'])} | {_f(r['stage_wall_s'])} |"
                for r in f["cells"]
            ),
            "",
            f"Total cell CPU time: {_f(f['total_cpu_s'])} s.",
        ]
    )
