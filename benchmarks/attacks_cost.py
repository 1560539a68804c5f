"""Per-attack fit/perturb cost, and ART's per-sample PGD vs our batched PGD on the same surrogate.

    python benchmarks/attacks_cost.py                      # small CNN, 32 px, CPU (about a minute)
    python benchmarks/attacks_cost.py --arch resnet18 --size 64 --device cuda --images 1024

Costs do not depend on the weights, so the encoder is randomly initialised and the images are
random. Attack settings are scaled down (``LIGHT``); fit time grows linearly in their budgets
(images, steps, epochs, passes), so multiply to estimate the papers' defaults.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from zepad_bench.bench_record import write_record
from zepad_bench.context import RunContext
from zepad_bench.data.images import UnlabeledBatches
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.pgd import pgd
from zepad_bench_plugins.attacks import ATTACKS
from zepad_bench_plugins.attacks.art_adapter import ARTAttack
from zepad_bench_plugins.attacks.common import PseudoLabelProbe

LIGHT = {
    "advencoder": dict(epochs=2, ngf=32, z_batch=64),
    "pap": dict(steps=50),
    "uap": dict(max_images=512, max_passes=1),
    "uapgd": dict(images=1024, steps=10),
    "uapgd-reference": dict(images=256, steps=10),
    "ssp": dict(steps=20),
    "ssp-universal": dict(steps=50),
    "art": dict(
        attack="ProjectedGradientDescent", params={"max_iter": 10, "eps_step": 2 / 255}, max_images=512
    ),
    "random-noise": {},
}
PGD_STEPS, PGD_STEP = 10, 2 / 255


def seconds(fn) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="small-cnn")
    parser.add_argument("--width", type=int, default=16, help="small-cnn width")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--images", type=int, default=1024, help="attacker images")
    parser.add_argument("--test", type=int, default=256, help="images to perturb")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    params = {"width": args.width} if args.arch == "small-cnn" else {}
    encoder = Encoder(args.arch, params).to(args.device).eval()
    attacker = (torch.rand(args.images, 3, args.size, args.size) * 255).to(torch.uint8)
    x = torch.rand(args.test, 3, args.size, args.size, device=args.device)
    eps = 8 / 255
    print(
        f"{args.arch} at {args.size} px on {args.device}: {args.images} attacker images, perturb {args.test}"
    )
    print(f"{'attack':<14}{'fit s':>9}{'perturb s':>11}{'perturb img/s':>15}")
    figures: dict = {"settings": vars(args), "light": LIGHT, "attacks": {}, "pgd": {}}
    art = None
    for cls in ATTACKS:
        if "semi-black-box" not in cls.scenarios:  # the adaptive attack runs through a defended pipeline
            continue
        attack = cls(eps, **LIGHT[cls.name])
        attack.ctx = RunContext(device=args.device, seed=0)
        images = UnlabeledBatches(attacker, args.batch, seed=0, device=args.device)
        fit, _ = seconds(lambda a=attack, i=images: a.fit([encoder], i))
        perturb, _ = seconds(
            lambda a=attack: [a.perturb(x[i : i + args.batch]) for i in range(0, len(x), args.batch)]
        )
        print(f"{cls.name:<14}{fit:>9.2f}{perturb:>11.2f}{len(x) / perturb:>15.0f}")
        figures["attacks"][cls.name] = {
            "fit_s": fit,
            "perturb_s": perturb,
            "perturb_images_per_s": len(x) / perturb,
        }
        if isinstance(attack, ARTAttack):
            art = attack

    # Same surrogate (encoder + pseudo-label probe), same PGD: ART (NumPy round trip) vs ours.
    assert art is not None
    probe = PseudoLabelProbe([encoder], art.probe_weight.to(args.device), art.probe_bias.to(args.device))
    with torch.no_grad():
        labels = probe(x).argmax(1)
    ours, _ = seconds(
        lambda: [
            pgd(
                lambda z, y=labels[i : i + args.batch]: F.cross_entropy(probe(z), y, reduction="sum"),
                x[i : i + args.batch],
                eps,
                PGD_STEP,
                PGD_STEPS,
            )
            for i in range(0, len(x), args.batch)
        ]
    )
    print(f"\nPGD-{PGD_STEPS} on {len(x)} images, per sample:")
    print(f"  ours (batched {args.batch}, torch)     {1000 * ours / len(x):8.2f} ms")
    figures["pgd"] = {"steps": PGD_STEPS, "images": len(x), "ours_ms": 1000 * ours / len(x), "art_ms": {}}
    for batch_size in (args.batch, 1):
        attack = ARTAttack(
            eps,
            attack="ProjectedGradientDescent",
            params={"max_iter": PGD_STEPS, "eps_step": PGD_STEP, "batch_size": batch_size},
        )
        attack.ctx, attack.encoders = RunContext(device=args.device), [encoder]
        attack.probe_weight, attack.probe_bias = art.probe_weight, art.probe_bias
        attack.perturb(x[:1])  # build the ART classifier outside the timing
        n = len(x) if batch_size > 1 else min(len(x), 32)
        cost, _ = seconds(lambda a=attack, n=n: a.perturb(x[:n]))
        print(
            f"  ART (batch_size={batch_size:<4}, NumPy)     {1000 * cost / n:8.2f} ms"
            f"   ({cost / n / (ours / len(x)):.1f}x ours)"
        )
        figures["pgd"]["art_ms"][str(batch_size)] = {"ms": 1000 * cost / n, "images": n}
    write_record(f"attacks_cost-{args.device.split(':')[0]}", figures, device=args.device)


if __name__ == "__main__":
    main()
