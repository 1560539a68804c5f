"""Gen-AF stage I on the quickstart's settings: joint-head BA, encoder kNN and the logits' dimensionality.

    python benchmarks/gen_af_head.py --seeds 0 1                       # authors' L_f on logits
    python benchmarks/gen_af_head.py --lf-on features --seeds 0 1      # our default
    python benchmarks/gen_af_head.py --lambda-f 0 --seeds 0

Digits as D_f (train split) and test split, the quickstart's BYOL small CNN, ε 0.015, step 0.004,
PGD-10, batch 128, 5 epochs (stage I only: stage II tunes 20 % of the layers on clean data and
cannot revive a collapsed head). Prints, per seed: BA of the jointly tuned head, 10-NN accuracy
(cosine) on the tuned encoder's features (what a retrained head can reach), and the participation
ratio (Σλ)²/Σλ² of the test logits' covariance (1 = the logits vary along one direction only).
Writes its record to ``benchmarks/results/gen_af_head-<protocol>-<lf_on>-lambda<λ>.json``; docs/fidelity.md's
table is generated from the records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from zepad_bench.bench_record import write_record
from zepad_bench.context import RunContext
from zepad_bench_plugins.datasets.offline import Digits
from zepad_bench_plugins.defenses.gen_af import GenAF
from zepad_bench_plugins.encoders.solo_learn import SoloLearnEncoder

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "suites/encoders/byol/byol-photos-small-cnn-seed0-ep=14.ckpt"


def spectrum(logits: torch.Tensor) -> tuple[float, float]:
    """The participation ratio (Σλ)²/Σλ² of the logits' covariance and its top-2 eigenvalues' share (%)."""
    centred = logits - logits.mean(0)
    eigenvalues = torch.linalg.eigvalsh(centred.T @ centred).flip(0)
    ratio = (eigenvalues.sum() ** 2 / (eigenvalues**2).sum()).item()
    return ratio, 100 * (eigenvalues[:2].sum() / eigenvalues.sum()).item()


def run(seed: int, **params) -> dict[str, float]:
    source = SoloLearnEncoder(path=str(CHECKPOINT), arch="small-cnn", arch_params={"width": 16})
    source.ctx = RunContext(seed=seed)
    digits = Digits()
    train, test = digits.load("train", 32, seed), digits.load("test", 32, seed)
    defense = GenAF(eps=0.015, step_size=0.004, epochs=5, batch_size=128, **params)
    defense.ctx = RunContext(seed=seed)
    model, _ = defense.tune(source.build(None), train)
    with torch.no_grad():
        logits = model(test.float_images())
        bank = F.normalize(model.encoder(train.float_images()), dim=1)
        queries = F.normalize(model.encoder(test.float_images()), dim=1)
        knn = train.labels[(queries @ bank.T).topk(10, dim=1).indices].mode(dim=1).values
    ratio, top2 = spectrum(logits)
    return {
        "BA": 100 * (logits.argmax(1) == test.labels).float().mean().item(),
        "kNN-10": 100 * (knn == test.labels).float().mean().item(),
        "logit PR": ratio,
        "top-2 PC %": top2,
        "top class %": 100 * torch.bincount(logits.argmax(1)).max().item() / len(test),
        "test images": len(test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--lf-on", choices=("logits", "features"), default="logits")
    parser.add_argument("--lambda-f", type=float, default=20.0)
    parser.add_argument("--protocol", choices=("corrected", "authors"), default="corrected")
    args = parser.parse_args()
    torch.set_num_threads(1)
    variant = {"lf_on": args.lf_on, "lambda_f": args.lambda_f, "protocol": args.protocol}
    seeds = {}
    for seed in args.seeds:
        seeds[str(seed)] = result = run(seed, **variant)
        print(f"seed {seed}: " + "  ".join(f"{k} {v:.2f}" for k, v in result.items()), flush=True)
    name = f"gen_af_head-{args.protocol}-{args.lf_on}-lambda{args.lambda_f:g}"
    write_record(name, {"variant": variant, "seeds": seeds})


if __name__ == "__main__":
    main()
