"""Built-in defenses."""

from zepad_bench import hookimpl
from zepad_bench_plugins.defenses.adversarial_training import MART, PGDAT, TRADES
from zepad_bench_plugins.defenses.gen_af import GenAF
from zepad_bench_plugins.defenses.none import NoDefense
from zepad_bench_plugins.defenses.zepad import ZePAD


@hookimpl
def register_defenses(register):
    register(NoDefense)
    register(ZePAD)
    register(PGDAT)
    register(TRADES)
    register(MART)
    register(GenAF)
