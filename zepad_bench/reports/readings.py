"""The README's reading of the published boards: what the quickstart's numbers show, in words whose
conclusions follow from the data (each claim is checked against the noise before it is made), and a
line per other offline suite. Pure functions of :class:`~zepad_bench.reports.data.Board`s."""

from __future__ import annotations

from zepad_bench.reports.claims import (
    at,
    baseline,
    below,
    cold_run,
    eps_of,
    first_task,
    ids,
    listing,
    recomputed_since,
    run_label,
    run_text,
    span,
    stat,
    std_span,
    untested,
    worst,
)
from zepad_bench.reports.curves import ra_auc
from zepad_bench.reports.data import Board
from zepad_bench.reports.flags import flags
from zepad_bench.reports.frame import results_frame
from zepad_bench.statistics import Stat

ZEPAD = "zepad"
"""The paper's defense plugin, whose claims the reading checks."""


def transfer_attacks(board: Board, task: str, eps: float) -> tuple[list[str], list[str]]:
    """(attacks, controls) of the transfer scenarios at ``eps``."""
    rows = [r for r in board.ok if r["task"] == task]
    return (
        ids(rows, "attack", transfer=True, eps=eps, role="attack"),
        ids(rows, "attack", transfer=True, eps=eps, role="control"),
    )


def attacks_work(board: Board, task: str, eps: float) -> str:
    """Whether each transfer attack lowers the undefended RA beyond the equal-budget control's."""
    rows = [r for r in board.ok if r["task"] == task]
    none = baseline(rows)
    attacks, controls = transfer_attacks(board, task, eps)
    if none is None or not attacks or not controls:
        return ""
    ras = {a: stat(rows, "RA", defense=none, attack=a, eps=eps) for a in attacks}
    control = stat(rows, "RA", defense=none, attack=controls[0], eps=eps)
    working = [a for a in attacks if below(ras[a], control)]
    figures = (
        f"RA {span(ras.values())} against {control.text()} % under the equal-budget control `{controls[0]}`"
    )
    if len(working) == len(attacks):
        head = f"**Every transfer attack lowers the undefended RA beyond the noise control's** at {at(eps)}"
    else:
        failing = [f"{a} ({ras[a].text()})" for a in attacks if a not in working]
        head = (
            f"**{len(working)} of {len(attacks)} transfer attacks lower the undefended RA beyond the noise "
            f"control's** at {at(eps)}; not beyond it: {listing(failing)}"
        )
    spread = ""
    if all(s.n > 1 for s in ras.values()):
        pairs = [(a, b) for i, a in enumerate(attacks) for b in attacks[i + 1 :]]
        tied = sum(ras[a].ties(ras[b]) for a, b in pairs)
        spread = (
            f" Single attacks' std across seeds: {std_span(ras.values())} points; {tied} of {len(pairs)} "
            "pairs of attacks are within noise of each other, so one seed would not rank them."
            if tied
            else f" Single attacks' std across seeds: {std_span(ras.values())} points."
        )
    return f"- {head}{untested([*ras.values(), control])}: {figures}.{spread}"


def zero_sacrifice(board: Board, task: str, eps: float) -> str:
    """ZePAD's clean accuracy against the undefended model's (the paper's zero-sacrifice claim)."""
    rows = [r for r in board.ok if r["task"] == task]
    none, zepad = baseline(rows), next(iter(ids(rows, "defense", defense_plugin=ZEPAD)), None)
    if none is None or zepad is None:
        return ""
    ba = {d: stat(rows, "BA", defense=d) for d in ids(rows, "defense")}
    mine, theirs = ba[zepad], ba[none]
    holds = not below(mine, theirs)
    verdict = "holds here" if holds else "does not hold here"
    relation = (
        "above it"
        if mine.mean > theirs.mean and not mine.ties(theirs)
        else "within noise of it"
        if mine.ties(theirs)
        else "above it (one seed: no noise measured)"
        if mine.mean >= theirs.mean
        else "below it beyond the noise"
    )
    best = max((d for d in ba if ba[d].n), key=lambda d: ba[d].mean)
    rank = (
        "the best clean accuracy of all defenses"
        if best == zepad
        else f"within noise of the best, {best}'s {ba[best].text()}"
        if mine.ties(ba[best])
        else f"below the best, {best}'s {ba[best].text()}"
    )
    attacks, _ = transfer_attacks(board, task, eps)
    ras = [stat(rows, "RA", defense=zepad, attack=a, eps=eps) for a in attacks]
    return (
        f"- **ZePAD's zero-sacrifice claim {verdict}**: BA {mine.text()} against {theirs.text()} undefended "
        f"({relation}), {rank}; its transfer RA at {at(eps)} is {span(ras)}."
    )


