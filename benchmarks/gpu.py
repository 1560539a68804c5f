"""GPU speed figures from one run: Table S6's layout, adversarial-tuning throughput, one cell's wall time.

    python benchmarks/gpu.py                          # CPU-sized defaults (a few minutes on 2 cores)
    python benchmarks/gpu.py --paper --device cuda    # Table S6's size: ResNet18, 64×64, batch 256

Prints, for the same settings:
1. Table S6's layout (the paper: RTX 4090, batch 256, ZePAD 1.32× the baseline's time, 2.33× its
   memory): time per batch and peak memory of inference with no defense (victim + head) vs ZePAD
   (two MPAE encoders + the BMP encoder, each with its head, RFDM fusion), ZePAD's branches run one
   after another, on CUDA streams and stacked (``zepad_bench.nn.batched``), at fp32 and bf16.
2. Images/s of one epoch of ZePAD's adversarial tuning of one encoder (PGD-10 inner loop).
3. The wall time of one small cell (digits, SSL-pretrained victim, UAPGD, ZePAD, classification).
Weights are random (cost does not depend on them). Peak memory is CUDA's peak allocation; on a
CPU it prints "n/a (CPU)".
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from zepad_bench.bench_record import write_record
from zepad_bench.context import RunContext
from zepad_bench.data.images import LabeledImages
from zepad_bench.nn import precision
from zepad_bench.nn.batched import forward_together
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.heads import MLPHead
from zepad_bench_plugins.defenses.zepad import ZePAD


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory(device: str, fn) -> int | None:
    """Peak bytes CUDA allocates for ``fn()`` beyond what was allocated before; ``None`` on a CPU
    (no allocator statistics there)."""
    if not device.startswith("cuda"):
        return None
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    return torch.cuda.max_memory_allocated() - base


def branch(arch: str, size: int, classes: int, device: str) -> tuple[Encoder, MLPHead]:
    encoder = Encoder(arch, input_size=None).to(device).eval()
    with torch.no_grad():
        dim = encoder(torch.rand(1, 3, size, size, device=device)).shape[1]
    return encoder, MLPHead(dim, classes).to(device).eval()


@torch.no_grad()
def infer(branches, x, how: str, fuse) -> torch.Tensor:
    feats = forward_together([e for e, _ in branches], x, how)
    logits = [h(f) for (_, h), f in zip(branches, feats)]
    return fuse(logits) if len(logits) > 1 else logits[0]


def table_s6(args) -> list[dict]:
    zepad = ZePAD()
    none = [branch(args.arch, args.size, 10, args.device)]
    full = none + [branch(args.arch, args.size, 10, args.device) for _ in range(2)]
    x = torch.rand(args.batch, 3, args.size, args.size, device=args.device)
    print(f"1. Table S6 layout: {args.arch} at {args.size}×{args.size}, batch {args.batch}, {args.device}")
    print("| precision | path | time per batch (ms) | peak memory (MiB) | time vs none | memory vs none |")
    print("|---|---|---|---|---|---|")
    rows = []
    for prec in ("fp32", "bf16"):
        base = None
        for label, branches, how in (
            ("none", none, "sequential"),
            ("ZePAD, sequential", full, "sequential"),
            ("ZePAD, CUDA streams", full, "streams"),
            ("ZePAD, stacked (vmap)", full, "stacked"),
        ):
            with precision.use(prec):
                infer(branches, x, how, zepad.fuse)  # warm-up
                synchronize(args.device)
                start = time.perf_counter()
                for _ in range(args.repeats):
                    infer(branches, x, how, zepad.fuse)
                synchronize(args.device)
                ms = (time.perf_counter() - start) / args.repeats * 1000
                peak = peak_memory(args.device, lambda b=branches, h=how: infer(b, x, h, zepad.fuse))
            base = base or (ms, peak)
            mib = "n/a (CPU)" if peak is None else f"{peak / 2**20:.0f}"
            ratio_mem = "n/a" if peak is None or not base[1] else f"{peak / base[1]:.2f}×"
            print(f"| {prec} | {label} | {ms:.1f} | {mib} | {ms / base[0]:.2f}× | {ratio_mem} |")
            rows.append(
                {
                    "precision": prec,
                    "path": label,
                    "ms": ms,
                    "peak_mib": None if peak is None else peak / 2**20,
                    "time_vs_none": ms / base[0],
                    "memory_vs_none": None if peak is None or not base[1] else peak / base[1],
                }
            )
    return rows


def tuning_throughput(args) -> dict[str, dict]:
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(args.tune_images, 3, args.size, args.size, generator=generator) * 255).to(
        torch.uint8
    )
    data = LabeledImages(images, torch.arange(args.tune_images) % 10, [str(c) for c in range(10)], "bench")
    defense = ZePAD(epochs=1, batch_size=args.batch, use_bmp=False, num_auxiliaries=0)
    defense.ctx = RunContext(device=args.device)
    out = {}
    for prec in ("fp32", "bf16"):
        victim = Encoder(args.arch).to(args.device)
        with precision.use(prec):
            synchronize(args.device)
            start = time.perf_counter()
            defense.fit(victim, [], data)
            synchronize(args.device)
        seconds = time.perf_counter() - start
        print(
            f"2. adversarial tuning ({prec}): one ZePAD MPAE tuning epoch, {args.arch} at {args.size}px, "
            f"PGD-{defense.steps}, batch {args.batch}: {args.tune_images / seconds:.1f} images/s "
            f"({args.tune_images} images, {seconds:.1f} s)"
        )
        out[prec] = {
            "images_per_s": args.tune_images / seconds,
            "images": args.tune_images,
            "seconds": seconds,
        }
    return out


PARTS = ("inference", "tuning", "cell")
"""The record's key of each part (1, 2, 3)."""

