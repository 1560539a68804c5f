"""SSL pretraining throughput (images/s) of a backbone at 32×32 for a few methods; the augmentation's share.

    python benchmarks/pretrain_throughput.py                       # ResNet18, CPU: a few steps only
    python benchmarks/pretrain_throughput.py --device cuda --batch-size 256 --steps 20

The first step of each method is a warm-up and is not timed. Random uint8 images stand in for data
(throughput does not depend on content). "aug share" is the fraction of a step spent making the views.
"""

from __future__ import annotations

import argparse
import time

import torch

from zepad_bench.bench_record import write_record
from zepad_bench.nn.ssl import Pretrainer
from zepad_bench.nn.ssl.augment import PRESETS, make_views


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(method: str, args: argparse.Namespace, device: str) -> tuple[float, float]:
    """(training images/s, augmentation images/s) over ``args.steps`` timed steps."""
    n = args.batch_size * (args.steps + 1)
    images = torch.randint(0, 256, (n, 3, args.image_size, args.image_size), dtype=torch.uint8)
    labels = torch.arange(n) % 10
    trainer = Pretrainer(
        method,
        images,
        labels=labels,
        arch=args.arch,
        epochs=1,
        batch_size=args.batch_size,
        seed=0,
        device=device,
    )
    steps = trainer.steps()
    next(steps)
    _sync(device)
    start = time.perf_counter()
    for _ in steps:
        pass
    _sync(device)
    train_ips = args.steps * args.batch_size / (time.perf_counter() - start)
    batch = trainer.images[: args.batch_size]
    generator = torch.Generator().manual_seed(0)
    presets = PRESETS[trainer.cfg["augment"]]
    start = time.perf_counter()
    for _ in range(args.steps):
        make_views(batch, presets, args.image_size, generator)
    _sync(device)
    aug_ips = args.steps * args.batch_size / (time.perf_counter() - start)
    return train_ips, aug_ips


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", default="simclr,byol,mocov2plus,swav", help="comma-separated")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    name = torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    size = f"{args.image_size}×{args.image_size}"
    print(f"{args.arch} {size}, batch {args.batch_size}, {args.steps} timed steps on {name}")
    print(f"{'method':<12} {'train img/s':>12} {'aug img/s':>12} {'aug share':>10}")
    figures: dict = {"settings": vars(args), "methods": {}}
    for method in args.methods.split(","):
        train_ips, aug_ips = measure(method, args, device)
        print(f"{method:<12} {train_ips:>12,.0f} {aug_ips:>12,.0f} {train_ips / aug_ips:>10.1%}")
        figures["methods"][method] = {"train_images_per_s": train_ips, "aug_images_per_s": aug_ips}
    write_record(f"pretrain_throughput-{device}", figures, device=device)


if __name__ == "__main__":
    main()