def best_per_attack(board: Board, task: str, eps: float) -> str:
    """Which defense has the highest transfer RA against each attack, and what BA the others pay."""
    rows = [r for r in board.ok if r["task"] == task]
    none = baseline(rows)
    attacks, _ = transfer_attacks(board, task, eps)
    defenses = [d for d in ids(rows, "defense") if d != none]
    if not attacks or not defenses:
        return ""
    best: dict[str, list[str]] = {}
    compared: list[Stat] = []
    for attack in attacks:
        ras = {d: stat(rows, "RA", defense=d, attack=attack, eps=eps) for d in defenses}
        compared += ras.values()
        top = max((d for d in ras if ras[d].n), key=lambda d: ras[d].mean)
        tied = [d for d in ras if d != top and ras[d].ties(ras[top])]
        best.setdefault(top, []).append(attack + (f" (≈ {listing(tied)})" if tied else ""))
    parts = [f"{d} against {listing(a)}" for d, a in best.items()]
    line = (
        f"- **Highest transfer RA per attack** at {at(eps)} (≈: within noise of it){untested(compared)}: "
        f"{'; '.join(parts)}."
    )
    if none is None:
        return line
    ba = {d: stat(rows, "BA", defense=d) for d in [none, *defenses]}
    paying = {d: ba[none].mean - ba[d].mean for d in defenses if below(ba[d], ba[none])}
    if paying:
        costs = ", ".join(f"{d} {cost:.1f}" for d, cost in paying.items())
        most = max(paying, key=paying.get)
        line += f" BA below the undefended {ba[none].text()} beyond the noise (points lost): {costs}" + (
            f" ({most} the most)." if len(paying) > 1 else "."
        )
    else:
        line += " No defense's BA is below the undefended one's beyond the noise."
    return line


def worst_cases(board: Board, task: str) -> str:
    """Each defense's worst attack (lowest RA over every attack and ε), and whether ranking by transfer
    RA alone would order the defenses as the worst case does."""
    rows = [r for r in board.ok if r["task"] == task and r["config"].get("attack_role", "attack") == "attack"]
    defenses = ids(rows, "defense")
    if not defenses:
        return ""
    lowest = {}
    for defense in defenses:
        cells = {(r["attack"], r["scenario"], r["eps"]) for r in rows if r["defense"] == defense}
        stats = {c: stat(rows, "RA", defense=defense, attack=c[0], scenario=c[1], eps=c[2]) for c in cells}
        lowest[defense] = min((c for c in stats if stats[c].n), key=lambda c: stats[c].mean)
    scenarios = {c[1] for c in lowest.values()}
    if len(scenarios) == 1:
        (scenario,) = scenarios
        worst_eps = sorted({c[2] for c in lowest.values()})
        transfer_eps = eps_of(rows, transfer=True)
        line = f"- **The worst case is the {scenario} scenario for every defense**"
        if transfer_eps and max(worst_eps) < min(transfer_eps):
            line += (
                f", although it runs at {listing([at(e) for e in worst_eps])} and the transfer attacks at "
                f"{listing([at(e) for e in transfer_eps])}"
            )
        line += "."
    else:
        parts = [f"{d}: {c[0]} [{c[1]}, {at(c[2])}]" for d, c in lowest.items()]
        line = f"- **Each defense's worst attack** (lowest RA): {'; '.join(parts)}."
    transfer = {d: worst(rows, "RA", defense=d, transfer=True) for d in defenses}
    overall = {d: worst(rows, "RA", defense=d) for d in defenses}
    by_transfer = sorted((d for d in defenses if transfer[d].n), key=lambda d: -transfer[d].mean)
    by_worst = sorted((d for d in defenses if overall[d].n), key=lambda d: -overall[d].mean)
    if by_transfer and by_transfer != by_worst:
        line += (
            f" Ranked by worst transfer RA alone the order is {', '.join(by_transfer)}; by the worst case "
            f"over every attack it is {', '.join(by_worst)}."
        )
    elif by_transfer:
        line += f" Worst transfer RA alone ranks the defenses in the same order ({', '.join(by_worst)})."
    return line


