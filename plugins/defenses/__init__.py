"""Built-in defenses."""

from zepad_bench import hookimpl
from zepad_bench_plugins.defenses.none import NoDefense


@hookimpl
def register_defenses(register):
    register(NoDefense)
