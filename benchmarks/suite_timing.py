"""Cold vs cached wall time of a suite: ``python benchmarks/suite_timing.py SUITE [run options…]``."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time


def timed_run(suite: str, workdir: str, out: str, extra: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "zepad_bench.cli",
            "run",
            suite,
            "--workdir",
            workdir,
            "--out",
            out,
            "--quiet",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    suite = sys.argv[1] if len(sys.argv) > 1 else "suites/quickstart.toml"
    with tempfile.TemporaryDirectory() as workdir, tempfile.TemporaryDirectory() as out:
        cold = timed_run(suite, workdir, out, sys.argv[2:])
        warm = timed_run(suite, workdir, out, sys.argv[2:])
    print(f"{suite}: cold {cold:.1f} s, cached re-run {warm:.1f} s, ratio {cold / warm:.1f}x")


if __name__ == "__main__":
    main()