def defense_aware(board: Board, task: str) -> str:
    """Whether each defense-aware attack beats the noise control (else it is no evidence of robustness)."""
    rows = [r for r in board.ok if r["task"] == task]
    lines = []
    for attack in ids(rows, "attack", scenario="defense-aware", role="attack"):
        for eps in eps_of(rows, attack=attack):
            controls = ids(rows, "attack", eps=eps, role="control")
            if not controls:
                continue
            defenses = ids(rows, "defense", attack=attack, eps=eps)
            weak = [
                d
                for d in defenses
                if not below(
                    stat(rows, "RA", defense=d, attack=attack, eps=eps),
                    stat(rows, "RA", defense=d, attack=controls[0], eps=eps),
                )
            ]
            flagged = [
                f
                for f in flags(results_frame(rows))
                if f["attack"] == attack and f["kind"] == "above-control"
            ]
            note = f" (sanity flags: above-control ×{len(flagged)})" if flagged else ""
            if len(weak) == len(defenses):
                lines.append(
                    f"- **The defense-aware `{attack}` does not beat the noise control** at {at(eps)}: its "
                    f"RA is within noise of or above `{controls[0]}`'s for every defense{note}; it is no "
                    "evidence of robustness."
                )
            else:
                lines.append(
                    f"- The defense-aware `{attack}` lowers RA beyond the noise control's at {at(eps)} for "
                    f"{len(defenses) - len(weak)} of {len(defenses)} defenses"
                    + (f"; not for {listing(weak)}" if weak else "")
                    + f"{note}."
                )
    return "\n".join(lines)


def detection(board: Board) -> str:
    """The paper's confidence gap against the Jensen–Shannon score on ZePAD's detection task."""
    task = first_task(board, "detection")
    if task is None:
        return ""
    rows = [r for r in board.ok if r["task"] == task]
    zepad = next(iter(ids(rows, "defense", defense_plugin=ZEPAD)), None)
    if zepad is None:
        return ""
    mine = [r for r in rows if r["defense"] == zepad]
    transfer = ids(mine, "attack", transfer=True, role="attack")
    others = ids(mine, "attack", transfer=False, role="attack")
    controls = ids(mine, "attack", role="control")

    def of(metric: str, attacks: list[str]) -> dict[str, Stat]:
        return {a: stat(mine, metric, attack=a) for a in attacks}

    gap, js = of("AUROC:gap", transfer), of("AUROC:js", transfer)
    if not any(s.n for s in gap.values()) or not any(s.n for s in js.values()):
        return ""
    better = [a for a in transfer if below(gap[a], js[a])]
    verdict_note = untested([*gap.values(), *js.values()])
    verdict = (
        "separates every transfer DAE better than the gap"
        if len(better) == len(transfer)
        else f"separates {len(better)} of {len(transfer)} transfer DAEs better than the gap"
    )
    line = (
        f"- **DAE detection** (`{task}`, ZePAD): the paper's confidence gap has AUROC {span(gap.values())} "
        f"(50 % is chance) and held-out accuracy {span(of('accuracy:gap', transfer).values())} on the "
        f"transfer DAEs; the Jensen–Shannon divergence between the MPAE and BMP predictions {verdict}"
        f"{verdict_note}: AUROC "
        f"{span(js.values())}, held-out accuracy {span(of('accuracy:js', transfer).values())}."
    )
    if controls:
        line += f" On the noise control its accuracy is {span(of('accuracy:js', controls).values())}"
        line += (
            f", on the {listing(others)} attacks {span(of('accuracy:js', others).values())}."
            if others
            else "."
        )
    return line


def quickstart_reading(board: Board | None) -> str:
    """The README's bullets on the quickstart board (classification unless said otherwise)."""
    if board is None:
        return ""
    task = first_task(board, "classification")
    if task is None:
        return "The board has no classification task to read."
    rows = [r for r in board.ok if r["task"] == task]
    lines = []
    for eps in eps_of(rows, transfer=True):
        lines += [
            attacks_work(board, task, eps),
            zero_sacrifice(board, task, eps),
            best_per_attack(board, task, eps),
        ]
    lines += [worst_cases(board, task), defense_aware(board, task), detection(board)]
    return "\n".join(line for line in lines if line)


def seed_spread(board: Board | None) -> str:
    """The largest std across seeds of a BA/RA/ASR entry on the board (inline)."""
    if board is None:
        return "(no published quickstart board yet)"
    stats = []
    for task in ids(board.ok, "task"):
        rows = [r for r in board.ok if r["task"] == task]
        for defense in ids(rows, "defense"):
            stats.append(stat(rows, "BA", defense=defense))
            for attack, scenario, eps in {(r["attack"], r["scenario"], r["eps"]) for r in rows}:
                for metric in ("RA", "ASR"):
                    stats.append(
                        stat(rows, metric, defense=defense, attack=attack, scenario=scenario, eps=eps)
                    )
    stds = [s.std for s in stats if s.n > 1]
    return f"up to {max(stds):.1f} points" if stds else "by an unmeasured amount (one seed)"


