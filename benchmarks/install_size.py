"""Disk space of the installed PyTorch and its CUDA runtime wheels: ``python benchmarks/install_size.py``.

Sums the files each installed distribution lists (its RECORD, as ``pip`` installed them): ``torch``,
``torchvision``, ``triton`` and every ``nvidia-*`` and ``cuda-*`` distribution (the CUDA runtime wheels
the Linux x86-64 torch pulls from PyPI; none with the CPU-only wheels). Writes its record to
``benchmarks/results/install_size.json`` (the README's install line is generated from it).
"""

from __future__ import annotations

import importlib.metadata as metadata

from zepad_bench.bench_record import write_record

GROUPS = {"torch": ("torch",), "torchvision": ("torchvision",), "triton": ("triton",)}
PREFIXES = ("nvidia-", "cuda-")


def size(dist: metadata.Distribution) -> int:
    """Bytes of the files the distribution lists that exist on disk."""
    total = 0
    for file in dist.files or ():
        path = dist.locate_file(file)
        if path.is_file():
            total += path.stat().st_size
    return total


def main() -> None:
    dists = {d.metadata["Name"].lower(): d for d in metadata.distributions()}
    figures: dict = {"bytes": {}, "versions": {}}
    for group, names in GROUPS.items():
        found = [dists[n] for n in names if n in dists]
        figures["bytes"][group] = sum(size(d) for d in found)
        figures["versions"][group] = found[0].version if found else None
    for prefix in PREFIXES:
        found = sorted(n for n in dists if n.startswith(prefix))
        figures["bytes"][f"{prefix}*"] = sum(size(dists[n]) for n in found)
        figures[f"{prefix}*"] = found
    figures["bytes"]["total"] = sum(v for k, v in figures["bytes"].items())
    for name, value in figures["bytes"].items():
        print(f"{name:<12} {value / 1e9:6.2f} GB")
    write_record("install_size", figures)


if __name__ == "__main__":
    main()
