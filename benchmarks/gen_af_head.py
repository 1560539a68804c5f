"""Gen-AF stage I on the quickstart's settings: joint-head BA, encoder kNN and the logits' dimensionality.

    python benchmarks/gen_af_head.py --seeds 0 1                       # authors' L_f on logits
    python benchmarks/gen_af_head.py --lf-on features --seeds 0 1      # our default
    python benchmarks/gen_af_head.py --lambda-f 0 --seeds 0

Digits as D_f (train split) and test split, the quickstart's BYOL small CNN, ε 0.015, step 0.004,
PGD-10, batch 128, 5 epochs (stage I only: stage II tunes 20 % of the layers on clean data and
cannot revive a collapsed head). Prints, per seed: BA of the jointly tuned head, 10-NN accuracy
(cosine) on the tuned encoder's features (what a retrained head can reach), and the participation
ratio (Σλ)²/Σλ² of the test logits' covariance (1 = the logits vary along one direction only).
About a minute per seed on one idle CPU core. Numbers: docs/fidelity.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from zepad_bench.context import RunContext
from zepad_bench_plugins.datasets.offline import Digits
from zepad_bench_plugins.defenses.gen_af import GenAF
from zepad_bench_plugins.encoders.solo_learn import SoloLearnEncoder

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "suites/encoders/byol/byol-photos-small-cnn-seed0-ep=14.ckpt"


def participation_ratio(logits: torch.Tensor) -> float:
    centred = logits - logits.mean(0)
    eigenvalues = torch.linalg.eigvalsh(centred.T @ centred)
    return (eigenvalues.sum() ** 2 / (eigenvalues**2).sum()).item()


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
    return {
        "BA": 100 * (logits.argmax(1) == test.labels).float().mean().item(),
        "kNN-10": 100 * (knn == test.labels).float().mean().item(),
        "logit PR": participation_ratio(logits),
        "top class %": 100 * torch.bincount(logits.argmax(1)).max().item() / len(test),
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
    for seed in args.seeds:
        result = run(seed, lf_on=args.lf_on, lambda_f=args.lambda_f, protocol=args.protocol)
        print(f"seed {seed}: " + "  ".join(f"{k} {v:.2f}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
