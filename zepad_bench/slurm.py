"""Slurm: the job body, job states that never hang, and a throttled scheduler that turns a failed job
into failed cells instead of ending the run (what each job asks for: :mod:`zepad_bench.slurm_resources`).

A run's work is its pending stages in dependency order: every encoder to pretrain, every attack fit
and defense tuning (each one job), then the cells (a few per job), each submitted as soon as the
stages it reads are made, never more than ``max_jobs`` at once.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zepad_bench.errors import CellFailed, UserError

CELLS_PER_JOB = 4
FINISHED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "REVOKED",
    "SPECIAL_EXIT",
}
"""Slurm states of an ended job; one that ended without writing its result has failed."""
COMMAND_TIMEOUT_S = 30
"""Longest wait for one ``sacct``/``squeue``/``scancel`` call."""
LOST_AFTER_S = 120
"""A job that neither ``sacct`` nor ``squeue`` lists and that wrote no result is lost after this long."""
UNREACHABLE_AFTER_S = 600
"""Slurm answering neither ``sacct`` nor ``squeue`` for this long ends the run (jobs are left as they are)."""


# ------------------------------------------------------------------------------------------ job body
def job_body(
    suite_path: str,
    axes: dict[str, str | None],
    workdir: str,
    device: str | None,
    force,
    since: str,
    phase: str,
    items: list,
) -> dict[str, Any]:
    """What one Slurm job runs: load the suite anew and make ``phase``'s stage for each of ``items``
    (encoders: ``(id, seed)``; else indices into the suite's cells). A failing item is reported (its
    traceback goes to the job's log) and the others go on. torch uses the job's CPUs."""
    import platform

    import torch

    from zepad_bench.loading import load_with_axes
    from zepad_bench.runner import Runner
    from zepad_bench.stage_cache import one_line

    started = time.time()
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
    suite = load_with_axes(suite_path, axes)
    runner = Runner(suite, suite.registry, workdir, device, force, since=since)
    cells = suite.cells()
    make = {"attack": runner.attack, "defense": runner.defense, "cell": runner.run_cell}
    failed = []
    for position, item in enumerate(items):
        try:
            if phase == "encoder":
                runner.encoder(*item)
            else:
                make[phase](cells[item])
        except Exception as exc:
            traceback.print_exc()
            reason = " ".join(str(exc).split()) if isinstance(exc, CellFailed) else one_line(exc)
            failed.append((position, reason, getattr(exc, "stage", None)))
    return {
        "failed": failed,
        "done": [[kind, key, seconds] for (kind, key), seconds in runner.done.items()],
        "threads": torch.get_num_threads(),
        "host": platform.node(),
        "started": started,
        "ended": time.time(),
    }


# ------------------------------------------------------------------------------------------ job states
def _command(args: list[str]) -> str | None:
    """stdout of a Slurm command, or ``None`` when it fails or does not answer in time."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _parse_states(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        job, _, state = line.strip().partition("|")
        if job and state:
            out[job] = state.split()[0].rstrip("+")  # "CANCELLED by 0" → CANCELLED
    return out


def job_states(ids: list[str]) -> dict[str, str] | None:
    """Each job's Slurm state: from accounting (``sacct``), and for the jobs it does not list (no
    slurmdbd, or not recorded yet) from ``squeue``, which keeps ended jobs for ``MinJobAge``. Jobs
    neither lists are absent; ``None`` when neither command answers."""
    states: dict[str, str] = {}
    accounting = _command(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(ids)])
    if accounting is not None:
        states = _parse_states(accounting)
    if set(ids) <= set(states):
        return states
    queue = _command(["squeue", "-h", "-t", "all", "-o", "%i|%T", "-u", getpass.getuser()])
    if queue is None:
        return states if accounting is not None else None
    return {**{k: v for k, v in _parse_states(queue).items() if k in ids}, **states}


def cancel(ids: list[str]) -> None:
    if ids:
        _command(["scancel", *ids])


# ------------------------------------------------------------------------------------------ scheduling
@dataclass(eq=False)
class Work:
    """One stage to make (``phase`` encoder, attack or defense) or one cell to run (``cell``)."""

    phase: str
    label: str
    item: Any  # the job body's item: an encoder's (id, seed), or a cell index
    key: str  # the stage's (the cell's) key
    needs: set[str] = field(default_factory=set)  # keys of other work of this run it reads
    cells: list[int] = field(default_factory=list)  # the cells that read it (a cell: itself)


