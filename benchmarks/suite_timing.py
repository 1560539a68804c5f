"""Cold vs cached wall time of a suite, with the cold run's CPU time and peak memory:
``python benchmarks/suite_timing.py SUITE [run options…]``.

Both runs are ``zepad-bench run SUITE`` in a new process on a fresh work directory (the second reuses
the first's cache), timed from outside, publishing included. Writes its record to
``benchmarks/results/suite_timing-<suite>.json`` (benchmarks/README.md is generated from it).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zepad_bench.bench_record import write_record


def timed_run(suite: str, workdir: str, out: str, extra: list[str]) -> dict[str, float]:
    """Wall and CPU seconds of one run, and the peak resident memory of any child process so far (MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "zepad_bench.cli", "run", suite, "--workdir", workdir, "--out", out, "--quiet"]
        + extra,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_percent": 100 * cpu / wall,
        "peak_rss_mib": after.ru_maxrss / 1024,
    }


def main() -> None:
    suite = sys.argv[1] if len(sys.argv) > 1 else "suites/quickstart.toml"
    with tempfile.TemporaryDirectory() as workdir, tempfile.TemporaryDirectory() as out:
        cold = timed_run(suite, workdir, out, sys.argv[2:])
        warm = timed_run(suite, workdir, out, sys.argv[2:])
    ratio = cold["wall_s"] / warm["wall_s"]
    print(f"{suite}: cold {cold['wall_s']:.1f} s, cached re-run {warm['wall_s']:.1f} s, ratio {ratio:.1f}x")
    extra = sys.argv[2:]
    device = extra[extra.index("--device") + 1] if "--device" in extra[:-1] else "auto"
    figures = {
        "suite": suite,
        "cold": cold,
        "warm": {k: warm[k] for k in ("wall_s", "cpu_s")},
        "ratio": ratio,
    }
    suffix = "" if device in ("auto", "cpu") else f"-{device.split(':')[0]}"
    write_record(f"suite_timing-{Path(suite).stem}{suffix}", figures, device=device)


if __name__ == "__main__":
    main()
