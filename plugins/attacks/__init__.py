"""Built-in attacks: the paper's five DAEs (UAPGD and SSP also as the reference code ran them), an ART
adapter, the equal-budget random-noise control and the adaptive ensemble on the defended pipeline."""

from zepad_bench import hookimpl
from zepad_bench_plugins.attacks.adaptive import AdaptiveEnsemble
from zepad_bench_plugins.attacks.advencoder import AdvEncoder
from zepad_bench_plugins.attacks.art_adapter import ARTAttack
from zepad_bench_plugins.attacks.pap import PAP
from zepad_bench_plugins.attacks.random_noise import RandomNoise
from zepad_bench_plugins.attacks.ssp import SSP, SSPUniversal
from zepad_bench_plugins.attacks.uap import UAP
from zepad_bench_plugins.attacks.uapgd import UAPGD, UAPGDReference

ATTACKS = (
    AdvEncoder,
    PAP,
    UAP,
    UAPGD,
    UAPGDReference,
    SSP,
    SSPUniversal,
    ARTAttack,
    RandomNoise,
    AdaptiveEnsemble,
)


@hookimpl
def register_attacks(register):
    for cls in ATTACKS:
        register(cls)