@dataclass(eq=False)
class _Job:
    job: Any  # a submitit job
    phase: str
    work: list[Work]
    read: bool = False  # its result was read (it still holds its slot until Slurm says it ended)
    ended: float | None = None  # when Slurm first said it ended
    unlisted: float | None = None  # since when no Slurm command lists it

    @property
    def id(self) -> str:
        return str(self.job.job_id)

    @property
    def log(self) -> Path:
        return Path(self.job.paths.stderr)


@dataclass
class Outcome:
    """What a scheduled run left: the jobs' reports, failures per cell, the lines told to the user."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    failed_cells: dict[int, tuple[str, str]] = field(default_factory=dict)  # cell → (reason, stage)
    lines: list[str] = field(default_factory=list)
    jobs: int = 0


class Scheduler:
    """Submits ``work`` in dependency order, at most ``max_jobs`` jobs in Slurm's queue at once (a job
    holds its slot until Slurm says it ended); polls result files every second and Slurm every ``poll``
    seconds (:func:`job_states`, each call bounded); ``say`` tells each
    submission, ``tell`` each failure (one line). A job that ends
    without a result, or an item that fails inside a job, fails its work and every work that reads it;
    with ``on_failure="cancel"`` the run's other jobs are cancelled and the rest is not submitted."""

    def __init__(
        self,
        work: list[Work],
        submit: Callable[[str, list], Any],
        max_jobs: int,
        on_failure: str,
        poll: float,
        say: Callable[[str], None],
        tell: Callable[[str], None],
    ):
        self.waiting, self.submit, self.max_jobs = list(work), submit, max_jobs
        self.on_failure, self.poll, self.say, self.tell = on_failure, poll, say, tell
        self.produced = {w.key for w in work}
        self.made: set[str] = set()
        self.broken: dict[str, tuple[str, str]] = {}  # key → why it was not made, and the stage that failed
        self.running: list[_Job] = []
        self.outcome = Outcome()
        self.stopped = False

    def run(self) -> Outcome:
        last_poll, unreachable_since = 0.0, None
        while self.waiting or self.running:
            self._skip_broken()
            if not self.stopped:
                self._submit_ready()
            if not self.running:
                for w in list(self.waiting):  # reads work neither made nor broken: cannot happen
                    self._fail_work(w, "its inputs were never made", _stage(w))
                break
            time.sleep(1.0)
            for job in [j for j in self.running if not j.read and Path(j.job.paths.result_pickle).exists()]:
                self._read(job)
            if self.running and time.monotonic() - last_poll >= self.poll:
                last_poll = time.monotonic()
                states = job_states([j.id for j in self.running])
                if states is None:
                    unreachable_since = unreachable_since or time.monotonic()
                    if time.monotonic() - unreachable_since > UNREACHABLE_AFTER_S:
                        self._give_up()
                    continue
                unreachable_since = None
                self._check(states)
        return self.outcome

    # -- submission
    def _ready(self, w: Work) -> bool:
        return w.needs & self.produced <= self.made

    def _skip_broken(self) -> None:
        for w in [w for w in self.waiting if w.needs & set(self.broken)]:
            self.waiting.remove(w)
            self._fail_work(w, *self.broken[next(k for k in w.needs if k in self.broken)])

    def _submit_ready(self) -> None:
        while len(self.running) < self.max_jobs:
            ready = [w for w in self.waiting if self._ready(w)]
            if not ready:
                return
            phase = ready[0].phase
            batch = [w for w in ready if w.phase == phase][: CELLS_PER_JOB if phase == "cell" else 1]
            for w in batch:
                self.waiting.remove(w)
            try:
                job = self.submit(batch[0].phase, [w.item for w in batch])
            except Exception as exc:  # sbatch refused it: the same request would be refused again
                self._cancel_running()
                detail = " ".join(str(exc).split())[-300:]
                raise UserError(f"Slurm refused a {batch[0].phase} job: {detail}") from None
            self.running.append(_Job(job, batch[0].phase, batch))
            self.outcome.jobs += 1
            self.say(f"submitted {batch[0].phase} job {job.job_id}: {_labels(batch)}")

    # -- completion
    def _check(self, states: dict[str, str]) -> None:
        now = time.monotonic()
        for job in list(self.running):
            state = states.get(job.id)
            if not job.read and Path(job.job.paths.result_pickle).exists():
                self._read(job)
            if job not in self.running:  # failed, or cancelled after another's failure
                continue
            if job.read:
                if state is None or state in FINISHED:  # its slot is free
                    self.running.remove(job)
            elif state in FINISHED:
                job.ended = job.ended or now
                # a job writes its result before it ends: give a shared filesystem a moment to show it
                if state != "COMPLETED" or now - job.ended > 3 * self.poll:
                    self._finished(job, state)
            elif state is None:
                job.unlisted = job.unlisted or now
                if now - job.unlisted > max(LOST_AFTER_S, 3 * self.poll):
                    self._finished(job, "LOST (listed by neither sacct nor squeue, no result file)")
            else:
                job.unlisted = None

    def _read(self, job: _Job) -> None:
        """The job wrote its result: its work is made, or failed item by item (or all of it, when an
        error escaped the job body)."""
        from submitit.core.utils import pickle_load

        job.read = True
        outcome, value = pickle_load(job.job.paths.result_pickle)
        if outcome != "success":
            self._finished(job, f"FAILED ({str(value).strip().splitlines()[-1]})")
            return
        self.outcome.reports.append(value)
        failed = {position: (reason, stage) for position, reason, stage in value["failed"]}
        for position, w in enumerate(job.work):
            if position in failed:
                reason, stage = failed[position]
                self._tell(f"{w.phase} {w.label} failed in job {job.id}: {reason}; log: {job.log}")
                self._fail_work(w, f"{reason} (job {job.id}, log: {job.log})", stage or _stage(w))
            else:
                self.made.add(w.key)

    def _finished(self, job: _Job, state: str) -> None:
        """The job ended without a result (``state`` says how): its work fails."""
        if job not in self.running:  # cancelled meanwhile (--on-failure cancel)
            return
        self.running.remove(job)
        self._tell(f"{job.phase} job {job.id} {state}: {_labels(job.work)}; log: {job.log}")
        for w in job.work:
            reason = f"{_stage(w)} {w.label}: job {job.id} {state.split(' (')[0]} (log: {job.log})"
            self._fail_work(w, reason, _stage(w))

    def _fail_work(self, w: Work, reason: str, stage: str) -> None:
        self.broken[w.key] = (reason, stage)
        for cell in w.cells:
            self.outcome.failed_cells.setdefault(cell, (reason, stage))
        if self.on_failure == "cancel" and not self.stopped:
            self.stopped = True
            others = [j.id for j in self.running if not j.read]
            self._cancel_running()
            self.waiting.clear()
            if others:
                self._tell(
                    f"cancelled {len(others)} other job(s) ({', '.join(others)}) after the first failure "
                    "(--on-failure cancel); their cells stay pending"
                )

    def _tell(self, line: str) -> None:
        self.outcome.lines.append(line)
        self.tell(line)

    def _cancel_running(self) -> None:
        cancel([j.id for j in self.running if not j.read])
        self.running.clear()

    def _give_up(self) -> None:
        """Slurm stopped answering: the cells of the jobs in flight and of the work not submitted yet
        fail (a re-run computes them); the jobs are left as they are."""
        reason = f"Slurm did not answer for {UNREACHABLE_AFTER_S}s"
        for job in [j for j in self.running if not j.read]:
            line = f"{job.phase} job {job.id}: state unknown, {reason}: {_labels(job.work)}; log: {job.log}"
            self._tell(line)
            for w in job.work:
                self._fail_work(w, f"job {job.id} in an unknown state ({reason})", _stage(w))
        for w in list(self.waiting):
            self._fail_work(w, f"not submitted ({reason})", _stage(w))
        self.running.clear()
        self.waiting.clear()


def _stage(w: Work) -> str:
    """The stage kind a work makes (a cell is its task stage)."""
    return "task" if w.phase == "cell" else w.phase


def _labels(work: list[Work]) -> str:
    return work[0].label + (f" and {len(work) - 1} more" if len(work) > 1 else "")