def cold_time(board: Board | None) -> str:
    """The published board's cold run (inline): wall time and machine."""
    run = cold_run(board) if board else None
    return run_text(run) + recomputed_since(board, run) if run else "time not recorded on the published board"


def suite_lines(boards: dict[str, Board | None]) -> str:
    """One line per offline suite: what it is, seeds and cells, its cold run, its board; the adaptive
    sweep's RA AUC per defense."""
    lines = []
    for name, board in boards.items():
        if board is None:
            lines.append(
                f"- `{name}`: not yet run (`zepad-bench run suites/{name}.toml --out leaderboard` "
                "publishes it)."
            )
            continue
        seeds = sorted({r["seed"] for r in board.rows})
        run = cold_run(board)
        line = (
            f"- `{name}`" + (f" ({board.description})" if board.description else "") + f": {len(board.rows)} "
            f"cells, seeds {', '.join(map(str, seeds))}"
            + (f"; {run_label(run)} {run_text(run)}{recomputed_since(board, run)}" if run else "")
            + f"; `leaderboard/{name}.md`."
        )
        line += adaptive_summary(board) + adaptive_tasks_summary(board)
        lines.append(line)
    return "\n".join(lines)


def adaptive_summary(board: Board) -> str:
    """RA AUC of the adaptive scenario per defense on the classification task (where the suite sweeps
    ε), and the adaptive RA at the largest ε."""
    task = first_task(board, "classification")
    rows = [r for r in board.ok if r["task"] == task]
    auc = ra_auc(results_frame(rows)) if rows else None
    if auc is None or auc.empty or not (auc["eps_max"] > auc["eps_min"]).any():
        return ""
    auc = auc[auc["eps_max"] > auc["eps_min"]].sort_values("RA AUC", ascending=False)
    areas = ", ".join(f"{d} {a:.1f}" for d, a in zip(auc["defense"], auc["RA AUC"]))
    low, top = float(auc["eps_min"].min()), float(auc["eps_max"].max())
    at_top = [stat(rows, "RA", defense=d, scenario="adaptive", eps=top) for d in auc["defense"]]
    return (
        f" Adaptive RA AUC on `{task}` (the mean RA over {at(low)} to {at(top)[2:]}): {areas}; adaptive RA "
        f"at {at(top)}: {span(at_top, digits=2)}."
    )


def adaptive_tasks_summary(board: Board) -> str:
    """Retrieval's adaptive RA against its lowest transfer RA at the same ε (per defense and seed), and
    the adaptive attack's undetected success against each detector."""
    parts = []
    task = first_task(board, "retrieval")
    rows = [r for r in board.ok if r["task"] == task]
    budgets = sorted({r["eps"] for r in rows if r["scenario"] == "adaptive"})
    pairs, above = 0, []
    for eps in budgets:
        for defense in ids(rows, "defense"):
            for seed in sorted({r["seed"] for r in rows}):
                mine = worst(rows, "RA", defense=defense, scenario="adaptive", eps=eps, seed=seed)
                theirs = worst(rows, "RA", defense=defense, transfer=True, role="attack", eps=eps, seed=seed)
                if mine.n and theirs.n:
                    pairs += 1
                    if mine.mean > theirs.mean:
                        above.append(f"{defense} seed {seed} at {at(eps)}")
    if pairs:
        verdict = (
            f"at or below its lowest transfer RA at the same ε in all {pairs} defense × seed × ε pairs"
            if not above
            else f"above its lowest transfer RA for {listing(above)} ({len(above)} of {pairs} pairs)"
        )
        parts.append(f" Retrieval's adaptive RA is {verdict}.")
    task = first_task(board, "detection")
    rows = [r for r in board.ok if r["task"] == task and r["scenario"] == "adaptive"]
    found = [
        f"{defense} {stat(rows, 'undetected_success', defense=defense, eps=eps).text()} % at {at(eps)}"
        for defense in ids(rows, "defense")
        for eps in sorted({r["eps"] for r in rows})
        if stat(rows, "undetected_success", defense=defense, eps=eps).n
    ]
    if found:
        parts.append(f" Adaptive attacker's undetected success against the detector: {', '.join(found)}.")
    return "".join(parts)