CELL = """
[suite]
name = "gpu-bench"
image_size = {size}
batch_size = {batch}
attacker_data = "digits"
precision = "{precision}"

[datasets.digits]
plugin = "digits"
limit_per_class = {per_class}

[encoders.victim]
plugin = "ssl"
method = "simclr"
arch = "{arch}"
epochs = {epochs}
batch_size = {batch}
data = "digits"
auxiliaries = ["aux"]

[encoders.aux]
plugin = "ssl"
method = "byol"
arch = "{arch}"
epochs = {epochs}
batch_size = {batch}
data = "digits"

[attacks.uapgd]
plugin = "uapgd"
images = {per_class}0
steps = 10

[defenses.zepad]
plugin = "zepad"
epochs = {epochs}
batch_size = {batch}
bmp_epochs = {epochs}
bmp_batch_size = {batch}
bmp_arch = "{arch}"

[tasks.cls]
plugin = "classification"
data = "digits"

[grid]
victims = ["victim"]
scenarios = ["white-box"]
"""


def cell_wall_time(args) -> dict[str, dict]:
    from zepad_bench import load_registry
    from zepad_bench.runner import Runner
    from zepad_bench.suite import load_suite

    out = {}
    for prec in ("fp32", "bf16"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cell.toml"
            path.write_text(CELL.format(precision=prec, **vars(args)))
            suite = load_suite(path, load_registry())
            runner = Runner(suite, suite.registry, Path(tmp) / "w", device=args.device)
            (cell,) = suite.cells()
            start = time.perf_counter()
            row = runner.run_cell(cell)
            seconds = time.perf_counter() - start
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in row["timings"].items() if k != "cell")
        print(
            f"3. one cell ({prec}): digits ({args.per_class}/class), {args.arch} at {args.size}px, "
            f"{args.epochs} epoch(s) of SSL pretraining (victim + auxiliary), UAPGD, ZePAD, classification: "
            f"{seconds:.1f} s wall ({stages}); BA {row['metrics']['BA']:.1f}, RA {row['metrics']['RA']:.1f}"
        )
        timings = {k: v for k, v in row["timings"].items() if k != "cell"}
        out[prec] = {
            "wall_s": seconds,
            "timings": timings,
            "BA": row["metrics"]["BA"],
            "RA": row["metrics"]["RA"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", default="small-cnn", help="backbone (paper: resnet18)")
    parser.add_argument("--size", type=int, default=32, help="image side (paper: 64)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (paper: 256)")
    parser.add_argument("--repeats", type=int, default=5, help="timed inference batches")
    parser.add_argument("--tune-images", type=int, default=512, help="images in the tuning epoch")
    parser.add_argument("--per-class", type=int, default=20, help="digits per class in the cell")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each training in the cell")
    parser.add_argument("--paper", action="store_true", help="Table S6's size: resnet18, 64 px, batch 256")
    parser.add_argument("--parts", default="123", help="which parts to run (e.g. 1 or 13)")
    args = parser.parse_args()
    if args.paper:
        args.arch, args.size, args.batch, args.tune_images, args.per_class = "resnet18", 64, 256, 5120, 100
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    figures: dict = {"settings": vars(args)}
    for part, name, run in zip("123", PARTS, (table_s6, tuning_throughput, cell_wall_time)):
        if part in args.parts:
            figures[name] = run(args)
    size = "paper" if args.paper else "default"
    write_record(f"gpu-{args.device.split(':')[0]}-{size}", figures, device=args.device)


if __name__ == "__main__":
    main()
